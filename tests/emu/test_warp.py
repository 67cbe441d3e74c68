"""Warp primitives of the CPU runtime against a NumPy model of CUDA's warp semantics.

Warps are lanes 32k..32k+31 of a block's linear thread ids (x fastest, then y, then z). The model
of the four shuffles is PTX's shfl.sync with the operands CUDA's intrinsics pass (c = ((32 - width)
<< 8) | 0x1f, except __shfl_up_sync: (32 - width) << 8): with seg = lane & ~(width - 1) and
last = seg | (width - 1), the source lane j is

    idx   seg | (srcLane & (width - 1))      always valid
    up    lane - delta                       valid if j >= seg
    down  lane + delta                       valid if j <= last
    xor   lane ^ laneMask                    valid if j <= last (earlier segments are readable)

and an invalid j reads the caller's own value. Inputs, per-lane arguments and member masks are
random; lanes outside the mask do not call the primitive. A result is compared wherever CUDA
defines it: the caller is not a member (keeps its value), or its source lane exists and is a
member. Blocks include 3-D ones and partial last warps.
"""

import numpy as np
import pytest

from alexnet_raw import emu
from emu_testing import ALL_SCHEDULES, run_under

WARP_KERNELS = r"""
__device__ __forceinline__ unsigned linear_thread() {
  return threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
}
__device__ __forceinline__ unsigned threads_per_block() { return blockDim.x * blockDim.y * blockDim.z; }

// op 0 __shfl_sync (arg: source lane), 1 __shfl_up_sync (delta), 2 __shfl_down_sync (delta),
// 3 __shfl_xor_sync (lane mask); width 0: the intrinsic's default width. masks[w]: the member
// mask of warp w of the block (w = linear thread id / 32).
template <typename T>
__global__ void shuffle(T* out, const T* in, const int* arg, const unsigned* masks, int op, int width) {
  const unsigned n = threads_per_block(), t = linear_thread(), i = blockIdx.x * n + t;
  const unsigned mask = masks[blockIdx.x * ((n + 31) / 32) + t / 32];
  const T v = in[i];
  T r = v;
  if ((mask >> (t % 32)) & 1u) {
    if (width == 0) {
      if (op == 0) r = __shfl_sync(mask, v, arg[i]);
      else if (op == 1) r = __shfl_up_sync(mask, v, unsigned(arg[i]));
      else if (op == 2) r = __shfl_down_sync(mask, v, unsigned(arg[i]));
      else r = __shfl_xor_sync(mask, v, arg[i]);
    } else {
      if (op == 0) r = __shfl_sync(mask, v, arg[i], width);
      else if (op == 1) r = __shfl_up_sync(mask, v, unsigned(arg[i]), width);
      else if (op == 2) r = __shfl_down_sync(mask, v, unsigned(arg[i]), width);
      else r = __shfl_xor_sync(mask, v, arg[i], width);
    }
  }
  out[i] = r;
}

extern "C" __global__ void votes(unsigned* ballot, int* any, int* all, const int* pred, const unsigned* masks) {
  const unsigned n = threads_per_block(), t = linear_thread(), i = blockIdx.x * n + t;
  const unsigned mask = masks[blockIdx.x * ((n + 31) / 32) + t / 32];
  if ((mask >> (t % 32)) & 1u) {
    ballot[i] = __ballot_sync(mask, pred[i]);
    any[i] = __any_sync(mask, pred[i]);
    all[i] = __all_sync(mask, pred[i]);
  }
}

// Members store, meet at __syncwarp(mask) (if sync), then read the store of member src[i].
extern "C" __global__ void warp_exchange(float* out, const float* in, const int* src, const unsigned* masks,
                                         int sync) {
  __shared__ float s[1024];
  const unsigned n = threads_per_block(), t = linear_thread(), i = blockIdx.x * n + t;
  const unsigned mask = masks[blockIdx.x * ((n + 31) / 32) + t / 32];
  if ((mask >> (t % 32)) & 1u) {
    s[t] = in[i];
    if (sync) __syncwarp(mask);
    out[i] = s[t - t % 32 + src[i]];
  }
}
"""

