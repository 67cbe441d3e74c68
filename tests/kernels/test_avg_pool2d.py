"""Average pooling (kernels/avg_pool2d.cu) on both CPU paths against torch.nn.functional.avg_pool2d
and its autograd backward: AlexNet-like shapes and cuda-convnet's CIFAR pooling at batch 2, both
divisors, ceil and floor, padding, NaN and inf, random shapes, cuda-convnet's `pool=avg` rule, a
float64 central-difference check and bad input."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from central_differences import numeric_gradient
from pool_cases import pool_cases

from alexnet_raw import functional as F
from alexnet_raw.checks import tolerances
from alexnet_raw.checks import torch_reference


def torch_pool(x, g, kernel_size, stride, padding, ceil_mode, count_include_pad):
    """torch's output and, for the upstream gradient g (None: no gradient), its input gradient."""
    y, grads = torch_reference.forward_backward(
        lambda t: torch_reference.avg_pool2d(t, kernel_size, stride, padding, ceil_mode, count_include_pad), [x], g)
    return y, None if grads is None else grads[0]


def check_against_torch(under_schedules, x, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True, g=None):
    args = (kernel_size, stride, padding, ceil_mode, count_include_pad)
    ref_y, _ = torch_pool(x, None, *args)
    if g is None:
        g = np.random.default_rng(x.size).standard_normal(ref_y.shape).astype(x.dtype)
    _, ref_g = torch_pool(x, g, *args)
    y, gx = under_schedules(lambda: (F.avg_pool2d(x, *args), F.avg_pool2d_backward(g, x, *args)))
    assert y.shape == ref_y.shape and y.dtype == x.dtype and gx.shape == x.shape and gx.dtype == x.dtype
    assert tolerances.close(y, ref_y, "avg_pool2d", x.dtype), tolerances.max_errors(y, ref_y)
    assert tolerances.close(gx, ref_g, "avg_pool2d", x.dtype), tolerances.max_errors(gx, ref_g)
    return y, gx


# (input shape at batch 2, kernel, stride, padding, ceil_mode): AlexNet's pooling shapes (run #145
# per tower with cuda-convnet's ceil rule, torchvision with floor), some padded, and cuda-convnet's
# CIFAR layers-18pct pool (32x32 -> 16x16 with 3x3 windows at stride 2: the last window is cut)
POOL_SHAPES = [
    ((2, 48, 55, 55), 3, 2, 0, True),   # #145 pool1: 55 -> 27
    ((2, 128, 27, 27), 3, 2, 0, True),  # #145 pool2: 27 -> 13
    ((2, 128, 13, 13), 3, 2, 1, True),  # #145 pool3's shape, padded: 13 -> 7
    ((2, 64, 55, 55), 3, 2, 1, False),  # torchvision features[2]'s shape, padded: 55 -> 28
    ((2, 256, 13, 13), 3, 2, 0, False),  # torchvision features[12]: 13 -> 6
    ((2, 32, 32, 32), 3, 2, 0, True),   # cuda-convnet CIFAR pool: 32 -> 16, the last window 2 wide
]


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,kernel,stride,padding,ceil_mode", POOL_SHAPES)
def test_pool_shapes_match_torch(backend, under_schedules, dtype, shape, kernel, stride, padding, ceil_mode,
                                 count_include_pad):
    x = np.random.default_rng(1).standard_normal(shape).astype(dtype)
    check_against_torch(under_schedules, x, kernel, stride, padding, ceil_mode, count_include_pad)


