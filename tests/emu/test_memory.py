"""Shared memory and atomics of the CPU runtime.

Shared memory: every block starts with its static and dynamic (extern) shared memory filled with
the poison pattern (0xFF bytes: NaN, -1), never with another block's data, and blocks running at
the same time on two OS threads never see each other's; file-scope, 2-D, multi-declarator,
aligned and scalar __shared__ declarations get separate, aligned storage that does not overlap
the dynamic shared memory; the dynamic size given by shared_mem is usable in full and the
48 KB per-block limit (raised by max_dynamic_shared_size_bytes) is enforced.
Atomics: atomicAdd on int/float/double and atomicMax on int from many blocks on two OS threads,
against np.add.at / np.maximum.at (float inputs are small integers, so every order sums exactly);
atomicAdd's return values are unique tickets; atomics on shared memory.
Blocks run at the same time on several OS threads (both cores work), and one at a time on one.
"""

import numpy as np
import pytest

from alexnet_raw import emu
from emu_testing import ALL_SCHEDULES, run_under

MEMORY_KERNELS = r"""
__shared__ float fs_tile[128];
extern __shared__ float fs_dynamic[];

// Each thread records what its block's static and dynamic shared memory hold before anyone wrote
// them; then, for `rounds` rounds, the block fills both with its own tag and every thread counts
// the entries holding anything else.
extern "C" __global__ void shared_isolation(unsigned* first_static, unsigned* first_dynamic, int* foreign,
                                            int rounds) {
  __shared__ unsigned s[128];
  extern __shared__ unsigned dyn[];
  const unsigned t = threadIdx.x, n = blockDim.x, b = blockIdx.x;
  first_static[b * n + t] = s[t];
  first_dynamic[b * n + t] = dyn[t];
  __syncthreads();
  int bad = 0;
  for (int r = 0; r < rounds; ++r) {
    const unsigned tag = (b << 16) | unsigned(r);
    s[t] = tag;
    dyn[t] = ~tag;
    __syncthreads();
    for (unsigned j = 0; j < n; ++j) bad += (s[j] != tag) + (dyn[j] != ~tag);
    __syncthreads();
  }
  foreign[b * n + t] = bad;
}

// y = 3 * x reversed within each block, through the file-scope static and dynamic arrays.
extern "C" __global__ void reverse_through_file_scope(float* y, float* first, const float* x) {
  const unsigned t = threadIdx.x, n = blockDim.x, i = blockIdx.x * n + t;
  first[2 * i] = fs_tile[t];
  first[2 * i + 1] = fs_dynamic[t];
  __syncthreads();
  fs_tile[t] = x[i];
  fs_dynamic[t] = 2.f * x[i];
  __syncthreads();
  y[i] = fs_tile[n - 1 - t] + fs_dynamic[n - 1 - t];
}

// Several kinds of declarations: each thread writes a distinct value to every array, then the
// block reads everything back; addresses are reported to check alignment and overlap.
extern "C" __global__ void shared_layouts(int* ok, unsigned long long* where) {
  __shared__ int a[4][33], b[7];
  __shared__ __align__(64) unsigned char c[3];
  __shared__ double d;
  extern __shared__ short dyn_short[];  // 100 shorts
  const int t = threadIdx.x;  // 132 threads
  a[t / 33][t % 33] = 10 * t;
  if (t < 7) b[t] = -t;
  if (t < 3) c[t] = (unsigned char)(200 + t);
  if (t == 0) d = 0.25;
  if (t < 100) dyn_short[t] = (short)(-3 * t);
  __syncthreads();
  int good = a[t / 33][t % 33] == 10 * t && d == 0.25;
  for (int j = 0; j < 7; ++j) good &= b[j] == -j;
  for (int j = 0; j < 3; ++j) good &= c[j] == 200 + j;
  for (int j = 0; j < 100; ++j) good &= dyn_short[j] == -3 * j;
  ok[t] = good;
  if (t == 0) {
    where[0] = (unsigned long long)&a[0][0];
    where[1] = (unsigned long long)&b[0];
    where[2] = (unsigned long long)&c[0];
    where[3] = (unsigned long long)&d;
    where[4] = (unsigned long long)&dyn_short[0];
  }
}

// Fill all `count` floats of the dynamic shared memory and a static guard array, read both back.
extern "C" __global__ void fill_dynamic(float* out, int* guard_ok, int count) {
  extern __shared__ float dyn[];
  __shared__ float guard[32];
  for (int j = threadIdx.x; j < count; j += blockDim.x) dyn[j] = blockIdx.x + 0.5f * j;
  if (threadIdx.x < 32) guard[threadIdx.x] = -1.f - threadIdx.x;
  __syncthreads();
  for (int j = threadIdx.x; j < count; j += blockDim.x) out[blockIdx.x * count + j] = dyn[j];
  if (threadIdx.x < 32) guard_ok[blockIdx.x * 32 + threadIdx.x] = guard[threadIdx.x] == -1.f - threadIdx.x;
}

template <typename T>
__global__ void scatter_add(T* acc, const T* x, const int* bin, int n) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x)
    atomicAdd(&acc[bin[i]], x[i]);
}

extern "C" __global__ void take_tickets(int* counter, int* ticket, int n) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x)
    ticket[i] = atomicAdd(counter, 1);
}

extern "C" __global__ void scatter_max(int* acc, int* old, const int* x, const int* bin, int n) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x)
    old[i] = atomicMax(&acc[bin[i]], x[i]);
}

// Per-block histogram with atomics on shared memory, added to the global one at the end.
extern "C" __global__ void block_histogram(int* hist, const int* x, int n, int bins) {
  __shared__ int h[64];
  for (int j = threadIdx.x; j < bins; j += blockDim.x) h[j] = 0;
  __syncthreads();
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) atomicAdd(&h[x[i]], 1);
  __syncthreads();
  for (int j = threadIdx.x; j < bins; j += blockDim.x) atomicAdd(&hist[j], h[j]);
}

// Blocks 0 and 1 each raise their flag, then wait up to `patience` (nanoseconds on the CPU runtime)
// for the other's: both see the other's flag only if they run at the same time.
extern "C" __global__ void meet(int* flags, int* saw, long long patience) {
  atomicExch(&flags[blockIdx.x], 1);
  const long long start = clock64();
  int seen = 0;
  while (!(seen = atomicAdd(&flags[1 - blockIdx.x], 0)) && clock64() - start < patience) {
  }
  saw[blockIdx.x] = seen;
}
"""

