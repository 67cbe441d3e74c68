"""channel_gather (kernels/channel_gather.cu), cuda-convnet's random sparse connectivity, against
torch.index_select along axis 1 and its autograd backward (a channel taken several times gets the
sum of its gradients), on every backend and thread schedule."""

import numpy as np
import pytest

from alexnet_raw import functional as F
from alexnet_raw.checks import tolerances, torch_reference

from central_differences import numeric_gradient

CASES = [  # (input shape, index)
    ((2, 16, 5, 5), np.random.default_rng(0).permutation(16)),  # layers.gc.cfg's local32: one permutation
    ((3, 8, 4, 3), np.concatenate([np.random.default_rng(1).permutation(8) for _ in range(3)])),  # overSample 3
    ((1, 5, 1, 1), [4, 4, 0]),  # repeats and unused channels
    ((2, 6), [5, 1, 2]),  # flat features
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape, index", CASES, ids=["gc", "oversample3", "repeats", "flat"])
def test_channel_gather_matches_torch(backend, under_schedules, dtype, shape, index):
    rng = np.random.default_rng(len(shape))
    x = rng.standard_normal(shape).astype(dtype)
    g = rng.standard_normal((shape[0], len(index)) + shape[2:]).astype(dtype)
    y = under_schedules(lambda: F.channel_gather(x, index))
    grad = under_schedules(lambda: F.channel_gather_backward(g, index, shape[1]))
    ref, (ref_grad,) = torch_reference.forward_backward(lambda t: torch_reference.channel_gather(t, index), [x], g)
    np.testing.assert_array_equal(y, ref)
    atol, rtol = tolerances.tolerance("channel_gather", dtype)
    np.testing.assert_allclose(grad, ref_grad, atol=atol, rtol=rtol)
    unused = sorted(set(range(shape[1])) - set(int(i) for i in index))
    assert not np.any(grad[:, unused])


def test_channel_gather_gradient_check_float64(backend):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 4, 3, 3))
    index = [3, 0, 3, 1, 2, 3]
    g = rng.standard_normal((2, 6, 3, 3))
    np.testing.assert_allclose(F.channel_gather_backward(g, index, 4),
                               numeric_gradient(lambda v: F.channel_gather(v, index), x, g), rtol=1e-8, atol=1e-9)


def test_channel_gather_rejects_bad_input(backend):
    x = np.ones((2, 4, 3, 3), np.float32)
    with pytest.raises(ValueError, match=r"index must hold channels in \[0, 3\], got values in \[0, 4\]"):
        F.channel_gather(x, [0, 4])
    with pytest.raises(ValueError, match="at least one channel"):
        F.channel_gather(x, [])
    with pytest.raises(ValueError, match="1-D array of ints"):
        F.channel_gather(x, np.array([0.5, 1.5]))
    with pytest.raises(TypeError, match="1-D array or list of ints"):
        F.channel_gather(x, 3)
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        F.channel_gather(np.ones(3, np.float32), [0])
    with pytest.raises(ValueError, match=r"grad_output must have shape \(N, 2, \.\.\.\)"):
        F.channel_gather_backward(x, [0, 1], 4)
    with pytest.raises(TypeError, match="channels must be an int"):
        F.channel_gather_backward(x, [0, 1, 2, 3], 4.0)
