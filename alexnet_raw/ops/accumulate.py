"""In-place sum out += x: kernels/accumulate.cu. Reference: NumPy's `+=`; tests:
tests/kernels/test_accumulate.py. The engine sums per-input contributions and gradients with it."""

from __future__ import annotations

import numpy as np

from ..launch import Launch, c_type, elementwise
from . import _checks

SOURCE = "accumulate.cu"


def accumulate_launch(out, x) -> Launch:
    grid, block = elementwise(out.size)
    return Launch(SOURCE, f"accumulate<{c_type(out.dtype)}>", grid, block, (out, x, np.int64(out.size)))


def accumulate(out, x):
    """out += x elementwise, in place; returns out. Same shape and dtype, no overlap."""
    backend = _checks.tensor(out, "out")
    _checks.tensor(x, "x", like=out)
    _checks.same_shape(x, "x", out.shape, "out")
    if isinstance(out, np.ndarray) and not out.flags.writeable:
        raise ValueError("out is read-only; accumulate writes it in place")
    if out.size and backend.array_module.may_share_memory(out, x):
        raise ValueError("out and x overlap in memory; accumulate needs separate arrays")
    if out.size:
        backend.launch(accumulate_launch(out, x))
    return out
