"""Faults inside kernels on the CPU runtime: an exception naming kernel, block and thread, never a
dead process or a hang.

An out-of-bounds global write, a null dereference, a stack overflow (deep recursion), a write past
the end of the dynamic shared memory and an integer division by zero each raise emu.KernelError
naming the kernel, the block, the thread and the source line, and the runtime keeps working. A
kernel that never returns is stopped by the watchdog (emu.set_timeout, ALEXNET_RAW_EMU_TIMEOUT) with
KernelTimeout, and by Ctrl-C with KeyboardInterrupt within a second, on both CPU paths (the JIT and
the extension); a SIGINT handler that does not raise lets the kernel run on. A fault outside kernel
code still ends the process as it would without the runtime.
"""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from alexnet_raw import emu
from alexnet_raw.emu import _jit
from emu_testing import source_line

FAULT_KERNELS = r"""
extern "C" __global__ void write_far(float* out, long long offset) {
  if (blockIdx.x == 1 && threadIdx.x == 5) out[offset] = 1.0f;  // SITE_FAR
}

extern "C" __global__ void null_write(int* out) {
  int* nowhere = nullptr;
  if (threadIdx.x == 3) nowhere[threadIdx.x] = out[0];  // SITE_NULL
}

__device__ int recurse(int n) {
  volatile char frame[512];
  frame[0] = char(n);
  return n <= 0 ? frame[0] : recurse(n - 1) + frame[0];  // SITE_RECURSE
}
extern "C" __global__ void deep_recursion(int* out, int depth) { out[threadIdx.x] = recurse(depth); }

extern "C" __global__ void fill_dynamic_shared(float* out, int count) {
  extern __shared__ float s[];
  for (int i = threadIdx.x; i < count; i += blockDim.x) s[i] = 1.0f;  // SITE_SHARED
  __syncthreads();
  out[threadIdx.x] = s[threadIdx.x];
}

extern "C" __global__ void divide(int* out, int divisor) {
  out[threadIdx.x] = 1000 / (divisor - int(threadIdx.x));  // SITE_DIVIDE
}

extern "C" __global__ void spin_until(const int* flag) {
  while (*(const volatile int*)flag == 0) {
  }
}

extern "C" __global__ void spin_with_barriers(const int* flag) {
  __shared__ int stop;
  for (;;) {
    if (threadIdx.x == 0) stop = *(const volatile int*)flag;
    __syncthreads();
    if (stop) break;  // every thread of the block sees the same value
    __syncthreads();
  }
}

extern "C" __global__ void iota(int* out) { out[blockIdx.x * blockDim.x + threadIdx.x] = blockIdx.x * blockDim.x + threadIdx.x; }
"""
NAME = "fault_cases.cu"
SANITIZED = _jit.sanitize_enabled()


def line(marker):
    return source_line(FAULT_KERNELS, marker)


@pytest.fixture(scope="module")
def mod():
    return emu.RawModule(code=FAULT_KERNELS, name=NAME)


def assert_runtime_still_works(mod):
    out = np.zeros(4 * 64, np.int32)
    mod.get_function("iota")((4,), (64,), (out,))
    np.testing.assert_array_equal(out, np.arange(4 * 64))


def assert_names(message, kernel, block, thread, marker):
    assert f"kernel '{kernel}', block {block}, thread {thread}" in message
    assert f"{NAME}:{line(marker)}" in message, message


def test_out_of_bounds_global_write(mod):
    out = np.zeros(64, np.float32)
    # far outside the array, at an address no process can map (below vm.mmap_min_addr; an offset
    # upwards could leave the canonical range, where the CPU reports no address)
    target = 0x1000
    offset = (target - out.ctypes.data) // out.itemsize
    with pytest.raises(emu.KernelError) as info:
        mod.get_function("write_far")((2,), (32,), (out, np.int64(offset)))
    message = str(info.value)
    assert f"invalid memory write to address {hex(out.ctypes.data + offset * out.itemsize)}" in message
    assert_names(message, "write_far", "(1,0,0)", "(5,0,0)", "SITE_FAR")
    assert_runtime_still_works(mod)


def test_null_dereference(mod):
    with pytest.raises(emu.KernelError) as info:
        mod.get_function("null_write")((1,), (32,), (np.zeros(4, np.int32),))
    message = str(info.value)
    assert "invalid memory" in message
    if not SANITIZED:  # AddressSanitizer's check reads the shadow of the address first
        assert "write to address 0xc" in message
    assert_names(message, "null_write", "(0,0,0)", "(3,0,0)", "SITE_NULL")
    assert_runtime_still_works(mod)


