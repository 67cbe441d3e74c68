"""scripts/gpu_check.sh, the GPU acceptance check: without a GPU it says so in one line; its report
reads the steps' logs (ncu's CSV included); its workloads run on both GPU backends (here on the
CuPy stand-in)."""

import importlib.util
import json
import os
import subprocess
from pathlib import Path

import pytest

from gpu_paths import strict_standin

ROOT = Path(__file__).resolve().parents[2]


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_without_a_gpu_it_says_so_in_one_line(tmp_path):
    env = {**os.environ, "PATH": "/usr/bin:/bin"}  # no nvidia-smi there
    out = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), str(tmp_path / "out")], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert out.stdout.strip().count("\n") == 0 and "no NVIDIA GPU here" in out.stdout and out.stderr == ""
    assert not (tmp_path / "out").exists()  # nothing written


def test_an_nvidia_smi_that_lists_no_gpu_counts_as_none(tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "nvidia-smi").write_text("#!/bin/sh\necho 'No devices were found' >&2\nexit 6\n")
    (fake / "nvidia-smi").chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}:/usr/bin:/bin"}
    out = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), str(tmp_path / "out")], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "nvidia-smi lists none" in out.stdout


NCU_CSV = '''==PROF== Connected to process 123
"ID","Process ID","Process Name","Host Name","Kernel Name","Context","Stream","Block Size","Grid Size","Device","CC","gpu__time_duration.sum","sm__inst_executed_pipe_fma.avg.pct_of_peak_sustained_active","sm__pipe_fma_cycles_active.avg.pct_of_peak_sustained_active","sm__warps_active.avg.pct_of_peak_sustained_active"
"","","","","","","","","","","","usecond","%","%","%"
"0","123","python3","localhost","void conv2d_forward<float, 64, 64>(float *, const float *)","1","7","(256, 1, 1)","(100, 1, 1)","0","9.0","120.5","60.1","62.3","48.2"
"1","123","python3","localhost","void conv2d_forward<float, 64, 64>(float *, const float *)","1","7","(256, 1, 1)","(100, 1, 1)","0","9.0","121.5","62.1","64.3","50.2"
"2","123","python3","localhost","void gemm<float, 64, 64, false, true>(float *)","1","7","(256, 1, 1)","(10, 1, 1)","0","9.0","30","70","71","40"
==PROF== Disconnected from process 123
'''