def convnet_avg_pool(x, size, stride):
    """cuda-convnet's `pool=avg` written out: ceil((in - size) / stride) + 1 windows starting at
    o*stride, cut at the image edge, each divided by its number of pixels."""
    n, c, h, w = x.shape
    oh, ow = -(-(h - size) // stride) + 1, -(-(w - size) // stride) + 1
    y = np.zeros((n, c, oh, ow), np.float64)
    for oy in range(oh):
        for ox in range(ow):
            window = x[:, :, oy * stride:oy * stride + size, ox * stride:ox * stride + size]
            y[:, :, oy, ox] = window.astype(np.float64).sum(axis=(2, 3)) / (window.shape[2] * window.shape[3])
    return y


@pytest.mark.parametrize("shape,size,stride", [((2, 32, 32, 32), 3, 2), ((1, 3, 9, 14), 3, 3), ((2, 2, 8, 7), 4, 3)])
def test_convnet_avg_is_count_include_pad_false_with_ceil_mode(backend, shape, size, stride):
    x = np.random.default_rng(5).standard_normal(shape)
    y = F.avg_pool2d(x, size, stride, 0, ceil_mode=True, count_include_pad=False)
    np.testing.assert_allclose(y, convnet_avg_pool(x, size, stride), rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_divisors_at_the_edges_as_torch(backend, under_schedules, dtype):
    # ones: each output is its divisor's share of the window, so a wrong divisor shows exactly
    x = np.ones((1, 2, 7, 6), dtype)
    for kernel, stride, padding, ceil_mode in [(3, 2, 1, True), (3, 2, 1, False), ((4, 3), (3, 2), (2, 1), True),
                                               (2, 3, 1, True), (5, 2, 2, True)]:
        for count_include_pad in (True, False):
            y, _ = check_against_torch(under_schedules, x, kernel, stride, padding, ceil_mode, count_include_pad)
            if not count_include_pad:
                np.testing.assert_array_equal(y, np.ones_like(y))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_and_infinities_as_torch(backend, under_schedules, dtype):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 2, 9, 9)).astype(dtype)
    flat = x.reshape(-1)
    flat[rng.choice(flat.size, 6, replace=False)] = np.nan
    flat[rng.choice(flat.size, 6, replace=False)] = np.inf
    flat[rng.choice(flat.size, 6, replace=False)] = -np.inf  # some windows hold inf and -inf: NaN
    for kernel, stride, padding, ceil_mode in [(3, 2, 0, True), (3, 1, 1, False), (2, 2, 1, True)]:
        for count_include_pad in (True, False):
            g = rng.standard_normal(torch_pool(x, None, kernel, stride, padding, ceil_mode, count_include_pad)[0].shape)
            g = g.astype(dtype)
            g.reshape(-1)[:3] = [np.nan, np.inf, -np.inf]
            check_against_torch(under_schedules, x, kernel, stride, padding, ceil_mode, count_include_pad, g)
    y = F.avg_pool2d(x, 3, 2)
    assert np.isnan(y).any() and np.isinf(y).any()


@pytest.mark.parametrize("count_include_pad", [True, False])
def test_gradient_check_float64(backend, count_include_pad):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 2, 7, 6))
    args = ((3, 2), (2, 1), (1, 1), True, count_include_pad)
    g = rng.standard_normal(F.avg_pool2d(x, *args).shape)
    grad = F.avg_pool2d_backward(g, x, *args)
    numeric = numeric_gradient(lambda v: F.avg_pool2d(v, *args), x, g, eps=1e-4)
    np.testing.assert_allclose(grad, numeric, rtol=1e-7, atol=1e-9)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=pool_cases(max_stride=6), double=st.booleans())
def test_property_random_shapes(backend, under_schedules, case, double):
    shape, kernel, stride, padding, ceil_mode, count_include_pad = case
    dtype = np.float64 if double else np.float32
    x = np.random.default_rng(sum(shape)).standard_normal(shape).astype(dtype)
    check_against_torch(under_schedules, x, kernel, stride, padding, ceil_mode, count_include_pad)


def test_empty_batch(backend):
    x = np.zeros((0, 3, 5, 5), np.float32)
    assert F.avg_pool2d(x, 3, 2).shape == (0, 3, 2, 2)
    assert F.avg_pool2d_backward(np.zeros((0, 3, 2, 2), np.float32), x, 3, 2).shape == x.shape


def test_unbatched_input_as_torch(backend, under_schedules):
    x = np.random.default_rng(3).standard_normal((3, 7, 8))
    g = np.random.default_rng(4).standard_normal((3, 4, 4))
    y, gx = under_schedules(lambda: (F.avg_pool2d(x, 3, 2, 1, False, False),
                                     F.avg_pool2d_backward(g, x, 3, 2, 1, False, False)))
    ref_y, ref_g = torch_pool(x, g, 3, 2, 1, False, False)
    assert tolerances.close(y, ref_y, "avg_pool2d", x.dtype) and tolerances.close(gx, ref_g, "avg_pool2d", x.dtype)
    assert y.shape == ref_y.shape and gx.shape == x.shape


