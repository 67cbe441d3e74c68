"""Fixtures for the kernel tests: every backend, and runs under several thread schedules.

Every kernel test runs on both CPU backends (the CPU runtime's JIT, `emu`, and the pybind11
extension built against it, `emu_ext`, whose launch code is the GPU extension's), on the GPU paths
(`cupy` and `cuda`: on a real GPU when there is one, else through the CuPy stand-in, which runs
the same kernels on the CPU runtime with CuPy's and the extension's behaviour: device arrays,
queued streams, -ftz=true), and under two thread schedules, requiring bit-identical results: a race
that one schedule hides, the other shows. The tests call `F.<op>` with NumPy arrays; on a GPU path
the module's `F` is alexnet_raw.on_device.OnDevice, which moves arguments to the device and
results back.

ALEXNET_RAW_TEST_BACKENDS (comma-separated) narrows the list; scripts/test.sh's sanitizer pass
runs the CPU paths only (the stand-in adds no kernel code to check for overruns).
"""

import os

import numpy as np
import pytest

import cupy_standin
from alexnet_raw import backends, emu
from alexnet_raw import functional as functional_ops
from alexnet_raw.on_device import OnDevice
from gpu_paths import GPU_KIND, strict_standin

SCHEDULES = (("forward", 0), ("random", 20261125))
ALL_PARAMS = list(backends.CPU_BACKENDS) + [f"{b}-{GPU_KIND}" for b in backends.GPU_BACKENDS]
_wanted = [b.strip() for b in os.environ.get("ALEXNET_RAW_TEST_BACKENDS", "").split(",") if b.strip()]
BACKEND_PARAMS = [p for p in ALL_PARAMS if not _wanted or p.split("-")[0] in _wanted]


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
# cupy, float64 on emu_ext and cuda (random shapes cover every dtype on every path)
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
