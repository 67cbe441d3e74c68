"""train, evaluate and predict end to end on the GPU backends, through the CuPy stand-in: the
commands a GPU user runs first. Fault 1 of the GPU-paths issue (cupy.isfinite on the NumPy batch)
made all three die at their first batch on every GPU backend."""

import json

import numpy as np
import pytest

from alexnet_raw.training import checkpoint as ck, evaluate, predict, runlog
from gpu_paths import strict_standin
from train_helpers import run_train


@pytest.fixture(scope="module")
def cpu_run(folder_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("cpu") / "run"
    assert run_train("--data", folder_data, "--epochs", 1, "--batch-size", 8, "--seed", 3, "--out", out) == 0
    return out


@pytest.mark.parametrize("backend", ["cupy", "cuda"])
def test_train_evaluate_and_predict_on_a_gpu_backend(backend, cpu_run, folder_data, tmp_path, capsys):
    out = tmp_path / "run"
    with strict_standin(1):
        assert run_train("--data", folder_data, "--epochs", 1, "--batch-size", 8, "--seed", 3, "--out", out,
                         "--backend", backend) == 0
        assert f"backend {backend}" in capsys.readouterr().out
        results = tmp_path / "eval.json"
        assert evaluate.main(["--checkpoint", str(out / ck.FILENAME), "--data", str(folder_data), "--workers", "0",
                              "--backend", backend, "--json", str(results)]) == 0
        image = folder_data / "test" / "class1" / "0.png"
        assert predict.main(["--checkpoint", str(out / ck.FILENAME), "--backend", backend, str(image)]) == 0
    printed = capsys.readouterr().out
    assert "centre crop: top-1" in printed and str(image) in printed
    assert set(json.loads(results.read_text())) >= {"centre", "ten_views"}
    # the same kernels as on the CPU runtime (float32; a subnormal would be flushed on the GPU path)
    ours, cpu = runlog.read_metrics(out / "metrics.jsonl")[0], runlog.read_metrics(cpu_run / "metrics.jsonl")[0]
    assert ours["train_loss"] == pytest.approx(cpu["train_loss"], rel=1e-6)
    assert ours["test_top1"] == cpu["test_top1"]
    a, b = ck.load_checkpoint(out / ck.FILENAME).weights, ck.load_checkpoint(cpu_run / ck.FILENAME).weights
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-7, err_msg=key)
