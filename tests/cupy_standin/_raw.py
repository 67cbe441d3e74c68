"""cupy.RawModule and cupy.RawKernel, compiled by the CPU runtime and queued on streams.

As CuPy's: options must be a tuple; -ftz=true is appended to the caller's options (CuPy does it
for every RawModule compilation and offers no way out, cupy issue 9576), so float32 subnormals
flush to zero in kernels without double parameters (the CPU runtime sets MXCSR FTZ/DAZ); grid
and block must be tuples; arguments are cupy arrays (their data pointer: views are not honoured),
None (a null pointer), NumPy scalars (their exact C type), Python int (64-bit), float (double) and
bool, and NumPy arrays of size one (by value). Stricter than CuPy, where CuPy would silently go
wrong: a scalar whose C type differs from the parameter's (CuPy packs 8 bytes for a Python int
and the kernel reads garbage) and a non-contiguous array (read as if contiguous) are errors, and
an array on a device the current one has no peer access to is cudaErrorIllegalAddress at launch.
"""

from __future__ import annotations

import warnings

import numpy as np

from alexnet_raw import emu
from alexnet_raw.runtime import kernel_args

from . import _runtime, _streams
from ._array import PerformanceWarning, ndarray

CUPY_APPENDED_OPTIONS = ("-ftz=true",)


class CUDADriverError(RuntimeError):
    """cupy.cuda.driver.CUDADriverError."""


def _python_scalar(value):
    if isinstance(value, bool):
        return np.bool_(value)
    if isinstance(value, int):
        return np.int64(value) if value < 2**63 else np.uint64(value)
    if isinstance(value, float):
        return np.float64(value)
    return value


def _view_of(value):
    if isinstance(value, ndarray):
        return kernel_args.ArrayView(value.data.ptr, value.dtype, value.flags.c_contiguous, True, value.nbytes)
    return None


class Function:
    def __init__(self, emu_function, name):
        self._f = emu_function
        self.name = name
        self.max_dynamic_shared_size_bytes = 0

    def __call__(self, grid, block, args, *, shared_mem=0, stream=None, enable_cooperative_groups=False):
        if not isinstance(grid, tuple) or not isinstance(block, tuple):
            raise TypeError(f"grid and block must be tuples (CuPy's Function.__call__(tuple grid, tuple block, ...)), "
                            f"got {type(grid).__name__} and {type(block).__name__}")
        converted = []
        for a in args:
            if isinstance(a, np.ndarray):
                if a.size != 1:
                    raise TypeError(f"You are trying to pass a numpy.ndarray of shape {a.shape} as a kernel parameter. "
                                    "Only numpy.ndarrays of size one can be passed by value. If you meant to pass a "
                                    "pointer to __global__ memory, you need to pass a cupy.ndarray instead.")
                a = a.reshape(()).dtype.type(a.reshape(())[()])
            converted.append(_python_scalar(a))
        # the argument check the CPU runtime makes, now (a GPU would misread the bytes)
        kernel_args.pack(self.name, self._f.param_codes, converted, _view_of, self._f.param_names)
        here = _runtime.get_device()
        queue = (_streams.get_current_stream() if stream is None else stream)._queue()
        if queue.device_id != here:
            raise _runtime.CUDARuntimeError(400, f"launch of {self.name} on {queue} while device {here} is current")
        for a in converted:
            if isinstance(a, ndarray) and a._mem.device_id != here:
                if not _runtime.peer_enabled(here, a._mem.device_id):
                    raise _runtime.CUDARuntimeError(
                        700, f"{self.name} on device {here} given an array of device {a._mem.device_id} without peer access")
                warnings.warn(f"{self.name} on device {here} reads an array of device {a._mem.device_id} over the "
                              "peer link", PerformanceWarning, stacklevel=2)
        host_args = tuple(a._view if isinstance(a, ndarray) else a for a in converted)
        keep = [a._mem for a in converted if isinstance(a, ndarray)]
        f, limit = self._f, self.max_dynamic_shared_size_bytes
        grid = tuple(max(1, int(g)) for g in grid)  # CuPy launches at least one block and thread
        block = tuple(max(1, int(b)) for b in block)

        def run():
            f.max_dynamic_shared_size_bytes = limit
            f(grid, block, host_args, shared_mem=shared_mem)
            del keep[:]

        _streams.scheduler.submit(queue, run, f"launch {self.name}")


class RawModule:
    def __init__(self, *, code=None, path=None, options=(), backend="nvrtc", translate_cucomplex=False,
                 enable_cooperative_groups=False, name_expressions=None, jitify=False):
        if not isinstance(options, tuple):
            raise TypeError(f"Argument 'options' has incorrect type (expected tuple, got {type(options).__name__})")
        if path is not None:
            raise NotImplementedError("the CuPy stand-in compiles CUDA source; it cannot load a cubin or PTX file")
        if not isinstance(code, str):
            raise TypeError(f"Argument 'code' has incorrect type (expected str, got {type(code).__name__})")
        if name_expressions is not None and not all(isinstance(n, str) for n in name_expressions):
            raise TypeError("name_expressions must be a sequence of str")
        self.code, self.options = code, options
        self.name_expressions = None if name_expressions is None else tuple(name_expressions)
        self._emu = emu.RawModule(code=code, options=options + CUPY_APPENDED_OPTIONS,
                                  name_expressions=self.name_expressions)
        self._functions = {}

    def compile(self, log_stream=None):
        self._emu.compile()
        return self

    def get_function(self, name):
        if name not in self._functions:
            try:
                f = self._emu.get_function(name)
            except KeyError as e:
                raise CUDADriverError(f"CUDA_ERROR_NOT_FOUND: named symbol not found ({e.args[0]})") from None
            self._functions[name] = Function(f, name)
        return self._functions[name]


class RawKernel:
    def __init__(self, code, name, options=(), backend="nvrtc", translate_cucomplex=False,
                 enable_cooperative_groups=False, jitify=False):
        self._module = RawModule(code=code, options=options, name_expressions=(name,) if "<" in name else None)
        self.name = name
        self.max_dynamic_shared_size_bytes = 0

    def __call__(self, grid, block, args, **kwargs):
        f = self._module.get_function(self.name)
        f.max_dynamic_shared_size_bytes = self.max_dynamic_shared_size_bytes
        f(grid, block, args, **kwargs)