def test_rejects_bad_input(backend):
    x = np.zeros((2, 3, 7, 7), np.float32)
    with pytest.raises(ValueError, match=r"kernel_size must be >= 1, got 0"):
        F.avg_pool2d(x, 0)
    with pytest.raises(ValueError, match=r"kernel_size must be >= 1, got -3"):
        F.avg_pool2d(x, -3)
    with pytest.raises(ValueError, match=r"stride must be >= 1, got 0"):
        F.avg_pool2d(x, 3, 0)
    with pytest.raises(ValueError, match=r"padding must be >= 0, got -1"):
        F.avg_pool2d(x, 3, 2, -1)
    with pytest.raises(ValueError, match=r"padding must be at most half the kernel size \(kernel_size \(3, 3\) "
                                         r"allows at most \(1, 1\)\), got \(2, 2\)"):
        F.avg_pool2d(x, 3, 2, 2)
    with pytest.raises(ValueError, match=r"window \(8, 8\) is larger than the padded input \(7, 7\)"):
        F.avg_pool2d(x, 8)
    with pytest.raises(ValueError, match=r"larger than the padded input \(7, 9\)"):
        F.avg_pool2d(x, (8, 3), 1, (0, 1))
    with pytest.raises(ValueError, match=r"kernel_size must be an int or a pair of ints"):
        F.avg_pool2d(x, (3, 3, 3))
    with pytest.raises(TypeError, match=r"kernel_size must be an int, got 3.0"):
        F.avg_pool2d(x, 3.0)
    with pytest.raises(TypeError, match=r"ceil_mode must be a bool"):
        F.avg_pool2d(x, 3, ceil_mode=1)
    with pytest.raises(TypeError, match=r"count_include_pad must be a bool, got 0"):
        F.avg_pool2d(x, 3, count_include_pad=0)
    with pytest.raises(ValueError, match=r"input must be \(N, C, H, W\) or unbatched \(C, H, W\), got shape \(7, 7\)"):
        F.avg_pool2d(x[0, 0], 3)
    with pytest.raises(TypeError, match="input must be float32 or float64, got int32"):
        F.avg_pool2d(x.astype(np.int32), 3)
    with pytest.raises(TypeError, match="input must be a numpy.ndarray or cupy.ndarray, got list"):
        F.avg_pool2d(x.tolist(), 3)
    with pytest.raises(ValueError, match="non-empty planes"):
        F.avg_pool2d(np.zeros((2, 3, 0, 7), np.float32), 1)
    g = np.zeros((2, 3, 3, 3), np.float32)
    with pytest.raises(ValueError, match=r"grad_output must have the shape of the pooled output \(2, 3, 3, 3\), "
                                         r"got \(2, 3, 2, 2\)"):
        F.avg_pool2d_backward(np.zeros((2, 3, 2, 2), np.float32), x, 3, 2)
    with pytest.raises(TypeError, match=r"grad_output must have the same dtype as the other arrays \(float32\), "
                                        r"got float64"):
        F.avg_pool2d_backward(g.astype(np.float64), x, 3, 2)
    with pytest.raises(ValueError, match=r"padding must be at most half the kernel size"):
        F.avg_pool2d_backward(g, x, 3, 2, 2)
    F.avg_pool2d_backward(g, x, 3, 2)  # the right shape passes


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape, size, stride, start, outputs", [
    ((2, 3, 8, 8), 3, 2, -2, 0), ((2, 3, 9, 7), 3, 2, -1, 0), ((1, 2, 13, 13), 3, 2, 0, 5),
    ((1, 2, 10, 10), 4, 3, -3, 0), ((2, 3, 9, 8), 3, 2, 1, 0), ((1, 2, 11, 11), 2, 3, 2, 2)])
def test_convnet_pool_geometry_matches_torch(backend, under_schedules, dtype, shape, size, stride, start, outputs):
    """cuda-convnet's pool=avg layer (F.convnet_avg_pool2d): the mean of each window's pixels inside
    the image, windows from a negative start, or from a positive one (pixels before it never pooled)."""
    x = np.random.default_rng(6).standard_normal(shape).astype(dtype)
    pool = lambda t: torch_reference.convnet_pool2d(t, "avg", size, stride, start, outputs)  # noqa: E731
    ref_y, _ = torch_reference.forward_backward(pool, [x])
    g = np.random.default_rng(7).standard_normal(ref_y.shape).astype(dtype)
    _, (ref_g,) = torch_reference.forward_backward(pool, [x], g)
    y, gx = under_schedules(lambda: (F.convnet_avg_pool2d(x, size, stride, start, outputs),
                                     F.convnet_avg_pool2d_backward(g, x, size, stride, start, outputs)))
    assert tolerances.close(y, ref_y, "avg_pool2d", dtype), tolerances.max_errors(y, ref_y)
    assert tolerances.close(gx, ref_g, "avg_pool2d", dtype), tolerances.max_errors(gx, ref_g)
