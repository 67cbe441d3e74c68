"""Local response normalisation across channels (kernels/local_response_norm.cu) on both CPU paths
against torch.nn.functional.local_response_norm and its autograd backward: run #145's LRN layers at
batch 2, even and oversized windows, random shapes and hyperparameters, specials, a float64
central-difference check and bad input."""

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from central_differences import numeric_gradient

from alexnet_raw import functional as F
from alexnet_raw.checks import tolerances
from alexnet_raw.checks import torch_reference


def torch_lrn(x, g, size, alpha, beta, k):
    """torch's output and input gradient for upstream g."""
    y, (gx,) = torch_reference.forward_backward(
        lambda t: torch_reference.local_response_norm(t, size, alpha, beta, k), [x], g)
    return y, gx


def assert_close(ours, reference, dtype, what):
    assert ours.shape == reference.shape and ours.dtype == dtype, what
    assert tolerances.close(ours, reference, "local_response_norm", dtype), (what, tolerances.max_errors(ours, reference))


def check_against_torch(under_schedules, x, size, alpha=1e-4, beta=0.75, k=1.0, seed=0):
    g = np.random.default_rng(seed).standard_normal(x.shape).astype(x.dtype)
    y, gx = under_schedules(lambda: (F.local_response_norm(x, size, alpha, beta, k),
                                     F.local_response_norm_backward(g, x, size, alpha, beta, k)))
    ref_y, ref_g = torch_lrn(x, g, size, alpha, beta, k)
    assert_close(y, ref_y, x.dtype, "output")
    assert_close(gx, ref_g, x.dtype, "gradient")


# run #145 (cuda-convnet cmrnorm: size 5, scale 1e-4, pow 0.75, minDiv 2), per tower at batch 2; the
# inputs scaled so that the sums of squares move the denominator (conv outputs reach tens)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(2, 48, 55, 55), (2, 128, 27, 27)])
def test_alexnet_lrn_layers_match_torch(backend, under_schedules, dtype, shape):
    x = (30 * np.random.default_rng(1).standard_normal(shape)).astype(dtype)
    check_against_torch(under_schedules, x, 5, 1e-4, 0.75, 2.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("size", [1, 2, 3, 4, 6, 7, 12, 30])
def test_window_sizes_even_odd_and_larger_than_c(backend, under_schedules, dtype, size):
    # C = 7: sizes past C clip to the channels as torch's zero padding; strong normalisation (alpha 1)
    x = np.random.default_rng(size).standard_normal((2, 7, 3, 5)).astype(dtype)
    check_against_torch(under_schedules, x, size, alpha=1.0, beta=0.75, k=1.0, seed=size)


@pytest.mark.parametrize("shape", [(2, 6, 5), (2, 6, 3, 2, 4), (1, 3, 1)])
def test_other_ranks_as_torch(backend, under_schedules, shape):
    # torch accepts (N, C, ...) with any number of dimensions after C: normalised across C alone
    x = np.random.default_rng(len(shape)).standard_normal(shape)
    check_against_torch(under_schedules, x, 3, alpha=0.5, beta=0.75, k=1.5)


def test_even_window_placement_is_size_half_before(backend):
    # the window of channel c is [c - size//2, c - size//2 + size) (cuda-convnet's and torch's): for
    # size 2, channels c-1 and c. With a = (0, 1, 1, 0), alpha 2 (weight 2/2 = 1), beta 1, k 1:
    # b_1 sees channels 0, 1 (sum 1): 1/2; b_2 sees 1, 2 (sum 2): 1/3
    probe = np.zeros((1, 4, 1, 1))
    probe[0, :, 0, 0] = [0.0, 1.0, 1.0, 0.0]
    np.testing.assert_allclose(F.local_response_norm(probe, 2, alpha=2.0, beta=1.0, k=1.0)[0, :, 0, 0],
                               [0.0, 0.5, 1 / 3, 0.0], rtol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_specials_as_torch(backend, under_schedules, dtype):
    x = np.random.default_rng(2).standard_normal((2, 9, 4, 3)).astype(dtype)
    x[0, 3, 1, 1] = np.nan  # NaN spreads over its neighbours' windows, as torch
    x[1, 5, 2, 0] = np.inf  # inf / inf = NaN at itself, its neighbours divided by inf give 0
    x[1, 0, 0, 0] = -np.inf
    y = under_schedules(lambda: F.local_response_norm(x, 5, 1e-4, 0.75, 2.0))
    ref = torch_reference.local_response_norm(torch.from_numpy(x), 5, 1e-4, 0.75, 2.0).numpy()
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref))
    assert_close(y, ref, dtype, "output with specials")


