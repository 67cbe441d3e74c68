"""Input checks shared by every op: clear errors that name the argument, what was expected and what came.

Arrays: a numpy.ndarray (CPU) or cupy.ndarray (GPU) of float32 or float64. Subclasses are refused
(np.matrix, np.ma.MaskedArray: what they add would be lost without a word), except np.memmap,
which is taken as the ndarray of its memory. Inputs may be strided (a slice, a transpose, a
broadcast): they are copied to C-contiguous memory on their device first, as torch.nn.functional
accepts them; arrays an op writes in place (`out`, `param`) must be C-contiguous already.
Scalars: real numbers (not bool, not str), finite, inside the range the argument's meaning allows
and representable in the arrays' dtype (1e300 is not a float32: the kernel would see inf).
Integers: int or NumPy integer (not bool), inside their range.
"""

from __future__ import annotations

import math
import numbers
import sys

import numpy as np

from ..runtime import backends

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
INT32_MAX = 2**31 - 1


def _kind(x) -> str:
    return f"{type(x).__module__}.{type(x).__name__}" if type(x).__module__ != "builtins" else type(x).__name__


def _cupy_ndarray():
    cupy = sys.modules.get("cupy")
    return None if cupy is None else cupy.ndarray


def is_array(x) -> bool:
    """A NumPy or CuPy array, a subclass included (plain() says what becomes of a subclass)."""
    cupy_ndarray = _cupy_ndarray()
    return isinstance(x, np.ndarray) or (cupy_ndarray is not None and isinstance(x, cupy_ndarray))


def plain(x, name: str):
    """x as a plain numpy.ndarray or cupy.ndarray, or a TypeError naming the argument and its type:
    np.memmap is viewed as the ndarray of its memory (nothing is lost); every other subclass is
    refused with the conversion to use."""
    if type(x) is np.ndarray:
        return x
    cupy_ndarray = _cupy_ndarray()
    if cupy_ndarray is not None and type(x) is cupy_ndarray:
        return x
    if isinstance(x, np.memmap):
        return x.view(np.ndarray)  # the same memory, read and written in place
    if isinstance(x, np.ma.MaskedArray):
        raise TypeError(f"{name} is a numpy.ma.MaskedArray, which the ops do not take: its mask would be ignored. "
                        f"Pass np.ma.filled({name}, value) (masked elements replaced by value) or {name}.data "
                        "(every element, masked ones included)")
    if isinstance(x, np.matrix):
        raise TypeError(f"{name} is a numpy.matrix, which the ops do not take (it is always 2-D and its * is a "
                        f"matrix product); pass np.asarray({name})")
    if isinstance(x, np.ndarray) or (cupy_ndarray is not None and isinstance(x, cupy_ndarray)):
        base = "numpy.ndarray" if isinstance(x, np.ndarray) else "cupy.ndarray"
        raise TypeError(f"{name} is a {_kind(x)}, a subclass of {base}, which the ops do not take (what the subclass "
                        f"adds would be lost); pass {'np' if base.startswith('numpy') else 'cupy'}.asarray({name}) "
                        f"for a plain {base}")
    raise TypeError(f"{name} must be a numpy.ndarray or cupy.ndarray, got {_kind(x)}")


def _dtype_name(dtype) -> str:
    dtype = np.dtype(dtype)
    if dtype.kind == "f" and dtype.byteorder not in ("=", "|") and dtype.newbyteorder("=") in FLOAT_DTYPES:
        return f"{dtype.str} (non-native byte order; use .astype(np.{dtype.newbyteorder('=').name}))"
    return str(dtype)


def contiguous(x):
    """x itself when C-contiguous and aligned, else a C-contiguous copy on x's device."""
    if x.flags.c_contiguous and (not isinstance(x, np.ndarray) or x.flags.aligned):
        return x
    if isinstance(x, np.ndarray):
        return np.array(x, order="C", copy=True)
    cupy = sys.modules["cupy"]
    with x.device:  # the copy goes where x is, whichever GPU is current
        return cupy.ascontiguousarray(x)


def array(x, name: str, *, ndim=None, like=None):
    """tensor()'s checks without the copy: the plain array as given (for an overlap check first)."""
    x = plain(x, name)
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got {_dtype_name(x.dtype)}")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(x.shape)}")
    if like is not None:
        if isinstance(x, np.ndarray) != isinstance(like, np.ndarray):
            raise TypeError(f"{name} is a {_kind(x)} but the other arrays are {_kind(like)}: use one device")
        same_device(x, name, like)
        if x.dtype != like.dtype:
            raise TypeError(f"{name} must have the same dtype as the other arrays ({like.dtype}), got {x.dtype}")
    return x


def tensor(x, name: str, *, ndim=None, like=None):
    """Check one array the op reads; returns it as a plain C-contiguous array (a copy on its device
    when it was strided).

    It must be a NumPy (CPU) or CuPy (GPU) array of float32 or float64 (see plain() for
    subclasses), with `ndim` dimensions if given, and of the same kind, device and dtype as `like`
    if given."""
    return contiguous(array(x, name, ndim=ndim, like=like))


