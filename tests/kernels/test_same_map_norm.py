"""Same-map spatial normalisation, cuda-convnet's rnorm (kernels/same_map_norm.cu), on both CPU paths
against a PyTorch expression of its formula and that expression's autograd backward: run #145's
cnorm2 at batch 2, even and oversized windows, random shapes and hyperparameters, specials, a
float64 central-difference check and bad input."""

import numpy as np
import torch
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from central_differences import numeric_gradient

from alexnet_raw import functional as F
from alexnet_raw.checks import tolerances
from alexnet_raw.checks import torch_reference


def torch_forward_backward(x, g, size, alpha, beta, k):
    """torch's output and input gradient for upstream g."""
    y, (gx,) = torch_reference.forward_backward(
        lambda t: torch_reference.same_map_norm(t, size, alpha, beta, k), [x], g)
    return y, gx


def assert_close(ours, reference, dtype, what):
    assert ours.shape == reference.shape and ours.dtype == dtype, what
    assert tolerances.close(ours, reference, "same_map_norm", dtype), (what, tolerances.max_errors(ours, reference))


def check_against_torch(under_schedules, x, size, alpha, beta=0.75, k=1.0, seed=0):
    g = np.random.default_rng(seed).standard_normal(x.shape).astype(x.dtype)
    y, gx = under_schedules(lambda: (F.same_map_norm(x, size, alpha, beta, k),
                                     F.same_map_norm_backward(g, x, size, alpha, beta, k)))
    ref_y, ref_g = torch_forward_backward(x, g, size, alpha, beta, k)
    assert_close(y, ref_y, x.dtype, "output")
    assert_close(gx, ref_g, x.dtype, "gradient")


# run #145's cnorm2 (rnorm size 5, scale 1e-3, pow 0.75, k 1) per tower at batch 2, on inputs of the
# size LRN2 passes on (tens)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_alexnet_cnorm2_matches_torch(backend, under_schedules, dtype):
    x = (20 * np.random.default_rng(1).standard_normal((2, 128, 27, 27))).astype(dtype)
    check_against_torch(under_schedules, x, 5, 1e-3, 0.75, 1.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("size", [1, 2, 3, 4, 6, 9, 16])
def test_window_sizes_even_odd_and_larger_than_the_image(backend, under_schedules, dtype, size):
    # 5 x 7 planes: sizes past the image clip to it (the divisor stays size^2); strong normalisation
    x = np.random.default_rng(size).standard_normal((2, 3, 5, 7)).astype(dtype)
    check_against_torch(under_schedules, x, size, alpha=float(size * size), beta=0.75, k=1.0, seed=size)


def test_even_window_placement_is_size_half_before(backend):
    # size 2: the window of (y, x) is rows {y-1, y}, columns {x-1, x}. One non-zero a = 1 at (1, 1)
    # with alpha 4 (weight 4/2^2 = 1), beta 1, k 1: b(1, 1) = 1 / (1 + 1) = 0.5; the element at (1, 2)
    # (zero itself) is where the gradient shows the window: d b(1,2) / d a(1,2) = 1 / (1 + 1)
    x = np.zeros((1, 1, 3, 4))
    x[0, 0, 1, 1] = 1.0
    y = F.same_map_norm(x, 2, alpha=4.0, beta=1.0, k=1.0)
    assert y[0, 0, 1, 1] == 0.5 and np.count_nonzero(y) == 1
    g = np.zeros_like(x)
    g[0, 0, :, :] = 1.0
    grad = F.same_map_norm_backward(g, x, 2, alpha=4.0, beta=1.0, k=1.0)
    # elements whose window holds (1, 1): (1, 1), (1, 2), (2, 1), (2, 2) -> derivative 1/2 there, 1 elsewhere
    expected = np.ones((3, 4))
    expected[1:3, 1:3] = 0.5
    expected[1, 1] = (1 + 1 - 2 * 1) / (1 + 1) ** 2  # d/da (a / (1 + a^2)) at a = 1: 0
    np.testing.assert_allclose(grad[0, 0], expected, atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_specials_as_torch(backend, under_schedules, dtype):
    x = np.random.default_rng(2).standard_normal((2, 2, 7, 6)).astype(dtype)
    x[0, 1, 3, 3] = np.nan  # NaN spreads over the windows holding it, as in torch
    x[1, 0, 0, 5] = np.inf  # inf / inf = NaN at itself, neighbours divided by inf give 0
    y = under_schedules(lambda: F.same_map_norm(x, 3, 1e-3, 0.75, 1.0))
    ref = torch_reference.same_map_norm(torch.from_numpy(x), 3, 1e-3, 0.75, 1.0).numpy()
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref))
    assert_close(y, ref, dtype, "output with specials")


