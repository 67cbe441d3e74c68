"""Exact checks of the matrix-multiply kernels (kernels/conv2d.cu, kernels/gemm.cu, kernels/split_sum.cu):
integer-valued inputs small enough that every partial sum is exactly representable in float32, so
every tile kernel of every version, in every product (forward and both backwards) and every split
of K, must give exactly the integer result (numpy.array_equal, no tolerance), on every backend.
CUTLASS's habit (../shared/notes/style.md). The reference is PyTorch in float64, exact on these
integers."""

import numpy as np
import pytest
import torch

from alexnet_raw import functional as F
from alexnet_raw.ops import conv2d as conv_ops
from alexnet_raw.ops import gemm_tiles
from alexnet_raw.ops import linear as linear_ops

# |values| <= 2: a sum of K products is at most 4 K in magnitude, exact in float32 (24-bit
# significand) for K < 2^22; the largest K here is 3200
LIMIT = 2


def integers(rng, shape, dtype):
    return rng.integers(-LIMIT, LIMIT + 1, size=shape).astype(dtype)


def exact(a):
    return torch.from_numpy(np.asarray(a, np.float64))


def torch_conv_exact(x, w, g, stride, padding, groups):
    """(y, grad_input, grad_weight) in float64 (exact on these integers)."""
    xt, wt = exact(x).requires_grad_(), exact(w).requires_grad_()
    y = torch.nn.functional.conv2d(xt, wt, None, stride, padding, groups=groups)
    y.backward(exact(g))
    return y.detach().numpy(), xt.grad.numpy(), wt.grad.numpy()


# (input shape, filters, kernel, stride, padding, groups): ragged tiles in the forward and backward
# to the input, and a weight gradient with 1 block of output and K = 2 * 40 * 40 = 3200, which the
# plan splits (groups and strides: tests/kernels/test_conv2d.py)
CONV_CASES = [((2, 2, 40, 40), 4, 3, 1, 1, 1)]
CONV_KERNELS = [(dtype, t) for dtype in (np.float32, np.float64) for t in conv_ops.instantiated_tiles(dtype)]


def test_the_split_case_splits():
    x, w = np.zeros(CONV_CASES[0][0], np.float32), np.zeros((4, 2, 3, 3), np.float32)
    g = conv_ops.geometry(x, w, 1, 1, 1, False)[1]
    for tile in conv_ops.instantiated_tiles(np.float32):
        with gemm_tiles.forced(tile):
            assert conv_ops.weight_plan(g, np.float32)[1] > 1, tile


@pytest.mark.parametrize("dtype,tile", CONV_KERNELS, ids=[f"{np.dtype(d).name}-{t}" for d, t in CONV_KERNELS])
@pytest.mark.parametrize("shape,filters,kernel,stride,padding,groups", CONV_CASES)
def test_conv2d_is_exact_on_integers(backend, dtype, tile, shape, filters, kernel, stride, padding, groups):
    rng = np.random.default_rng(11)
    x = integers(rng, shape, dtype)
    w = integers(rng, (filters, shape[1] // groups, kernel, kernel), dtype)
    with gemm_tiles.forced(tile):
        y = np.asarray(F.conv2d(x, w, None, stride, padding, groups))
        g = integers(rng, y.shape, dtype)
        grad_x, grad_w, _ = F.conv2d_backward(g, x, w, stride, padding, groups, bias=False)
    ref_y, ref_gx, ref_gw = torch_conv_exact(x, w, g, stride, padding, groups)
    for name, ours, ref in (("output", y, ref_y), ("grad_input", grad_x, ref_gx), ("grad_weight", grad_w, ref_gw)):
        ours = np.asarray(ours)
        assert ours.dtype == dtype and np.array_equal(ours, ref.astype(dtype)), (name, np.abs(ours - ref).max())


# (batch, in, out): ragged tiles and version 4's 16-byte loops in every product; K = 2100 in the
# forward and the backward to the weights (split into ranges)
LINEAR_CASES = [(132, 136, 260), (5, 2100, 70), (2100, 5, 7)]
LINEAR_KERNELS = [(dtype, t) for dtype in (np.float32, np.float64) for t in linear_ops.instantiated_tiles(dtype)]


@pytest.mark.parametrize("dtype,tile", LINEAR_KERNELS, ids=[f"{np.dtype(d).name}-{t}" for d, t in LINEAR_KERNELS])
def test_linear_is_exact_on_integers(backend, dtype, tile):
    rng = np.random.default_rng(12)
    for batch, features_in, features_out in LINEAR_CASES:
        x = integers(rng, (batch, features_in), dtype)
        w = integers(rng, (features_out, features_in), dtype)
        b = integers(rng, (features_out,), dtype)
        g = integers(rng, (batch, features_out), dtype)
        with gemm_tiles.forced(tile):
            y = np.asarray(F.linear(x, w, b))
            grad_x, grad_w, grad_b = (np.asarray(v) for v in F.linear_backward(g, x, w))
        xt, wt = exact(x).requires_grad_(), exact(w).requires_grad_()
        ref_y = torch.nn.functional.linear(xt, wt, exact(b))
        ref_y.backward(exact(g))
        for name, ours, ref in (("output", y, ref_y.detach().numpy()), ("grad_input", grad_x, xt.grad.numpy()),
                                ("grad_weight", grad_w, wt.grad.numpy()), ("grad_bias", grad_b, g.sum(0))):
            assert np.array_equal(ours, ref.astype(dtype)), (batch, features_in, features_out, name)
