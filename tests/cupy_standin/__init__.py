"""A CuPy stand-in on the CPU runtime: a test double that is as strict as CuPy where alexnet_raw
depends on it, so that every GPU code path of alexnet_raw runs in CI without a GPU.

    import cupy_standin
    with cupy_standin.installed(devices=2):   # `import cupy` now gives the stand-in
        ...

What it mirrors (each from CuPy's documentation or source; see ../shared/notes/gpu-behaviour.md):
  * arrays (_array.py): not NumPy arrays (implicit conversion, NumPy arrays in ufuncs and
    lists raise as in CuPy), owned by one device, `.get()`, `asnumpy`, `.device`, `.data.ptr`,
    `__cuda_array_interface__`; elementwise work on an array of another device enables peer
    access with a PerformanceWarning or raises ValueError, as CuPy's kernels do;
  * devices (_runtime.py, _device.py): `Device(i)` contexts, getDeviceCount, peer access, a
    per-device memory limit raising OutOfMemoryError (_memory.py);
  * streams and events (_streams.py): work is queued and runs only when waited for, in an order
    that respects stream order, events and the legacy default stream, and is otherwise random:
    a missing synchronisation reads stale or unwritten (0xFF) memory;
  * RawModule / RawKernel (_raw.py) with CuPy's argument rules and its forced -ftz=true, compiled
    and run by alexnet_raw's CPU runtime; and a stand-in for the nvcc extension (cuda_extension.py);
  * cupy.cuda.nccl (nccl.py): communicators between MPI processes whose collectives are queued on
    streams and complete only when waited for.

It is never a GPU: what `cupy.cuda.get_elapsed_time` returns is not GPU time, and alexnet-raw bench
refuses to report timings when `cupy.IS_ALEXNET_RAW_STAND_IN` is set.
"""

from __future__ import annotations

import contextlib
import sys

import numpy as np

from . import _memory, _runtime, _streams, _util, cuda, nccl  # noqa: F401
from ._array import (array, asarray, ascontiguousarray, asnumpy, broadcast_to, copyto, empty, empty_like,  # noqa: F401
                     full, full_like, may_share_memory, ndarray, ones, ones_like, shares_memory, zeros, zeros_like)
from ._math import UFUNCS, all, amax, amin, any, argmax, argmin, max, mean, min, prod, sum, where  # noqa: F401
from ._raw import RawKernel, RawModule  # noqa: F401
from .memory import get_default_memory_pool  # noqa: F401

IS_ALEXNET_RAW_STAND_IN = True
__version__ = "14.0.0+alexnet-raw-stand-in"

globals().update(UFUNCS)
for _name in ("float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
              "uint64", "bool_", "dtype", "nan", "inf", "newaxis"):
    globals()[_name] = getattr(np, _name)

MODULES = ("cupy", "cupy.cuda", "cupy.cuda.runtime", "cupy.cuda.memory", "cupy.cuda.nccl", "cupy._util",
           "alexnet_raw._cuda")


def sync_counts():
    """Host synchronisations since installed(), by reason ("get (device to host)", "stream
    synchronize", ...)."""
    return dict(_streams.scheduler.sync_counts)


def pending_work():
    """Queued work that nothing has waited for yet."""
    return sorted(_streams.scheduler.pending, key=lambda w: w.seq)


def synchronize_all():
    """Run everything queued on every device (the end of a test)."""
    for d in range(_runtime.config.devices):
        _streams.synchronize_device(d, "synchronize_all (test)")


@contextlib.contextmanager
def installed(devices=1, memory_bytes=80 * 2**30, peer_access=True, seed=0):
    """Within the block, `import cupy` is this stand-in with `devices` simulated GPUs of
    `memory_bytes` each, and alexnet_raw's `cuda` backend is the extension stand-in; alexnet_raw's
    backends are re-created on entry and on exit. Yields this module."""
    from alexnet_raw.runtime import backends

    from .cuda_extension import CudaExtensionStandIn

    _runtime.reset(_runtime.Config(devices=devices, memory_bytes=memory_bytes, peer_access=peer_access, seed=seed))
    _streams.reset(seed)
    _memory.reset()
    nccl._last_collective[0] = None
    nccl.issued.clear()
    module = sys.modules[__name__]
    saved = {name: sys.modules.get(name) for name in MODULES}
    sys.modules.update({"cupy": module, "cupy.cuda": cuda, "cupy.cuda.runtime": cuda.runtime,
                        "cupy.cuda.memory": cuda.memory, "cupy.cuda.nccl": nccl, "cupy._util": _util,
                        "alexnet_raw._cuda": CudaExtensionStandIn()})
    backends.reset()
    try:
        yield module
    finally:
        for name, value in saved.items():
            if value is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = value
        backends.reset()
        _streams.reset(seed)
