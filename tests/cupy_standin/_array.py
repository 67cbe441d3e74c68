"""cupy.ndarray on simulated device memory, and the functions that make one.

A stand-in array is not a NumPy array: NumPy refuses to convert it implicitly (`__array__` raises
CuPy's TypeError), NumPy ufuncs and functions on it dispatch to the stand-in's own
(`__array_ufunc__`, `__array_function__`) and those refuse NumPy arrays, as CuPy's do. Its data
is only ever touched by queued work (_streams.py): reading it from the host is `.get()`,
`cupy.asnumpy`, `float()`, `int()`, `bool()` or `repr()`, each a synchronisation of the current
device's current stream, so a value written on another stream or device without an event between
is not there yet.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from . import _memory, _runtime, _streams


class PerformanceWarning(RuntimeWarning):
    """cupy._util.PerformanceWarning."""


class _Flags:
    def __init__(self, view):
        self.c_contiguous = view.flags.c_contiguous
        self.f_contiguous = view.flags.f_contiguous
        self.owndata = False

    def __getitem__(self, key):
        return {"C_CONTIGUOUS": self.c_contiguous, "F_CONTIGUOUS": self.f_contiguous, "OWNDATA": self.owndata}[key]


def _shape_of(shape):
    if isinstance(shape, (int, np.integer)):
        return (int(shape),)
    return tuple(int(s) for s in shape)


def check_peer_access(arr, device_id):
    """What CuPy's elementwise and reduction kernels do with an array on another device
    (cupy/_core/_kernel.pyx, _check_peer_access)."""
    if arr._mem.device_id == device_id:
        return
    msg = (f"The device where the array resides ({arr._mem.device_id}) is different from the current device "
           f"({device_id}).")
    if not _runtime.enable_peer_access(arr._mem.device_id, strict=False):
        raise ValueError(f"{msg} Peer access is unavailable between these devices.")
    warnings.warn(f"{msg} Peer access has been activated automatically.", PerformanceWarning, stacklevel=3)


def submit(fn, label, arrays=()):
    """Queue `fn` on the current stream after checking that `arrays` can be used from the current
    device; returns the Work."""
    here = _runtime.get_device()
    for a in arrays:
        check_peer_access(a, here)
    return _streams.scheduler.submit(_streams.current_queue(), fn, label)


class ndarray:
    """cupy.ndarray(shape, dtype=float, memptr=None, strides=None, order='C')."""

    __array_priority__ = 100

    def __init__(self, shape, dtype=float, memptr=None, strides=None, order="C"):
        shape, dtype = _shape_of(shape), np.dtype(dtype)
        if memptr is None:
            mem, offset = _memory.Allocation(math.prod(shape) * dtype.itemsize, _runtime.get_device()), 0
        else:
            mem, offset = memptr.mem, memptr.offset
        self._mem = mem
        self._view = np.ndarray(shape, dtype, buffer=mem.host, offset=offset, strides=strides, order=order)

    @classmethod
    def _wrap(cls, mem, view):
        a = cls.__new__(cls)
        a._mem, a._view = mem, view
        return a

    # -- metadata (no device access) ------------------------------------------------------------
    shape = property(lambda self: self._view.shape)
    dtype = property(lambda self: self._view.dtype)
    ndim = property(lambda self: self._view.ndim)
    size = property(lambda self: self._view.size)
    nbytes = property(lambda self: self._view.nbytes)
    itemsize = property(lambda self: self._view.itemsize)
    strides = property(lambda self: self._view.strides)
    flags = property(lambda self: _Flags(self._view))
    T = property(lambda self: ndarray._wrap(self._mem, self._view.T))

    @property
    def device(self):
        from ._device import Device

        return Device(self._mem.device_id)

    @property
    def _offset(self):
        if not self._mem.ptr:
            return 0
        return self._view.__array_interface__["data"][0] - self._mem.ptr

    @property
    def data(self):
        return _memory.MemoryPointer(self._mem, self._offset)

    @property
    def __cuda_array_interface__(self):
        stream = _streams.get_current_stream()
        return {"shape": self.shape, "typestr": self.dtype.str, "descr": [("", self.dtype.str)],
                "data": (self.data.ptr, False), "version": 3,
                "strides": None if self._view.flags.c_contiguous else self.strides,
                "stream": 1 if stream.ptr == 0 else stream.ptr}

    def __repr__(self):
        return repr(self.get())

    def __str__(self):
        return str(self.get())

    def __format__(self, spec):
        return format(self.get(), spec) if self.ndim == 0 else format(str(self), spec)

    # -- refusals, as CuPy -----------------------------------------------------------------------
    def __array__(self, dtype=None, copy=None):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. Please use `.get()` to construct a "
                        "NumPy array explicitly.")

    def __index__(self):
        raise TypeError(f"only integer scalar arrays can be converted to a scalar index (a cupy.ndarray is not "
                        "an index; cupy issue 9109: use int(a), which synchronises)")

    __hash__ = None

    def __len__(self):
        if self.ndim == 0:
            raise TypeError("len() of unsized object")
        return self.shape[0]

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(self.shape[0]))

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        from . import _math

        ours = _math.UFUNCS.get(ufunc.__name__)
        if method != "__call__" or ours is None:
            return NotImplemented
        return ours(*inputs, **kwargs)

    def __array_function__(self, func, types, args, kwargs):
        import cupy_standin

        ours = getattr(cupy_standin, func.__name__, None)
        if ours is None or not callable(ours):
            return NotImplemented
        return ours(*args, **kwargs)

    # -- host transfers --------------------------------------------------------------------------
    def get(self, stream=None, order="C", out=None, blocking=True):
        """A host copy, made on `stream` (default: the current device's current stream), after
        waiting for that stream only."""
        stream = _streams.get_current_stream() if stream is None else stream
        host = np.empty(self.shape, self.dtype) if out is None else out
        if out is not None:
            if not isinstance(out, np.ndarray):
                raise TypeError("Only numpy.ndarray can be obtained from cupy.ndarray")
            if out.dtype != self.dtype or out.shape != self.shape:
                raise ValueError(f"Shape mismatch. Expected shape: {self.shape}, actual shape: {out.shape}")
        src = self._view
        keep = self._mem
        work = _streams.scheduler.submit(stream._queue(), lambda: (np.copyto(host, src), keep),
                                         f"memcpy {self.nbytes} B device {self._mem.device_id} -> host")
        if blocking:
            _streams.scheduler.run([work], "get (device to host)")
        return host

    def set(self, arr, stream=None):
        arr = np.asarray(arr)
        if arr.shape != self.shape or arr.dtype != self.dtype:
            raise ValueError(f"Shape or dtype mismatch: expected {self.shape} {self.dtype}, got {arr.shape} {arr.dtype}")
        snapshot = np.array(arr, copy=True)  # pageable memory: staged before the call returns
        dst = self._view
        keep = self._mem
        queue = (_streams.get_current_stream() if stream is None else stream)._queue()
        _streams.scheduler.submit(queue, lambda: (np.copyto(dst, snapshot), keep), f"memcpy {arr.nbytes} B host -> device")

    def _scalar(self, what):
        if self.size != 1:
            raise TypeError(f"only size-1 arrays can be converted to Python scalars ({what})")
        return self.get().reshape(())[()]

    def __bool__(self):
        if self.size != 1:
            raise ValueError("The truth value of an array with more than one element is ambiguous.")
        return bool(self._scalar("bool"))

    def __int__(self):
        return int(self._scalar("int"))

    def __float__(self):
        return float(self._scalar("float"))

    def __complex__(self):
        return complex(self._scalar("complex"))

    def item(self):
        return self._scalar("item").item()

    def tolist(self):
        return self.get().tolist()

    # -- views and copies ------------------------------------------------------------------------
    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        for k in key:
            if isinstance(k, (ndarray, np.ndarray, list)) or (isinstance(k, np.generic) and k.dtype == bool):
                raise NotImplementedError("the CuPy stand-in mirrors basic indexing only (ints, slices, None, ...)")
        if Ellipsis not in key:
            key = key + (Ellipsis,)  # always a view, never a NumPy scalar
        return ndarray._wrap(self._mem, self._view[key])

    def __setitem__(self, key, value):
        target = self[key]
        if isinstance(value, ndarray):
            src = value
            if src.shape != target.shape:
                src = broadcast_to(src, target.shape)
        elif isinstance(value, (np.ndarray, list, tuple)):
            src = array(value, dtype=self.dtype)  # CuPy: core.array(value, dtype=a.dtype), a host-to-device copy
        else:
            target.fill(value)
            return
        dst_view, src_view = target._view, src._view
        submit(lambda: np.copyto(dst_view, src_view, casting="unsafe"), "setitem copy", (target, src))

    def fill(self, value):
        if isinstance(value, (ndarray, np.ndarray)):
            raise TypeError("fill takes a scalar")
        view = self._view
        submit(lambda: view.fill(value), "fill", (self,))

    def copy(self, order="C"):
        """A copy on the current device (CuPy: 'Even when a given array is located in another device,
        you can copy it to the current device')."""
        out = ndarray(self.shape, self.dtype)
        src, dst = self._view, out._view
        here = _runtime.get_device()
        if self._mem.device_id != here:
            _memory._enable_peer(self._mem.device_id, here)
            keep = self._mem
            _streams.scheduler.submit(_streams.current_queue(), lambda: (np.copyto(dst, src), keep),
                                      f"peer copy device {self._mem.device_id} -> {here}")
        else:
            submit(lambda: np.copyto(dst, src), "copy", (self,))
        return out

    def astype(self, dtype, order="K", casting=None, subok=None, copy=True):
        dtype = np.dtype(dtype)
        if dtype == self.dtype and not copy:
            return self
        out = ndarray(self.shape, dtype)
        src, dst = self._view, out._view
        submit(lambda: np.copyto(dst, src, casting="unsafe"), "astype", (self,))
        return out

    def reshape(self, *shape, order="C"):
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        try:
            return ndarray._wrap(self._mem, self._view.reshape(shape, copy=False))
        except ValueError as e:
            if "copy" not in str(e):
                raise
            return self.copy().reshape(shape)  # not expressible as a view: a copy, as CuPy

    def ravel(self, order="C"):
        return self.reshape(-1)

    def flatten(self, order="C"):
        return self.copy().reshape(-1)

    def view(self, dtype=None):
        return ndarray._wrap(self._mem, self._view.view(dtype) if dtype is not None else self._view.view())

    def transpose(self, *axes):
        return ndarray._wrap(self._mem, self._view.transpose(*axes))

    def squeeze(self, axis=None):
        return ndarray._wrap(self._mem, self._view.squeeze(axis))

    def __deepcopy__(self, memo):
        return self.copy()

    # -- arithmetic: CuPy ufuncs -----------------------------------------------------------------
    def _u(name):
        def method(self, *others):
            from . import _math

            return _math.UFUNCS[name](self, *others)

        return method

    def _r(name):
        def method(self, other):
            from . import _math

            return _math.UFUNCS[name](other, self)

        return method

    __add__, __radd__ = _u("add"), _r("add")
    __sub__, __rsub__ = _u("subtract"), _r("subtract")
    __mul__, __rmul__ = _u("multiply"), _r("multiply")
    __truediv__, __rtruediv__ = _u("true_divide"), _r("true_divide")
    __floordiv__, __rfloordiv__ = _u("floor_divide"), _r("floor_divide")
    __pow__, __rpow__ = _u("power"), _r("power")
    __mod__ = _u("remainder")
    __and__, __or__, __xor__ = _u("bitwise_and"), _u("bitwise_or"), _u("bitwise_xor")
    __lt__, __le__, __gt__, __ge__ = _u("less"), _u("less_equal"), _u("greater"), _u("greater_equal")
    __eq__, __ne__ = _u("equal"), _u("not_equal")
    __neg__, __abs__, __invert__ = _u("negative"), _u("absolute"), _u("invert")

    def __pos__(self):
        return self.copy()

    def _inplace(name):
        def method(self, other):
            from . import _math

            _math.UFUNCS[name](self, other, out=self)
            return self

        return method

    __iadd__, __isub__, __imul__, __itruediv__ = _inplace("add"), _inplace("subtract"), _inplace("multiply"), \
        _inplace("true_divide")
    del _u, _r, _inplace

    # -- reductions ------------------------------------------------------------------------------
    def _red(name):
        def method(self, axis=None, dtype=None, out=None, keepdims=False):
            from . import _math

            return _math.reduction(name, self, axis=axis, dtype=dtype, keepdims=keepdims)

        return method

    sum, prod, all, any, min, max = _red("sum"), _red("prod"), _red("all"), _red("any"), _red("min"), _red("max")
    mean, argmax, argmin = _red("mean"), _red("argmax"), _red("argmin")
    del _red


# --------------------------------------------------------------------------------------------
def _from_host(obj, dtype=None):
    host = np.array(obj, dtype=dtype, copy=True, order="C")
    out = ndarray(host.shape, host.dtype)
    out.set(host)
    return out


def empty(shape, dtype=float, order="C"):
    return ndarray(shape, dtype, order=order)


def zeros(shape, dtype=float, order="C"):
    out = ndarray(shape, dtype, order=order)
    out.fill(0)
    return out


def ones(shape, dtype=float, order="C"):
    out = ndarray(shape, dtype, order=order)
    out.fill(1)
    return out


def full(shape, fill_value, dtype=None, order="C"):
    out = ndarray(shape, dtype if dtype is not None else np.array(fill_value).dtype, order=order)
    out.fill(fill_value)
    return out


def _like(a):
    if not isinstance(a, ndarray):
        raise TypeError(f"Unsupported type {type(a)}")
    return a


def empty_like(a, dtype=None, order="K", subok=None, shape=None):
    a = _like(a)
    return empty(a.shape if shape is None else shape, a.dtype if dtype is None else dtype)


def zeros_like(a, dtype=None, order="K", subok=None, shape=None):
    a = _like(a)
    return zeros(a.shape if shape is None else shape, a.dtype if dtype is None else dtype)


def ones_like(a, dtype=None, order="K", subok=None, shape=None):
    a = _like(a)
    return ones(a.shape if shape is None else shape, a.dtype if dtype is None else dtype)


def full_like(a, fill_value, dtype=None, order="K", subok=None, shape=None):
    a = _like(a)
    return full(a.shape if shape is None else shape, fill_value, a.dtype if dtype is None else dtype)


def array(obj, dtype=None, copy=True, order="K", subok=False, ndmin=0, blocking=False):
    """cupy.array: a copy on the current device (of a host object, or of a device array on any
    device); copy=False raises when a copy is needed, as in CuPy 14."""
    if isinstance(obj, ndarray):
        if copy is False and (dtype is None or np.dtype(dtype) == obj.dtype) and obj._mem.device_id == \
                _runtime.get_device():
            return obj
        if copy is False:
            raise ValueError("Unable to avoid copy while creating an array as requested.")
        out = obj.copy()
        return out if dtype is None or np.dtype(dtype) == out.dtype else out.astype(dtype)
    if copy is False:
        raise ValueError("Unable to avoid copy while creating an array from host memory as requested; use asarray.")
    return _from_host(obj, dtype)


def asarray(a, dtype=None, order=None, blocking=False):
    """The array itself if it is a stand-in array (on whatever device it is), else a copy of the
    host object on the current device."""
    if isinstance(a, ndarray):
        return a if dtype is None or np.dtype(dtype) == a.dtype else a.astype(dtype)
    return _from_host(a, dtype)


def ascontiguousarray(a, dtype=None):
    if not isinstance(a, ndarray):
        raise TypeError(f"Unsupported type {type(a)}")
    if a.flags.c_contiguous and (dtype is None or np.dtype(dtype) == a.dtype):
        return a
    return a.astype(a.dtype if dtype is None else dtype)


def asnumpy(a, stream=None, order="C", out=None, blocking=True):
    if isinstance(a, ndarray):
        return a.get(stream=stream, order=order, out=out, blocking=blocking)
    return np.asarray(a, order=order)


def broadcast_to(a, shape):
    a = _like(a)
    return ndarray._wrap(a._mem, np.broadcast_to(a._view, shape))


def copyto(dst, src, casting="same_kind", where=None):
    if not isinstance(dst, ndarray):
        raise TypeError(f"Unsupported type {type(dst)}")
    if isinstance(src, np.ndarray):
        raise TypeError(f"Unsupported type {type(src)}")
    if isinstance(src, ndarray):
        s, d = src._view, dst._view
        submit(lambda: np.copyto(d, s, casting=casting), "copyto", (dst, src))
    else:
        dst.fill(src)


def may_share_memory(a, b, max_work=None):
    for x in (a, b):
        if not isinstance(x, ndarray):
            raise TypeError(f"Unsupported type {type(x)}")
    return a._mem is b._mem and np.may_share_memory(a._view, b._view)


def shares_memory(a, b, max_work=None):
    return may_share_memory(a, b)
