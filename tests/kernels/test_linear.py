"""Fully connected layer (kernels/gemm.cu, kernels/bias_grad.cu) on both CPU paths against
torch.nn.functional.linear and its autograd gradients: AlexNet's fc layers, every tile and
transposition of the GEMM, random shapes, non-finite values, a float64 central-difference check and
bad input."""

import contextlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import layer_checks
from backend_choice import cpu_backends_under_test
from central_differences import directional_derivative, numeric_gradient

from alexnet_raw.runtime import backends
from alexnet_raw import functional as F
from alexnet_raw.checks import torch_reference
from alexnet_raw.ops import gemm_tiles
from alexnet_raw.ops import linear as linear_ops


def torch_linear(x, w, b, g):
    """torch's output and the gradients of x, w and b (None without a bias) for upstream g."""
    return torch_reference.forward_backward(torch_reference.linear, [x, w, b], g)


def assert_close(ours, ref, what):
    layer_checks.assert_close(ours, ref, "linear", what)


def check_against_torch(under_schedules, x, w, b):
    g = np.random.default_rng(x.size + w.size).standard_normal((x.shape[0], w.shape[0])).astype(x.dtype)
    ref_y, ref_grads = torch_linear(x, w, b, g)
    ours = under_schedules(lambda: (F.linear(x, w, b), F.linear_backward(g, x, w, bias=b is not None)))
    layer_checks.assert_layer_matches("linear", x, ours, (ref_y, ref_grads))


# (batch, in_features, out_features): every fc layer of run #145 (one tower) and of torchvision's AlexNet
ALEXNET_FCS = [
    (2, 4608, 2048),  # #145 fc6: each of its two inputs (pool3 of one tower, 128*6*6)
    (2, 2048, 2048),  # #145 fc7: each of its two inputs
    (2, 2048, 1000),  # #145 fc8: each of its two inputs
    (2, 9216, 4096),  # torchvision classifier[1]
    (2, 4096, 4096),  # torchvision classifier[4]
    (2, 4096, 1000),  # torchvision classifier[6]
]


@pytest.mark.fullsize
@pytest.mark.parametrize("batch,in_features,out_features", ALEXNET_FCS)
def test_alexnet_fcs_match_torch(backend_dtype, under_schedules, batch, in_features, out_features):
    dtype = backend_dtype[1]
    rng = np.random.default_rng(1)
    x = rng.standard_normal((batch, in_features)).astype(dtype)
    w = (rng.standard_normal((out_features, in_features)) * 0.01).astype(dtype)
    b = rng.standard_normal(out_features).astype(dtype)
    check_against_torch(under_schedules, x, w, b)


# (batch, in, out) reaching each tile for each of the three products (forward, backward to the input,
# backward to the weights, whose transpositions differ)
# (batch, in, out): ragged everything; K = 16 (one whole slice, no ragged one: version 3's pipeline
# without its tail); every leading dimension a multiple of 4 with ragged edges (version 4's 16-byte
# loop in the whole tiles, its scalar loop in the edge blocks, in one product)
TILE_CASES = [(3, 3, 3), (3, 3, 100), (3, 100, 3), (100, 3, 3), (70, 33, 130), (129, 65, 66), (16, 16, 16),
              (132, 136, 260)] + [
    # K of 2100 in one product each (forward, backward to the input, backward to the weights): split
    # along K into two ranges and summed by kernels/split_sum.cu
    (5, 2100, 70), (5, 70, 2100), (2100, 5, 7)]


def test_the_issue_model_picks_each_products_tile():
    # small products take 64 x 64 (one wave: the smallest blocks finish first); AlexNet's fc6 at batch
    # 128: the forward product (M = 128) takes 128 x 128 in its newest version (4: 16-byte loads)
    # with K split into ranges that fill the SMs, the backward-to-weights product
    # (4096 x 9216, K = 128) has thousands of blocks unsplit; a thin product over many waves takes a
    # thin tile; float64 gets version 1's tiles
    def tile(m, n, k=9216, dtype=np.float32, trans_a=False, trans_b=True):
        return linear_ops.model_tile(m, n, k, dtype, trans_a, trans_b)

    assert tile(3, 100) == tile(100, 3) == (64, 64, 1)
    assert tile(128, 4096) == (128, 128, 4)
    # the backward to fc6's input (M = 128, N = 9216, K = 4096): whatever the plan takes is the
    # fastest of every candidate and split count
    m, n, k = 128, 9216, 4096
    chosen, ranges, _ = linear_ops.model_plan(m, n, k, np.float32, False, False)
    table = gemm_tiles.GEMM_ISSUE_PER_FMA
    best = gemm_tiles.planned_seconds(m, n, k, chosen, 1, table, ranges)
    assert all(best <= gemm_tiles.planned_seconds(m, n, k, t, 1, table, s)
               for t in linear_ops.candidate_tiles(np.float32, (k, n), (False, False)) for s in range(1, 5))
    assert tile(4096, 9216, 128, trans_a=True, trans_b=False) == (128, 128, 4)
    assert tile(4096, 9216, dtype=np.float64) == (64, 64, 1)
    assert tile(8, 200000) == (16, 256, 1) and tile(200000, 8) == (256, 16, 1)
    # a leading dimension that is not a multiple of 4 (here K of the forward): version 4 would run
    # its scalar loop, so the model takes version 3 at 128 x 128, and version 2 where 3 is absent
    assert tile(4096, 9216, 9215) == (128, 128, 3)
    assert linear_ops.candidate_tiles(np.float32, (9215, 4096)) == linear_ops.TILES + (
        (128, 128, 3), (128, 64, 2), (64, 128, 2))
    w = np.zeros((4096, 9216), np.float32)
    (launch,) = linear_ops.gemm_launches(w, np.zeros((128, 4096), np.float32), np.zeros((128, 9216), np.float32),
                                         None, True, False, lambda shape: np.empty(shape, np.float32))
    assert launch.kernel == "gemm<float, 128, 128, true, false, 4>"  # the op launches the model's choice


