"""`alexnet-raw bench --processes`: a data-parallel training step on 1 and 2 MPI processes of this
machine (the CPU runtime), measured in one run, with the images/s, the efficiency and the gradient
bytes each rank sent, which must be what split_report gives."""

import json

import pytest

from alexnet_raw import Model
from alexnet_raw.distributed.shards import sent_bytes
from alexnet_raw.perf import bench


def test_one_and_two_processes_are_measured_with_their_efficiency_and_bytes(tmp_path, capsys):
    assert bench.main(["--processes", "1,2", "--batch", "8", "--warmup", "0", "--repeats", "2",
                       "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "CPU figures" in out and "| processes |" in out
    result = json.loads((tmp_path / "processes.json").read_text())
    assert result["kind"] == "cpu" and result["label"].startswith("CPU figures")
    rows = {r["processes"]: r for r in result["rows"]}
    assert sorted(rows) == [1, 2]
    for p, r in rows.items():
        assert r["step_ms"]["repeats"] == 2
        assert r["images_per_second"] == pytest.approx(8 / (r["step_ms"]["median_ms"] / 1e3))
        assert r["efficiency"] == pytest.approx(r["images_per_second"] / (p * rows[1]["images_per_second"]))
        assert r["threads_per_process"] == rows[1]["threads_per_process"]  # the same cores per process
    mini = Model.named("mini")
    assert rows[1]["sent_bytes_per_step"] == [0]
    assert rows[2]["sent_bytes_per_step"] == sent_bytes(mini.parameter_count(), 4, 2, 2) == \
        mini.split_report(8, processes=2)["distributed"]["sent_bytes_per_step"]
    assert "2 MPI processes" in rows[2]["world"]
    assert (tmp_path / "processes.md").read_text().startswith("CPU figures")


@pytest.mark.parametrize("argv, message", [
    (["--processes", "1,4", "--batch", "2"], "--batch 2 cannot be shared by 4 processes"),
    (["--processes", "2", "--network", "mini", "--network", "torchvision"], "times one network"),
    (["--processes", "2", "--batch", "4,8"], "takes one global --batch"),
    (["--network", "mini"], "--network mini is for --processes")])
def test_process_benchmarks_that_cannot_run_are_refused(argv, message, tmp_path, capsys):
    assert bench.main([*argv, "--out", str(tmp_path)]) in (1, 2)
    assert message in capsys.readouterr().err


def test_the_bus_bandwidth_of_a_bucket_and_what_the_message_sizes_predict():
    from alexnet_raw.perf.bench.processes import bus_bandwidth

    buckets = [{"layer": "fc", "bytes": 8_000_000, "seconds": [0.002, 0.001, 0.003]},
               {"layer": "conv", "bytes": 1_000_000, "seconds": [0.0005, 0.0005, 0.0005]}]
    b = bus_bandwidth(buckets, 4)
    assert b["factor"] == 1.5
    assert b["rows"][0]["bus_gbps"] == pytest.approx(1.5 * 8e6 / 0.002 / 1e9)  # the median time: 2 ms
    assert b["rows"][1]["bus_gbps"] == pytest.approx(1.5 * 1e6 / 0.0005 / 1e9)
    assert b["best_bus_gbps"] == pytest.approx(6.0)
    assert b["measured_seconds"] == pytest.approx(0.0025)
    assert b["predicted_seconds"] == pytest.approx(1.5 * 9e6 / 6e9)
    standin = bus_bandwidth(buckets, 4, stand_in=True)
    assert "seconds" not in standin["rows"][0] and "not a GPU" in standin["note"]


def test_the_gpu_branch_runs_on_the_stand_in_with_nccl_and_keeps_no_timing(tmp_path, monkeypatch):
    """The worker of `bench --processes` under mpiexec with the CuPy stand-in and its NCCL (2
    processes, 2 simulated GPUs each): every layer's all-reduce is run and sized, no time is kept."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from alexnet_raw.perf.bench import processes

    tests = Path(__file__).resolve().parent.parent
    env = dict(os.environ, ALEXNET_RAW_TEST_GPUS="2")
    command = [str(Path(sys.executable).parent / "mpiexec"), "-n", "2", sys.executable, "-P",
               str(tests / "distributed" / "standin_rank.py"), "--bench-worker", "mini", "4", "0", "2"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("{")))
    assert figures["backend"] in ("cupy", "cuda") and figures["stand_in"] is True and figures["processes"] == 2
    assert figures["sent_bytes_per_step"] is None  # NCCL's
    mini = Model.named("mini")
    layers = mini.gradient_order()
    assert [b["layer"] for b in figures["buckets"]] == layers
    assert [b["bytes"] for b in figures["buckets"]] == \
        [4 * mini.blocks[mini.graph.nodes[n].device].layer_gradients(n).size for n in layers]
    assert sum(b["bytes"] for b in figures["buckets"]) == 4 * mini.parameter_count()
    monkeypatch.setattr(processes, "measure", lambda p, *a, **k: figures)
    result = processes.run_processes([2], "mini", 4, 0, 2, log=lambda *a: None)
    assert result["kind"] == "gpu-standin" and "not a GPU" in result["label"]
    row = result["rows"][0]
    assert row["step_ms"] is None and row["images_per_second"] is None and "note" in row["buckets"]
    text = processes.format_markdown(result)
    assert "not timed" in text and f"{len(layers)} buckets" in text
