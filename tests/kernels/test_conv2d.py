"""Convolution (kernels/conv2d.cu, kernels/bias_grad.cu) on both CPU paths against
torch.nn.functional.conv2d and its autograd gradients: AlexNet's conv layers, random shapes (batch
1, odd and non-square sizes, strides, padding, groups, both output-size rules), every tile and the
split-K path, non-finite values, a float64 central-difference check and bad input."""

import contextlib
import os

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import layer_checks
from central_differences import numeric_gradient

from alexnet_raw.runtime import backends
from alexnet_raw import functional
from alexnet_raw import functional as F
from alexnet_raw.checks import torch_reference
from alexnet_raw.ops import conv2d as conv_ops
from alexnet_raw.ops import gemm_tiles


def torch_conv(x, w, b, g, stride, padding, groups, ceil_mode):
    """torch's output and, for upstream gradient g, its (input, weight, bias) gradients (the one
    reference, with cuda-convnet's ceil rule: alexnet_raw/checks/torch_reference.py)."""
    return torch_reference.forward_backward(
        lambda xt, wt, bt: torch_reference.conv2d(xt, wt, bt, stride, padding, groups, ceil_mode), (x, w, b), g)


def assert_close(ours, ref, what):
    layer_checks.assert_close(ours, ref, "conv2d", what)


def check_against_torch(under_schedules, x, w, b, stride=1, padding=0, groups=1, ceil_mode=False):
    ref_y, _ = torch_conv(x, w, b, None, stride, padding, groups, ceil_mode)
    g = np.random.default_rng(x.size + w.size).standard_normal(ref_y.shape).astype(x.dtype)
    _, ref_grads = torch_conv(x, w, b, g, stride, padding, groups, ceil_mode)
    ours = under_schedules(lambda: (F.conv2d(x, w, b, stride, padding, groups, ceil_mode),
                                    F.conv2d_backward(g, x, w, stride, padding, groups, ceil_mode, bias=b is not None)))
    layer_checks.assert_layer_matches("conv2d", x, ours, (ref_y, ref_grads))


# (input shape at batch 2, filters, kernel, stride, padding, groups, ceil_mode): every conv layer of
# run #145 (one tower; cuda-convnet's ceil rule) and of torchvision's AlexNet (floor rule)
ALEXNET_CONVS = [
    ((2, 3, 224, 224), 48, 11, 4, 0, 1, True),   # #145 conv1: the ceil rule gives 55 (floor: 54)
    ((2, 48, 27, 27), 128, 5, 1, 2, 1, True),    # #145 conv2
    ((2, 128, 13, 13), 192, 3, 1, 1, 1, True),   # #145 conv3: each of its two inputs (one per tower)
    ((2, 192, 13, 13), 192, 3, 1, 1, 1, True),   # #145 conv4
    ((2, 192, 13, 13), 128, 3, 1, 1, 1, True),   # #145 conv5
    ((2, 3, 224, 224), 64, 11, 4, 2, 1, False),  # torchvision features[0]
    ((2, 64, 27, 27), 192, 5, 1, 2, 1, False),   # torchvision features[3]
    ((2, 192, 13, 13), 384, 3, 1, 1, 1, False),  # torchvision features[6]
    ((2, 384, 13, 13), 256, 3, 1, 1, 1, False),  # torchvision features[8]
    ((2, 256, 13, 13), 256, 3, 1, 1, 1, False),  # torchvision features[10]
    ((2, 96, 27, 27), 256, 5, 1, 2, 2, False),   # the paper's conv2 on one device, as two groups
]