DTYPES = {"int": np.int32, "float": np.float32, "double": np.float64}
OPS = ("idx", "up", "down", "xor")
BLOCKS = [(32, 1, 1), (8, 4, 3), (5, 3, 3), (7, 1, 1)]  # 45 and 7 threads: partial last warps
GRID = 3


@pytest.fixture(scope="module")
def mod():
    return emu.RawModule(code=WARP_KERNELS, name="warp_cases.cu",
                         name_expressions=[f"shuffle<{c}>" for c in DTYPES])


def random_masks(rng, n):
    """Member masks for GRID blocks of n threads: full, the existing lanes only, or random."""
    warps = (n + 31) // 32
    masks = rng.integers(0, 2**32, GRID * warps, dtype=np.uint64).astype(np.uint32)
    masks[0::3] = 0xFFFFFFFF
    last = n - 32 * (warps - 1)  # lanes of the last warp of a block
    existing_last = np.uint32((1 << last) - 1) if last < 32 else np.uint32(0xFFFFFFFF)
    masks[1::3][: GRID * warps // 3] = existing_last
    return masks


def lane_layout(n, masks):
    """Per thread of GRID blocks: lane, first thread of its warp (block-relative), its mask."""
    t = np.tile(np.arange(n), GRID)
    block = np.repeat(np.arange(GRID), n)
    warps = (n + 31) // 32
    mask = masks[block * warps + t // 32].astype(np.int64)
    return t, t % 32, t - t % 32, block, mask


def shuffle_model(op, values, arg, masks, width, n):
    """(expected, defined): the NumPy model of one shuffle over GRID blocks of n threads."""
    w = width or 32
    t, lane, base, block, mask = lane_layout(n, masks)
    seg = lane & ~(w - 1)
    last = seg | (w - 1)
    arg = arg.astype(np.int64)
    if op == "idx":
        j, valid = seg | (arg & (w - 1)), np.ones_like(lane, bool)
    elif op == "up":
        j = lane - arg
        valid = j >= seg
    elif op == "down":
        j = lane + arg
        valid = j <= last
    else:
        j = lane ^ arg
        valid = j <= last
    j = np.where(valid, j, lane)
    src = base + j
    member = (mask >> lane) & 1 == 1
    readable = (src < n) & ((mask >> j) & 1 == 1)
    expected = np.where(member, values[block * n + np.minimum(src, n - 1)], values)
    return expected, ~member | readable


def random_values(rng, dtype, size):
    if dtype == np.int32:
        return rng.integers(-2**31, 2**31, size, dtype=np.int64).astype(np.int32)
    return rng.standard_normal(size).astype(dtype)


@pytest.mark.parametrize("ctype", list(DTYPES))
@pytest.mark.parametrize("op", OPS)
def test_shuffles_match_the_numpy_model(mod, op, ctype):
    dtype = DTYPES[ctype]
    rng = np.random.default_rng([OPS.index(op), list(DTYPES).index(ctype)])
    kernel = mod.get_function(f"shuffle<{ctype}>")
    compared = 0
    for block in BLOCKS:
        n = int(np.prod(block))
        for width in (0, 1, 2, 4, 8, 16, 32):
            values = random_values(rng, dtype, GRID * n)
            if op == "idx":
                arg = rng.integers(-70, 70, GRID * n, dtype=np.int32)
            elif op == "xor":
                arg = rng.integers(0, 32, GRID * n, dtype=np.int32)
            else:
                arg = rng.integers(0, 34, GRID * n, dtype=np.int32)
            masks = random_masks(rng, n)
            expected, defined = shuffle_model(op, values, arg, masks, width, n)

            def run():
                out = np.zeros_like(values)
                kernel((GRID,), block, (out, values, arg, masks, np.int32(OPS.index(op)), np.int32(width)))
                return out

            # bit-exact wherever CUDA defines the result, under two schedules (undefined reads of
            # non-member lanes may differ between them)
            for (kind, _), got in zip(ALL_SCHEDULES, run_under(ALL_SCHEDULES[:2], run)):
                bad = np.flatnonzero(defined & (got.view(np.uint8).reshape(got.size, -1)
                                                != expected.view(np.uint8).reshape(got.size, -1)).any(axis=1))
                assert bad.size == 0, (
                    f"__shfl {op} width {width} block {block} ({kind}): thread {bad[0]} got {got[bad[0]]}, "
                    f"expected {expected[bad[0]]} ({bad.size} wrong)"
                )
            compared += int(defined.sum())
    assert compared > 0.6 * GRID * sum(int(np.prod(b)) for b in BLOCKS) * 7  # most results are defined


def test_ballot_any_all_match_the_numpy_model(mod):
    rng = np.random.default_rng(5)
    for block in BLOCKS:
        n = int(np.prod(block))
        for density in (0.0, 0.3, 1.0):
            pred = (rng.random(GRID * n) < density).astype(np.int32) * rng.integers(1, 5, GRID * n, dtype=np.int32)
            masks = random_masks(rng, n)
            t, lane, base, block_of, mask = lane_layout(n, masks)
            member = (mask >> lane) & 1 == 1
            existing = np.where(n - base >= 32, 0xFFFFFFFF, (1 << np.minimum(n - base, 31)) - 1)
            expected = np.zeros(GRID * n, np.int64)
            for l in range(32):  # bit l: lane l exists, is a member and its predicate holds
                src = block_of * n + np.minimum(base + l, n - 1)
                on = (base + l < n) & ((mask >> l) & 1 == 1) & (pred[src] != 0)
                expected |= on.astype(np.int64) << l
            members_here = mask & existing

            def run():
                outs = (np.full(GRID * n, 0xDEADBEEF, np.uint32), np.full(GRID * n, -1, np.int32),
                        np.full(GRID * n, -1, np.int32))
                mod.get_function("votes")((GRID,), block, (*outs, pred, masks))
                return np.stack([o.view(np.int32) for o in outs])

            for ballot, any_, all_ in run_under(ALL_SCHEDULES[:3], run):
                ballot = ballot.view(np.uint32).astype(np.int64)
                np.testing.assert_array_equal(ballot[member], expected[member])
                np.testing.assert_array_equal(ballot[~member], 0xDEADBEEF)
                np.testing.assert_array_equal(any_[member] != 0, expected[member] != 0)
                np.testing.assert_array_equal(all_[member] != 0, expected[member] == members_here[member])
                np.testing.assert_array_equal(all_[~member], -1)


def test_syncwarp_orders_shared_memory_within_a_warp(mod):
    rng = np.random.default_rng(6)
    for block in BLOCKS:
        n = int(np.prod(block))
        masks = random_masks(rng, n)
        t, lane, base, block_of, mask = lane_layout(n, masks)
        member = (mask >> lane) & 1 == 1
        src = np.zeros(GRID * n, np.int32)
        for i in np.flatnonzero(member):  # a random existing member of the same warp
            lanes = [l for l in range(32) if (mask[i] >> l) & 1 and base[i] + l < n]
            src[i] = rng.choice(lanes)
        values = rng.standard_normal(GRID * n).astype(np.float32)
        expected = np.where(member, values[block_of * n + base + src], np.float32(-1))

        def run(sync):
            out = np.full(GRID * n, -1, np.float32)
            mod.get_function("warp_exchange")((GRID,), block, (out, values, src, masks, np.int32(sync)))
            return out

        for got in run_under(ALL_SCHEDULES, lambda: run(1)):
            np.testing.assert_array_equal(got, expected)
        forward, reverse = run_under(ALL_SCHEDULES[:2], lambda: run(0))
        # without __syncwarp a member may read a store that has not happened yet
        assert not np.array_equal(forward, reverse), f"block {block}: __syncwarp made no difference"


def test_shuffle_width_must_be_a_power_of_two(mod):
    x = np.zeros(32, np.int32)
    masks = np.full(GRID, 0xFFFFFFFF, np.uint32)
    with pytest.raises(emu.KernelError, match="power of two"):
        mod.get_function("shuffle<int>")((GRID,), (32,), (x.repeat(GRID), x.repeat(GRID), x.repeat(GRID), masks,
                                                          np.int32(3), np.int32(3)))
