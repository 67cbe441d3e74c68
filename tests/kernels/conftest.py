"""Fixtures for the kernel tests: every backend, and runs under several thread schedules.

Every kernel test runs on both CPU backends (the CPU runtime's JIT, `emu`, and the pybind11
extension built against it, `emu_ext`, whose launch code is the GPU extension's), on the GPU paths
(`cupy` and `cuda`: on a real GPU when there is one, else through the CuPy stand-in, which runs
the same kernels on the CPU runtime with CuPy's and the extension's behaviour: device arrays,
queued streams, -ftz=true), and under two thread schedules, requiring bit-identical results: a race
that one schedule hides, the other shows. The tests call `F.<op>` with NumPy arrays; on a GPU path
the module's `F` is alexnet_raw.runtime.on_device.OnDevice, which moves arguments to the device and
results back.

ALEXNET_RAW_TEST_BACKENDS (comma-separated) chooses the paths; scripts/test.sh's sanitizer pass runs
the extension's CPU path only (the same kernels as the JIT's, and the bindings' launch code too)
under one schedule, and its first pass leaves that path's general tests to it
(ALEXNET_RAW_TEST_EXT_SANITIZED=1, below).
"""

import os

import numpy as np
import pytest

import cupy_standin
from backend_choice import cpu_backends_under_test, wanted_backends
from alexnet_raw.runtime import backends
from alexnet_raw import emu
from alexnet_raw import functional as functional_ops
from alexnet_raw.runtime.on_device import OnDevice
from gpu_paths import GPU_KIND, strict_standin

SCHEDULES = (("forward", 0), ("random", 20261125))
# On the stand-in the general kernel tests take the cupy path; the cuda path (the extension's GPU
# launch code) gets the full-size layers (backend_dtype) and is held bit-identical to cupy on every
# op by tests/runtime/test_gpu_backends.py. On a real GPU both paths take every test.
DEFAULT_GPU_PATHS = backends.GPU_BACKENDS if GPU_KIND == "gpu" else ("cupy",)
_wanted = wanted_backends()
# ALEXNET_RAW_TEST_EXT_SANITIZED=1 (scripts/test.sh's first pass): the extension's CPU path runs the
# general kernel tests in the sanitizer pass only (the same tests under AddressSanitizer/UBSan, one
# thread schedule: the JIT path checks both schedules of the same kernel code here), and here the
# full-size layers, which that pass leaves out
_EXT_SANITIZED = os.environ.get("ALEXNET_RAW_TEST_EXT_SANITIZED", "0") == "1"
BACKEND_PARAMS = [b for b in cpu_backends_under_test() if not (_EXT_SANITIZED and b == "emu_ext")] + [
    f"{b}-{GPU_KIND}" for b in backends.GPU_BACKENDS if (b in _wanted if _wanted else b in DEFAULT_GPU_PATHS)]
# ALEXNET_RAW_TEST_SCHEDULES=1: one thread schedule only (the sanitizer pass: an overrun does not
# depend on the order of a block's threads, a race does, and the first pass checks that)
SCHEDULE_COUNT = int(os.environ.get("ALEXNET_RAW_TEST_SCHEDULES", "2"))


def use_backend(name, request, monkeypatch):
    """Select backend `name` for the test; on a GPU path, patch the test module's F."""
    if name in backends.CPU_BACKENDS:
        old = backends.current_backends()[0]
        backends.set_backend(name)
        yield name
        backends.set_backend(old)
        return
    if GPU_KIND == "standin":
        with strict_standin(1) as cp:
            backends.set_backend(name)
            monkeypatch.setattr(request.module, "F", OnDevice(functional_ops, cp), raising=False)
            yield name
            cupy_standin.synchronize_all()  # a kernel error queued last still fails the test
        return
    import cupy

    backends.set_backend(name)
    monkeypatch.setattr(request.module, "F", OnDevice(functional_ops, cupy), raising=False)
    yield name
    cupy.cuda.Device().synchronize()


@pytest.fixture(params=BACKEND_PARAMS)
def backend(request, monkeypatch):
    """The backend of the test: emu, emu_ext, cupy or cuda (the last two real or stand-in)."""
    yield from use_backend(request.param.split("-")[0], request, monkeypatch)


# Full-size layers are slow on the CPU: each runs once per path with one dtype, float32 on emu and
# cupy, float64 on emu_ext and cuda (the other tests cover both dtypes on the other paths)
BACKEND_DTYPE_PAIRS = tuple(pair for pair in (("emu", np.float32), ("emu_ext", np.float64), ("cupy", np.float32),
                                              ("cuda", np.float64)) if not _wanted or pair[0] in _wanted)


@pytest.fixture(params=BACKEND_DTYPE_PAIRS, ids=[f"{b}{'' if b in backends.CPU_BACKENDS else '-' + GPU_KIND}-"
                                                f"{np.dtype(d).name}" for b, d in BACKEND_DTYPE_PAIRS])
def backend_dtype(request, monkeypatch):
    """(backend name, dtype), the backend selected for the test."""
    for name in use_backend(request.param[0], request, monkeypatch):
        yield request.param


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
def under_schedules(request):
    """under_schedules(fn): run fn() under each schedule, assert bit-identical outputs, return them.
    On the stand-in's GPU paths once: they run the same kernels as the CPU paths, which check the
    schedules; what they add is the launch path, streams and devices. On a real GPU twice: the same
    results run after run."""
    param = next((request.getfixturevalue(n) for n in ("backend", "backend_dtype") if n in request.fixturenames), None)
    name = param[0] if isinstance(param, tuple) else param
    schedules = SCHEDULES[:1] if name in backends.GPU_BACKENDS and GPU_KIND == "standin" else SCHEDULES
    schedules = schedules[:max(1, SCHEDULE_COUNT)]

    def run(fn):
        results = []
        for kind, seed in schedules:
            with emu.schedule(kind, seed):
                results.append(fn())
        for (kind, seed), r in zip(schedules[1:], results[1:]):
            assert_bit_identical(results[0], r, f"schedule {kind}:{seed} vs {schedules[0][0]}")
        return results[0]

    return run