def test_a_long_k_with_few_blocks_is_split_and_summed_in_order():
    # fc6's forward at batch 128: 32 blocks of 128 x 128 over K = 9216 are cut into ranges (the
    # model's plan, counting the sum's DRAM traffic), whose partial sums kernels/split_sum.cu adds
    tile, ranges, per = linear_ops.model_plan(128, 4096, 9216, np.float32)
    assert tile == (128, 128, 4) and ranges > 1 and per % gemm_tiles.K_SLICE == 0 and (ranges - 1) * per < 9216
    assert gemm_tiles.planned_seconds(128, 4096, 9216, tile, 1, gemm_tiles.GEMM_ISSUE_PER_FMA, ranges) < \
        gemm_tiles.planned_seconds(128, 4096, 9216, tile, 1, gemm_tiles.GEMM_ISSUE_PER_FMA, 1)
    for batch, features_in, features_out in TILE_CASES[-3:]:  # each product of a case splits once
        x = np.zeros((batch, features_in), np.float32)
        w = np.zeros((features_out, features_in), np.float32)
        kinds = []
        for c, a, b, ta, tb in ((np.zeros((batch, features_out), np.float32), x, w, False, True),
                                (np.zeros((batch, features_in), np.float32), np.zeros((batch, features_out), np.float32),
                                 w, False, False),
                                (np.zeros((features_out, features_in), np.float32),
                                 np.zeros((batch, features_out), np.float32), x, True, False)):
            launches = linear_ops.gemm_launches(c, a, b, None, ta, tb, lambda shape: np.empty(shape, np.float32))
            kinds.append([launch.kernel.split("<")[0] for launch in launches])
        assert sorted(kinds).count(["gemm", "split_sum"]) == 1, kinds


def _misaligned(a):
    """A C-contiguous copy of `a` whose data starts 4 bytes past a 16-byte boundary."""
    buf = np.empty(a.size + 4, a.dtype)
    start = next(i for i in range(4) if buf[i:].ctypes.data % 16 == 4)
    out = buf[start:start + a.size].reshape(a.shape)
    out[...] = a
    assert out.flags.c_contiguous and out.ctypes.data % 16 == 4
    return out


@pytest.mark.parametrize("cpu_backend", cpu_backends_under_test())
@pytest.mark.parametrize("kernel", [(128, 128, 4), (128, 64, 4), (64, 128, 4)])
def test_version_4_takes_its_scalar_loop_for_a_misaligned_operand(under_schedules, cpu_backend, kernel):
    # leading dimensions that allow 16-byte loads, but operands 4 bytes off a 16-byte boundary: every
    # block takes the scalar loop, with the same results (the CPU backends, which launch on the
    # caller's arrays where they are; the GPU paths copy arguments to fresh, aligned device memory)
    old = backends.current_backends()[0]
    backends.set_backend(cpu_backend)
    try:
        _check_misaligned(under_schedules, kernel)
    finally:
        backends.set_backend(old)


def _check_misaligned(under_schedules, kernel):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((132, 136)).astype(np.float32)
    w = rng.standard_normal((260, 136)).astype(np.float32)
    b = rng.standard_normal(260).astype(np.float32)
    with gemm_tiles.forced(kernel):
        check_against_torch(under_schedules, _misaligned(x), _misaligned(w), b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batch,in_features,out_features", TILE_CASES)
def test_every_tile_matches_torch(backend, under_schedules, dtype, batch, in_features, out_features):
    # every tile gemm.cu has for the dtype, forced, in the three products (forward, backward to the
    # input, backward to the weights, whose transpositions differ)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((batch, in_features)).astype(dtype)
    w = rng.standard_normal((out_features, in_features)).astype(dtype)
    b = rng.standard_normal(out_features).astype(dtype)
    for tile in linear_ops.instantiated_tiles(dtype):
        with gemm_tiles.forced(tile):
            check_against_torch(under_schedules, x, w, b)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.integers(1, 70), in_features=st.integers(1, 90), out_features=st.integers(1, 90),
       double=st.booleans(), with_bias=st.booleans())