POISON_32 = 0xFFFFFFFF


@pytest.fixture(scope="module")
def mod():
    return emu.RawModule(code=MEMORY_KERNELS, name="memory_cases.cu",
                         name_expressions=("scatter_add<int>", "scatter_add<float>", "scatter_add<double>"))


@pytest.fixture
def poison_on(monkeypatch):
    monkeypatch.delenv("ALEXNET_RAW_EMU_POISON", raising=False)


def isolation_run(mod, grid, n, rounds):
    first_static = np.zeros(grid * n, np.uint32)
    first_dynamic = np.zeros(grid * n, np.uint32)
    foreign = np.full(grid * n, -1, np.int32)
    mod.get_function("shared_isolation")((grid,), (n,), (first_static, first_dynamic, foreign, np.int32(rounds)),
                                         shared_mem=4 * n)
    return first_static, first_dynamic, foreign


def test_shared_memory_starts_poisoned_and_is_private_to_each_block(mod, poison_on, two_os_threads):
    for kind, seed in ALL_SCHEDULES[:3]:
        with emu.schedule(kind, seed):
            first_static, first_dynamic, foreign = isolation_run(mod, grid=48, n=128, rounds=8)
        np.testing.assert_array_equal(first_static, POISON_32)  # never a previous block's tags
        np.testing.assert_array_equal(first_dynamic, POISON_32)
        np.testing.assert_array_equal(foreign, 0)  # no other block's tag while this one ran


