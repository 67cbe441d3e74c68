"""Errors inside kernels become Python exceptions on the CPU runtime, never hangs or aborts.

A __syncthreads() divergence (threads of one block waiting at different barriers) raises
emu.DivergenceError naming the kernel, the block and both barrier sites, under every schedule,
whatever the line layout (two barriers on one line are told apart by column); so do threads that
skip a barrier and exit while others wait at it, and a warp primitive whose mask names lanes that
have exited. A lane calling a warp primitive
outside its own mask, a device assert() and __trap() raise emu.KernelError naming kernel, block and
thread. After any of these the runtime keeps working. (conftest's watchdog turns a hang into a
failure.)
"""

import numpy as np
import pytest

from alexnet_raw import emu
from emu_testing import ALL_SCHEDULES, source_line

DIVERGENCE_KERNELS = r"""
#include <cassert>

// In block (2,1,0) only, threads 0..4 wait at one barrier and the others at another.
extern "C" __global__ void diverge_in_one_block(int* out) {
  const bool odd = blockIdx.x == 2 && blockIdx.y == 1 && blockIdx.z == 0;
  if (odd && threadIdx.x < 5) {
    __syncthreads();  // SITE_LOW
  } else {
    __syncthreads();  // SITE_HIGH
  }
  out[(blockIdx.y * gridDim.x + blockIdx.x) * blockDim.x + threadIdx.x] = 1;
}

// Thread 7 goes round the loop once more than the others, which wait after the loop.
extern "C" __global__ void loop_trip_count_differs(int* out) {
  for (int i = 0; i < 1 + (threadIdx.x == 7); ++i) {
    __syncthreads();  // SITE_LOOP
  }
  __syncthreads();  // SITE_AFTER
  out[threadIdx.x] = 1;
}

// Lanes 16..31 of every warp exit; the rest shuffle with a mask that still names them.
extern "C" __global__ void shuffle_with_exited_lanes(int* out) {
  if (threadIdx.x % 32 >= 16) return;
  out[threadIdx.x] = __shfl_sync(0xffffffffu, int(threadIdx.x), 0);  // SITE_SHFL
}

// Every lane but lane 0 calls with a mask that does not contain it.
extern "C" __global__ void shuffle_outside_own_mask(int* out) {
  out[threadIdx.x] = __shfl_sync(1u, int(threadIdx.x), 0);  // SITE_OWN_MASK
}

extern "C" __global__ void check_non_negative(const int* x, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) assert(x[i] >= 0);  // SITE_ASSERT
}

extern "C" __global__ void trap_in_block(int block) {
  if (int(blockIdx.x) == block && threadIdx.x == 3) __trap();  // SITE_TRAP
}

// The same divergence written on one line, and a barrier that half the block skips.
extern "C" __global__ void diverge_on_one_line(int* out) {
  if (threadIdx.x < 16) __syncthreads(); else __syncthreads();  // SITE_ONE_LINE
  out[threadIdx.x] = 1;
}
extern "C" __global__ void half_skip_the_barrier(int* out) {
  if (threadIdx.x < 16) __syncthreads();  // SITE_SKIPPED
  out[threadIdx.x] = 1;
}

extern "C" __global__ void fill_with_barrier(int* out) {
  __shared__ int s[128];
  s[threadIdx.x] = blockIdx.x * blockDim.x + threadIdx.x;
  __syncthreads();
  out[blockIdx.x * blockDim.x + threadIdx.x] = s[blockDim.x - 1 - threadIdx.x];
}
"""
NAME = "divergence_cases.cu"


def line(marker):
    return source_line(DIVERGENCE_KERNELS, marker)


@pytest.fixture(scope="module")
def mod():
    return emu.RawModule(code=DIVERGENCE_KERNELS, name=NAME)


def assert_runtime_still_works(mod):
    out = np.zeros(5 * 128, np.int32)
    mod.get_function("fill_with_barrier")((5,), (128,), (out,))
    expected = (np.arange(5)[:, None] * 128 + np.arange(127, -1, -1)[None, :]).ravel()
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("kind,seed", ALL_SCHEDULES)
def test_syncthreads_divergence_names_kernel_block_and_sites(mod, kind, seed):
    out = np.zeros(3 * 2 * 64, np.int32)
    with emu.schedule(kind, seed), pytest.raises(emu.DivergenceError) as info:
        mod.get_function("diverge_in_one_block")((3, 2), (64,), (out,))
    message = str(info.value)
    assert "kernel 'diverge_in_one_block', block (2,1,0)" in message
    assert f"5 thread(s) (linear ids 0..4) wait at __syncthreads() {NAME}:{line('SITE_LOW')}" in message
    assert f"59 thread(s) (linear ids 5..63) wait at __syncthreads() {NAME}:{line('SITE_HIGH')}" in message
    assert isinstance(info.value, emu.KernelError)
    # the blocks that do not diverge run fine, and so does the next launch
    out = np.zeros(2 * 1 * 64, np.int32)
    mod.get_function("diverge_in_one_block")((2, 1), (64,), (out,))
    np.testing.assert_array_equal(out, 1)
    assert_runtime_still_works(mod)


