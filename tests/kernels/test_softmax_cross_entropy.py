"""Softmax cross-entropy and top-k (kernels/softmax_cross_entropy.cu) on both CPU paths, against
torch.nn.functional.cross_entropy (mean reduction), its autograd gradient, and torch.topk."""

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from central_differences import numeric_gradient

from alexnet_raw import functional as F
from alexnet_raw.checks import tolerances
from alexnet_raw.checks import torch_reference

SHAPES = [(2, 1000), (128, 1000), (1, 1), (3, 7)]


def torch_loss_and_grad(x, target):
    xt = torch.from_numpy(x).requires_grad_()
    loss = torch_reference.cross_entropy(xt, torch.from_numpy(target))
    loss.backward()
    return loss.detach().numpy(), xt.grad.numpy()


def torch_topk_correct(x, target, k):
    idx = torch.from_numpy(x).topk(k, dim=1).indices
    return int((idx == torch.from_numpy(target)[:, None]).any(dim=1).sum())


def logits(rng, shape, dtype, scale=3.0):
    n, c = shape
    x = rng.standard_normal(shape) * scale
    target = rng.integers(0, c, n)
    x[np.arange(n), target] += rng.uniform(0, 2 * scale, n)  # targets often but not always on top
    return x.astype(dtype), target.astype(np.int64)


def assert_close(ours, reference, dtype, what):
    assert tolerances.close(ours, reference, "cross_entropy", dtype), (what, tolerances.max_errors(ours, reference))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_loss_and_gradient_match_torch(backend, under_schedules, dtype, shape):
    x, target = logits(np.random.default_rng(1), shape, dtype)
    loss, grad = under_schedules(lambda: (F.cross_entropy(x, target), F.cross_entropy_backward(x, target)))
    ref_loss, ref_grad = torch_loss_and_grad(x, target)
    assert loss.shape == () and loss.dtype == dtype and isinstance(float(loss), float)
    assert grad.shape == x.shape and grad.dtype == dtype
    assert_close(loss, ref_loss, dtype, "loss")
    assert_close(grad, ref_grad, dtype, "gradient")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("k", [1, 5])
def test_topk_correct_matches_torch_topk(backend, under_schedules, dtype, shape, k):
    x, target = logits(np.random.default_rng(2), shape, dtype)
    k = min(k, shape[1])
    count = under_schedules(lambda: F.topk_correct(x, target, k))
    assert type(count) is int
    assert count == torch_topk_correct(x, target, k)  # random logits: no ties


def test_topk_tie_rule_and_nan(backend, under_schedules):
    nan = np.nan
    x = np.array([
        [3, 2, 2, 3],      # target 2 (value 2): two entries strictly larger, the tie with 2 does not count
        [3, 3, 3, 3],      # all tied: nothing strictly larger
        [5, 1, 1, 1],      # target 1: only 5 is larger, the tie with 1, 1 does not count against it
        [nan, 1, 2, 0],    # target 2: a row holding NaN is never correct
        [nan, 1, 2, nan],  # target 3, NaN: never correct (torch.topk's order would count it)
    ], np.float32)
    target = np.array([2, 0, 1, 2, 3], np.int64)
    # rows counted for k = 1, 2, 3, 4: fewer than k entries strictly larger than the target's, no NaN
    expected = {1: 1, 2: 2, 3: 3, 4: 3}
    for k, n in expected.items():
        assert under_schedules(lambda: F.topk_correct(x, target, k)) == n, f"k={k}"
        assert under_schedules(lambda: F.topk_correct(x.astype(np.float64), target, k)) == n


def test_extreme_logits_stay_finite(backend, under_schedules):
    rng = np.random.default_rng(3)
    for dtype in (np.float32, np.float64):
        x = rng.choice([1e4, -1e4, 0.0, 1e4 - 1], size=(16, 1000)).astype(dtype)
        target = rng.integers(0, 1000, 16)
        loss, grad = under_schedules(lambda: (F.cross_entropy(x, target), F.cross_entropy_backward(x, target)))
        assert np.isfinite(loss) and np.all(np.isfinite(grad))
        ref_loss, ref_grad = torch_loss_and_grad(x, target)
        assert_close(loss, ref_loss, dtype, "loss")
        assert_close(grad, ref_grad, dtype, "gradient")
        assert under_schedules(lambda: F.topk_correct(x, target, 5)) >= 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_and_inf_behave_as_torch(backend, under_schedules, dtype):
    rng = np.random.default_rng(4)
    x, target = logits(rng, (6, 10), dtype)
    x[0, 3] = np.nan      # NaN anywhere: the row's loss and gradient are NaN
    x[1, 0] = np.inf      # +inf: inf - inf, NaN as torch
    x[2, :] = -np.inf     # a row of -inf: NaN as torch
    x[3, target[3]] = -np.inf  # the target at -inf: loss +inf
    x[4, (target[4] + 1) % 10] = -np.inf  # another entry at -inf: fine
    for rows in ([0, 5], [1, 5], [2, 5], [3, 5], [4, 5], [0, 1, 2, 3, 4, 5]):
        xs, ts = np.ascontiguousarray(x[rows]), target[rows]
        loss, grad = under_schedules(lambda: (F.cross_entropy(xs, ts), F.cross_entropy_backward(xs, ts)))
        ref_loss, ref_grad = torch_loss_and_grad(xs, ts)
        assert_close(loss, ref_loss, dtype, f"loss of rows {rows}")
        assert_close(grad, ref_grad, dtype, f"gradient of rows {rows}")
        assert np.array_equal(np.isnan(grad), np.isnan(ref_grad))


