"""cuda-convnet2's wball: a bound on the L2 norm of every row of a weight array (one filter, one
output unit), in place: kernels/norm_constraint.cu. Reference: alexnet_raw/checks/torch_reference.py
(norm_constraint); tests: tests/kernels/test_norm_constraint.py.

mode "hard" (cuda-convnet2's conv and fc layers, HardWeightConstraintOperator): every row is scaled
to norm `bound` (a row of zeros stays zeros); mode "max" (its local layers, kNormalizeLCWeights):
rows longer than `bound` are scaled down to it, the others kept. Rows are the first `row_dims`
dimensions of the array: conv weights (F, C, KH, KW) and fc weights (outputs, inputs) have 1, local
weights (OH, OW, F, C, KH, KW) have 3 (a filter at each position).
"""

from __future__ import annotations

import math

import numpy as np

from ..runtime.launch import Launch, c_type, per_row
from . import _checks

SOURCE = "norm_constraint.cu"
MODES = ("hard", "max")


def constrain_norms(weight, bound, mode="hard", row_dims=1):
    """Scale the rows of `weight` (its first `row_dims` dimensions index them) in place to norm
    `bound` (mode "hard") or at most `bound` (mode "max"); returns weight."""
    w = _checks.output(weight, "weight", op="constrain_norms")
    row_dims = _checks.integer(row_dims, "row_dims", minimum=1, maximum=max(1, w.ndim))
    if w.ndim < 1 or row_dims > w.ndim:
        raise ValueError(f"weight must have at least row_dims={row_dims} dimensions, got shape {tuple(w.shape)}")
    bound = _checks.finite(bound, "bound", dtype=w.dtype)
    if bound <= 0:
        raise ValueError(f"bound must be > 0 (a norm), got {bound!r}")
    _checks.choice(mode, "mode", MODES)
    rows = math.prod(w.shape[:row_dims])
    columns = math.prod(w.shape[row_dims:])
    if rows and columns:
        grid, block = per_row(rows, columns)
        _checks.backend(w).launch(Launch(SOURCE, f"norm_constraint<{c_type(w.dtype)}>", grid, block,
                                         (w, np.int64(rows), np.int64(columns), w.dtype.type(bound),
                                          np.int32(mode == "hard"))))
    return weight
