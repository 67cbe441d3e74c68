"""concat (kernels/concat.cu), cuda-convnet2's concat layer and its pass of several inputs, against
torch.cat along axis 1 and its autograd backward (torch.split), on every backend and thread schedule."""

import numpy as np
import pytest

from alexnet_raw import functional as F
from alexnet_raw.checks import torch_reference

from central_differences import numeric_gradient

CASES = [  # the inputs' shapes
    [(2, 3, 5, 7), (2, 1, 5, 7)],
    [(1, 64, 6, 6), (1, 32, 6, 6), (1, 0, 6, 6), (1, 5, 6, 6)],  # an empty input too
    [(3, 4096), (3, 4096), (3, 4096), (3, 4096)],  # the hybrid's pass1a: four fc outputs
    [(5, 1), (5, 7)],
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shapes", CASES, ids=lambda s: "+".join("x".join(map(str, x)) for x in s))
def test_concat_matches_torch(backend, under_schedules, dtype, shapes):
    rng = np.random.default_rng(len(shapes))
    xs = [rng.standard_normal(s).astype(dtype) for s in shapes]
    xs[0].reshape(-1)[:2] = [np.nan, -0.0]
    total = (shapes[0][0], sum(s[1] for s in shapes)) + shapes[0][2:]
    g = rng.standard_normal(total).astype(dtype)
    y = under_schedules(lambda: F.concat(xs))
    grads = under_schedules(lambda: F.concat_backward(g, [s[1] for s in shapes]))
    ref, ref_grads = torch_reference.forward_backward(lambda *ts: torch_reference.concat(ts), xs, g)
    assert y.shape == total and y.dtype == dtype
    np.testing.assert_array_equal(y, ref)
    assert y.tobytes() == ref.tobytes()  # -0.0 and NaN bits copied as they are
    for ours, theirs in zip(grads, ref_grads):
        assert ours.shape == theirs.shape
        np.testing.assert_array_equal(ours, theirs)


def test_concat_gradient_check_float64(backend):
    rng = np.random.default_rng(9)
    xs = [rng.standard_normal((2, k, 3)) for k in (2, 1, 3)]
    g = rng.standard_normal((2, 6, 3))
    grads = F.concat_backward(g, [2, 1, 3])
    for i, x in enumerate(xs):
        def joined(v, i=i):
            return F.concat([v if j == i else other for j, other in enumerate(xs)])
        np.testing.assert_allclose(grads[i], numeric_gradient(joined, x, g), rtol=1e-8, atol=1e-9)


def test_concat_of_strided_inputs(backend):
    x = np.arange(2 * 6 * 3, dtype=np.float64).reshape(2, 6, 3)
    np.testing.assert_array_equal(F.concat([x[:, ::2], x[:, 1::2]]), np.concatenate([x[:, ::2], x[:, 1::2]], axis=1))


def test_concat_rejects_bad_input(backend):
    x = np.ones((2, 3, 4), np.float32)
    with pytest.raises(TypeError, match="list or tuple of arrays"):
        F.concat(x)
    with pytest.raises(ValueError, match="at least one array"):
        F.concat([])
    with pytest.raises(ValueError, match=r"inputs\[0\] must have at least 2 dimensions"):
        F.concat([np.ones(3, np.float32)])
    with pytest.raises(ValueError, match=r"inputs\[1\] must have shape \(2, 'K', 4\).*got \(2, 3, 5\)"):
        F.concat([x, np.ones((2, 3, 5), np.float32)])
    with pytest.raises(ValueError, match=r"inputs\[1\] must have shape"):
        F.concat([x, np.ones((3, 3, 4), np.float32)])
    with pytest.raises(TypeError, match="same dtype"):
        F.concat([x, x.astype(np.float64)])
    with pytest.raises(ValueError, match=r"sizes must add up to grad_output's axis 1 \(3\), got \[1, 1\]"):
        F.concat_backward(x, [1, 1])
    with pytest.raises(TypeError, match=r"sizes\[0\] must be an int"):
        F.concat_backward(x, [1.5, 1.5])
    with pytest.raises(ValueError, match="non-empty list or tuple"):
        F.concat_backward(x, [])
