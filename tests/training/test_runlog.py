"""metrics.jsonl lines and the curves plot."""

import json

import pytest

from alexnet_raw.training import runlog


def record(epoch):
    return {"epoch": epoch, "train_loss": 2.0 / epoch, "train_top1": 0.3 * epoch, "test_top1": 0.25 * epoch,
            "test_top5": min(1.0, 0.5 * epoch), "images_per_second": 100.0, "lr_scale": 1.0, "seconds": 1.5}


def test_append_read_rewrite_and_plot(tmp_path):
    path = tmp_path / "metrics.jsonl"
    for epoch in (1, 2, 3):
        runlog.append_metrics(path, record(epoch))
    lines = path.read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]
    assert runlog.read_metrics(path) == [record(e) for e in (1, 2, 3)]
    runlog.write_metrics(path, [record(1)])
    assert runlog.read_metrics(path) == [record(1)]
    png = runlog.plot_curves([record(e) for e in (1, 2, 3)], tmp_path / "curves.png", title="t")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.png", "metrics.jsonl"]


def test_record_missing_fields_is_refused(tmp_path):
    with pytest.raises(ValueError, match="test_top5"):
        runlog.append_metrics(tmp_path / "m.jsonl", {k: v for k, v in record(1).items() if k != "test_top5"})
