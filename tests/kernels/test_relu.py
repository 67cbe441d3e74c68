"""ReLU (kernels/relu.cu) against torch.relu and its autograd backward, on both CPU paths."""

import numpy as np
import pytest
import torch

from alexnet_raw import functional as F
from alexnet_raw.checks import torch_reference

SHAPES = [(0,), (1,), (7,), (2, 3, 17, 19), (3, 1, 5, 1), (1000003,)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_relu_forward_matches_torch(backend, under_schedules, dtype, shape):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape).astype(dtype)
    if x.size >= 4:
        x.reshape(-1)[:4] = [np.nan, -0.0, np.inf, -np.inf]
    y = under_schedules(lambda: F.relu(x))
    expected = torch_reference.relu(torch.from_numpy(x)).numpy()
    assert y.shape == x.shape and y.dtype == x.dtype
    np.testing.assert_array_equal(y, expected)  # exact, NaN where torch has NaN


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_relu_backward_matches_torch(backend, under_schedules, dtype, shape):
    rng = np.random.default_rng(2)
    x = torch.from_numpy(rng.standard_normal(shape).astype(dtype)).requires_grad_()
    y = torch_reference.relu(x)
    g = torch.from_numpy(rng.standard_normal(shape).astype(dtype))
    y.backward(g)
    grad = under_schedules(lambda: F.relu_backward(g.numpy(), y.detach().numpy()))
    np.testing.assert_array_equal(grad, x.grad.numpy())


def test_relu_gradient_check_float64(backend):
    # central differences away from the kink at 0
    rng = np.random.default_rng(3)
    x = rng.standard_normal(50)
    x[np.abs(x) < 1e-3] = 0.5
    g = rng.standard_normal(50)
    eps = 1e-6
    numeric = (F.relu(x + eps) - F.relu(x - eps)) / (2 * eps) * g
    np.testing.assert_allclose(F.relu_backward(g, F.relu(x)), numeric, rtol=1e-7, atol=1e-9)


def test_relu_rejects_bad_input(backend):
    x = np.ones((4, 4), np.float32)
    with pytest.raises(TypeError, match="float32 or float64, got int32"):
        F.relu(x.astype(np.int32))
    with pytest.raises(TypeError, match="numpy.ndarray or cupy.ndarray, got list"):
        F.relu([1.0, 2.0])
    with pytest.raises(TypeError, match="same dtype"):
        F.relu_backward(x.astype(np.float64), x)
    with pytest.raises(ValueError, match="shape of output"):
        F.relu_backward(np.ones((4, 3), np.float32), x)
