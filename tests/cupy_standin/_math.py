"""CuPy's ufuncs and reductions on stand-in arrays: NumPy's arithmetic, queued on the current
stream. As CuPy's, they take stand-in arrays and Python or NumPy scalars, and refuse NumPy arrays
and lists ("Unsupported type"); the result lives on the current device."""

from __future__ import annotations

import builtins

import numpy as np

from ._array import ndarray, submit

_SCALARS = (int, float, bool, complex, np.generic)


def _check_operand(x):
    if isinstance(x, ndarray) or (isinstance(x, _SCALARS) and not isinstance(x, np.ndarray)):
        return
    raise TypeError(f"Unsupported type {type(x)}")


def _probe(x):
    return np.zeros((), x.dtype) if isinstance(x, ndarray) else x


def _view(x):
    return x._view if isinstance(x, ndarray) else x


class Ufunc:
    def __init__(self, np_ufunc):
        self._np = np_ufunc
        self.__name__ = np_ufunc.__name__
        self.nin = np_ufunc.nin

    def __call__(self, *args, out=None, dtype=None, **kwargs):
        if kwargs:
            raise TypeError(f"the CuPy stand-in's {self.__name__} takes no {sorted(kwargs)}")
        if len(args) != self.nin:
            raise TypeError(f"{self.__name__} takes {self.nin} arguments, got {len(args)}")
        for a in args:
            _check_operand(a)
        arrays = [a for a in args if isinstance(a, ndarray)]
        with np.errstate(all="ignore"):
            result_dtype = self._np(*[_probe(a) for a in args], dtype=dtype).dtype
        shape = np.broadcast_shapes(*[a.shape for a in arrays]) if arrays else ()
        if out is None:
            out = ndarray(shape, result_dtype)
        elif not isinstance(out, ndarray):
            raise TypeError(f"Unsupported type {type(out)} for out")
        views, target, fn = [_view(a) for a in args], out._view, self._np

        def run():
            with np.errstate(all="ignore"):
                fn(*views, out=target, dtype=dtype, casting="unsafe")

        submit(run, self.__name__, arrays + [out])
        return out


_NAMES = ("add", "subtract", "multiply", "true_divide", "divide", "floor_divide", "power", "remainder",
          "negative", "absolute", "sqrt", "exp", "log", "log1p", "expm1", "tanh", "maximum", "minimum",
          "fmax", "fmin", "equal", "not_equal", "less", "less_equal", "greater", "greater_equal", "logical_and",
          "logical_or", "logical_not", "invert", "bitwise_and", "bitwise_or", "bitwise_xor", "isfinite", "isnan",
          "isinf", "sign", "square", "reciprocal", "floor", "ceil", "signbit")
UFUNCS = {n: Ufunc(getattr(np, n)) for n in _NAMES}
UFUNCS["abs"] = UFUNCS["absolute"]


def _axes(ndim, axis):
    if axis is None:
        return tuple(range(ndim))
    axes = axis if isinstance(axis, tuple) else (axis,)
    out = []
    for a in axes:
        if not -ndim <= a < ndim:
            raise np.exceptions.AxisError(a, ndim)
        out.append(a % ndim)
    return tuple(out)


def reduction(name, a, axis=None, dtype=None, keepdims=False):
    if not isinstance(a, ndarray):
        raise TypeError(f"Unsupported type {type(a)}")
    fn = getattr(np, name)
    axes = _axes(a.ndim, axis)
    if name in ("argmax", "argmin"):
        if axis is not None and not isinstance(axis, (int, np.integer)):
            raise TypeError(f"{name} takes a single axis")
        axes = tuple(range(a.ndim)) if axis is None else axes
    if name in ("min", "max", "argmax", "argmin") and builtins.any(a.shape[i] == 0 for i in axes):
        raise ValueError(f"zero-size array to reduction operation {name} which has no identity")
    shape = tuple(1 if i in axes else d for i, d in enumerate(a.shape)) if keepdims else \
        tuple(d for i, d in enumerate(a.shape) if i not in axes)
    kwargs = {} if name in ("argmax", "argmin", "min", "max") or dtype is None else {"dtype": dtype}
    with np.errstate(all="ignore"):
        probe = fn(np.zeros((1,) * a.ndim, a.dtype), axis=axis, keepdims=keepdims, **kwargs)
    out = ndarray(shape, np.asarray(probe).dtype)
    src, target = a._view, out._view

    def run():
        with np.errstate(all="ignore"):
            target[...] = fn(src, axis=axis, keepdims=keepdims, **kwargs)

    submit(run, name, (a, out))
    return out


def _reduction_function(name):
    def f(a, axis=None, dtype=None, out=None, keepdims=False):
        return reduction(name, a, axis=axis, dtype=dtype, keepdims=keepdims)

    f.__name__ = name
    return f


sum, prod, all, any, min, max, mean, argmax, argmin = (_reduction_function(n) for n in (
    "sum", "prod", "all", "any", "min", "max", "mean", "argmax", "argmin"))
amin, amax = min, max


def where(condition, x, y):
    for v in (condition, x, y):
        _check_operand(v)
    arrays = [v for v in (condition, x, y) if isinstance(v, ndarray)]
    dtype = np.result_type(*[_probe(v) for v in (x, y)])
    out = ndarray(np.broadcast_shapes(*[a.shape for a in arrays]), dtype)
    c, a, b, target = _view(condition), _view(x), _view(y), out._view
    submit(lambda: np.copyto(target, np.where(c, a, b)), "where", arrays + [out])
    return out
