"""AddressSanitizer catches out-of-bounds accesses in kernels run on the CPU runtime.

Each case runs in a child Python with the sanitizer environment (alexnet_raw.emu.sanitized), since
libasan must be preloaded at process start. A correct kernel with barriers (fiber switches) must
run clean; an overrun of a global array and of a shared array must abort with ASan's report
naming the kernel's source line.
"""

import os
import subprocess
import sys
import textwrap

import pytest

from alexnet_raw.emu import sanitized

pytestmark = pytest.mark.skipif(
    os.environ.get("ALEXNET_RAW_EMU_SANITIZE") not in (None, "", "0"), reason="already running under the sanitizers"
)

KERNELS = r'''
extern "C" __global__ void reverse_in_block(float* y, const float* x, int n) {
  __shared__ float s[64];
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  s[threadIdx.x] = i < n ? x[i] : 0.f;
  __syncthreads();
  if (i < n) y[i] = s[63 - threadIdx.x];
}
extern "C" __global__ void global_overrun(float* y, const float* x, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i <= n) y[i % n] = x[i];  // SITE_GLOBAL
}
extern "C" __global__ void shared_overrun(float* y, const float* x, int n) {
  __shared__ float s[64];
  s[threadIdx.x + 1] = 1.f;  // SITE_SHARED
  __syncthreads();
  y[threadIdx.x] = s[threadIdx.x];
}
extern "C" __global__ void dynamic_shared_overrun(float* y, const float* x, int n) {
  extern __shared__ float dyn[];
  float* p = dyn + threadIdx.x;
  p[1] = 1.f;  // SITE_DYNAMIC
  __syncthreads();
  y[threadIdx.x] = dyn[threadIdx.x];
}
'''


def line(marker):
    """The 1-based line of KERNELS that carries `marker` (what the reports must name)."""
    return next(i for i, text in enumerate(KERNELS.splitlines(), 1) if marker in text)


def run_child(kernel: str, tmp_path):
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(f"""
        import numpy as np
        from alexnet_raw import emu
        m = emu.RawModule(code={KERNELS!r}, name="sanitizer_cases.cu")
        x = np.arange(100, dtype=np.float32); y = np.zeros_like(x)
        m.get_function({kernel!r})((2,), (64,), (y, x, np.int32(100)), shared_mem=64 * 4)
        print("finished", flush=True)
    """))
    env = sanitized.environment()
    env["ALEXNET_RAW_CACHE_DIR"] = os.environ.get("ALEXNET_RAW_CACHE_DIR", "") or str(tmp_path / "cache")
    return subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300)


def test_correct_kernel_with_barriers_runs_clean(tmp_path):
    proc = run_child("reverse_in_block", tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "finished" in proc.stdout and "AddressSanitizer" not in proc.stderr


def test_global_overrun_is_reported_with_its_source_line(tmp_path):
    proc = run_child("global_overrun", tmp_path)
    assert proc.returncode != 0 and "finished" not in proc.stdout
    assert "heap-buffer-overflow" in proc.stderr
    assert f"sanitizer_cases.cu:{line('SITE_GLOBAL')}" in proc.stderr  # the line reading x[i]


def test_static_shared_array_overrun_is_reported(tmp_path):
    proc = run_child("shared_overrun", tmp_path)
    assert proc.returncode != 0 and "finished" not in proc.stdout
    # UBSan's bounds check sees the typed array; ASan's poisoned gap would catch it otherwise
    assert "index 64 out of bounds" in proc.stderr or "use-after-poison" in proc.stderr
    assert f"sanitizer_cases.cu:{line('SITE_SHARED')}" in proc.stderr  # the write to s[64]


def test_dynamic_shared_memory_overrun_is_reported(tmp_path):
    proc = run_child("dynamic_shared_overrun", tmp_path)
    assert proc.returncode != 0 and "finished" not in proc.stdout
    assert "use-after-poison" in proc.stderr  # the runtime poisons what follows the dynamic region
    assert f"sanitizer_cases.cu:{line('SITE_DYNAMIC')}" in proc.stderr  # p[1] = 1.f for the last thread
