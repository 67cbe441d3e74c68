"""Fixtures for the kernel tests: both CPU paths, and runs under several thread schedules.

Every kernel test runs on both CPU backends (the CPU runtime's JIT, `emu`, and the pybind11
extension built against it, `emu_ext`, whose launch code is the GPU extension's) and under two
thread schedules, requiring bit-identical results: a race that one schedule hides, the other shows.
"""

import numpy as np
import pytest

from alexnet_raw import backends, emu

SCHEDULES = (("forward", 0), ("random", 20261125))


@pytest.fixture(params=backends.CPU_BACKENDS)
def cpu_backend(request):
    old = backends.current_backends()[0]
    backends.set_backend(request.param)
    yield request.param
    backends.set_backend(old)


# Full-size layers are slow on the CPU: each runs once per dtype, float32 on one CPU path and float64
# on the other (random shapes cover every dtype on both paths)
BACKEND_DTYPE_PAIRS = (("emu", np.float32), ("emu_ext", np.float64))


@pytest.fixture(params=BACKEND_DTYPE_PAIRS, ids=[f"{b}-{np.dtype(d).name}" for b, d in BACKEND_DTYPE_PAIRS])
def backend_dtype(request):
    """(backend name, dtype), the backend selected for the test."""
    old = backends.current_backends()[0]
    backends.set_backend(request.param[0])
    yield request.param
    backends.set_backend(old)


def _flatten(result):
    if isinstance(result, (tuple, list)):
        out = []
        for r in result:
            out.extend(_flatten(r))
        return out
    return [result]


def assert_bit_identical(a, b, what):
    for i, (x, y) in enumerate(zip(_flatten(a), _flatten(b))):
        if x is None or y is None:
            assert x is None and y is None, f"{what}: output {i} is None under one schedule only"
            continue
        x, y = np.asarray(x), np.asarray(y)
        assert x.shape == y.shape and x.dtype == y.dtype, f"{what}: output {i} differs in shape or dtype"
        assert x.tobytes() == y.tobytes(), f"{what}: output {i} is not bit-identical across thread schedules"


@pytest.fixture
def under_schedules():
    """under_schedules(fn): run fn() under each schedule, assert bit-identical outputs, return them."""

    def run(fn):
        results = []
        for kind, seed in SCHEDULES:
            with emu.schedule(kind, seed):
                results.append(fn())
        for (kind, seed), r in zip(SCHEDULES[1:], results[1:]):
            assert_bit_identical(results[0], r, f"schedule {kind}:{seed} vs {SCHEDULES[0][0]}")
        return results[0]

    return run