def test_stack_overflow(mod):
    out = np.zeros(4, np.int32)
    mod.get_function("deep_recursion")((1,), (4,), (out, np.int32(10)))  # shallow: fine
    with pytest.raises(emu.KernelError, match="stack overflow") as info:
        mod.get_function("deep_recursion")((1,), (4,), (out, np.int32(100000)))
    assert "kernel 'deep_recursion', block (0,0,0), thread (0,0,0)" in str(info.value)
    assert f"{NAME}:" in str(info.value)
    assert_runtime_still_works(mod)


@pytest.mark.skipif(SANITIZED, reason="AddressSanitizer reports the overrun itself (poisoned shared memory) and "
                                      "stops the process, as it is meant to")
def test_write_past_the_dynamic_shared_memory(mod):
    out = np.zeros(32, np.float32)
    mod.get_function("fill_dynamic_shared")((1,), (32,), (out, np.int32(256)), shared_mem=1024)  # fits: fine
    np.testing.assert_array_equal(out, 1.0)
    with pytest.raises(emu.KernelError) as info:
        mod.get_function("fill_dynamic_shared")((1,), (32,), (out, np.int32(4096)), shared_mem=1024)
    message = str(info.value)
    assert "out-of-bounds shared memory write" in message
    assert "1024 bytes of dynamic shared memory" in message
    assert "kernel 'fill_dynamic_shared', block (0,0,0)" in message
    # the store is vectorised at -O2; its debug line is the loop's or the statement after it
    assert f"{NAME}:{line('SITE_SHARED')}" in message or f"{NAME}:{line('SITE_SHARED') + 1}" in message
    assert_runtime_still_works(mod)


@pytest.mark.skipif(SANITIZED, reason="UBSan reports the division by zero itself and stops the process")
def test_integer_division_by_zero(mod):
    with pytest.raises(emu.KernelError, match="integer division by zero") as info:
        mod.get_function("divide")((1,), (8,), (np.zeros(8, np.int32), np.int32(5)))
    assert_names(str(info.value), "divide", "(0,0,0)", "(5,0,0)", "SITE_DIVIDE")
    assert_runtime_still_works(mod)


@pytest.mark.parametrize("kernel", ["spin_until", "spin_with_barriers"])
def test_the_watchdog_stops_a_kernel_that_never_returns(mod, kernel):
    flag = np.zeros(1, np.int32)
    old = emu.get_timeout()
    emu.set_timeout(0.3)
    try:
        start = time.monotonic()
        with pytest.raises(emu.KernelTimeout) as info:
            mod.get_function(kernel)((4,), (64,), (flag,))
        elapsed = time.monotonic() - start
    finally:
        emu.set_timeout(old)
    assert 0.3 <= elapsed < 2.0
    message = str(info.value)
    assert "stopped by the watchdog" in message and "0.3 s" in message
    assert f"kernel '{kernel}', block (" in message
    assert isinstance(info.value, emu.KernelError)
    assert_runtime_still_works(mod)


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf"), "2", True])
def test_the_watchdog_refuses_bad_limits(bad):
    with pytest.raises((TypeError, ValueError), match="timeout"):
        emu.set_timeout(bad)
    assert emu.get_timeout() == 0.0


def finish(child, timeout=60):
    """The rest of the child's stdout, and its stderr, once it has exited (killed after `timeout` s).
    Read through the same file objects as the lines before it: communicate() would read the pipe
    beneath them and miss what their buffers already hold."""
    killer = threading.Timer(timeout, child.kill)
    killer.start()
    try:
        out, err = child.stdout.read(), child.stderr.read()
        child.wait()
    finally:
        killer.cancel()
    return out, err


