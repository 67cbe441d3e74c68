"""Locally connected layer (kernels/local.cu, kernels/bias_grad.cu) on every path against the torch
reference (alexnet_raw/checks/torch_reference.py `local`: unfold + einsum) and its autograd gradients:
cuda-convnet's local layers, random shapes (batch 1, odd and non-square sizes, strides, padding,
groups, both output-size rules, with and without bias), both tiles forced with several row and column
blocks and two table chunks, a float64 central-difference check, optional gradients, an empty batch,
unbatched input and bad input."""

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import layer_checks
from central_differences import numeric_gradient
from test_conv2d import conv_cases

from alexnet_raw import functional
from alexnet_raw import functional as F
from alexnet_raw.checks import torch_reference
from alexnet_raw.ops import conv2d as conv_ops
from alexnet_raw.ops import gemm_tiles
from alexnet_raw.ops import local as local_ops


def torch_local(x, w, b, g, stride, padding, groups, ceil_mode):
    """torch's output and, for upstream gradient g, its (input, weight, bias) gradients."""
    return torch_reference.forward_backward(
        lambda xt, wt, bt: torch_reference.local(xt, wt, bt, stride, padding, groups, ceil_mode), (x, w, b), g)


def assert_close(ours, ref, what):
    layer_checks.assert_close(ours, ref, "local", what)


def weight_shape(x_shape, filters, kernel, stride, padding, groups, ceil_mode):
    """(OH, OW, F, C/groups, KH, KW) for the layer (conv2d's output-size rule)."""
    (kh, kw), (sh, sw), (ph, pw) = (v if isinstance(v, tuple) else (v, v) for v in (kernel, stride, padding))
    oh = conv_ops.output_size(x_shape[2], kh, sh, ph, ceil_mode)
    ow = conv_ops.output_size(x_shape[3], kw, sw, pw, ceil_mode)
    return oh, ow, filters, x_shape[1] // groups, kh, kw


def make_layer(rng, dtype, x_shape, filters, kernel, stride=1, padding=0, groups=1, ceil_mode=True, bias=True):
    ws = weight_shape(x_shape, filters, kernel, stride, padding, groups, ceil_mode)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = (rng.standard_normal(ws) * 0.1).astype(dtype)
    b = rng.standard_normal((filters, ws[0], ws[1])).astype(dtype) if bias else None
    return x, w, b


def check_against_torch(under_schedules, x, w, b, stride=1, padding=0, groups=1, ceil_mode=True):
    ref_y, _ = torch_local(x, w, b, None, stride, padding, groups, ceil_mode)
    g = np.random.default_rng(x.size + w.size).standard_normal(ref_y.shape).astype(x.dtype)
    _, ref_grads = torch_local(x, w, b, g, stride, padding, groups, ceil_mode)
    ours = under_schedules(lambda: (F.local(x, w, b, stride, padding, groups, ceil_mode),
                                    F.local_backward(g, x, w, stride, padding, groups, ceil_mode, bias=b is not None)))
    layer_checks.assert_layer_matches("local", x, ours, (ref_y, ref_grads))


# (input shape at batch 2, filters, filterSize, stride, padding, groups): cuda-convnet's local layers
# on 32 x 32 CIFAR images (pool2 gives 8 x 8; the 24 x 24 crops the conv-local files train on give 6 x 6)
CONVNET_LOCALS = [
    ((2, 64, 8, 8), 64, 3, 1, 1, 1),   # cuda-convnet2 layers-cifar10-11pct.cfg local3
    ((2, 32, 8, 8), 32, 3, 1, 1, 1),   # cuda-convnet layers-conv-local-13pct.cfg local4
    ((2, 16, 8, 8), 32, 5, 3, 2, 2),   # cuda-convnet layers.gc.cfg local32 (avgpool's 8 x 8 output; groups
                                       # as contiguous channel ranges, not randSparse's random subsets)
    ((2, 64, 6, 6), 32, 3, 1, 1, 1),   # cuda-convnet2 layers-cifar10-11pct.cfg local4 on a 24 x 24 crop
]


@pytest.mark.parametrize("shape,filters,kernel,stride,padding,groups", CONVNET_LOCALS)
def test_cuda_convnet_local_layers_match_torch(backend_dtype, under_schedules, shape, filters, kernel, stride,
                                               padding, groups):
    x, w, b = make_layer(np.random.default_rng(1), backend_dtype[1], shape, filters, kernel, stride, padding, groups)
    check_against_torch(under_schedules, x, w, b, stride, padding, groups, True)