def test_without_poison_a_block_sees_the_previous_blocks_data(mod, monkeypatch):
    # the counter-test of the one above: with poisoning off (ALEXNET_RAW_EMU_POISON=0) and one OS
    # thread, block b starts with what block b - 1 left, so the poison is what hides it
    monkeypatch.setenv("ALEXNET_RAW_EMU_POISON", "0")
    emu.set_num_threads(1)
    try:
        first_static, first_dynamic, foreign = isolation_run(mod, grid=4, n=64, rounds=3)
    finally:
        emu.set_num_threads(0)
    np.testing.assert_array_equal(foreign, 0)
    previous_tag = ((np.arange(1, 4) - 1) << 16 | 2).astype(np.uint32)
    np.testing.assert_array_equal(first_static.reshape(4, 64)[1:], np.repeat(previous_tag[:, None], 64, axis=1))
    np.testing.assert_array_equal(first_dynamic.reshape(4, 64)[1:], ~np.repeat(previous_tag[:, None], 64, axis=1))


def test_file_scope_shared_arrays(mod, poison_on):
    grid, n = 6, 128
    x = np.random.default_rng(0).standard_normal(grid * n).astype(np.float32)

    def run():
        y = np.zeros_like(x)
        first = np.zeros(2 * grid * n, np.float32)
        mod.get_function("reverse_through_file_scope")((grid,), (n,), (y, first, x), shared_mem=4 * n)
        return np.concatenate([y, first])

    for result in run_under(ALL_SCHEDULES, run):
        y, first = result[: grid * n], result[grid * n:]
        np.testing.assert_array_equal(y, (3 * x.reshape(grid, n)[:, ::-1]).ravel())
        np.testing.assert_array_equal(first.view(np.uint32), POISON_32)  # NaN with every bit set
        assert np.isnan(first).all()


def test_shared_declarations_are_separate_and_aligned(mod):
    ok = np.zeros(132, np.int32)
    where = np.zeros(5, np.uint64)
    mod.get_function("shared_layouts")((3,), (132,), (ok, where), shared_mem=200)
    np.testing.assert_array_equal(ok, 1)
    sizes = [4 * 33 * 4, 7 * 4, 3, 8, 200]
    alignments = [4, 4, 64, 8, 16]
    for address, align in zip(where, alignments):
        assert int(address) % align == 0
    spans = sorted((int(a), int(a) + s) for a, s in zip(where, sizes))
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert end <= start, "two shared arrays overlap"


@pytest.mark.parametrize("shared_bytes", [4, 1000, 48 * 1024 - 128])
def test_dynamic_shared_memory_size_is_usable_in_full(mod, shared_bytes):
    grid, count = 3, shared_bytes // 4
    out = np.zeros(grid * count, np.float32)
    guard = np.zeros(grid * 32, np.int32)
    mod.get_function("fill_dynamic")((grid,), (256,), (out, guard, np.int32(count)), shared_mem=shared_bytes)
    expected = np.arange(grid, dtype=np.float32)[:, None] + np.float32(0.5) * np.arange(count, dtype=np.float32)
    np.testing.assert_array_equal(out.reshape(grid, count), expected)
    np.testing.assert_array_equal(guard, 1)  # the static array did not overlap the dynamic one