@pytest.mark.fullsize
@pytest.mark.parametrize("shape,filters,kernel,stride,padding,groups,ceil_mode", ALEXNET_CONVS)
def test_alexnet_convs_match_torch(backend_dtype, under_schedules, shape, filters, kernel, stride, padding,
                                   groups, ceil_mode):
    dtype = backend_dtype[1]
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape).astype(dtype)
    w = (rng.standard_normal((filters, shape[1] // groups, kernel, kernel)) * 0.1).astype(dtype)
    b = rng.standard_normal(filters).astype(dtype)
    check_against_torch(under_schedules, x, w, b, stride, padding, groups, ceil_mode)


def test_alexnet_output_sizes():
    assert conv_ops.output_size(224, 11, 4, 0, True) == 55  # #145 conv1
    assert conv_ops.output_size(224, 11, 4, 0, False) == 54
    assert conv_ops.output_size(224, 11, 4, 2, False) == 55  # torchvision conv1
    assert conv_ops.output_size(224, 11, 4, 2, True) == 56  # the cfg rule on torchvision's layer
    assert conv_ops.output_size(27, 5, 1, 2, True) == 27
    assert conv_ops.output_size(4, 5, 1, 0, False) == 0  # kernel larger than the input


def test_both_tiles_and_the_split_k_path_are_exercised():
    # the shapes above reach every tile conv2d.cu instantiates, and both backward-to-weights paths
    def geometry(shape, filters, kernel, stride, padding, groups, ceil_mode):
        x = np.empty(shape, np.float32)
        w = np.empty((filters, shape[1] // groups, kernel, kernel), np.float32)
        return conv_ops.geometry(x, w, stride, padding, groups, ceil_mode)[1]

    tiles, splits = set(), set()
    for layer in ALEXNET_CONVS:
        g = geometry(*layer)
        tiles.add(conv_ops.model_tile(g.filters_per_group, g.batch * g.out_height * g.out_width, np.float32, g.groups))
        splits.add(conv_ops.weight_plan(g, np.float32)[1] > 1)
    thin = geometry(*FEW_FILTERS_MANY_PIXELS[:6], False)
    tiles.add(conv_ops.model_tile(thin.filters_per_group, thin.batch * thin.out_height * thin.out_width, np.float32))
    assert set(conv_ops.TILES) <= tiles  # every version 1 tile by the model's own choice in shapes that run here
    assert splits == {True, False}


# few filters over many pixels: the model's choice is the 16 x 256 tile (forward and backward to the
# input); (input shape, filters, kernel, stride, padding, groups)
FEW_FILTERS_MANY_PIXELS = ((1, 3, 96, 96), 8, 3, 1, 1, 1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_few_filters_over_many_pixels_take_the_thin_tile(backend, under_schedules, dtype):
    shape, filters, kernel, stride, padding, groups = FEW_FILTERS_MANY_PIXELS
    rng = np.random.default_rng(4)
    x = rng.standard_normal(shape).astype(dtype)
    w = (rng.standard_normal((filters, shape[1] // groups, kernel, kernel)) * 0.1).astype(dtype)
    b = rng.standard_normal(filters).astype(dtype)
    g = conv_ops.geometry(x, w, stride, padding, groups, False)[1]
    name = "double" if dtype == np.float64 else "float"
    assert conv_ops.forward_launch(np.empty(1, dtype), x, w, b, g).kernel == f"conv2d_forward<{name}, 16, 256, 1>"
    assert conv_ops.backward_input_launch(np.empty(1, dtype), np.empty(1, dtype), w, g).kernel == \
        f"conv2d_backward_input<{name}, 16, 256, 1>"
    check_against_torch(under_schedules, x, w, b, stride, padding, groups)


def test_the_issue_model_picks_the_largest_tile_only_where_it_fills_the_gpu():
    # a product of many waves takes 128 x 128 (fewest instructions per FFMA); one that fits in a
    # wave of small blocks keeps them (blocks finish sooner on idle SMs); few rows take 16 x 256;
    # each shape in its newest version (3 in float)
    conv2_batch_128 = (128, 128 * 27 * 27)  # #145 conv2: 128 filters per tower
    assert conv_ops.model_tile(*conv2_batch_128, np.float32) == (128, 128, 3)
    assert conv_ops.model_tile(128, 2 * 27 * 27, np.float32) == (64, 64, 1)
    assert conv_ops.model_tile(16, 128 * 27 * 27, np.float32) == (16, 256, 1)
    assert conv_ops.model_tile(*conv2_batch_128, np.float64) == (64, 64, 1)
    candidates = gemm_tiles.newest(conv_ops.instantiated_tiles(np.float32))
    assert {t.version for t in candidates} == {1, 3}
    for m, n, depth in ((128, 93312, 1), (48, 387200, 1), (130, 400, 2), (7, 9, 3)):
        best = conv_ops.model_tile(m, n, np.float32, depth)
        times = {t: gemm_tiles.predicted_seconds(m, n, 1200, t, depth) for t in candidates}
        assert times[best] == min(times.values()), (m, n, depth, times)
    # the op launches the model's choice, on every path
    x = np.zeros((128, 48, 27, 27), np.float32)
    w = np.zeros((128, 48, 5, 5), np.float32)
    g = conv_ops.geometry(x, w, 1, 2, 1, False)[1]
    assert conv_ops.forward_launch(np.empty(1, np.float32), x, w, None, g).kernel == "conv2d_forward<float, 128, 128, 3>"


# (input shape, filters, kernel, stride, padding, groups): a ragged product (fewer rows and columns
# than one 128 tile), one of several tiles each way with two groups and a stride (four phases of
# the backward to the input, the split-K sum of the backward to the weights), and K = 360 (two
# table chunks of version 3's pipeline, the second ending ragged); K < 16 and K = 16 reach the
# pipeline's other branches in tests/kernels/test_linear.py (the same gemm_tile.cuh loop)
FORCED_CASES = [((2, 5, 9, 7), 20, 3, 1, 1, 1), ((3, 12, 23, 21), 260, 3, 2, 1, 2), ((2, 40, 8, 8), 70, 3, 1, 1, 1)]


# double: the first case (the float64 gradient check runs each double kernel too)
FORCED_TILES = [(dtype, t, case) for dtype in (np.float32, np.float64) for t in conv_ops.instantiated_tiles(dtype)
                if t != gemm_tiles.GENERAL for case in (FORCED_CASES if dtype == np.float32 else FORCED_CASES[:1])]


@pytest.mark.parametrize("dtype,tile,case", FORCED_TILES,
                         ids=[f"{np.dtype(d).name}-{t}-{FORCED_CASES.index(c)}" for d, t, c in FORCED_TILES])
def test_every_tile_forced_matches_torch(backend, under_schedules, dtype, tile, case):
    # every version and the thin tile in every product and both dtypes, the backward to the weights
    # included (the model rarely picks them for it); the general tile runs in the tests above
    shape, filters, kernel, stride, padding, groups = case
    rng = np.random.default_rng(3)
    x = rng.standard_normal(shape).astype(dtype)
    w = (rng.standard_normal((filters, shape[1] // groups, kernel, kernel)) * 0.1).astype(dtype)
    b = rng.standard_normal(filters).astype(dtype)
    with gemm_tiles.forced(tile):
        g = conv_ops.geometry(x, w, stride, padding, groups, False)[1]
        assert conv_ops.forward_launch(np.empty(1, dtype), x, w, b, g).kernel == \
            f"conv2d_forward<{'float' if dtype == np.float32 else 'double'}, {tile[0]}, {tile[1]}, {tile[2]}>"
        check_against_torch(under_schedules, x, w, b, stride, padding, groups)


def test_a_forced_tile_must_be_instantiated():
    x = np.zeros((1, 2, 5, 5), np.float64)
    w = np.zeros((3, 2, 3, 3), np.float64)
    with gemm_tiles.forced((128, 128, 3)), pytest.raises(
            ValueError, match=r"conv2d's forward in float64 has no 128 x 128 v3 tile kernel; it has: 64 x 64 v1, "
                              r"16 x 256 v1, 128 x 128 v2, 64 x 64 v3$"):
        F.conv2d(x, w)
    with gemm_tiles.forced((128, 128, 4)), pytest.raises(ValueError, match=r"float32 has no 128 x 128 v4 tile kernel"):
        F.conv2d(x.astype(np.float32), w.astype(np.float32))  # version 4 is gemm.cu's only
    for bad in ("128x128", (128, 128), (128, 128, 3.0), (128, 128, True)):
        with pytest.raises(TypeError, match="kernel must be a"):
            with gemm_tiles.forced(bad):
                pass


@st.composite
def conv_cases(draw):
    """Shapes, strides and paddings torch accepts; scalar stride and padding when both dimensions agree."""
    groups = draw(st.integers(1, 3))
    c, f = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 4))
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    sh, ph = draw(st.integers(1, 4)), draw(st.integers(0, 3))
    sw = sh if draw(st.booleans()) else draw(st.integers(1, 4))
    pw = ph if draw(st.booleans()) else draw(st.integers(0, 3))
    h = draw(st.integers(max(1, kh - 2 * ph), 13))
    w = draw(st.integers(max(1, kw - 2 * pw), 13))
    n = draw(st.integers(1, 3))
    stride = sh if sh == sw else (sh, sw)
    padding = ph if ph == pw else (ph, pw)
    return (n, c, h, w), (f, c // groups, kh, kw), stride, padding, groups, draw(st.booleans())


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=conv_cases(), double=st.booleans(), with_bias=st.booleans())
def test_property_random_shapes(backend, under_schedules, case, double, with_bias):
    x_shape, w_shape, stride, padding, groups, ceil_mode = case
    dtype = np.float64 if double else np.float32
    rng = np.random.default_rng(sum(x_shape) + sum(w_shape))
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype) if with_bias else None
    check_against_torch(under_schedules, x, w, b, stride, padding, groups, ceil_mode)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_and_infinities_as_torch(backend, dtype):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 4, 9, 8)).astype(dtype)
    x[0, 1, 2, 3], x[1, 0, 7, 7], x[1, 3, 0, 0] = np.nan, np.inf, -np.inf
    w = rng.standard_normal((6, 2, 3, 3)).astype(dtype)
    args = (2, 1, 2, True)
    ref_y, _ = torch_conv(x, w, None, None, *args)
    y = F.conv2d(x, w, None, *args)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref_y))
    assert np.isnan(y).any() and np.isinf(y).any()
    assert_close(y, ref_y, "output")


@pytest.mark.parametrize("tile", [None] + [t for t in conv_ops.instantiated_tiles(np.float64) if t.version > 1],
                         ids=lambda t: "automatic" if t is None else str(t))
def test_gradient_check_float64(backend, tile):
    # the automatic choice (version 1 in double) and every later version's double kernel, forced
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 4, 7, 6))
    w = rng.standard_normal((6, 2, 3, 2))
    b = rng.standard_normal(6)
    args = ((2, 1), (1, 0), 2, True)
    with contextlib.nullcontext() if tile is None else gemm_tiles.forced(tile):
        g = rng.standard_normal(F.conv2d(x, w, b, *args).shape)
        grad_x, grad_w, grad_b = F.conv2d_backward(g, x, w, *args)
        for ours, fn, at in ((grad_x, lambda v: F.conv2d(v, w, b, *args), x),
                             (grad_w, lambda v: F.conv2d(x, v, b, *args), w), (grad_b, lambda v: F.conv2d(x, w, v, *args), b)):
            np.testing.assert_allclose(ours, numeric_gradient(fn, at, g), rtol=1e-7, atol=1e-8)


def test_optional_gradients(backend):
    rng = np.random.default_rng(5)
    x, w = rng.standard_normal((2, 3, 8, 8)), rng.standard_normal((4, 3, 3, 3))
    g = rng.standard_normal((2, 4, 6, 6))
    full = F.conv2d_backward(g, x, w)
    grad_x, grad_w, grad_b = F.conv2d_backward(g, x, w, bias=False, input_grad=False)
    assert grad_x is None and grad_b is None
    np.testing.assert_array_equal(grad_w, full[1])
    np.testing.assert_array_equal(full[2], F.conv2d_backward(g, x, w, input_grad=False)[2])


def test_empty_batch(backend):
    x, w = np.zeros((0, 3, 9, 9), np.float32), np.ones((4, 3, 3, 3), np.float32)
    assert F.conv2d(x, w, np.ones(4, np.float32), 2).shape == (0, 4, 4, 4)
    grad_x, grad_w, grad_b = F.conv2d_backward(np.zeros((0, 4, 4, 4), np.float32), x, w, 2)
    assert grad_x.shape == x.shape
    np.testing.assert_array_equal(grad_w, np.zeros_like(w))
    np.testing.assert_array_equal(grad_b, np.zeros(4, np.float32))


def test_sizes_past_int32_are_refused_before_launch(backend):
    if os.environ.get("ALEXNET_RAW_EMU_SANITIZE") not in (None, "", "0"):
        pytest.skip("an 8.6 GB untouched allocation is refused by the sanitizer's allocator; the check is "
                    "plain Python and runs in the unsanitized run")
    xp = backends.get_backend(backend).array_module  # on a GPU path the array is made there, not copied
    x = xp.empty((1, 1, 65536, 32769), np.float32)  # H*W = 2^31 + 2^16: never touched
    with pytest.raises(ValueError, match=r"H\*W must be at most 2147483647, got 2147549184"):
        functional.conv2d(x, xp.ones((1, 1, 1, 1), np.float32))


def test_unbatched_input_as_torch(backend, under_schedules):
    rng = np.random.default_rng(6)
    x, w, b = rng.standard_normal((4, 9, 8)), rng.standard_normal((6, 2, 3, 3)), rng.standard_normal(6)
    xt, wt, bt = (torch.from_numpy(a).requires_grad_() for a in (x, w, b))
    ref = torch.nn.functional.conv2d(xt, wt, bt, 2, 1, groups=2)
    g = rng.standard_normal(tuple(ref.shape))
    ref.backward(torch.from_numpy(g))
    y, grads = under_schedules(lambda: (F.conv2d(x, w, b, 2, 1, groups=2), F.conv2d_backward(g, x, w, 2, 1, groups=2)))
    for ours, theirs, what in zip((y, *grads), (ref, xt.grad, wt.grad, bt.grad), ("output", "input", "weight", "bias")):
        assert_close(ours, theirs.detach().numpy(), what)
    assert F.conv2d_backward(g, x, w, 2, 1, groups=2, input_grad=False)[0] is None


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")  # torch's own note
@pytest.mark.parametrize("kernel", [(1, 1), (2, 2), (3, 4), (5, 5), (4, 1)])
@pytest.mark.parametrize("padding", ["same", "valid"])
def test_string_padding_as_torch(backend, under_schedules, kernel, padding):
    """padding='same' (even kernels: PyTorch puts the extra zero after) and 'valid'."""
    rng = np.random.default_rng(sum(kernel))
    x, w, b = rng.standard_normal((2, 4, 7, 6)), rng.standard_normal((6, 2, *kernel)), rng.standard_normal(6)
    xt, wt, bt = (torch.from_numpy(a).requires_grad_() for a in (x, w, b))
    ref = torch.nn.functional.conv2d(xt, wt, bt, padding=padding, groups=2)
    g = rng.standard_normal(tuple(ref.shape))
    ref.backward(torch.from_numpy(g))
    y, grads = under_schedules(lambda: (F.conv2d(x, w, b, padding=padding, groups=2),
                                        F.conv2d_backward(g, x, w, padding=padding, groups=2)))
    assert padding == "valid" or y.shape[2:] == x.shape[2:]
    for ours, theirs, what in zip((y, *grads), (ref, xt.grad, wt.grad, bt.grad), ("output", "input", "weight", "bias")):
        assert_close(ours, theirs.detach().numpy(), what)


def test_rejects_bad_input(backend):
    x, w = np.zeros((2, 6, 9, 9), np.float32), np.zeros((4, 6, 3, 3), np.float32)
    with pytest.raises(ValueError, match=r"groups \(4\) must divide the input channels, got 6 channels"):
        F.conv2d(x, np.zeros((4, 1, 3, 3), np.float32), groups=4)
    with pytest.raises(ValueError, match=r"groups \(3\) must divide the filters, got 4 filters"):
        F.conv2d(x, np.zeros((4, 2, 3, 3), np.float32), groups=3)
    with pytest.raises(ValueError, match=r"weight must have input channels / groups = 6 / 2 = 3 channels"):
        F.conv2d(x, w, groups=2)
    with pytest.raises(ValueError, match=r"groups must be >= 1, got 0"):
        F.conv2d(x, w, groups=0)
    with pytest.raises(ValueError, match=r"kernel \(10, 3\) is larger than the padded input \(9, 9\)"):
        F.conv2d(x, np.zeros((4, 6, 10, 3), np.float32))
    with pytest.raises(ValueError, match=r"stride must be >= 1, got 0"):
        F.conv2d(x, w, stride=0)
    with pytest.raises(ValueError, match=r"padding must be >= 0, got -1"):
        F.conv2d(x, w, padding=(1, -1))
    with pytest.raises(TypeError, match=r"stride must be an int, got 1.5"):
        F.conv2d(x, w, stride=1.5)
    with pytest.raises(TypeError, match=r"ceil_mode must be a bool"):
        F.conv2d(x, w, ceil_mode="yes")
    with pytest.raises(ValueError, match=r"padding='same' needs stride 1 \(as PyTorch\), got stride \(2, 1\)"):
        F.conv2d(x, w, stride=(2, 1), padding="same")
    with pytest.raises(ValueError, match=r"padding must be an int, a pair of ints, 'valid' or 'same', got 'full'"):
        F.conv2d(x, w, padding="full")
    with pytest.raises(ValueError, match=r"ceil_mode must be False"):
        F.conv2d(x, w, padding="same", ceil_mode=True)
    with pytest.raises(ValueError, match=r"input must be \(N, C, H, W\) or unbatched \(C, H, W\), got shape \(9, 9\)"):
        F.conv2d(x[0, 0], w)
    with pytest.raises(ValueError, match=r"grad_output must be unbatched \(C, OH, OW\) like the input, got \(1, 4, 7, 7\)"):
        F.conv2d_backward(np.zeros((1, 4, 7, 7), np.float32), x[0], w)
    with pytest.raises(ValueError, match=r"weight must have 4 dimensions"):
        F.conv2d(x, w[0])
    with pytest.raises(TypeError, match="input must be float32 or float64, got int64"):
        F.conv2d(x.astype(np.int64), w)
    with pytest.raises(TypeError, match=r"weight must have the same dtype as the other arrays \(float32\), got float64"):
        F.conv2d(x, w.astype(np.float64))
    with pytest.raises(TypeError, match="weight must be a numpy.ndarray or cupy.ndarray, got list"):
        F.conv2d(x, w.tolist())
    with pytest.raises(ValueError, match=r"bias must have the shape of the filters \(F,\) \(4,\), got \(5,\)"):
        F.conv2d(x, w, np.zeros(5, np.float32))
    with pytest.raises(ValueError, match=r"grad_output must have the shape of the convolution's output "
                                         r"\(2, 4, 7, 7\), got \(2, 4, 9, 9\)"):
        F.conv2d_backward(np.zeros((2, 4, 9, 9), np.float32), x, w)
    with pytest.raises(TypeError, match=r"input_grad must be a bool"):
        F.conv2d_backward(np.zeros((2, 4, 7, 7), np.float32), x, w, input_grad=None)
    F.conv2d_backward(np.zeros((2, 4, 7, 7), np.float32), x, w)  # the right shape passes
