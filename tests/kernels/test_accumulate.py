"""accumulate (kernels/accumulate.cu): out += x, exact against NumPy, on both CPU paths."""

import numpy as np
import pytest

from alexnet_raw.runtime import backends
from alexnet_raw import functional as F


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(0,), (1,), (2, 3, 17, 19), (100003,)])
def test_accumulate_matches_numpy(backend, under_schedules, dtype, shape):
    rng = np.random.default_rng(0)
    base = rng.standard_normal(shape).astype(dtype)
    x = rng.standard_normal(shape).astype(dtype)
    if base.size >= 3:
        base.reshape(-1)[:3] = [np.inf, np.nan, 1.0]
        x.reshape(-1)[:3] = [-np.inf, 1.0, np.nan]

    def run():
        out = base.copy()
        assert F.accumulate(out, x) is out
        return out

    out = under_schedules(run)
    with np.errstate(invalid="ignore"):  # inf + -inf is NaN, on purpose
        expected = base + x
    np.testing.assert_array_equal(out, expected)


def test_accumulate_rejects_bad_input(backend):
    out = np.zeros((4, 4), np.float32)
    with pytest.raises(ValueError, match=r"shape of out \(4, 4\), got \(4, 3\)"):
        F.accumulate(out, np.zeros((4, 3), np.float32))
    with pytest.raises(TypeError, match="same dtype"):
        F.accumulate(out, np.zeros((4, 4), np.float64))
    with pytest.raises(ValueError, match="overlap"):
        F.accumulate(out, out)
    with pytest.raises(ValueError, match="out must be C-contiguous"):  # written in place; x may be strided
        F.accumulate(np.zeros((4, 8), np.float32)[:, ::2], out)
    if backend in backends.CPU_BACKENDS:  # a NumPy array can be read-only; a device array cannot
        ro = np.zeros((4, 4), np.float32)
        ro.flags.writeable = False
        with pytest.raises(ValueError, match="read-only"):
            F.accumulate(ro, out)