def test_shared_memory_limit_is_enforced_and_can_be_raised(mod):
    f = mod.get_function("fill_dynamic")
    out = np.zeros(64 * 1024 // 4, np.float32)
    guard = np.zeros(32, np.int32)
    with pytest.raises(emu.KernelError, match="49156 bytes of dynamic shared memory requested, a GPU allows 49152"):
        f((1,), (256,), (out, guard, np.int32(4)), shared_mem=48 * 1024 + 4)
    # the dynamic size fits, but with the 128-byte static guard the block needs more than 48 KB
    with pytest.raises(emu.KernelError, match="needs at least 49156 bytes of shared memory .* more than the 49152"):
        f((1,), (256,), (out, guard, np.int32(4)), shared_mem=48 * 1024 - 124)
    f.max_dynamic_shared_size_bytes = 100 * 1024  # cudaFuncAttributeMaxDynamicSharedMemorySize
    try:
        count = 64 * 1024 // 4
        f((1,), (256,), (out, guard, np.int32(count)), shared_mem=64 * 1024)
        np.testing.assert_array_equal(out[:count], np.float32(0.5) * np.arange(count, dtype=np.float32))
        np.testing.assert_array_equal(guard, 1)
        with pytest.raises(emu.KernelError, match="a GPU allows 102400"):
            f((1,), (256,), (out, guard, np.int32(4)), shared_mem=100 * 1024 + 4)
    finally:
        f.max_dynamic_shared_size_bytes = 0


N_ATOMIC = 200_003
BINS = 7


@pytest.mark.parametrize("ctype,dtype", [("int", np.int32), ("float", np.float32), ("double", np.float64)])
def test_atomic_add_from_many_blocks(mod, two_os_threads, ctype, dtype):
    rng = np.random.default_rng(1)
    x = rng.integers(-8, 9, N_ATOMIC).astype(dtype)  # small integers: exact in any order
    bins = rng.integers(0, BINS, N_ATOMIC, dtype=np.int32)
    expected = rng.integers(-5, 5, BINS).astype(dtype)
    acc = expected.copy()
    np.add.at(expected, bins, x)
    mod.get_function(f"scatter_add<{ctype}>")((96,), (256,), (acc, x, bins, np.int32(N_ATOMIC)))
    np.testing.assert_array_equal(acc, expected)


def test_atomic_add_returns_unique_tickets(mod, two_os_threads):
    counter = np.zeros(1, np.int32)
    ticket = np.full(N_ATOMIC, -1, np.int32)
    mod.get_function("take_tickets")((96,), (256,), (counter, ticket, np.int32(N_ATOMIC)))
    assert counter[0] == N_ATOMIC
    np.testing.assert_array_equal(np.sort(ticket), np.arange(N_ATOMIC))


def test_atomic_max_from_many_blocks(mod, two_os_threads):
    rng = np.random.default_rng(2)
    x = rng.integers(-2**31, 2**31, N_ATOMIC, dtype=np.int64).astype(np.int32)
    bins = rng.integers(0, BINS, N_ATOMIC, dtype=np.int32)
    start = np.array([np.iinfo(np.int32).min, 0, -1, 5, np.iinfo(np.int32).max, -7, 3], np.int32)
    expected = start.copy()
    np.maximum.at(expected, bins, x)
    acc = start.copy()
    old = np.zeros(N_ATOMIC, np.int32)
    mod.get_function("scatter_max")((96,), (256,), (acc, old, x, bins, np.int32(N_ATOMIC)))
    np.testing.assert_array_equal(acc, expected)
    # every returned old value is the start value or an input of its bin, and at most the final
    assert (old <= acc[bins]).all()
    for b in range(BINS):
        assert np.isin(old[bins == b], np.append(x[bins == b], start[b])).all()


def test_shared_memory_atomics(mod, two_os_threads):
    rng = np.random.default_rng(3)
    bins = 50
    x = rng.integers(0, bins, N_ATOMIC, dtype=np.int32)
    for kind, seed in ALL_SCHEDULES[:3]:
        hist = np.zeros(bins, np.int32)
        with emu.schedule(kind, seed):
            mod.get_function("block_histogram")((40,), (128,), (hist, x, np.int32(N_ATOMIC), np.int32(bins)))
        np.testing.assert_array_equal(hist, np.bincount(x, minlength=bins))


def meet(mod, patience_seconds):
    flags, saw = np.zeros(2, np.int32), np.full(2, -1, np.int32)
    mod.get_function("meet")((2,), (1,), (flags, saw, np.int64(patience_seconds * 1e9)))
    np.testing.assert_array_equal(flags, 1)
    return saw.tolist()


def test_blocks_run_at_the_same_time_on_os_threads(mod, two_os_threads):
    assert meet(mod, 10.0) == [1, 1]  # each block waited for the other: they ran side by side


def test_one_os_thread_runs_one_block_at_a_time(mod):
    emu.set_num_threads(1)
    try:
        assert sorted(meet(mod, 0.05)) == [0, 1]  # the first block gave up waiting, the second saw its flag
    finally:
        emu.set_num_threads(0)
