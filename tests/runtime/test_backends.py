"""Backend selection: what is available here, and clear errors for what is not."""

import os
import subprocess
import sys

import numpy as np
import pytest

import alexnet_raw
from alexnet_raw.runtime import backends


def test_cpu_backends_are_available():
    names = alexnet_raw.available_backends()
    assert "emu" in names and "emu_ext" in names


def _has_gpu():
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


@pytest.mark.skipif(_has_gpu(), reason="this machine has a GPU")
@pytest.mark.parametrize("name", ["cupy", "cuda"])
def test_gpu_backend_without_gpu_says_what_is_missing(name):
    with pytest.raises(alexnet_raw.BackendUnavailable) as info:
        alexnet_raw.set_backend(name)
    message = str(info.value)
    assert message.startswith(f"{name}:")
    assert any(word in message for word in ("CuPy is not installed", "no usable GPU", "not installed"))
    assert name not in alexnet_raw.available_backends()


def test_unknown_backend_is_a_value_error():
    with pytest.raises(ValueError, match="unknown backend 'metal'"):
        alexnet_raw.set_backend("metal")


def test_backend_for_rejects_non_arrays():
    with pytest.raises(TypeError, match="numpy.ndarray"):
        backends.backend_for([1.0])


def test_set_backend_switches_cpu_path():
    old = backends.current_backends()[0]
    try:
        alexnet_raw.set_backend("emu_ext")
        assert backends.backend_for(np.zeros(1)).name == "emu_ext"
        alexnet_raw.set_backend("emu")
        assert backends.backend_for(np.zeros(1)).name == "emu"
    finally:
        alexnet_raw.set_backend(old)


def test_environment_variable_chooses_backend():
    code = "from alexnet_raw.runtime import backends; import numpy; print(backends.backend_for(numpy.zeros(1)).name)"
    env = dict(os.environ, ALEXNET_RAW_BACKEND="emu_ext")
    out = subprocess.run([sys.executable, "-P", "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "emu_ext"
    env["ALEXNET_RAW_BACKEND"] = "bogus"
    bad = subprocess.run([sys.executable, "-P", "-c", code], env=env, capture_output=True, text=True)
    assert bad.returncode != 0 and "unknown backend 'bogus'" in bad.stderr


def test_a_bad_backend_variable_is_one_line_from_the_cli(tmp_path):
    env = dict(os.environ, ALEXNET_RAW_BACKEND="bogus")
    out = subprocess.run([sys.executable, "-P", "-m", "alexnet_raw.cli", "train", "--epochs", "1", "--out",
                          str(tmp_path / "run")], env=env, capture_output=True, text=True)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1] == (
        "alexnet-raw train: error: ALEXNET_RAW_BACKEND names unknown backend 'bogus'; choose from "
        "emu, emu_ext, cupy, cuda")