def test_output_sizes_are_cuda_convnets_modules_rule():
    # modulesX = 1 + ceil((2*padding + imgSize - filterSize) / stride) (cuda-convnet's layer.py)
    assert weight_shape((1, 16, 8, 8), 32, 5, 3, 2, 2, True)[:2] == (4, 4)  # layers.gc.cfg local32
    assert weight_shape((1, 16, 8, 8), 32, 5, 3, 2, 2, False)[:2] == (3, 3)  # the floor rule
    assert weight_shape((1, 64, 8, 8), 64, 3, 1, 1, 1, True)[:2] == (8, 8)


# (input shape, filters, kernel, stride, padding, groups): several row blocks of both tiles (Fg = 70,
# Cg = 30), several column blocks of the weight gradient (N = 270) and K past one table chunk (270 in
# the forward, 630 in the backward to the input); a batch of 65 (two column blocks of the 64-wide tile)
# with two groups and a stride; a batch of 300 (the weight gradient's K over two table chunks, five
# column blocks)
FORCED_CASES = [((2, 30, 5, 5), 70, 3, 1, 1, 1), ((65, 4, 5, 4), 36, 3, 2, 1, 2), ((300, 2, 3, 3), 3, 2, 1, 0, 1)]
FORCED = [(dtype, tile, case) for dtype in (np.float32, np.float64) for tile in local_ops.TILES
          for case in (FORCED_CASES if dtype == np.float32 else FORCED_CASES[:1])]


@pytest.mark.parametrize("dtype,tile,case", FORCED,
                         ids=[f"{np.dtype(d).name}-{t}-{FORCED_CASES.index(c)}" for d, t, c in FORCED])
def test_every_tile_forced_matches_torch(backend, under_schedules, dtype, tile, case):
    shape, filters, kernel, stride, padding, groups = case
    x, w, b = make_layer(np.random.default_rng(3), dtype, shape, filters, kernel, stride, padding, groups)
    with gemm_tiles.forced(tile):
        g = local_ops.geometry(x, w, stride, padding, groups, True)[1]
        name = "double" if dtype == np.float64 else "float"
        assert local_ops.forward_launch(x, x, w, b, g).kernel == f"local_forward<{name}, {tile[0]}, {tile[1]}, 1>"
        check_against_torch(under_schedules, x, w, b, stride, padding, groups, True)


