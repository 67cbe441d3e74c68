"""eltwise_sum and eltwise_max (kernels/eltwise.cu), cuda-convnet2's eltsum and eltmax layers,
against their torch references (alexnet_raw/checks/torch_reference.py), forward and backward, on
every backend and thread schedule; ties of eltmax give the whole gradient to every tied input."""

import numpy as np
import pytest

from alexnet_raw import functional as F
from alexnet_raw.checks import tolerances, torch_reference

from central_differences import numeric_gradient

SHAPES = [(1,), (2, 3, 5, 7), (3, 1, 1, 1), (65537,)]


def _close(ours, reference, op, dtype):
    atol, rtol = tolerances.tolerance(op, dtype)
    np.testing.assert_allclose(ours, reference, atol=atol, rtol=rtol)


def _inputs(rng, count, shape, dtype):
    return [rng.standard_normal(shape).astype(dtype) for _ in range(count)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("coeffs", [[1.0, 1.0], [0.5, -2.0, 3.0], [0.25]])
def test_eltwise_sum_matches_torch(backend, under_schedules, dtype, shape, coeffs):
    rng = np.random.default_rng(len(coeffs))
    xs = _inputs(rng, len(coeffs), shape, dtype)
    g = rng.standard_normal(shape).astype(dtype)
    y = under_schedules(lambda: F.eltwise_sum(xs, coeffs))
    grads = under_schedules(lambda: F.eltwise_sum_backward(g, coeffs))
    ref, ref_grads = torch_reference.forward_backward(lambda *ts: torch_reference.eltwise_sum(ts, coeffs), xs, g)
    assert y.shape == shape and y.dtype == dtype and len(grads) == len(xs)
    _close(y, ref, "eltwise_sum", dtype)
    for ours, theirs in zip(grads, ref_grads):
        _close(ours, theirs, "eltwise_sum", dtype)


def test_eltwise_sum_adds_in_input_order(backend):
    # 1e8 + 1 - 1e8 in float32: (1e8 + 1) rounds to 1e8, so the input order shows in the result
    xs = [np.full(3, v, np.float32) for v in (1e8, 1.0, -1e8)]
    np.testing.assert_array_equal(F.eltwise_sum(xs), np.zeros(3, np.float32))
    np.testing.assert_array_equal(F.eltwise_sum([xs[0], xs[2], xs[1]]), np.ones(3, np.float32))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("count", [2, 3])
def test_eltwise_max_matches_torch(backend, under_schedules, dtype, shape, count):
    rng = np.random.default_rng(count)
    xs = _inputs(rng, count, shape, dtype)
    if xs[0].size >= 4:  # ties, NaN and infinities
        xs[1].reshape(-1)[0] = xs[0].reshape(-1)[0] = 9.0
        xs[0].reshape(-1)[1] = np.nan
        xs[1].reshape(-1)[2] = np.inf
        xs[0].reshape(-1)[3] = -np.inf
    g = rng.standard_normal(shape).astype(dtype)
    y = under_schedules(lambda: F.eltwise_max(xs))
    grads = under_schedules(lambda: F.eltwise_max_backward(g, xs, y))
    ref, ref_grads = torch_reference.forward_backward(lambda *ts: torch_reference.eltwise_max(ts), xs, g)
    np.testing.assert_array_equal(y, ref)
    for ours, theirs in zip(grads, ref_grads):
        np.testing.assert_array_equal(ours, theirs)
    if xs[0].size >= 4:  # a tie gives the whole gradient to both inputs (torch.maximum would halve it)
        assert grads[0].reshape(-1)[0] == grads[1].reshape(-1)[0] == g.reshape(-1)[0]
        assert np.isnan(y.reshape(-1)[1]) and all(gr.reshape(-1)[1] == 0 for gr in grads)


def test_eltwise_gradient_check_float64(backend):
    rng = np.random.default_rng(5)
    xs = _inputs(rng, 3, (2, 3, 4), np.float64)
    g = rng.standard_normal((2, 3, 4))
    coeffs = [0.5, -1.5, 2.0]
    for i in range(3):
        def total(xi, i=i):
            return F.eltwise_sum([xi if j == i else x for j, x in enumerate(xs)], coeffs)
        np.testing.assert_allclose(F.eltwise_sum_backward(g, coeffs)[i], numeric_gradient(total, xs[i], g),
                                   rtol=1e-8, atol=1e-9)
        y = F.eltwise_max(xs)

        def top(xi, i=i):
            return F.eltwise_max([xi if j == i else x for j, x in enumerate(xs)])
        np.testing.assert_allclose(F.eltwise_max_backward(g, xs, y)[i], numeric_gradient(top, xs[i], g, eps=1e-7),
                                   rtol=1e-6, atol=1e-8)


def test_eltwise_rejects_bad_input(backend):
    x = np.ones((2, 3), np.float32)
    with pytest.raises(TypeError, match="list or tuple of arrays, got ndarray"):
        F.eltwise_sum(x)
    with pytest.raises(ValueError, match="at least one array"):
        F.eltwise_max([])
    with pytest.raises(ValueError, match=r"inputs\[1\] must have the shape of inputs\[0\] \(2, 3\), got \(3, 2\)"):
        F.eltwise_sum([x, np.ones((3, 2), np.float32)])
    with pytest.raises(TypeError, match=r"inputs\[1\] must have the same dtype"):
        F.eltwise_max([x, x.astype(np.float64)])
    with pytest.raises(ValueError, match=r"one number per input \(2\), got 3"):
        F.eltwise_sum([x, x], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"coeffs\[1\] must be finite"):
        F.eltwise_sum([x, x], [1.0, float("nan")])
    with pytest.raises(ValueError, match=r"coeffs\[0\] must be representable in float32"):
        F.eltwise_sum([x], [1e39])
    with pytest.raises(TypeError, match=r"coeffs\[0\] must be a real number"):
        F.eltwise_sum_backward(x, [True])
    with pytest.raises(ValueError, match=r"output must have the shape of inputs\[0\]"):
        F.eltwise_max_backward(x, [x, x], np.ones((3, 2), np.float32))