def run_child(code, env_extra=None):
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.Popen([sys.executable, "-P", "-c", textwrap.dedent(code)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


CHILD_PRELUDE = f"""
import signal, sys, time
import numpy as np
from alexnet_raw import emu
mod = emu.RawModule(code={FAULT_KERNELS!r}, name={NAME!r})
mod.get_function("iota")((1,), (32,), (np.zeros(32, np.int32),))  # compiled before we say ready
"""


def test_the_timeout_environment_variable():
    child = run_child(CHILD_PRELUDE + """
try:
    mod.get_function("spin_until")((2,), (32,), (np.zeros(1, np.int32),))
except emu.KernelTimeout as e:
    print("timeout:", e)
""", {"ALEXNET_RAW_EMU_TIMEOUT": "0.2"})
    out, err = child.communicate(timeout=120)
    assert child.returncode == 0, err
    assert "timeout: stopped by the watchdog: the launch ran longer than its limit of 0.2 s" in out


@pytest.mark.parametrize("kernel", ["spin_until", "spin_with_barriers"])
def test_ctrl_c_interrupts_a_running_kernel_within_a_second(kernel):
    child = run_child(CHILD_PRELUDE + f"""
print("ready", flush=True)
try:
    mod.get_function({kernel!r})((4,), (64,), (np.zeros(1, np.int32),))
except KeyboardInterrupt as e:
    print("interrupted", getattr(e, "__notes__", []), flush=True)
out = np.zeros(64, np.int32)
mod.get_function("iota")((2,), (32,), (out,))
print("still works", bool((out == np.arange(64)).all()), flush=True)
""")
    assert child.stdout.readline().strip() == "ready"
    time.sleep(0.3)
    sent = time.monotonic()
    child.send_signal(signal.SIGINT)
    reply = child.stdout.readline()
    delay = time.monotonic() - sent
    out, err = finish(child)
    assert reply.startswith("interrupted"), (reply, err)
    assert delay < 1.0
    assert f"interrupted (Ctrl-C) in kernel '{kernel}', block (" in reply
    assert "still works True" in out, (child.returncode, out, err[-3000:])
    assert child.returncode == 0, err


def test_ctrl_c_interrupts_a_kernel_of_the_extension():
    child = run_child("""
import time
import numpy as np
from alexnet_raw import functional as F
from alexnet_raw.runtime import backends
backends.set_backend("emu_ext")
x = np.ones((8, 64), np.float32); w = np.ones((64, 64), np.float32)
F.linear(x, w)
x = np.ones((4096, 4096), np.float32); w = np.ones((4096, 4096), np.float32)
print("ready", flush=True)
start = time.monotonic()
try:
    F.linear(x, w)  # minutes on the CPU runtime
    print("finished", time.monotonic() - start, flush=True)
except KeyboardInterrupt:
    print("interrupted", flush=True)
small = F.linear(np.ones((8, 64), np.float32), np.ones((64, 64), np.float32))
print("still works", bool((small == 64).all()), flush=True)
""")
    assert child.stdout.readline().strip() == "ready"
    time.sleep(0.5)
    sent = time.monotonic()
    child.send_signal(signal.SIGINT)
    reply = child.stdout.readline()
    delay = time.monotonic() - sent
    out, err = finish(child)
    assert reply.strip() == "interrupted", (reply, err)
    assert delay < 1.0
    assert "still works True" in out
    assert child.returncode == 0, err


def test_a_sigint_handler_that_does_not_raise_lets_the_kernel_run_on():
    # the handler ends the spin by setting the flag the kernel watches: the launch then returns normally
    child = run_child(CHILD_PRELUDE + """
flag = np.zeros(1, np.int32)
def handler(signum, frame):
    flag[0] = 1
signal.signal(signal.SIGINT, handler)
print("ready", flush=True)
mod.get_function("spin_with_barriers")((2,), (64,), (flag,))
print("returned normally", flush=True)
""")
    assert child.stdout.readline().strip() == "ready"
    time.sleep(0.3)
    child.send_signal(signal.SIGINT)
    out, err = finish(child)
    assert "returned normally" in out, err
    assert child.returncode == 0, err


def test_a_fault_outside_kernel_code_still_ends_the_process():
    child = run_child(CHILD_PRELUDE + """
import ctypes
print("ready", flush=True)
ctypes.string_at(0)  # a fault in Python's own code: the runtime's handler must pass it on
print("survived", flush=True)
""")
    out, err = child.communicate(timeout=60)
    assert "ready" in out and "survived" not in out
    # the default action (SIGSEGV), or the report of the handler that was there before (faulthandler, ASan)
    assert child.returncode == -signal.SIGSEGV or "Segmentation fault" in err or "SEGV" in err, (child.returncode, err)


def test_a_forked_child_launches_kernels(mod):
    # the worker threads are kept between launches; a forked child has none of them and must not
    # wait for them
    assert_runtime_still_works(mod)
    pid = os.fork()
    if pid == 0:  # the child: exit status 0 only if the launch returns with the right result
        try:
            out = np.zeros(4 * 64, np.int32)
            mod.get_function("iota")((4,), (64,), (out,))
            os._exit(0 if (out == np.arange(4 * 64)).all() else 1)
        except BaseException:  # noqa: BLE001
            os._exit(2)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    pytest.fail("the forked child's launch did not return within 60 s")
