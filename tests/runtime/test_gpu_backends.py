"""The two GPU backends (on a real GPU when there is one, else on the CuPy stand-in): the same
results bit for bit for every op (both compile with kernels/gpu_options.txt, -ftz=true, which CuPy
forces on RawModule), float32 subnormals flushed where the CPU runtime and PyTorch keep them; and
(on two simulated GPUs) ops that run on the GPU their arrays are on."""

import numpy as np
import pytest
import torch

import contextlib

from alexnet_raw.runtime import backends
from alexnet_raw.checks import verify
from alexnet_raw import functional as F
from alexnet_raw.runtime.on_device import OnDevice
from gpu_paths import GPU_KIND, strict_standin


@contextlib.contextmanager
def one_gpu():
    """The real GPU when CuPy sees one (scripts/gpu_check.sh runs these tests there), else the
    stand-in with one simulated GPU."""
    if GPU_KIND == "gpu":
        import cupy

        yield cupy
        backends.reset()
    else:
        with strict_standin(1) as cp:
            yield cp


def _run_checks(cp, backend):
    backends.set_backend(backend)
    functional = OnDevice(F, cp)
    out = {}
    for name, _, fn in verify.CHECKS:
        for dtype in (np.float32, np.float64):
            ours, _ = fn(np.random.default_rng(0), dtype, torch, functional)
            out[(name, np.dtype(dtype).name)] = np.asarray(ours)
    return out


def test_cupy_and_cuda_backends_are_bit_identical_on_every_verify_check():
    with one_gpu() as cp:
        a, b = _run_checks(cp, "cupy"), _run_checks(cp, "cuda")
    assert a.keys() == b.keys() and len(a) == 2 * len(verify.CHECKS)
    for key in a:
        assert a[key].tobytes() == b[key].tobytes(), f"{key}: cupy and cuda differ"


def _subnormal_ops(G, rng):
    tiny = np.float32(1e-39)  # float32 subnormals (below 1.18e-38)
    x = (rng.standard_normal((2, 3, 9, 9)) * tiny).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    m = (rng.standard_normal((5, 16)) * tiny).astype(np.float32)
    out = np.ones((5, 16), np.float32)
    return {
        "relu": G.relu(x),
        "conv2d": G.conv2d(x, w, stride=2),
        "linear": G.linear(m, rng.standard_normal((8, 16)).astype(np.float32)),
        "max_pool2d": G.max_pool2d(x, 3, 2),
        "accumulate": G.accumulate(out * tiny, m),
        "local_response_norm": G.local_response_norm(x, 5),
        "local": G.local(x, rng.standard_normal((4, 4, 4, 3, 3, 3)).astype(np.float32), stride=2),
    }


def test_gpu_backends_flush_float32_subnormals_where_the_cpu_runtime_keeps_them():
    rng_seed = 3
    cpu = _subnormal_ops(F, np.random.default_rng(rng_seed))
    with one_gpu() as cp:
        results = {}
        for backend in ("cupy", "cuda"):
            backends.set_backend(backend)
            results[backend] = _subnormal_ops(OnDevice(F, cp), np.random.default_rng(rng_seed))
    for op in cpu:
        assert results["cupy"][op].tobytes() == results["cuda"][op].tobytes(), op
    # the CPU runtime computes with the subnormals (as PyTorch on the CPU); the GPU backends read
    # them as zero: a linear layer of subnormal inputs is 0 on the GPU, not on the CPU
    assert np.any(cpu["linear"] != 0) and not np.any(results["cuda"]["linear"])
    assert np.any(cpu["conv2d"] != 0) and not np.any(results["cuda"]["conv2d"])
    assert np.any(cpu["local"] != 0) and not np.any(results["cuda"]["local"])


def test_double_kernels_are_not_flushed():
    tiny = np.full(8, 1e-310)  # float64 subnormal
    with one_gpu() as cp:
        backends.set_backend("cupy")
        G = OnDevice(F, cp)
        assert np.array_equal(G.relu(tiny), tiny)


def test_ops_run_on_the_gpu_their_arrays_are_on():
    """Fault 6: outputs were allocated and kernels launched on the current GPU whatever GPU the
    arrays were on (an illegal address, or slow peer reads)."""
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 3, 8, 8)).astype(np.float32), rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    expected = F.conv2d(x, w, padding=1)
    with strict_standin(2) as cp:
        for backend in ("cupy", "cuda"):
            backends.set_backend(backend)
            with cp.cuda.Device(1):
                xd, wd = cp.asarray(x), cp.asarray(w)
            assert cp.cuda.Device().id == 0
            y = F.conv2d(xd, wd, padding=1)
            assert y.device.id == 1 and cp.cuda.Device().id == 0
            with cp.cuda.Device(1):
                assert np.array_equal(y.get(), expected)
            w0 = cp.asarray(w)
            with pytest.raises(ValueError, match="weight is on GPU 0 but the other arrays are on GPU 1"):
                F.conv2d(xd, w0, padding=1)
            with pytest.raises(ValueError, match="target is on GPU 0 but the other arrays are on GPU 1"):
                with cp.cuda.Device(1):
                    logits = cp.asarray(rng.standard_normal((2, 5)).astype(np.float32))
                F.cross_entropy(logits, cp.asarray(np.array([1, 2])))


def test_the_extension_and_nvrtc_get_the_same_gpu_options():
    """Both GPU builds compile with kernels/gpu_options.txt: the nvcc extension's CMake line and the
    options the cupy backend hands to NVRTC (CuPy then appends its own -ftz=true)."""
    from alexnet_raw.runtime import kernel_sources

    assert kernel_sources.gpu_options() == ("-ftz=true",)
    text, options, names = kernel_sources.nvrtc_program("relu.cu")
    assert options == kernel_sources.COMPILE_OPTIONS + kernel_sources.gpu_options() and names
    try:
        from alexnet_raw import _cuda
    except ImportError:
        pytest.skip("the nvcc extension is not built on this machine")
    assert tuple(_cuda.gpu_options.split()) == kernel_sources.gpu_options()