def test_barrier_in_a_loop_with_thread_dependent_trip_count_diverges(mod):
    out = np.zeros(96, np.int32)
    with pytest.raises(emu.DivergenceError) as info:
        mod.get_function("loop_trip_count_differs")((1,), (96,), (out,))
    message = str(info.value)
    assert "kernel 'loop_trip_count_differs', block (0,0,0)" in message
    assert f"1 thread(s) (linear ids 7..7) wait at __syncthreads() {NAME}:{line('SITE_LOOP')}" in message
    assert f"{NAME}:{line('SITE_AFTER')}" in message
    assert_runtime_still_works(mod)


def test_warp_primitive_waiting_for_exited_lanes_raises(mod):
    out = np.zeros(64, np.int32)
    with pytest.raises(emu.DivergenceError) as info:
        mod.get_function("shuffle_with_exited_lanes")((1,), (64,), (out,))
    message = str(info.value)
    assert "kernel 'shuffle_with_exited_lanes', block (0,0,0)" in message
    assert "mask names lanes that have exited" in message
    assert f"a warp primitive {NAME}:{line('SITE_SHFL')}" in message
    assert_runtime_still_works(mod)


def test_lane_outside_its_own_mask_raises(mod):
    out = np.zeros(32, np.int32)
    with pytest.raises(emu.KernelError, match="not in its mask") as info:
        mod.get_function("shuffle_outside_own_mask")((1,), (32,), (out,))
    assert f"{NAME}:{line('SITE_OWN_MASK')}" in str(info.value)
    assert "kernel 'shuffle_outside_own_mask'" in str(info.value)
    assert not isinstance(info.value, emu.DivergenceError)
    assert_runtime_still_works(mod)


def test_device_assert_and_trap_raise_kernel_error(mod):
    x = np.arange(300, dtype=np.int32)
    mod.get_function("check_non_negative")((3,), (128,), (x, np.int32(300)))  # holds: no error
    x[77 + 128] = -1
    with pytest.raises(emu.KernelError) as info:
        mod.get_function("check_non_negative")((3,), (128,), (x, np.int32(300)))
    message = str(info.value)
    assert "device assertion 'x[i] >= 0' failed" in message
    assert f"{NAME}:{line('SITE_ASSERT')}" in message
    assert "kernel 'check_non_negative', block (1,0,0), thread (77,0,0)" in message

    with pytest.raises(emu.KernelError, match=r"__trap\(\) called") as info:
        mod.get_function("trap_in_block")((6,), (32,), (np.int32(4),))
    assert "kernel 'trap_in_block', block (4,0,0), thread (3,0,0)" in str(info.value)
    assert f"{NAME}:{line('SITE_TRAP')}" in str(info.value)
    assert_runtime_still_works(mod)


def column(marker, occurrence):
    text = DIVERGENCE_KERNELS.splitlines()[line(marker) - 1]
    at = -1
    for _ in range(occurrence):
        at = text.index("__syncthreads()", at + 1)
    return at + 1


@pytest.mark.parametrize("kind,seed", ALL_SCHEDULES)
def test_two_barriers_on_one_line_are_told_apart(mod, kind, seed):
    with emu.schedule(kind, seed), pytest.raises(emu.DivergenceError) as info:
        mod.get_function("diverge_on_one_line")((1,), (32,), (np.zeros(32, np.int32),))
    message = str(info.value)
    site = f"{NAME}:{line('SITE_ONE_LINE')}"
    assert f"16 thread(s) (linear ids 0..15) wait at __syncthreads() {site} (column {column('SITE_ONE_LINE', 1)})" in message
    assert f"16 thread(s) (linear ids 16..31) wait at __syncthreads() {site} (column {column('SITE_ONE_LINE', 2)})" in message
    assert_runtime_still_works(mod)


@pytest.mark.parametrize("kind,seed", ALL_SCHEDULES)
def test_threads_that_skip_a_barrier_and_exit_are_a_divergence(mod, kind, seed):
    with emu.schedule(kind, seed), pytest.raises(emu.DivergenceError) as info:
        mod.get_function("half_skip_the_barrier")((1,), (32,), (np.zeros(32, np.int32),))
    message = str(info.value)
    assert "kernel 'half_skip_the_barrier', block (0,0,0)" in message
    assert "threads have exited while others wait at __syncthreads()" in message
    assert f"16 thread(s) (linear ids 0..15) wait at __syncthreads() {NAME}:{line('SITE_SKIPPED')}" in message
    assert "16 thread(s) have exited (the first: linear id 16)" in message
    assert_runtime_still_works(mod)