def test_the_report_reads_every_step(tmp_path):
    report = _load("gpu_check_report")
    logs = tmp_path / "logs"
    logs.mkdir()
    steps = [("environment", 0), ("build", 0), ("verify-cupy", 0), ("verify-cuda", 0), ("tests", 1), ("bench", 0),
             ("sanitizer-memcheck", 0), ("sanitizer-racecheck", 0), ("sanitizer-synccheck", 3), ("ncu", 0)]
    (tmp_path / "steps.jsonl").write_text("".join(
        json.dumps({"step": s, "rc": rc, "seconds": 5, "limit": 60, "timed_out": False}) + "\n" for s, rc in steps))
    (tmp_path / "environment.json").write_text(json.dumps({
        "python": "3.12.3", "executable": "/opt/python3", "packages": {"torch": "2.11.0+cu130", "cupy-cuda13x": "14.2.0"},
        "missing": [], "torch_cuda": "13.0", "torch_pin_met": False, "nvcc": ["Build cuda_13.0"]}))
    (logs / "verify-cupy.log").write_text("table\n48 passed, 0 failed\n")
    (logs / "verify-cuda.log").write_text("table\n47 passed, 1 failed\n")
    (logs / "tests.log").write_text("....F\n===== 1 failed, 900 passed in 120.00s =====\n")
    (logs / "sanitizer-memcheck.log").write_text("========= ERROR SUMMARY: 0 errors\n")
    (logs / "sanitizer-synccheck.log").write_text("========= ERROR SUMMARY: 2 errors\n")
    (logs / "ncu.log").write_text(NCU_CSV)
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "bench.json").write_text(json.dumps({
        "machine": {"name": "NVIDIA H200"}, "complete": True, "validation": [{}] * 3,
        "rows": [{"network": "torchvision", "batch": 2, "impl": "ours (cuda)", "phase": "train_step",
                  "median_ms": 12.5, "spread_pct": 3.0},
                 {"network": "torchvision", "layer": "conv2", "kind": "conv", "batch": 2, "impl": "ours (cuda)",
                  "phase": "forward", "median_ms": 0.5, "spread_pct": 1.0},
                 {"network": "torchvision", "layer": "conv2", "kind": "conv", "batch": 2, "impl": "ours (cupy, v2)",
                  "phase": "forward", "median_ms": 0.7, "spread_pct": 1.0},
                 {"network": "torchvision", "layer": "fc6", "kind": "fc", "batch": 2, "impl": "ours (cupy)",
                  "phase": "forward", "median_ms": 0.25, "spread_pct": 1.0}]}))
    assert report.main([str(tmp_path), "NVIDIA H200, 580.1, 143771 MiB", "300"]) == 1  # two steps failed
    md = (tmp_path / "gpu_check.md").read_text()
    data = json.loads((tmp_path / "gpu_check.json").read_text())
    assert "NVIDIA H200, 580.1" in md and "not the pinned 2.13.0" in md and "PyTorch 2.11.0+cu130" in md
    assert "verify --backend cuda: 47 passed, 1 failed" in md and "1 failed, 900 passed" in md
    assert "synccheck: ERROR SUMMARY: 2 errors" in md and "12.5 ms" in md
    (conv,) = [k for k in data["ncu"] if "conv2d_forward" in k["kernel"]]
    assert conv["launches"] == 2 and conv["achieved occupancy %"] == pytest.approx(49.2)
    assert conv["FMA pipe active %"] == pytest.approx(63.3)
    assert "| `void gemm<float, 64, 64, false, true>(float *)` | 1 | 40.0 | 71.0 | 70.0 | 30.0 |" in md
    assert not data["passed"] and "### sanitizer-synccheck" in md
    # the conv and fc forwards (the automatic choice; not the per-version rows) next to the issue
    # model's prediction for that layer and batch
    from alexnet_raw.perf import kernel_report
    models = {r["layer"]: r for r in kernel_report.roofline(2)}
    conv2, fc6 = data["bench"]["model"]
    for judged, layer, ms, impl in ((conv2, "torchvision/conv2", 0.5, "ours (cuda)"),
                                    (fc6, "torchvision/fc6", 0.25, "ours (cupy)")):
        model = models[layer]
        assert judged["model_ms"] == pytest.approx(model["model_seconds"] * 1e3) and judged["tile"] == model["tile"]
        assert (f"| {layer} | 2 | {impl} | {model['tile'][0]} x {model['tile'][1]} v{model['tile'][2]} | {ms} | "
                f"{model['model_seconds'] * 1e3:.3g} | {ms / (model['model_seconds'] * 1e3):.2f} |") in md


def test_every_kernel_is_launched_once(capsys):
    workloads = _load("gpu_workloads")
    with strict_standin(1):
        assert workloads.main(["every-kernel", "--backend", "cuda", "--batch", "1"]) == 0
    out = capsys.readouterr().out
    from alexnet_raw.perf import layer_cases

    found = layer_cases.representative_launches(batch=1)
    assert f"every-kernel: {len(found)} kernels launched once on cuda" in out
    assert all(f"launched {name} " in out for name in found)


@pytest.mark.parametrize("backend", ["cupy", "cuda"])
def test_a_training_step_runs_on_both_gpu_backends(backend, capsys):
    workloads = _load("gpu_workloads")
    with strict_standin(1):
        assert workloads.main(["training-step", "--backend", backend, "--network", "mini", "--batch", "2",
                               "--warmup", "0"]) == 0
    assert f"training-step: done on {backend}" in capsys.readouterr().out


def test_the_workloads_refuse_a_backend_that_cannot_run(capsys):
    workloads = _load("gpu_workloads")
    assert workloads.main(["every-kernel", "--backend", "cuda"]) == 1
    assert "error: cuda:" in capsys.readouterr().err


@pytest.mark.parametrize("backend", ["cupy", "cuda"])
def test_nccl_over_one_rank_runs_every_layers_all_reduce_and_leaves_the_gradients(backend, capsys):
    workloads = _load("gpu_workloads")
    with strict_standin(2):  # mini's two towers on two GPUs: a communicator and a stream on each
        assert workloads.main(["nccl-one-rank", "--backend", backend, "--batch", "2"]) == 0
        from cupy_standin import nccl

        issued = list(nccl.issued)
    from alexnet_raw import Model

    mini = Model.named("mini")
    assert len(issued) == len(mini.gradient_order())
    assert {gpu for gpu, *_ in issued} == {0, 1}
    assert f"nccl-one-rank: {len(issued)} all-reduces of mini's layers on {backend}, gradients unchanged" in \
        capsys.readouterr().out
