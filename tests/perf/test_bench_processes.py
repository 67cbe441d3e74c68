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
