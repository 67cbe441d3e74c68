"""alexnet-raw bench: its statistics, phase assignment, repeat logic, tables and chart with synthetic
timings (the logic the GPU path shares), PyTorch's side doing the same work as ours, and one tiny
real CPU run writing the three files."""

import json

import numpy as np
import pytest

from alexnet_raw.perf import bench, layer_cases
from alexnet_raw.runtime.launch import Launch


# -- statistics ------------------------------------------------------------------------------------
def test_summarize_gives_median_quartiles_and_spread():
    s = bench.summarize([0.005, 0.001, 0.004, 0.002, 0.003])
    assert s["median_ms"] == pytest.approx(3.0) and s["min_ms"] == pytest.approx(1.0)
    assert s["max_ms"] == pytest.approx(5.0)
    assert (s["q1_ms"], s["q3_ms"]) == (pytest.approx(2.0), pytest.approx(4.0))
    assert s["spread_pct"] == pytest.approx(100 * 2 / 3) and s["repeats"] == 5
    assert bench.summarize([0.5])["spread_pct"] == 0


@pytest.mark.parametrize("bad", [[], [float("nan")], [-1.0]])
def test_summarize_rejects_bad_timings(bad):
    with pytest.raises(ValueError, match="timings"):
        bench.summarize(bad)


def test_throughput_and_percent_of_peak():
    assert bench.throughput(2e9, 10.0, 400.0) == (pytest.approx(200.0), pytest.approx(50.0))
    assert bench.throughput(2e9, 10.0, None) == (pytest.approx(200.0), None)
    assert bench.throughput(None, 10.0, 400.0) == (None, None)


def test_cpu_info_names_the_machine_and_a_nominal_peak(monkeypatch):
    monkeypatch.setattr(bench.machine.os, "cpu_count", lambda: 4)
    text = "model name\t: Example CPU 9000\ncpu MHz\t\t: 2500.000\nflags\t\t: sse avx avx2 fma\n"
    info = bench.cpu_info(text)
    assert info["name"] == "Example CPU 9000" and info["cores"] == 4
    assert info["peak_gflops"] == pytest.approx(4 * 2.5 * 32) and "nominal" in info["peak_source"]
    assert bench.cpu_info(text.replace("avx2 fma", "avx512f avx2 fma"))["peak_gflops"] == pytest.approx(4 * 2.5 * 64)
    assert bench.cpu_info("model name : X\n")["peak_gflops"] is None


# -- phases and repeats, with a fake clock ------------------------------------------------------------
def _launch(*arrays):
    return Launch("relu.cu", "relu_forward<float>", (1, 1, 1), (32, 1, 1), arrays)


def test_assign_phases_follows_the_arrays_each_launch_touches():
    grad, x, w = np.ones(8), np.ones(8), np.ones(4)
    gx, gw, gb, partial, wt = np.zeros(8), np.zeros(4), np.zeros(2), np.zeros(16), np.zeros(4)
    launches = [
        _launch(wt, w),  # transposes the weights for the data gradient: feeds the data launch
        _launch(gx, grad, wt),  # input gradient
        _launch(partial, grad, x),  # partial weight sums: feed the reduction
        _launch(gw, partial),  # weight gradient
        _launch(gb, grad),  # bias gradient
        _launch(np.zeros(3), grad),  # touches nothing anyone uses
    ]
    phases = bench.assign_phases(launches, [gx], [gw, gb], [grad, x, w])
    assert phases == ["backward_data", "backward_data", "backward_weights", "backward_weights", "backward_weights",
                      "backward_other"]
    view = gx.reshape(2, 4)  # a view of the gradient counts as the gradient
    assert bench.assign_phases([_launch(view, grad)], [gx], [gw], [grad]) == ["backward_data"]


class FakeClock:
    """Each timed piece of work takes the next duration of a list; synchronize() is counted."""

    name = "fake"

    def __init__(self, durations):
        self.durations, self.syncs = list(durations), 0

    def start(self):
        return None

    def stop(self, token):
        return self.durations.pop(0)

    def seconds(self, token):
        return token

    def synchronize(self):
        self.syncs += 1


