"""In-place sum out += x: kernels/accumulate.cu. Reference: NumPy's `+=`; tests:
tests/kernels/test_accumulate.py. The engine sums per-input contributions and gradients with it."""

from __future__ import annotations

import numpy as np

from ..runtime.launch import Launch, c_type, elementwise
from . import _checks

SOURCE = "accumulate.cu"


def accumulate_launch(out, x) -> Launch:
    grid, block = elementwise(out.size)
    return Launch(SOURCE, f"accumulate<{c_type(out.dtype)}>", grid, block, (out, x, np.int64(out.size)))


def accumulate(out, x):
    """out += x elementwise, in place; returns out. Same shape and dtype, no overlap; out must be
    C-contiguous (it is written in place), x may be strided."""
    target = _checks.output(out, "out", op="accumulate")
    backend = _checks.backend(target)
    x = _checks.array(x, "x", like=target)
    _checks.same_shape(x, "x", target.shape, "out")
    if target.size and backend.array_module.may_share_memory(target, x):
        raise ValueError("out and x overlap in memory; accumulate needs separate arrays")
    if target.size:
        backend.launch(accumulate_launch(target, _checks.contiguous(x)))
    return out