def test_gradient_check_float64(backend):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 2, 5, 4))
    g = rng.standard_normal(x.shape)
    for size, alpha, beta, k in [(5, 10.0, 0.75, 1.0), (2, 3.0, 1.3, 2.0), (4, 1.0, 0.5, 0.5)]:
        grad = F.same_map_norm_backward(g, x, size, alpha, beta, k)
        numeric = numeric_gradient(lambda v: F.same_map_norm(v, size, alpha, beta, k), x, g, eps=1e-6)
        np.testing.assert_allclose(grad, numeric, rtol=1e-7, atol=1e-9, err_msg=f"size {size}")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shape=st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 12), st.integers(1, 12)),
       size=st.integers(1, 8), alpha=st.sampled_from([1e-3, 1e-1, 4.0]), beta=st.sampled_from([0.5, 0.75, 1.0, 2.0]),
       k=st.sampled_from([0.5, 1.0, 2.0]), double=st.booleans())
def test_property_random_shapes(backend, under_schedules, shape, size, alpha, beta, k, double):
    dtype = np.float64 if double else np.float32
    x = (3 * np.random.default_rng(sum(shape) + size).standard_normal(shape)).astype(dtype)
    check_against_torch(under_schedules, x, size, alpha, beta, k, seed=size)


def test_empty_batch(backend):
    x = np.zeros((0, 4, 3, 3), np.float32)
    assert F.same_map_norm(x, 5, 1e-3).shape == x.shape
    assert F.same_map_norm_backward(x, x, 5, 1e-3).shape == x.shape


def test_rejects_bad_input(backend):
    x = np.ones((2, 4, 3, 3), np.float32)
    for fn in (lambda **kw: F.same_map_norm(kw.pop("x", x), **kw),
               lambda **kw: F.same_map_norm_backward(np.ones_like(kw.get("x", x)), kw.pop("x", x), **kw)):
        with pytest.raises(ValueError, match="size must be >= 1, got 0"):
            fn(size=0, alpha=1e-3)
        with pytest.raises(ValueError, match="size must be >= 1, got -5"):
            fn(size=-5, alpha=1e-3)
        with pytest.raises(TypeError, match="size must be an int, got 5.0"):
            fn(size=5.0, alpha=1e-3)
        with pytest.raises(TypeError, match="alpha"):
            fn(size=5)  # alpha has no default (cuda-convnet's scale must be given)
        for name in ("alpha", "beta", "k"):
            for bad in (np.nan, np.inf, -np.inf):
                with pytest.raises(ValueError, match=f"{name} must be finite, got {bad}"):
                    fn(size=5, **{"alpha": 1e-3, name: bad})
            with pytest.raises(TypeError, match=f"{name} must be a real number"):
                fn(size=5, **{"alpha": 1e-3, name: None})
        with pytest.raises(TypeError, match="input must be float32 or float64, got int64"):
            fn(x=x.astype(np.int64), size=5, alpha=1e-3)
        with pytest.raises(ValueError, match=r"input must have 4 dimensions, got shape \(2, 4, 9\)"):
            fn(x=x.reshape(2, 4, 9), size=5, alpha=1e-3)
    with pytest.raises(ValueError, match=r"grad_output must have the shape of input \(2, 4, 3, 3\), got \(2, 4, 3, 2\)"):
        F.same_map_norm_backward(np.ones((2, 4, 3, 2), np.float32), x, 5, 1e-3)
    with pytest.raises(TypeError, match="same dtype"):
        F.same_map_norm_backward(x.astype(np.float64), x, 5, 1e-3)
