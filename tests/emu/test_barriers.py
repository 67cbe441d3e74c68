"""__syncthreads() semantics of the CPU runtime, and the schedule switch that exposes missing barriers.

A shared-memory tree reduction is right under every schedule with its barriers and wrong under
some schedule without them (the two schedules then disagree); a shared counter shows that nobody
passes a barrier before every live thread arrived; __syncthreads_count/_and/_or match a NumPy
model; threads that have exited while others wait at a barrier are a divergence (CUDA requires
every thread of a block to reach each __syncthreads(); PTX would release the barrier, so a GPU hides
the bug), while exiting after the last barrier is fine. The schedule can be set per call
(emu.schedule), per thread (emu.set_schedule) and by the environment (ALEXNET_RAW_EMU_SCHEDULE).
"""

import threading

import numpy as np
import pytest

from alexnet_raw import emu
from emu_testing import ALL_SCHEDULES, run_under, same_bits

BARRIER_KERNELS = r"""
// Tree sum of each block's 256 inputs in shared memory; launched with blockDim.x == 256.
template <typename T>
__global__ void block_sum(T* out, const T* x) {
  __shared__ T s[256];
  const int t = threadIdx.x;
  s[t] = x[blockIdx.x * 256 + t];
  __syncthreads();
  for (int k = 128; k > 0; k >>= 1) {
    if (t < k) s[t] += s[t + k];
    __syncthreads();
  }
  if (t == 0) out[blockIdx.x] = s[0];
}

// The same with the barrier inside the loop left out: s[t + k] may be read before its owner
// has added its partner to it.
template <typename T>
__global__ void block_sum_no_loop_barrier(T* out, const T* x) {
  __shared__ T s[256];
  const int t = threadIdx.x;
  s[t] = x[blockIdx.x * 256 + t];
  __syncthreads();
  for (int k = 128; k > 0; k >>= 1) {
    if (t < k) s[t] += s[t + k];
  }
  if (t == 0) out[blockIdx.x] = s[0];
}

// The same with no barrier at all: s[t + k] may be read before it was even loaded.
template <typename T>
__global__ void block_sum_no_barrier(T* out, const T* x) {
  __shared__ T s[256];
  const int t = threadIdx.x;
  s[t] = x[blockIdx.x * 256 + t];
  for (int k = 128; k > 0; k >>= 1) {
    if (t < k) s[t] += s[t + k];
  }
  if (t == 0) out[blockIdx.x] = s[0];
}

// Each round every thread adds one to a shared counter, waits, reads it, waits again: with a
// true barrier every thread reads (round + 1) * (threads in the block).
extern "C" __global__ void count_arrivals(int* seen, int rounds) {
  __shared__ int counter;
  const int n = blockDim.x * blockDim.y;
  const int t = threadIdx.x + blockDim.x * threadIdx.y;
  if (t == 0) counter = 0;
  __syncthreads();
  for (int r = 0; r < rounds; ++r) {
    atomicAdd(&counter, 1);
    __syncthreads();
    seen[(blockIdx.x * rounds + r) * n + t] = counter;
    __syncthreads();
  }
}

extern "C" __global__ void barrier_votes(int* count, int* all, int* any, const int* pred) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  const int p = pred[i];
  count[i] = __syncthreads_count(p);
  all[i] = __syncthreads_and(p);
  any[i] = __syncthreads_or(p);
}

// Threads at or above `active` return at once; the others exchange values through a barrier that
// the exited threads never reach: a divergence.
extern "C" __global__ void exit_then_barrier(int* out, int active) {
  __shared__ int s[256];
  if (threadIdx.x >= active) return;
  s[threadIdx.x] = 1000 * blockIdx.x + threadIdx.x;
  __syncthreads();
  out[blockIdx.x * blockDim.x + threadIdx.x] = s[active - 1 - threadIdx.x];
}

// The same exchange written as CUDA requires: every thread reaches the barrier, and threads at or
// above `active` leave after it.
extern "C" __global__ void barrier_then_exit(int* out, int active) {
  __shared__ int s[256];
  if (threadIdx.x < active) s[threadIdx.x] = 1000 * blockIdx.x + threadIdx.x;
  __syncthreads();
  if (threadIdx.x >= active) return;
  out[blockIdx.x * blockDim.x + threadIdx.x] = s[active - 1 - threadIdx.x];
}

// Transpose through a padded 2-D shared tile; block (32, 8), each thread moves 4 elements.
extern "C" __global__ void transpose(float* out, const float* in, int rows, int cols) {
  __shared__ float tile[32][33];
  int x = blockIdx.x * 32 + threadIdx.x, y = blockIdx.y * 32 + threadIdx.y;
  for (int j = 0; j < 32; j += 8)
    if (x < cols && y + j < rows) tile[threadIdx.y + j][threadIdx.x] = in[(y + j) * cols + x];
  __syncthreads();
  x = blockIdx.y * 32 + threadIdx.x;
  y = blockIdx.x * 32 + threadIdx.y;
  for (int j = 0; j < 32; j += 8)
    if (x < rows && y + j < cols) out[(y + j) * rows + x] = tile[threadIdx.x][threadIdx.y + j];
}
"""