def test_the_grid_and_the_model_choice():
    # one product per output position (input pixel) and group, column blocks along x
    x = np.empty((128, 64, 8, 8), np.float32)
    w = np.empty(weight_shape(x.shape, 64, 3, 1, 1, 1, True), np.float32)
    g = local_ops.geometry(x, w, 1, 1, 1, True)[1]
    forward = local_ops.forward_launch(x, x, w, None, g)
    tile = gemm_tiles.choose_by_model(64, 128, local_ops.TILES, 64)
    assert forward.kernel == f"local_forward<float, {tile.rows}, {tile.columns}, 1>"
    assert forward.grid == (64 * -(-128 // tile.columns), -(-64 // tile.rows), 1)
    assert local_ops.backward_input_launch(x, x, w, g).grid[0] % 64 == 0
    assert local_ops.backward_weight_launch(w, x, x, g).grid[2] == 1
    with gemm_tiles.forced((128, 128, 3)), pytest.raises(ValueError, match=r"local's forward in float32 has no "
                                                                           r"128 x 128 v3 tile kernel"):
        local_ops.forward_launch(x, x, w, None, g)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=conv_cases(), double=st.booleans(), with_bias=st.booleans())
def test_property_random_shapes(backend, under_schedules, case, double, with_bias):
    # conv2d's random layers (its tests' strategy): a filter bank of that shape per output position
    x_shape, (filters, _, *kernel), stride, padding, groups, ceil_mode = case
    kernel = tuple(kernel)
    dtype = np.float64 if double else np.float32
    rng = np.random.default_rng(sum(x_shape) + filters)
    x, w, b = make_layer(rng, dtype, x_shape, filters, kernel, stride, padding, groups, ceil_mode, with_bias)
    check_against_torch(under_schedules, x, w, b, stride, padding, groups, ceil_mode)


def test_gradient_check_float64(backend):
    rng = np.random.default_rng(4)
    args = ((2, 1), (1, 0), 2, True)
    x, w, b = make_layer(rng, np.float64, (2, 4, 5, 4), 2, (3, 2), *args)
    g = rng.standard_normal(F.local(x, w, b, *args).shape)
    grad_x, grad_w, grad_b = F.local_backward(g, x, w, *args)
    for ours, fn, at in ((grad_x, lambda v: F.local(v, w, b, *args), x),
                         (grad_w, lambda v: F.local(x, v, b, *args), w), (grad_b, lambda v: F.local(x, w, v, *args), b)):
        np.testing.assert_allclose(ours, numeric_gradient(fn, at, g), rtol=1e-7, atol=1e-8)


def test_pixels_no_window_covers_get_zero_gradient(backend):
    # 1 x 1 windows at stride 3: two of every three rows and columns are read by no output position
    x, w, _ = make_layer(np.random.default_rng(7), np.float64, (2, 3, 7, 8), 4, 1, 3, 0, 1, False)
    grad_x = F.local_backward(np.ones((2, 4, 3, 3)), x, w, 3, 0, 1, False, bias=False)[0]
    read = np.zeros((7, 8), bool)
    read[::3, ::3] = True
    assert (grad_x[:, :, ~read] == 0).all() and (grad_x[:, :, read] != 0).all()


def test_optional_gradients(backend):
    x, w, _ = make_layer(np.random.default_rng(5), np.float64, (2, 3, 6, 6), 4, 3, 1, 0, 1)
    g = np.random.default_rng(6).standard_normal((2, 4, 4, 4))
    full = F.local_backward(g, x, w)
    grad_x, grad_w, grad_b = F.local_backward(g, x, w, bias=False, input_grad=False)
    assert grad_x is None and grad_b is None
    np.testing.assert_array_equal(grad_w, full[1])
    np.testing.assert_array_equal(full[2], F.local_backward(g, x, w, input_grad=False)[2])
    assert full[2].shape == (4, 4, 4)


def test_empty_batch(backend):
    x, w = np.zeros((0, 3, 9, 9), np.float32), np.ones(weight_shape((0, 3, 9, 9), 4, 3, 2, 0, 1, True), np.float32)
    assert F.local(x, w, np.ones((4, 4, 4), np.float32), 2).shape == (0, 4, 4, 4)
    grad_x, grad_w, grad_b = F.local_backward(np.zeros((0, 4, 4, 4), np.float32), x, w, 2)
    assert grad_x.shape == x.shape
    np.testing.assert_array_equal(grad_w, np.zeros_like(w))
    np.testing.assert_array_equal(grad_b, np.zeros((4, 4, 4), np.float32))


def test_unbatched_input(backend, under_schedules):
    x, w, b = make_layer(np.random.default_rng(8), np.float64, (1, 4, 6, 5), 6, 3, 2, 1, 2)
    g = np.random.default_rng(9).standard_normal((6,) + w.shape[:2])
    y, grads = under_schedules(lambda: (F.local(x[0], w, b, 2, 1, 2), F.local_backward(g, x[0], w, 2, 1, 2)))
    y1, grads1 = F.local(x, w, b, 2, 1, 2), F.local_backward(g[None], x, w, 2, 1, 2)
    np.testing.assert_array_equal(y, y1[0])
    np.testing.assert_array_equal(grads[0], grads1[0][0])
    for ours, batched in zip(grads[1:], grads1[1:]):
        np.testing.assert_array_equal(ours, batched)
    assert F.local_backward(g, x[0], w, 2, 1, 2, input_grad=False)[0] is None


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_and_infinities_as_torch(backend, dtype):
    x, w, b = make_layer(np.random.default_rng(3), dtype, (2, 4, 9, 8), 6, 3, 2, 1, 2)
    x[0, 1, 2, 3], x[1, 0, 7, 7], x[1, 3, 0, 0] = np.nan, np.inf, -np.inf
    ref_y, _ = torch_local(x, w, b, None, 2, 1, 2, True)
    y = F.local(x, w, b, 2, 1, 2, True)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref_y))
    assert np.isnan(y).any() and np.isinf(y).any()
    assert_close(y, ref_y, "output")


def test_sizes_past_int32_are_refused_before_launch():
    # checked before anything is copied or launched: zero-stride views of any size cost no memory
    def view(*shape):
        return np.broadcast_to(np.zeros(1, np.float32), shape)

    with pytest.raises(ValueError, match=r"H\*W must be at most 2147483647, got 2147549184"):
        functional.local(view(1, 1, 65536, 32769), view(65536, 32769, 1, 1, 1, 1))
    with pytest.raises(ValueError, match=r"F\*OH\*OW must be at most 2147483647, got 2415919104"):
        functional.local(view(1, 1, 3, 3), view(3, 3, 2**28, 1, 1, 1))
    # the grid's x: one product per input pixel times the column blocks of the batch
    g = conv_ops.ConvGeometry(2**20, 1, 2**15, 2**15, 1, 2**15, 2**15, 1, 1, 1, 1, 0, 0, 1)
    with pytest.raises(ValueError, match=r"local's backward to the input: 1073741824 products of \d+ column blocks "
                                         r"exceed the grid's 2147483647 blocks"):
        local_ops.backward_input_launch(None, np.empty(1, np.float32), None, g)