def test_empty_batch_gives_nan_as_torch(backend, under_schedules):
    x = np.zeros((0, 5), np.float32)
    t = np.zeros(0, np.int64)
    loss, grad, count = under_schedules(lambda: (F.cross_entropy(x, t), F.cross_entropy_backward(x, t),
                                                 F.topk_correct(x, t, 1)))
    assert np.isnan(loss) and torch.nn.functional.cross_entropy(torch.from_numpy(x), torch.from_numpy(t)).isnan()
    assert grad.shape == (0, 5) and count == 0


def test_gradient_check_float64(backend):
    rng = np.random.default_rng(5)
    x, target = logits(rng, (3, 7), np.float64)
    grad = F.cross_entropy_backward(x, target)
    numeric = numeric_gradient(lambda v: F.cross_entropy(v, target), x, eps=1e-6)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(1, 40), c=st.integers(1, 300), double=st.booleans(), data=st.data())
def test_property_random_shapes(backend, under_schedules, n, c, double, data):
    # the fixtures hold no per-example state: the backend stays set, under_schedules is a runner
    dtype = np.float64 if double else np.float32
    k = data.draw(st.integers(1, c), label="k")
    x, target = logits(np.random.default_rng(n * 1000 + c), (n, c), dtype)
    loss, grad, count = under_schedules(lambda: (F.cross_entropy(x, target), F.cross_entropy_backward(x, target),
                                                 F.topk_correct(x, target, k)))
    ref_loss, ref_grad = torch_loss_and_grad(x, target)
    assert_close(loss, ref_loss, dtype, "loss")
    assert_close(grad, ref_grad, dtype, "gradient")
    assert count == torch_topk_correct(x, target, k)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_unchecked_targets_out_of_range_give_nan_rows_never_wrong_numbers(backend, under_schedules, dtype):
    """validate_target=False (the engine on a GPU, which checked host labels already and does not
    read device labels back): an index outside [0, C) makes the loss NaN and its gradient row NaN;
    the other rows are as with valid targets, and nothing is read outside a row."""
    rng = np.random.default_rng(8)
    x = rng.standard_normal((4, 10)).astype(dtype)
    good, bad = np.array([1, 2, 3, 4], np.int64), np.array([1, -3, 3, 10], np.int64)
    loss, grad = under_schedules(lambda: (F.cross_entropy(x, bad, validate_target=False),
                                          F.cross_entropy_backward(x, bad, validate_target=False)))
    assert np.isnan(loss)
    reference = F.cross_entropy_backward(x, good)
    assert np.isnan(grad[[1, 3]]).all()
    np.testing.assert_array_equal(grad[[0, 2]], reference[[0, 2]])


def test_rejects_bad_input(backend):
    x = np.zeros((4, 10), np.float32)
    t = np.array([0, 1, 2, 9], np.int64)
    for fn in (F.cross_entropy, F.cross_entropy_backward, lambda a, b: F.topk_correct(a, b, 1)):
        with pytest.raises(ValueError, match=r"class indices in \[0, 9\] \(C = 10\), got values in \[0, 10\]"):
            fn(x, np.array([0, 1, 2, 10], np.int64))
        with pytest.raises(ValueError, match=r"got values in \[-1, 2\]"):
            fn(x, np.array([0, 1, 2, -1], np.int64))
        with pytest.raises(TypeError, match="target must hold int64 class indices, got dtype float32"):
            fn(x, t.astype(np.float32))
        with pytest.raises(TypeError, match="target must hold int64 class indices, got dtype int32"):
            fn(x, t.astype(np.int32))
        with pytest.raises(ValueError, match=r"target must have shape \(4,\).*got \(5,\)"):
            fn(x, np.zeros(5, np.int64))
        with pytest.raises(ValueError, match=r"target must have shape \(4,\).*got \(4, 1\)"):
            fn(x, t.reshape(4, 1))
        with pytest.raises(TypeError, match="target must be a numpy.ndarray or cupy.ndarray of int64 class indices, "
                                            "got list"):
            fn(x, [0, 1, 2, 3])
        with pytest.raises(ValueError, match=r"input must have 2 dimensions, got shape \(40,\)"):
            fn(x.reshape(-1), t)
        with pytest.raises(ValueError, match=r"input must have 2 dimensions, got shape \(4, 10, 1\)"):
            fn(x.reshape(4, 10, 1), t)
        with pytest.raises(TypeError, match="input must be float32 or float64, got int64"):
            fn(x.astype(np.int64), t)
        with pytest.raises(ValueError, match="at least one class"):
            fn(np.zeros((4, 0), np.float32), t)
    with pytest.raises(ValueError, match="k must be >= 1, got 0"):
        F.topk_correct(x, t, 0)
    with pytest.raises(ValueError, match="k must be at most the number of classes C = 10, got 11"):
        F.topk_correct(x, t, 11)
    with pytest.raises(TypeError, match="k must be an int, got 1.0"):
        F.topk_correct(x, t, 1.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_softmax_matches_torch(backend, under_schedules, dtype, shape):
    x, _ = logits(np.random.default_rng(5), shape, dtype)
    x[0, 0] = 80.0  # exp would overflow float32 without the max shift
    probs = under_schedules(lambda: F.softmax(x))
    ref = torch.softmax(torch.from_numpy(x), dim=1).numpy()
    assert probs.shape == x.shape and probs.dtype == dtype
    assert_close(probs, ref, dtype, "softmax")
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=10 * np.finfo(dtype).eps * shape[1])


def test_softmax_rejects_bad_input(backend):
    with pytest.raises(ValueError, match="2 dimensions"):
        F.softmax(np.zeros((2, 3, 4), np.float32))
    with pytest.raises(TypeError, match="float32 or float64"):
        F.softmax(np.zeros((2, 3), np.int64))