def output(x, name: str, *, like=None, op: str):
    """Check an array the op writes in place (`op` names the op for the messages); returns the
    plain array (the same memory). It must be C-contiguous and writable: a strided array would be
    written through a copy, not where the caller looks."""
    x = array(x, name, like=like)
    if not x.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous, got shape {tuple(x.shape)} with strides {x.strides}: {op} "
                         f"writes it in place (pass a contiguous array, e.g. np.ascontiguousarray({name}), and copy "
                         "the result back)")
    if isinstance(x, np.ndarray) and not x.flags.aligned:
        raise ValueError(f"{name} is not aligned to its dtype ({x.dtype}); {op} writes it in place: pass an aligned "
                         "array (e.g. a copy)")
    if isinstance(x, np.ndarray) and not x.flags.writeable:
        raise ValueError(f"{name} is read-only; {op} writes it in place (pass a writable array)")
    return x


def backend(x):
    """The backend that runs kernels on x's memory."""
    return backends.backend_for(x)


def same_device(x, name, like):
    """GPU arrays of one op must be on one GPU (the op runs there); NumPy arrays always are."""
    if isinstance(x, np.ndarray) or isinstance(like, np.ndarray):
        return
    if x.device.id != like.device.id:
        raise ValueError(f"{name} is on GPU {x.device.id} but the other arrays are on GPU {like.device.id}: an op "
                         "runs on one GPU (copy the array over first)")


def same_shape(x, name: str, expected, expected_from: str):
    if tuple(x.shape) != tuple(expected):
        raise ValueError(f"{name} must have the shape of {expected_from} {tuple(expected)}, got {tuple(x.shape)}")


def in_dtype(value: float, name: str, dtype, given=None):
    """value in `dtype` (a NumPy scalar), or a ValueError when it is finite as a Python float but
    overflows the dtype (the kernel would see inf)."""
    dtype = np.dtype(dtype)
    try:
        with np.errstate(over="ignore"):
            v = dtype.type(value)
    except OverflowError:  # a Python int past float64's range
        v = dtype.type(np.inf)
    if not np.isfinite(v):
        info = np.finfo(dtype)
        raise ValueError(f"{name} must be representable in {dtype.name} (the arrays' dtype: magnitudes up to "
                         f"{float(info.max):.8g}), got {value if given is None else given!r}")
    return v


def computed(fn, what: str, dtype):
    """fn(), a NumPy scalar computed in `dtype` from checked arguments, or a ValueError naming
    `what` when it overflows the dtype (the kernel would see inf)."""
    with np.errstate(over="ignore", invalid="ignore"):
        v = fn()
    if not np.isfinite(v):
        raise ValueError(f"{what} must be representable in {np.dtype(dtype).name} (the arrays' dtype), got {v}: "
                         "the arguments are too large for it")
    return v


def finite(value, name: str, *, minimum=None, maximum=None, dtype=None) -> float:
    """A real number (int, float or NumPy number; not bool, not str) that is finite, in
    [minimum, maximum] where given, and representable in `dtype` where given; returns a float."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r} (a {_kind(value)})")
    try:
        v = float(value)
    except OverflowError:  # an int past float64's range
        raise ValueError(f"{name} must be finite, got {value!r} (past float64's range)") from None
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if minimum is not None and v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    if maximum is not None and v > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value!r}")
    if dtype is not None:
        in_dtype(v, name, dtype, given=value)
    return v


def integer(value, name: str, minimum=None, maximum=None) -> int:
    """An int or NumPy integer (not bool, not a float holding an integer) in [minimum, maximum]."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r} (a {_kind(value)})")
    v = int(value)
    if minimum is not None and v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v}")
    if maximum is not None and v > maximum:
        raise ValueError(f"{name} must be at most {maximum}, got {v}")
    return v


def boolean(value, name: str, what: str = "") -> bool:
    """A bool or NumPy bool (not an int, not None); `what` says what it switches, for the message."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool{f' ({what})' if what else ''}, got {value!r}")
    return bool(value)


def choice(value, name: str, choices):
    """One of the strings `choices`."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value


def pair(value, name: str, minimum=None, maximum=INT32_MAX):
    """An int or a pair of ints, as PyTorch accepts for kernel_size, stride, padding (each at most
    `maximum`: the kernels take them as int)."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
        return integer(value[0], name, minimum, maximum), integer(value[1], name, minimum, maximum)
    v = integer(value, name, minimum, maximum)
    return v, v


def is_unbatched_image(x, name: str = "input") -> bool:
    """True for a (C, H, W) array, which the image ops take as a batch of one (as torch does);
    False for (N, C, H, W); a clear error for any other rank."""
    if not is_array(x):
        return False  # tensor() names the wrong type
    x = plain(x, name)
    if x.ndim not in (3, 4):
        raise ValueError(f"{name} must be (N, C, H, W) or unbatched (C, H, W), got shape {tuple(x.shape)}")
    return x.ndim == 3


def unbatched_grad(grad_output, name: str = "grad_output"):
    """grad_output of an op whose input was unbatched: (C', OH, OW) with a batch axis of one added."""
    grad_output = plain(grad_output, name)
    if grad_output.ndim != 3:
        raise ValueError(f"{name} must be unbatched (C, OH, OW) like the input, got {tuple(grad_output.shape)}")
    return grad_output[None]