def test_rejects_bad_input(backend):
    x = np.zeros((2, 6, 9, 9), np.float32)
    w = np.zeros(weight_shape(x.shape, 4, 3, 1, 0, 1, True), np.float32)  # (7, 7, 4, 6, 3, 3)
    with pytest.raises(ValueError, match=r"groups \(4\) must divide the input channels, got 6 channels"):
        F.local(x, np.zeros((7, 7, 4, 1, 3, 3), np.float32), groups=4)
    with pytest.raises(ValueError, match=r"groups \(3\) must divide the filters, got 4 filters"):
        F.local(x, np.zeros((7, 7, 4, 2, 3, 3), np.float32), groups=3)
    with pytest.raises(ValueError, match=r"weight must have input channels / groups = 6 / 2 = 3 channels in "
                                         r"dimension 3 \(OH, OW, F, C/groups, KH, KW\)"):
        F.local(x, w, groups=2)
    with pytest.raises(ValueError, match=r"weight must have the output size \(4, 4\) in dimensions 0 and 1 \(one "
                                         r"filter bank per output position: input \(9, 9\), kernel \(3, 3\), stride "
                                         r"\(2, 2\), padding \(0, 0\), ceil_mode=True, cuda-convnet's rule\), got "
                                         r"weight shape \(7, 7, 4, 6, 3, 3\)"):
        F.local(x, w, stride=2)
    with pytest.raises(ValueError, match=r"weight must have the output size \(3, 3\) .*ceil_mode=False, PyTorch's "
                                         r"rule\), got weight shape \(4, 4, 4, 6, 3, 3\)"):
        F.local(x, np.zeros((4, 4, 4, 6, 3, 3), np.float32), stride=3, ceil_mode=False)
    with pytest.raises(ValueError, match=r"groups must be >= 1, got 0"):
        F.local(x, w, groups=0)
    with pytest.raises(ValueError, match=r"kernel \(10, 3\) is larger than the padded input \(9, 9\)"):
        F.local(x, np.zeros((1, 7, 4, 6, 10, 3), np.float32))
    with pytest.raises(ValueError, match=r"weight must have a non-empty kernel"):
        F.local(x, np.zeros((9, 9, 4, 6, 0, 1), np.float32))
    with pytest.raises(ValueError, match=r"stride must be >= 1, got 0"):
        F.local(x, w, stride=0)
    with pytest.raises(ValueError, match=r"padding must be >= 0, got -1"):
        F.local(x, w, padding=(1, -1))
    with pytest.raises(TypeError, match=r"padding must be an int, got 'same'"):
        F.local(x, w, padding="same")
    with pytest.raises(TypeError, match=r"stride must be an int, got 1.5"):
        F.local(x, w, stride=1.5)
    with pytest.raises(TypeError, match=r"ceil_mode must be a bool"):
        F.local(x, w, ceil_mode=1)
    with pytest.raises(ValueError, match=r"input must be \(N, C, H, W\) or unbatched \(C, H, W\), got shape \(9, 9\)"):
        F.local(x[0, 0], w)
    with pytest.raises(ValueError, match=r"weight must have 6 dimensions, got shape \(4, 6, 3, 3\)"):
        F.local(x, w[0, 0])
    with pytest.raises(TypeError, match="input must be float32 or float64, got int64"):
        F.local(x.astype(np.int64), w)
    with pytest.raises(TypeError, match=r"weight must have the same dtype as the other arrays \(float32\), got float64"):
        F.local(x, w.astype(np.float64))
    with pytest.raises(TypeError, match="weight must be a numpy.ndarray or cupy.ndarray, got list"):
        F.local(x, w.tolist())
    with pytest.raises(ValueError, match=r"bias must have the shape of the filters and positions \(F, OH, OW\) "
                                         r"\(4, 7, 7\), got \(4, 1, 1\)"):
        F.local(x, w, np.zeros((4, 1, 1), np.float32))
    with pytest.raises(ValueError, match=r"bias must have 3 dimensions, got shape \(4,\)"):
        F.local(x, w, np.zeros(4, np.float32))  # conv2d's (F,) bias: one per position here
    with pytest.raises(ValueError, match=r"grad_output must have the shape of the layer's output "
                                         r"\(2, 4, 7, 7\), got \(2, 4, 9, 9\)"):
        F.local_backward(np.zeros((2, 4, 9, 9), np.float32), x, w)
    with pytest.raises(ValueError, match=r"grad_output must be unbatched \(C, OH, OW\) like the input, got \(1, 4, 7, 7\)"):
        F.local_backward(np.zeros((1, 4, 7, 7), np.float32), x[0], w)
    with pytest.raises(TypeError, match=r"input_grad must be a bool"):
        F.local_backward(np.zeros((2, 4, 7, 7), np.float32), x, w, input_grad=None)
    with pytest.raises(TypeError, match=r"bias must be a bool"):
        F.local_backward(np.zeros((2, 4, 7, 7), np.float32), x, w, bias=np.zeros((4, 7, 7), np.float32))
    F.local_backward(np.zeros((2, 4, 7, 7), np.float32), x, w)  # the right shapes pass