def test_property_random_shapes(backend, under_schedules, batch, in_features, out_features, double, with_bias):
    dtype = np.float64 if double else np.float32
    rng = np.random.default_rng(batch * 10000 + in_features * 100 + out_features)
    x = rng.standard_normal((batch, in_features)).astype(dtype)
    w = rng.standard_normal((out_features, in_features)).astype(dtype)
    b = rng.standard_normal(out_features).astype(dtype) if with_bias else None
    check_against_torch(under_schedules, x, w, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_and_infinities_as_torch(backend, dtype):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 19)).astype(dtype)
    x[0, 3], x[2, 7], x[4, 0] = np.nan, np.inf, -np.inf
    w = rng.standard_normal((11, 19)).astype(dtype)
    g = rng.standard_normal((5, 11)).astype(dtype)
    ref_y, ref_grads = torch_linear(x, w, None, g)
    y = F.linear(x, w)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref_y))
    assert np.isnan(y).any() and np.isinf(y).any()
    assert_close(y, ref_y, "output")
    assert_close(F.linear_backward(g, x, w)[1], ref_grads[1], "grad_weight")


@pytest.mark.parametrize("tile", [None] + [t for t in linear_ops.instantiated_tiles(np.float64) if t.version > 1],
                         ids=lambda t: "automatic" if t is None else str(t))
def test_gradient_check_float64(backend, tile):
    # the automatic choice (version 1 in double) and every later version's double kernel, forced:
    # every entry of a small layer's gradients, and along random directions those of a layer whose
    # even sizes of at least 64 run version 4's 16-byte loads of doubles in every product
    rng = np.random.default_rng(4)
    x, w, b = rng.standard_normal((3, 7)), rng.standard_normal((5, 7)), rng.standard_normal(5)
    g = rng.standard_normal((3, 5))
    with contextlib.nullcontext() if tile is None else gemm_tiles.forced(tile):
        grad_x, grad_w, grad_b = F.linear_backward(g, x, w)
        for ours, fn, at in ((grad_x, lambda v: F.linear(v, w, b), x), (grad_w, lambda v: F.linear(x, v, b), w),
                             (grad_b, lambda v: F.linear(x, w, v), b)):
            np.testing.assert_allclose(ours, numeric_gradient(fn, at, g), rtol=1e-7, atol=1e-8)
        x, w, b = rng.standard_normal((66, 70)), rng.standard_normal((68, 70)), rng.standard_normal(68)
        g = rng.standard_normal((66, 68))
        grad_x, grad_w, grad_b = F.linear_backward(g, x, w)
        for ours, fn, at in ((grad_x, lambda v: F.linear(v, w, b), x), (grad_w, lambda v: F.linear(x, v, b), w),
                             (grad_b, lambda v: F.linear(x, w, v), b)):
            d = rng.standard_normal(at.shape)
            assert directional_derivative(fn, at, d, g) == pytest.approx(float(np.sum(ours * d)), rel=1e-8)


def test_empty_batch(backend):
    x, w = np.zeros((0, 6), np.float32), np.ones((4, 6), np.float32)
    assert F.linear(x, w, np.ones(4, np.float32)).shape == (0, 4)
    grad_x, grad_w, grad_b = F.linear_backward(np.zeros((0, 4), np.float32), x, w)
    assert grad_x.shape == (0, 6)
    np.testing.assert_array_equal(grad_w, np.zeros_like(w))
    np.testing.assert_array_equal(grad_b, np.zeros(4, np.float32))
    assert F.linear_backward(np.zeros((0, 4), np.float32), x, w, bias=False)[2] is None


def test_rejects_bad_input(backend):
    x, w = np.zeros((3, 6), np.float32), np.zeros((4, 6), np.float32)
    with pytest.raises(ValueError, match=r"weight must be \(out_features, in_features\) with in_features = "
                                         r"input.shape\[1\] = 6, got weight shape \(4, 5\)"):
        F.linear(x, np.zeros((4, 5), np.float32))
    with pytest.raises(ValueError, match=r"input must have 2 dimensions, got shape \(3, 6, 1\)"):
        F.linear(x[..., None], w)
    with pytest.raises(TypeError, match="input must be float32 or float64, got float16"):
        F.linear(x.astype(np.float16), w)
    with pytest.raises(TypeError, match=r"weight must have the same dtype as the other arrays \(float32\)"):
        F.linear(x, w.astype(np.float64))
    with pytest.raises(ValueError, match=r"bias must have the shape of the output features \(out,\) \(4,\), got \(6,\)"):
        F.linear(x, w, np.zeros(6, np.float32))
    with pytest.raises(ValueError, match=r"grad_output must have the shape of the output \(N, out\) \(3, 4\), got \(3, 6\)"):
        F.linear_backward(np.zeros((3, 6), np.float32), x, w)
    with pytest.raises(TypeError, match="bias must be a bool"):
        F.linear_backward(np.zeros((3, 4), np.float32), x, w, bias=np.zeros(4, np.float32))
    F.linear_backward(np.zeros((3, 4), np.float32), x, w)  # the right shape passes
