"""Max pooling (kernels/max_pool2d.cu) on both CPU paths against torch.nn.functional.max_pool2d and
its autograd backward: AlexNet's pooling layers at batch 2, ties, NaN, random shapes, output-size
rules, a float64 central-difference check and bad input."""

import os

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from central_differences import numeric_gradient
from pool_cases import pool_cases

from alexnet_raw import functional as F
from alexnet_raw.checks import tolerances
from alexnet_raw.checks import torch_reference
from alexnet_raw.ops.max_pool2d import output_size


def torch_pool(x, g, kernel_size, stride, padding, ceil_mode):
    """torch's output and, for the upstream gradient g (None: no gradient), its input gradient."""
    y, grads = torch_reference.forward_backward(
        lambda t: torch_reference.max_pool2d(t, kernel_size, stride, padding, ceil_mode), [x], g)
    return y, None if grads is None else grads[0]


def check_against_torch(under_schedules, x, kernel_size, stride=None, padding=0, ceil_mode=False, g=None):
    ref_y, _ = torch_pool(x, None, kernel_size, stride, padding, ceil_mode)
    if g is None:
        g = np.random.default_rng(x.size).standard_normal(ref_y.shape).astype(x.dtype)
    _, ref_g = torch_pool(x, g, kernel_size, stride, padding, ceil_mode)
    y, gx = under_schedules(lambda: (F.max_pool2d(x, kernel_size, stride, padding, ceil_mode),
                                     F.max_pool2d_backward(g, x, kernel_size, stride, padding, ceil_mode)))
    assert y.shape == ref_y.shape and y.dtype == x.dtype and gx.shape == x.shape and gx.dtype == x.dtype
    # a selection and PyTorch's accumulation order: exact (tolerance entry "max_pool2d" is 0, 0)
    assert tolerances.close(y, ref_y, "max_pool2d", x.dtype), tolerances.max_errors(y, ref_y)
    assert tolerances.close(gx, ref_g, "max_pool2d", x.dtype), tolerances.max_errors(gx, ref_g)
    np.testing.assert_array_equal(y, ref_y)
    np.testing.assert_array_equal(gx, ref_g)


# (input shape at batch 2, kernel, stride, ceil_mode): run #145 per tower (cuda-convnet's ceil rule)
# and torchvision's AlexNet (floor rule)
ALEXNET_POOLS = [
    ((2, 48, 55, 55), 3, 2, True),   # #145 pool1: 55 -> 27
    ((2, 128, 27, 27), 3, 2, True),  # #145 pool2: 27 -> 13
    ((2, 128, 13, 13), 3, 2, True),  # #145 pool3: 13 -> 6
    ((2, 64, 55, 55), 3, 2, False),  # torchvision features[2]
    ((2, 192, 27, 27), 3, 2, False),  # torchvision features[5]
    ((2, 256, 13, 13), 3, 2, False),  # torchvision features[12]
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,kernel,stride,ceil_mode", ALEXNET_POOLS)
def test_alexnet_pools_match_torch(backend, under_schedules, dtype, shape, kernel, stride, ceil_mode):
    x = np.random.default_rng(1).standard_normal(shape).astype(dtype)
    check_against_torch(under_schedules, x, kernel, stride, 0, ceil_mode)


def test_alexnet_output_sizes():
    assert [output_size(s, 3, 2, 0, True) for s in (55, 27, 13)] == [27, 13, 6]
    assert [output_size(s, 3, 2, 0, False) for s in (55, 27, 13)] == [27, 13, 6]


def test_output_size_rule_is_torchs():
    # PyTorch's rule, including ceil_mode's "the last window starts inside the input or left padding".
    # Under the sanitizers (CI's second run of tests/kernels) a C++ exception thrown by torch aborts
    # the process (ASan's __cxa_throw interceptor), so only the sizes torch accepts are compared there.
    sanitized = os.environ.get("ALEXNET_RAW_EMU_SANITIZE") not in (None, "", "0")
    for size in range(1, 12):
        for k in range(1, 6):
            for s in range(1, 5):
                for p in range(0, k // 2 + 1):
                    for ceil_mode in (False, True):
                        ours = output_size(size, k, s, p, ceil_mode)
                        if sanitized and ours < 1:
                            continue
                        x = torch.zeros(1, 1, size, 1)
                        try:
                            ref = torch.nn.functional.max_pool2d(x, (k, 1), (s, 1), (p, 0), ceil_mode=ceil_mode).shape[2]
                        except RuntimeError:
                            ref = None
                        assert (ours if ours >= 1 else None) == ref, (size, k, s, p, ceil_mode)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kernel,stride,padding,ceil_mode", [(3, 2, 0, True), (3, 2, 1, False), (2, 1, 1, True),
                                                             (3, 1, 1, False), ((3, 2), (1, 2), (1, 1), True)])