# A module without any barrier: the runtime runs each block's threads one after another.
BARRIER_FREE_KERNELS = r"""
// Each thread reads its right neighbour's element, which needs a barrier after the stores.
extern "C" __global__ void rotate_without_barrier(int* out, const int* in) {
  __shared__ int s[64];
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  s[threadIdx.x] = in[i];
  out[i] = s[(threadIdx.x + 1) % blockDim.x];
}
"""

SUM_NAMES = [f"{k}<{t}>" for k in ("block_sum", "block_sum_no_loop_barrier", "block_sum_no_barrier")
             for t in ("int", "float")]


@pytest.fixture(scope="module")
def mod():
    return emu.RawModule(code=BARRIER_KERNELS, name="barrier_cases.cu", name_expressions=SUM_NAMES)


@pytest.fixture(scope="module")
def barrier_free():
    return emu.RawModule(code=BARRIER_FREE_KERNELS, name="barrier_free_cases.cu")


BLOCKS = 24


def block_sum(mod, kernel, x):
    out = np.zeros(BLOCKS, x.dtype)
    ctype = "int" if x.dtype == np.int32 else "float"
    mod.get_function(f"{kernel}<{ctype}>")((BLOCKS,), (256,), (out, x))
    return out


def test_block_sum_with_barriers_is_right_under_every_schedule(mod):
    rng = np.random.default_rng(0)
    xi = rng.integers(-1000, 1000, BLOCKS * 256, dtype=np.int32)
    for got in run_under(ALL_SCHEDULES, lambda: block_sum(mod, "block_sum", xi)):
        np.testing.assert_array_equal(got, xi.reshape(BLOCKS, 256).sum(axis=1))
    xf = rng.standard_normal(BLOCKS * 256).astype(np.float32)
    results = run_under(ALL_SCHEDULES, lambda: block_sum(mod, "block_sum", xf))
    np.testing.assert_allclose(results[0], xf.astype(np.float64).reshape(BLOCKS, 256).sum(axis=1), rtol=0, atol=2e-4)
    for r, (kind, seed) in zip(results[1:], ALL_SCHEDULES[1:]):
        assert same_bits(r, results[0]), f"float block sum differs between forward and {kind}:{seed}"


@pytest.mark.parametrize("kernel", ["block_sum_no_loop_barrier", "block_sum_no_barrier"])
def test_missing_barrier_gives_wrong_and_schedule_dependent_results(mod, kernel):
    rng = np.random.default_rng(1)
    x = rng.integers(1, 1000, BLOCKS * 256, dtype=np.int32)
    expected = x.reshape(BLOCKS, 256).sum(axis=1)
    results = dict(zip(ALL_SCHEDULES, run_under(ALL_SCHEDULES, lambda: block_sum(mod, kernel, x))))
    assert any(not np.array_equal(r, expected) for r in results.values()), \
        f"{kernel} gave the right sums under every schedule: the schedules do not expose the missing barrier"
    assert not np.array_equal(results[("forward", 0)], results[("reverse", 0)]), \
        f"{kernel} gave the same result under the forward and the reverse schedule"


def test_missing_barrier_shows_in_a_module_without_barriers(barrier_free):
    x = np.arange(4 * 64, dtype=np.int32) + 1
    expected = np.roll(x.reshape(4, 64), -1, axis=1).ravel()

    def run():
        out = np.zeros_like(x)
        barrier_free.get_function("rotate_without_barrier")((4,), (64,), (out, x))
        return out

    forward, reverse = run_under([("forward", 0), ("reverse", 0)], run)
    assert not np.array_equal(forward, reverse)
    assert not np.array_equal(forward, expected) or not np.array_equal(reverse, expected)


@pytest.mark.parametrize("block", [(16, 12), (13, 7)])
def test_no_thread_passes_a_barrier_before_all_arrive(mod, block):
    rounds, grid = 5, 6
    n = block[0] * block[1]

    def run():
        seen = np.zeros(grid * rounds * n, np.int32)
        mod.get_function("count_arrivals")((grid,), block, (seen, np.int32(rounds)))
        return seen

    expected = np.repeat((np.arange(rounds) + 1) * n, n)
    for seen in run_under(ALL_SCHEDULES, run):
        np.testing.assert_array_equal(seen.reshape(grid, rounds * n), np.broadcast_to(expected, (grid, rounds * n)))


