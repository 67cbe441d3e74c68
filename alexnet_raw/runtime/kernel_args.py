"""Strict checking and packing of kernel arguments, shared by every backend.

A kernel's parameters are described by type codes produced by the C++ compiler itself
(``emu::param_codes`` in cuda_emu_runtime.h, used by the CPU runtime and by the pybind11
extension): ``f32`` is float, ``i64`` a 64-bit integer, ``p:f32`` a float pointer, ``pc:f32`` a
const float pointer, ``p:void`` a void pointer. Scalars must be NumPy scalars of exactly the
parameter's type (a Python int passed for an ``int`` parameter is a TypeError: CuPy would pass it
as a 64-bit value, a classic GPU bug). Arrays must have the pointee's dtype and be C-contiguous.
"""

from __future__ import annotations

import numpy as np

SCALAR_DTYPES = {
    "b8": np.dtype(np.bool_),
    "i8": np.dtype(np.int8),
    "u8": np.dtype(np.uint8),
    "i16": np.dtype(np.int16),
    "u16": np.dtype(np.uint16),
    "i32": np.dtype(np.int32),
    "u32": np.dtype(np.uint32),
    "i64": np.dtype(np.int64),
    "u64": np.dtype(np.uint64),
    "f32": np.dtype(np.float32),
    "f64": np.dtype(np.float64),
}
C_NAMES = {
    "b8": "bool",
    "i8": "signed char",
    "u8": "unsigned char",
    "i16": "short",
    "u16": "unsigned short",
    "i32": "int",
    "u32": "unsigned int",
    "i64": "long long",
    "u64": "unsigned long long",
    "f32": "float",
    "f64": "double",
    "void": "void",
}
# vector pointee types: base scalar code and lanes
VECTOR_POINTEES = {
    "f32x2": ("f32", 2),
    "f32x4": ("f32", 4),
    "f64x2": ("f64", 2),
    "i32x2": ("i32", 2),
    "i32x4": ("i32", 4),
    "u32x2": ("u32", 2),
    "u32x4": ("u32", 4),
}


def c_type(code: str) -> str:
    """Readable C type of a parameter code, for messages."""
    if code.startswith("p:") or code.startswith("pc:"):
        const = "const " if code.startswith("pc:") else ""
        inner = code.split(":", 1)[1]
        name = C_NAMES.get(inner) or (
            f"{C_NAMES[VECTOR_POINTEES[inner][0]]}{VECTOR_POINTEES[inner][1]}" if inner in VECTOR_POINTEES else inner
        )
        return f"{const}{name}*"
    return C_NAMES.get(code, f"struct of {code[1:]} bytes" if code.startswith("?") else code)


def signature(name: str, codes) -> str:
    return f"{name}({', '.join(c_type(c) for c in codes)})"


class ArrayView:
    """What packing needs to know about an array of any backend."""

    __slots__ = ("address", "dtype", "contiguous", "writable", "nbytes")

    def __init__(self, address, dtype, contiguous, writable, nbytes):
        self.address = address
        self.dtype = dtype
        self.contiguous = contiguous
        self.writable = writable
        self.nbytes = nbytes


def numpy_view(value):
    if isinstance(value, np.ndarray):
        return ArrayView(value.ctypes.data, value.dtype, value.flags.c_contiguous, value.flags.writeable, value.nbytes)
    return None


def _describe(value) -> str:
    if isinstance(value, np.ndarray):
        return f"numpy.ndarray of {value.dtype}"
    if isinstance(value, np.generic):
        return f"numpy.{type(value).__name__}"
    t = type(value)
    return f"{t.__module__}.{t.__name__}" if t.__module__ not in ("builtins",) else t.__name__


