"""constrain_norms (kernels/norm_constraint.cu), cuda-convnet2's wball, against its torch reference
(alexnet_raw/checks/torch_reference.py), in place on every backend and thread schedule: hard (every
row to the bound) and max (rows past the bound down to it)."""

import numpy as np
import pytest

from alexnet_raw import functional as F
from alexnet_raw.checks import tolerances, torch_reference
from alexnet_raw.runtime import backends

CASES = [  # (weight shape, row_dims)
    ((64, 3, 11, 11), 1),  # a conv layer's filters
    ((10, 4096), 1),  # fc outputs: long rows (many strides of the block)
    ((4, 4, 8, 2, 3, 3), 3),  # a local layer: a filter at each position
    ((5, 1), 1),
    ((1000, 7), 1),  # many short rows (the grid-stride loop over rows)
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mode", ["hard", "max"])
@pytest.mark.parametrize("shape, row_dims", CASES)
def test_constrain_norms_matches_torch(backend, under_schedules, dtype, mode, shape, row_dims):
    rng = np.random.default_rng(len(shape))
    w0 = (rng.standard_normal(shape) * rng.uniform(0.01, 3, shape[:1] + (1,) * (len(shape) - 1))).astype(dtype)
    w0.reshape(int(np.prod(shape[:row_dims])), -1)[0] = 0  # a row of zeros stays zeros
    bound = 1.5

    def run():
        w = w0.copy()
        assert F.constrain_norms(w, bound, mode=mode, row_dims=row_dims) is w
        return w

    ours = under_schedules(run)
    ref, _ = torch_reference.forward_backward(lambda t: torch_reference.norm_constraint(t, bound, mode, row_dims), [w0])
    atol, rtol = tolerances.tolerance("norm_constraint", dtype)
    np.testing.assert_allclose(ours, ref, atol=atol, rtol=rtol)
    norms = np.linalg.norm(ours.reshape(int(np.prod(shape[:row_dims])), -1).astype(np.float64), axis=1)
    assert norms[0] == 0
    if mode == "hard":
        np.testing.assert_allclose(norms[1:], bound, rtol=1e-5 if dtype == np.float32 else 1e-12)
    else:
        assert norms.max() <= bound * (1 + 1e-5)
        before = np.linalg.norm(w0.reshape(len(norms), -1).astype(np.float64), axis=1)
        kept = before <= bound
        np.testing.assert_array_equal(ours.reshape(len(norms), -1)[kept], w0.reshape(len(norms), -1)[kept])


def test_constrain_norms_rejects_bad_input(backend):
    w = np.ones((4, 3), np.float32)
    with pytest.raises(ValueError, match=r"bound must be > 0"):
        F.constrain_norms(w, 0.0)
    with pytest.raises(ValueError, match="bound must be finite"):
        F.constrain_norms(w, float("inf"))
    with pytest.raises(ValueError, match="mode must be one of"):
        F.constrain_norms(w, 1.0, mode="soft")
    with pytest.raises(ValueError, match="row_dims must be at most 2, got 3"):
        F.constrain_norms(w, 1.0, row_dims=3)
    with pytest.raises(ValueError, match="weight must be C-contiguous"):
        F.constrain_norms(np.ones((4, 6), np.float32)[:, ::2], 1.0)
    with pytest.raises(TypeError, match="float32 or float64"):
        F.constrain_norms(w.astype(np.int32), 1.0)
    if backend in backends.CPU_BACKENDS:
        ro = np.ones((2, 2), np.float32)
        ro.flags.writeable = False
        with pytest.raises(ValueError, match="read-only"):
            F.constrain_norms(ro, 1.0)