def test_measure_torch_drops_warmup_and_times_each_phase():
    case = next(c for c in layer_cases.network_layers("torchvision") if c.name == "fc8")

    class Layer:
        def __init__(self):
            self.case, self.calls = case, []

        def forward(self):
            self.calls.append("f")

        def backward_data(self):
            self.calls.append("d")

        def backward_weights(self):
            self.calls.append("w")

    layer, flushes = Layer(), []
    clock = FakeClock([9, 9, 9, 1, 2, 3, 4, 5, 6])
    out = bench.measure_torch(layer, clock, warmup=1, repeats=2, flush=lambda: flushes.append(1))
    assert out == {"forward": [1, 4], "backward_data": [2, 5], "backward_weights": [3, 6]}
    assert layer.calls == list("fdw" * 3) and len(flushes) == 3 and clock.syncs == 3


def test_measure_ours_sums_launch_times_per_phase(monkeypatch):
    """A real pooling layer on the CPU runtime, with each launch given a fake duration."""
    case = next(c for c in layer_cases.network_layers("torchvision") if c.name == "pool3")
    run = layer_cases.make_layer_run(case, 1)
    grad = np.ones((1, *case.output_shape), np.float32)
    # forward: one launch; backward: argmax + gather; two repeats after one warm-up
    clock = FakeClock([7, 7, 7, 0.5, 0.25, 0.125, 1.5, 1.25, 1.125])
    out = bench.measure_ours(run, clock, grad, warmup=1, repeats=2)
    assert out == {"forward": [0.5, 1.5], "backward_data": [0.375, 2.375]}


# -- PyTorch's side does the same work ------------------------------------------------------------------
@pytest.mark.parametrize("network, name", [("torchvision", "pool3"), ("krizhevsky2012", "rnorm2a"),
                                           ("krizhevsky2012", "cnorm2a")])
def test_torch_layer_computes_what_our_layer_computes(network, name):
    import torch

    case = next(c for c in layer_cases.network_layers(network) if c.name == name)
    tl = bench.TorchLayer(case, 1)
    run = layer_cases.make_layer_run(case, 1)
    run.xs = [x.numpy().copy() for x in tl.xs]
    np.testing.assert_allclose(run.forward(), tl.forward().numpy(), rtol=1e-5, atol=1e-6)
    ours = run.backward(tl.grad.numpy().copy())[0]
    np.testing.assert_allclose(ours, tl.backward_data()[0].numpy(), rtol=1e-4, atol=1e-6)
    assert isinstance(tl.forward(), torch.Tensor)


# -- output ---------------------------------------------------------------------------------------------
def _synthetic_result(mode):
    rows = []
    impls = ["ours (emu, CPU)", "PyTorch (CPU)"] if mode == "cpu" else ["ours (cuda)", "cuDNN/cuBLAS (FP32)"]
    for impl, scale in zip(impls, (2.0, 1.0)):
        for batch in (1, 2, 4):
            for phase in ("forward", "backward_data"):
                stats = bench.summarize([scale * batch * 1e-3 * f for f in (0.9, 1.0, 1.1)])
                flop = 1e9 * batch
                g, p = bench.throughput(flop, stats["median_ms"], 1000.0)
                rows.append({"network": "torchvision", "layer": "conv1", "kind": "conv", "shape": "3x224x224", "count": 1,
                             "batch": batch, "phase": phase, "impl": impl, **stats, "flop": flop, "gflops": g,
                             "pct_peak": p})
            rows.append({**rows[-1], "layer": "train_step", "kind": "train_step", "phase": "train_step"})
    machine = ({"kind": "cpu", "name": "Example CPU", "cores": 2, "platform": "Linux", "peak_gflops": 1000.0,
                "peak_source": "nominal"} if mode == "cpu" else
               {"kind": "gpu", "name": "Example GPU", "compute_capability": "9.0", "peak_gflops": 1000.0,
                "peak_source": "nominal"})
    return {"mode": mode, "machine": machine, "clock": "fake", "rows": rows, "notes": ["a note"],
            "needs_gpu": bench.NEEDS_GPU if mode == "cpu" else []}


def test_markdown_of_cpu_figures_says_so_and_lists_what_needs_a_gpu():
    md = bench.format_markdown(_synthetic_result("cpu"))
    assert "CPU figures, measured on Example CPU, 2 cores" in md
    assert all(n in md for n in bench.NEEDS_GPU)
    assert "| conv1 | 3x224x224 | 4 | forward | 8 ±10% | 4 ±10% | 500 (50.0%) | 1000 (100.0%) |" in md
    assert "## How time grows with batch size" in md and "| 1.00 |" in md
    assert "GPU figures" not in md and "cuDNN" not in md.split("Comparisons that need a GPU")[0]


def test_markdown_of_gpu_figures_has_one_column_per_implementation():
    md = bench.format_markdown(_synthetic_result("gpu"))
    assert "GPU figures, measured on Example GPU" in md and "CPU figures" not in md
    assert "ours (cuda) ms | cuDNN/cuBLAS (FP32) ms" in md