def pack(kernel_name: str, codes, args, view_of=numpy_view, names=()):
    """Check ``args`` against the parameter codes and pack them like cuLaunchKernel expects.

    Returns (blob, offsets, keep_alive): the argument values laid out in a bytearray, and each
    argument's offset in it. ``view_of(value)`` turns an array of the backend into an ArrayView
    (or returns None for a non-array). ``names``: the parameters' names from the source, when
    known, for the messages.
    """
    codes = list(codes)
    if not isinstance(args, (tuple, list)):
        raise TypeError(f"kernel arguments must be a tuple or list, got {_describe(args)}")
    if len(args) != len(codes):
        raise TypeError(
            f"kernel {signature(kernel_name, codes)} takes {len(codes)} arguments, got {len(args)}"
        )
    blob = bytearray()
    offsets = []
    keep_alive = []
    for i, (code, value) in enumerate(zip(codes, args)):
        at = (kernel_name, codes, names, i)  # for messages, formatted only when one is raised
        if code.startswith("p:") or code.startswith("pc:"):
            view = view_of(value)
            if view is None:
                raise TypeError(f"{_where(*at)}: expected an array for '{c_type(code)}', got {_describe(value)}")
            pointee = code.split(":", 1)[1]
            if pointee in SCALAR_DTYPES:
                if view.dtype != SCALAR_DTYPES[pointee]:
                    raise TypeError(
                        f"{_where(*at)}: expected an array of {SCALAR_DTYPES[pointee]} for '{c_type(code)}', "
                        f"got {view.dtype}"
                    )
            elif pointee in VECTOR_POINTEES:
                base, lanes = VECTOR_POINTEES[pointee]
                if view.dtype != SCALAR_DTYPES[base]:
                    raise TypeError(
                        f"{_where(*at)}: expected an array of {SCALAR_DTYPES[base]} for '{c_type(code)}', got {view.dtype}"
                    )
                width = SCALAR_DTYPES[base].itemsize * lanes
                if view.nbytes % width or view.address % width:
                    raise ValueError(
                        f"{_where(*at)}: '{c_type(code)}' needs an array of whole {lanes}-vectors aligned to {width} bytes"
                    )
            if not view.contiguous:
                raise ValueError(f"{_where(*at)}: the array must be C-contiguous (a kernel sees a flat pointer)")
            if code.startswith("p:") and not view.writable:
                raise ValueError(f"{_where(*at)}: the array is read-only but the kernel may write through '{c_type(code)}'")
            _align(blob, 8)
            offsets.append(len(blob))
            blob += int(view.address).to_bytes(8, "little")
            keep_alive.append(value)
        elif code in SCALAR_DTYPES:
            expected = SCALAR_DTYPES[code]
            if not isinstance(value, np.generic) or isinstance(value, np.ndarray) or value.dtype != expected:
                raise TypeError(
                    f"{_where(*at)}: expected numpy.{expected.type.__name__} for C type '{c_type(code)}', got "
                    f"{_describe(value)}; scalar types must match the kernel signature exactly"
                )
            _align(blob, max(expected.itemsize, 1))
            offsets.append(len(blob))
            blob += value.tobytes()
        else:
            raise TypeError(f"{_where(*at)}: parameters of type '{c_type(code)}' cannot be passed from Python")
    _align(blob, 8)
    return blob, offsets, keep_alive


def _where(kernel_name, codes, names, i) -> str:
    """'argument i ('name') of kernel(signature)', for messages (built only when one is raised)."""
    name = f" ('{names[i]}')" if i < len(names) and names[i] else ""
    return f"argument {i}{name} of {signature(kernel_name, codes)}"


def _align(blob: bytearray, alignment: int) -> None:
    pad = (-len(blob)) % alignment
    if pad:
        blob += b"\0" * pad


def normalise_dim3(value, what: str):
    """CuPy accepts an int or a tuple of 1-3 ints for grid and block."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        dims = (int(value),)
    elif isinstance(value, (tuple, list)) and 1 <= len(value) <= 3 and all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value
    ):
        dims = tuple(int(v) for v in value)
    else:
        raise TypeError(f"{what} must be an int or a tuple of 1 to 3 ints, got {value!r}")
    if any(d < 0 or d >= 2**32 for d in dims):
        raise ValueError(f"{what} dimensions must be in [0, 2^32), got {dims}")
    return dims + (1,) * (3 - len(dims))