def test_gradient_check_float64(backend):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 6, 2, 3))
    g = rng.standard_normal(x.shape)
    for size, alpha, beta, k in [(5, 1.0, 0.75, 2.0), (4, 0.5, 1.3, 1.0), (1, 2.0, 0.5, 0.5)]:
        grad = F.local_response_norm_backward(g, x, size, alpha, beta, k)
        numeric = numeric_gradient(lambda v: F.local_response_norm(v, size, alpha, beta, k), x, g, eps=1e-6)
        np.testing.assert_allclose(grad, numeric, rtol=1e-7, atol=1e-9, err_msg=f"size {size}")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shape=st.tuples(st.integers(1, 3), st.integers(1, 20), st.integers(1, 6), st.integers(1, 6)),
       size=st.integers(1, 9), alpha=st.sampled_from([1e-4, 1e-2, 1.0]), beta=st.sampled_from([0.5, 0.75, 1.0, 2.0]),
       k=st.sampled_from([0.5, 1.0, 2.0]), double=st.booleans())
def test_property_random_shapes(backend, under_schedules, shape, size, alpha, beta, k, double):
    dtype = np.float64 if double else np.float32
    x = (3 * np.random.default_rng(sum(shape) + size).standard_normal(shape)).astype(dtype)
    check_against_torch(under_schedules, x, size, alpha, beta, k, seed=size)


def test_empty_batch(backend):
    x = np.zeros((0, 4, 3, 3), np.float32)
    assert F.local_response_norm(x, 5).shape == x.shape
    assert F.local_response_norm_backward(x, x, 5).shape == x.shape


def test_rejects_bad_input(backend):
    x = np.ones((2, 4, 3, 3), np.float32)
    for fn in (lambda **kw: F.local_response_norm(kw.pop("x", x), **kw),
               lambda **kw: F.local_response_norm_backward(np.ones_like(kw.get("x", x)), kw.pop("x", x), **kw)):
        with pytest.raises(ValueError, match="size must be >= 1, got 0"):
            fn(size=0)
        with pytest.raises(ValueError, match="size must be >= 1, got -5"):
            fn(size=-5)
        with pytest.raises(TypeError, match="size must be an int, got 5.0"):
            fn(size=5.0)
        for name in ("alpha", "beta", "k"):
            for bad in (np.nan, np.inf, -np.inf):
                with pytest.raises(ValueError, match=f"{name} must be finite, got {bad}"):
                    fn(size=5, **{name: bad})
            with pytest.raises(TypeError, match=f"{name} must be a real number"):
                fn(size=5, **{name: None})
        with pytest.raises(TypeError, match="input must be float32 or float64, got float16"):
            fn(x=x.astype(np.float16), size=5)
        with pytest.raises(ValueError, match=r"input must have 3 or more dimensions \(N, C, ...\).*got shape \(3, 3\)"):
            fn(x=x[0, 0], size=5)
    with pytest.raises(ValueError, match=r"grad_output must have the shape of input \(2, 4, 3, 3\), got \(2, 4, 3, 2\)"):
        F.local_response_norm_backward(np.ones((2, 4, 3, 2), np.float32), x, 5)
    with pytest.raises(TypeError, match="same dtype"):
        F.local_response_norm_backward(x.astype(np.float64), x, 5)