def test_ties_take_the_first_maximum_as_torch(backend, under_schedules, dtype, kernel, stride, padding, ceil_mode):
    # values from {0, 1, 2}: most windows hold several maxima; the gradient goes to the first in scan order
    x = np.random.default_rng(2).integers(0, 3, (2, 3, 9, 8)).astype(dtype)
    check_against_torch(under_schedules, x, kernel, stride, padding, ceil_mode)
    const = np.full((1, 2, 5, 7), 1.5, dtype)  # every window all ties
    check_against_torch(under_schedules, const, kernel, stride, padding, ceil_mode)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_and_infinities_as_torch(backend, under_schedules, dtype):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 2, 9, 9)).astype(dtype)
    flat = x.reshape(-1)
    flat[rng.choice(flat.size, 12, replace=False)] = np.nan  # some windows hold two NaNs: the last takes the gradient
    flat[rng.choice(flat.size, 6, replace=False)] = np.inf
    x[1, 1] = -np.inf  # a plane of -inf: the first element of each window takes the gradient
    for kernel, stride, padding, ceil_mode in [(3, 2, 0, True), (3, 1, 1, False), (2, 2, 1, True)]:
        check_against_torch(under_schedules, x, kernel, stride, padding, ceil_mode)
    y = F.max_pool2d(x, 3, 2)
    assert np.isnan(y).any()


def test_gradient_check_float64(backend):
    # distinct values (a permutation) so every window's maximum is unique and stable under +-eps
    rng = np.random.default_rng(4)
    shape = (1, 2, 7, 6)
    x = rng.permutation(np.prod(shape)).reshape(shape).astype(np.float64) * 0.1
    args = (3, 2, 1, True)
    g = rng.standard_normal(F.max_pool2d(x, *args).shape)
    grad = F.max_pool2d_backward(g, x, *args)
    numeric = numeric_gradient(lambda v: F.max_pool2d(v, *args), x, g, eps=1e-4)
    np.testing.assert_allclose(grad, numeric, rtol=1e-7, atol=1e-9)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=pool_cases(max_stride=4), ties=st.booleans())
def test_property_random_shapes(backend, under_schedules, case, ties):
    shape, kernel, stride, padding, ceil_mode, double = case
    dtype = np.float64 if double else np.float32
    rng = np.random.default_rng(sum(shape))
    x = (rng.integers(0, 4, shape) if ties else rng.standard_normal(shape)).astype(dtype)
    check_against_torch(under_schedules, x, kernel, stride, padding, ceil_mode)


def test_empty_batch(backend):
    x = np.zeros((0, 3, 5, 5), np.float32)
    assert F.max_pool2d(x, 3, 2).shape == (0, 3, 2, 2)
    assert F.max_pool2d_backward(np.zeros((0, 3, 2, 2), np.float32), x, 3, 2).shape == x.shape


def test_unbatched_input_as_torch(backend, under_schedules):
    x = np.random.default_rng(3).standard_normal((3, 7, 8))
    g = np.random.default_rng(4).standard_normal((3, 4, 4))
    y, gx = under_schedules(lambda: (F.max_pool2d(x, 3, 2, 1), F.max_pool2d_backward(g, x, 3, 2, 1)))
    ref_y, ref_g = torch_pool(x, g, 3, 2, 1, False)
    np.testing.assert_array_equal(y, ref_y)
    np.testing.assert_array_equal(gx, ref_g)