def test_syncthreads_count_and_or_match_numpy(mod):
    rng = np.random.default_rng(2)
    grid, n = 8, 96
    pred = rng.integers(0, 2, (grid, n), dtype=np.int32) * rng.integers(-3, 4, (grid, n), dtype=np.int32)
    pred[0] = 0  # nobody
    pred[1] = 7  # everybody
    pred[2] = 0
    pred[2, n - 1] = -1  # exactly one thread, the last

    def run():
        outs = [np.full((grid, n), -5, np.int32) for _ in range(3)]
        mod.get_function("barrier_votes")((grid,), (n,), (*outs, pred))
        return np.stack(outs)

    nonzero = pred != 0
    for count, all_, any_ in run_under(ALL_SCHEDULES, run):
        np.testing.assert_array_equal(count, np.repeat(nonzero.sum(axis=1, keepdims=True), n, axis=1))
        np.testing.assert_array_equal(all_ != 0, np.repeat(nonzero.all(axis=1, keepdims=True), n, axis=1))
        np.testing.assert_array_equal(any_ != 0, np.repeat(nonzero.any(axis=1, keepdims=True), n, axis=1))


@pytest.mark.parametrize("active", [1, 37, 255])
def test_threads_that_exit_before_a_barrier_others_wait_at_are_a_divergence(mod, active):
    grid, n = 5, 256
    out = np.full(grid * n, -7, np.int32)
    for kind, seed in ALL_SCHEDULES:
        with emu.schedule(kind, seed), pytest.raises(emu.DivergenceError) as info:
            mod.get_function("exit_then_barrier")((grid,), (n,), (out, np.int32(active)))
        message = str(info.value)
        assert "threads have exited while others wait at __syncthreads()" in message
        assert f"{active} thread(s) (linear ids 0..{active - 1}) wait at __syncthreads()" in message
        assert f"{n - active} thread(s) have exited (the first: linear id {active})" in message


@pytest.mark.parametrize("active", [1, 37, 255])
def test_threads_may_exit_after_the_last_barrier(mod, active):
    grid, n = 5, 256

    def run():
        out = np.full(grid * n, -7, np.int32)
        mod.get_function("barrier_then_exit")((grid,), (n,), (out, np.int32(active)))
        return out

    expected = np.full((grid, n), -7, np.int32)
    t = np.arange(active)
    expected[:, :active] = 1000 * np.arange(grid)[:, None] + (active - 1 - t)[None, :]
    for out in run_under(ALL_SCHEDULES, run):
        np.testing.assert_array_equal(out.reshape(grid, n), expected)


@pytest.mark.parametrize("shape", [(45, 70), (32, 32), (1, 65)])
def test_shared_tile_transpose(mod, shape):
    rows, cols = shape
    x = np.random.default_rng(3).standard_normal(shape).astype(np.float32)

    def run():
        out = np.zeros((cols, rows), np.float32)
        mod.get_function("transpose")(((cols + 31) // 32, (rows + 31) // 32), (32, 8),
                                      (out, x, np.int32(rows), np.int32(cols)))
        return out

    for out in run_under(ALL_SCHEDULES, run):
        np.testing.assert_array_equal(out, x.T)


def test_schedule_setting_is_per_thread_and_read_from_the_environment(barrier_free, monkeypatch):
    x = np.arange(2 * 64, dtype=np.int32) + 1

    def run():
        out = np.zeros_like(x)
        barrier_free.get_function("rotate_without_barrier")((2,), (64,), (out, x))
        return out

    with emu.schedule("reverse"):
        reverse = run()
        assert emu.get_schedule() == ("reverse", 0)
    assert emu.get_schedule() != ("reverse", 0)  # the context manager restored the setting
    forward = run_under([("forward", 0)], run)[0]

    seen = {}

    def in_new_thread():  # a new OS thread reads the environment when it first asks
        seen["schedule"] = emu.get_schedule()
        seen["out"] = run()

    monkeypatch.setenv("ALEXNET_RAW_EMU_SCHEDULE", "reverse")
    with emu.schedule("forward"):
        worker = threading.Thread(target=in_new_thread)
        worker.start()
        worker.join()
        assert emu.get_schedule() == ("forward", 0)  # this thread's setting is untouched
    assert seen["schedule"] == ("reverse", 0)
    assert same_bits(seen["out"], reverse) and not same_bits(seen["out"], forward)

    monkeypatch.setenv("ALEXNET_RAW_EMU_SCHEDULE", "random:7")
    worker = threading.Thread(target=lambda: seen.update(schedule=emu.get_schedule()))
    worker.start()
    worker.join()
    assert seen["schedule"] == ("random", 7)


def test_schedule_arguments_are_checked():
    with pytest.raises(ValueError, match="forward"):
        emu.set_schedule("backwards")
    with pytest.raises(ValueError, match="seed"):
        emu.set_schedule("random", seed=-1)
    with pytest.raises(ValueError, match="seed"):
        emu.set_schedule("random", seed=1.5)
