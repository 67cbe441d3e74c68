"""Which GPU paths the tests run on: a real GPU when real CuPy sees one, else the CuPy stand-in
(tests/cupy_standin) on the CPU runtime."""

from __future__ import annotations

import contextlib
import warnings

import cupy_standin
from cupy_standin import _util as standin_util


def real_gpu_count() -> int:
    """GPUs that real CuPy sees (0 without CuPy, a driver or a device)."""
    try:
        import cupy
    except ImportError:
        return 0
    if getattr(cupy, "IS_ALEXNET_RAW_STAND_IN", False):
        return 0
    try:
        return int(cupy.cuda.runtime.getDeviceCount())
    except Exception:
        return 0


REAL_GPUS = real_gpu_count()
GPU_KIND = "gpu" if REAL_GPUS else "standin"


@contextlib.contextmanager
def strict_standin(devices=1, **kwargs):
    """The stand-in installed, with its PerformanceWarning (another device's memory read over the
    peer link: legal, slow, and in alexnet_raw a bug) turned into an error."""
    with cupy_standin.installed(devices=devices, **kwargs) as cp:
        with warnings.catch_warnings():
            warnings.simplefilter("error", standin_util.PerformanceWarning)
            yield cp