def test_rejects_bad_input(backend):
    x = np.zeros((2, 3, 7, 7), np.float32)
    with pytest.raises(ValueError, match=r"kernel_size must be >= 1, got 0"):
        F.max_pool2d(x, 0)
    with pytest.raises(ValueError, match=r"kernel_size must be >= 1, got -3"):
        F.max_pool2d(x, -3)
    with pytest.raises(ValueError, match=r"stride must be >= 1, got 0"):
        F.max_pool2d(x, 3, 0)
    with pytest.raises(ValueError, match=r"padding must be >= 0, got -1"):
        F.max_pool2d(x, 3, 2, -1)
    with pytest.raises(ValueError, match=r"padding must be at most half the kernel size"):
        F.max_pool2d(x, 3, 2, 2)
    with pytest.raises(ValueError, match=r"window \(8, 8\) is larger than the padded input \(7, 7\)"):
        F.max_pool2d(x, 8)
    with pytest.raises(ValueError, match=r"larger than the padded input \(7, 9\)"):
        F.max_pool2d(x, (8, 3), 1, (0, 1))
    with pytest.raises(ValueError, match=r"kernel_size must be an int or a pair of ints"):
        F.max_pool2d(x, (3, 3, 3))
    with pytest.raises(TypeError, match=r"kernel_size must be an int, got 3.0"):
        F.max_pool2d(x, 3.0)
    with pytest.raises(TypeError, match=r"ceil_mode must be a bool"):
        F.max_pool2d(x, 3, ceil_mode=1)
    with pytest.raises(ValueError, match=r"input must be \(N, C, H, W\) or unbatched \(C, H, W\), got shape \(7, 7\)"):
        F.max_pool2d(x[0, 0], 3)
    with pytest.raises(ValueError, match=r"grad_output must be unbatched \(C, OH, OW\) like the input, got \(1, 3, 3, 3\)"):
        F.max_pool2d_backward(np.zeros((1, 3, 3, 3), np.float32), x[0], 3, 2)
    with pytest.raises(TypeError, match="input must be float32 or float64, got int32"):
        F.max_pool2d(x.astype(np.int32), 3)
    with pytest.raises(ValueError, match="non-empty planes"):
        F.max_pool2d(np.zeros((2, 3, 0, 7), np.float32), 1)
    g = np.zeros((2, 3, 3, 3), np.float32)
    with pytest.raises(ValueError, match=r"grad_output must have the shape of the pooled output \(2, 3, 3, 3\), "
                                         r"got \(2, 3, 2, 2\)"):
        F.max_pool2d_backward(np.zeros((2, 3, 2, 2), np.float32), x, 3, 2)
    with pytest.raises(TypeError, match="same dtype"):
        F.max_pool2d_backward(g.astype(np.float64), x, 3, 2)
    F.max_pool2d_backward(g, x, 3, 2)  # the right shape passes


# cuda-convnet's pool layer geometry (F.convnet_max_pool2d): (shape, size, stride, start, outputs)
CONVNET_POOLS = [
    ((2, 3, 8, 8), 3, 2, -2, 0),   # cuda-convnet's layers.gc.cfg: windows from 2 pixels before the image
    ((2, 3, 9, 7), 3, 2, -1, 0),   # a start of -1, uneven sides
    ((1, 2, 13, 13), 3, 2, 0, 0),  # start 0: run #145's pools (the ceil rule)
    ((1, 2, 13, 13), 3, 2, 0, 5),  # fewer windows than fit
    ((1, 2, 10, 10), 4, 3, -3, 0),  # windows wider than half the size into the padding
    ((1, 1, 5, 5), 5, 1, -4, 0),    # each first window holds one pixel
    ((2, 3, 9, 8), 3, 2, 1, 0),     # a positive start: the first row and column never pooled
    ((1, 2, 11, 11), 2, 3, 2, 2),   # windows apart (stride > size) from pixel 2, two of them
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape, size, stride, start, outputs", CONVNET_POOLS)
def test_convnet_pool_geometry_matches_torch(backend, under_schedules, dtype, shape, size, stride, start, outputs):
    x = np.random.default_rng(4).standard_normal(shape).astype(dtype)
    ref_y, _ = torch_reference.forward_backward(
        lambda t: torch_reference.convnet_pool2d(t, "max", size, stride, start, outputs), [x])
    g = np.random.default_rng(5).standard_normal(ref_y.shape).astype(dtype)
    _, (ref_g,) = torch_reference.forward_backward(
        lambda t: torch_reference.convnet_pool2d(t, "max", size, stride, start, outputs), [x], g)
    y, gx = under_schedules(lambda: (F.convnet_max_pool2d(x, size, stride, start, outputs),
                                     F.convnet_max_pool2d_backward(g, x, size, stride, start, outputs)))
    np.testing.assert_array_equal(y, ref_y)  # a selection: exact
    np.testing.assert_array_equal(gx, ref_g)


def test_convnet_pool_arguments_are_checked(backend):
    x = np.zeros((1, 1, 8, 8), np.float32)
    with pytest.raises(ValueError, match="start"):
        F.convnet_max_pool2d(x, 3, 2, -3)  # a first window wholly before the image
    with pytest.raises(ValueError, match="outputs=9, but only 4 windows"):
        F.convnet_max_pool2d(x, 3, 2, 0, 9)
    with pytest.raises(ValueError, match="does not fit 2 rows"):
        F.convnet_max_pool2d(np.zeros((1, 1, 2, 8), np.float32), 3, 2, 0)
    assert F.convnet_max_pool2d(x, 3, 2, -2).shape == (1, 1, 5, 5)  # ceil((8 + 2 - 3) / 2) + 1
