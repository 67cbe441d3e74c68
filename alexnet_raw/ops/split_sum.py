"""The fixed-order sum of a split-K product's partial sums (kernels/split_sum.cu): the fully
connected products of alexnet_raw/ops/linear.py and conv2d's backward to the weights split K
into ranges (alexnet_raw/ops/gemm_tiles.py decides how many), write one partial sum each, and this
kernel adds them in split order (plus a bias per column), so that results do not depend on block
scheduling. Tests: through the split products (tests/kernels/test_linear.py, test_conv2d.py)."""

from __future__ import annotations

import numpy as np

from ..runtime.launch import MAX_GRID_STRIDE_BLOCKS, MAX_GRID_Y_Z, THREADS_PER_BLOCK, Launch, c_type, ceil_div

SOURCE = "split_sum.cu"


def split_sum_launch(out, partial, splits: int, rows: int, columns: int, bias=None) -> Launch:
    """out (rows, columns) = the sum over the first axis of partial (splits, rows, columns), in
    order, plus bias (columns,) if given."""
    x = max(1, min(ceil_div(columns, THREADS_PER_BLOCK), MAX_GRID_STRIDE_BLOCKS))
    y = max(1, min(rows, MAX_GRID_Y_Z, max(1, MAX_GRID_STRIDE_BLOCKS // x)))
    has_bias = bias is not None
    return Launch(SOURCE, f"split_sum<{c_type(out.dtype)}>", (x, y, 1), (THREADS_PER_BLOCK, 1, 1),
                  (out, partial, bias if has_bias else out, np.int32(has_bias), np.int64(rows), np.int64(columns),
                   np.int32(splits)))
