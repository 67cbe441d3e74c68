"""Input checks shared by every op: clear errors that name what was expected and what came."""

from __future__ import annotations

import math
import sys

import numpy as np

from .. import backends

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _kind(x) -> str:
    return f"{type(x).__module__}.{type(x).__name__}" if type(x).__module__ != "builtins" else type(x).__name__


def is_array(x) -> bool:
    if isinstance(x, np.ndarray):
        return True
    cupy = sys.modules.get("cupy")
    return cupy is not None and isinstance(x, cupy.ndarray)


def tensor(x, name: str, *, ndim=None, like=None):
    """Check one array argument; returns the backend that runs on it.

    It must be a NumPy (CPU) or CuPy (GPU) array of float32 or float64, C-contiguous, with `ndim`
    dimensions if given, and of the same kind and dtype as `like` if given.
    """
    if not is_array(x):
        raise TypeError(f"{name} must be a numpy.ndarray or cupy.ndarray, got {_kind(x)}")
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got {x.dtype}")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(x.shape)}")
    if not x.flags.c_contiguous:
        raise ValueError(
            f"{name} must be C-contiguous (row-major, NCHW for images), got strides {x.strides}; "
            "use numpy.ascontiguousarray"
        )
    if like is not None:
        if type(x) is not type(like):
            raise TypeError(f"{name} is a {_kind(x)} but the other arrays are {_kind(like)}: use one device")
        same_device(x, name, like)
        if x.dtype != like.dtype:
            raise TypeError(f"{name} must have the same dtype as the other arrays ({like.dtype}), got {x.dtype}")
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


def finite(value, name: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {value!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return v


def integer(value, name: str, minimum=None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r}")
    v = int(value)
    if minimum is not None and v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v}")
    return v


def pair(value, name: str, minimum=None):
    """An int or a pair of ints, as PyTorch accepts for kernel_size, stride, padding."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
        return integer(value[0], name, minimum), integer(value[1], name, minimum)
    v = integer(value, name, minimum)
    return v, v


def is_unbatched_image(x, name: str = "input") -> bool:
    """True for a (C, H, W) array, which the image ops take as a batch of one (as torch does);
    False for (N, C, H, W); a clear error for any other rank."""
    if not is_array(x):
        return False  # tensor() names the wrong type
    if x.ndim not in (3, 4):
        raise ValueError(f"{name} must be (N, C, H, W) or unbatched (C, H, W), got shape {tuple(x.shape)}")
    return x.ndim == 3


def unbatched_grad(grad_output, name: str = "grad_output"):
    """grad_output of an op whose input was unbatched: (C', OH, OW) with a batch axis of one added."""
    if not is_array(grad_output) or grad_output.ndim != 3:
        shape = tuple(grad_output.shape) if is_array(grad_output) else type(grad_output).__name__
        raise ValueError(f"{name} must be unbatched (C, OH, OW) like the input, got {shape}")
    return grad_output[None]