def test_write_outputs_writes_json_markdown_and_png(tmp_path):
    paths = bench.write_outputs(_synthetic_result("cpu"), tmp_path / "out")
    assert json.loads(paths["json"].read_text())["machine"]["name"] == "Example CPU"
    assert paths["md"].read_text().startswith("# alexnet-raw bench")
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -- a tiny real run -----------------------------------------------------------------------------------
def test_tiny_cpu_run_writes_the_three_files(tmp_path, capsys):
    code = bench.main(["--out", str(tmp_path), "--network", "torchvision", "--layer", "pool3", "--batch", "1",
                       "--no-train-step", "--repeats", "2", "--warmup", "0"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "CPU figures" in printed and "need a GPU" in printed
    result = json.loads((tmp_path / "bench.json").read_text())
    assert result["mode"] == "cpu" and result["machine"]["cores"] >= 1 and result["machine"]["name"]
    impls = {r["impl"] for r in result["rows"]}
    assert impls == {"ours (emu, CPU)", "PyTorch (CPU)"}
    assert {(r["phase"], r["batch"]) for r in result["rows"]} == {("forward", 1), ("backward_data", 1)}
    assert all(r["median_ms"] > 0 and r["repeats"] == 2 for r in result["rows"])
    assert "pool3" in (tmp_path / "bench.md").read_text()
    assert (tmp_path / "bench.png").stat().st_size > 1000


def test_unknown_layer_is_refused(capsys):
    assert bench.main(["--out", "unused", "--layer", "conv9"]) == 2
    assert "unknown layer" in capsys.readouterr().err


# -- every row of ours, validation first, failures kept --------------------------------------------------
# one layer of each kind the benchmark times (conv, lrn, rnorm, pool, fc), across both networks
LAYERS = ("conv1a", "rnorm1a", "cnorm2a", "pool3", "fc8", "conv5")


def _expected_layer_keys(config_layers, batches):
    keys = set()
    for network in layer_cases.NETWORKS:
        for case in layer_cases.network_layers(network):
            if case.name in config_layers:
                phases = ["forward", "backward_data"] + (["backward_weights"] if case.weight_shapes else [])
                keys |= {(network, case.name, b, p) for b in batches for p in phases}
    return keys


def test_cpu_run_has_every_row_of_ours_including_the_training_steps(tmp_path):
    """Fault 2 of the GPU-paths issue: measure_train_ours imported alexnet_raw.perf.bench.engine, and the
    CPU run turned the error into a note: no training-step rows of ours, unnoticed."""
    args = ["--out", str(tmp_path), "--batch", "1", "--repeats", "1", "--warmup", "0"]
    for layer in LAYERS:
        args += ["--layer", layer]
    assert bench.main(args) == 0
    result = json.loads((tmp_path / "bench.json").read_text())
    assert result["complete"] and not result.get("error")
    ours = {(r["network"], r["layer"], r["batch"], r["phase"]) for r in result["rows"] if r["impl"].startswith("ours")}
    expected = _expected_layer_keys(LAYERS, (1,))
    assert expected <= ours, f"rows of ours missing: {sorted(expected - ours)}"
    assert {(n, "train_step", 1, "train_step") for n in layer_cases.NETWORKS} <= ours
    assert not [n for n in result["notes"] if "not measured" in n]
    validated = {(v["network"], v["layer"], v["batch"]) for v in result["validation"]}
    assert validated == {(n, layer, b) for n, layer, b, _ in expected}


def test_timing_starts_after_the_arguments_are_packed(monkeypatch):
    """Fault 3: the clock started before the backend looked the kernel up and packed its arguments,
    so at small batches the figure was Python. Preparing now happens before the clock starts."""
    import time

    from alexnet_raw.runtime import backends

    class SlowToPrepare(backends.Backend):
        def prepare(self, launch):
            time.sleep(0.05)  # packing, said slowly
            return lambda: None

    monkeypatch.setattr(backends, "get_backend", lambda name: SlowToPrepare())
    clock = bench.CpuClock()
    with bench.timed_launches(clock) as records:
        backends.backend_for(np.ones(4)).launch(_launch(np.ones(4)))
    (launch, seconds), = records
    assert seconds < 0.01


def test_a_layer_that_disagrees_with_pytorch_stops_the_run_and_keeps_what_was_measured(tmp_path, monkeypatch, capsys):
    """Fault 7: results were timed without a check, and exceptions became notes."""
    from alexnet_raw import functional

    real = functional.max_pool2d
    monkeypatch.setattr(functional, "max_pool2d", lambda *a, **k: real(*a, **k) * np.float32(1.001))
    args = ["--out", str(tmp_path), "--network", "krizhevsky2012", "--layer", "pool1a", "--layer", "rnorm1a",
            "--batch", "1", "--repeats", "1", "--warmup", "0", "--no-train-step"]
    assert bench.main(args) == 1
    err = capsys.readouterr().err
    assert "pool1a" in err and "forward output differs from PyTorch's" in err
    result = json.loads((tmp_path / "bench.json").read_text())
    assert "ValidationError" in result["error"] and not result["complete"]
    assert {r["layer"] for r in result["rows"]} == {"rnorm1a"}  # measured before the failure, kept
    assert "The run stopped" in (tmp_path / "bench.md").read_text()


def test_gpu_branch_on_the_stand_in_validates_everything_and_writes_no_timing(tmp_path, capsys):
    """The whole GPU branch (both GPU backends, cuDNN's columns, the split network's three training
    steps) runs on the CuPy stand-in; its event times are CPU times, so none is written."""
    from gpu_paths import strict_standin

    args = ["--out", str(tmp_path), "--batch", "1", "--repeats", "1", "--warmup", "0", "--layer", "pool3",
            "--layer", "conv1a"]
    with strict_standin(2):
        assert bench.main(args) == 0
    printed = capsys.readouterr().out
    assert "GPU found" in printed and "No timings: the CuPy stand-in" in printed
    result = json.loads((tmp_path / "bench.json").read_text())
    assert result["mode"] == "gpu-standin" and result["rows"] == [] and result["complete"]
    assert "median_ms" not in json.dumps(result)
    done = {(s["network"], s["layer"], s["batch"], s["phase"], s["impl"]) for s in result["stand_in"]}
    versions = tuple(f"ours (cupy, v{v})" for v in (1, 2, 3, 4))  # the progression, conv and fc layers only
    for network, layer, b, phase in _expected_layer_keys(("pool3", "conv1a"), (1,)):
        for impl in ("ours (cupy)", "ours (cuda)", "cuDNN/cuBLAS (FP32)", "cuDNN/cuBLAS (TF32)") + versions:
            assert ((network, layer, b, phase, impl) in done) == (impl not in versions or layer == "conv1a")
    for impl in ("ours (cupy)", "ours (cuda)", "ours (cupy, one device)", "ours (cuda, overlapped transfers)"):
        assert ("krizhevsky2012", "train_step", 1, "train_step", impl) in done
    assert ("torchvision", "train_step", 1, "train_step", "cuDNN/cuBLAS (FP32)") in done
    assert {v["impl"] for v in result["validation"]} == {"ours (cupy)", "ours (cuda)", *versions}
    assert "No timings" in (tmp_path / "bench.md").read_text()


def test_the_extra_local_layer_is_validated_and_timed_in_every_phase(tmp_path):
    """cuda-convnet2's CIFAR local3 (layer_cases.extra_layers: no shipped network has a local layer)
    gets its rows of ours and PyTorch's, after its validation, in a run of both networks or by name."""
    config = bench.Config(batches=(1,), layers=())
    assert ("cifar10-11pct", "local3") in {(n, c.name) for n, c in bench.runs._cases(config)}
    assert "local3" not in {c.name for _, c in bench.runs._cases(bench.Config(networks=("torchvision",)))}
    args = ["--out", str(tmp_path), "--layer", "local3", "--batch", "1", "--repeats", "1", "--warmup", "0",
            "--no-train-step"]
    assert bench.main(args) == 0
    result = json.loads((tmp_path / "bench.json").read_text())
    phases = {"forward", "backward_data", "backward_weights"}
    for impl in ("ours (emu, CPU)", "PyTorch (CPU)"):
        assert {r["phase"] for r in result["rows"] if r["impl"] == impl and r["layer"] == "local3"} == phases
    (validated,) = result["validation"]
    assert validated["layer"] == "local3" and set(validated["max_errors"]) == {
        "forward output", "input 0 gradient", "weight 0 gradient", "bias gradient"}
    case, = layer_cases.extra_layers()
    assert case.weight_shapes == [(8, 8, 64, 64, 3, 3)] and case.output_shape == (64, 8, 8)
    assert layer_cases.layer_flops(case, 2)["forward"] == 2 * 2 * 8 * 8 * 64 * 64 * 9
