"""alexnet-raw split: the placement table, traffic per step and the diagram."""

import json

from reference_runs import reference_files

from alexnet_raw.engine import split_report as split


def test_split_of_145_prints_traffic_and_draws(tmp_path, capsys):
    png, js = tmp_path / "s.png", tmp_path / "s.json"
    assert split.main(["--batch-size", "128", "--png", str(png), "--json", str(js)]) == 0
    out = capsys.readouterr().out
    assert "device 1: conv1b, rnorm1b" in out
    line = next(l for l in out.splitlines() if l.startswith("pool2a -> conv3b"))
    mib = 128 * 128 * 13 * 13 * 4 / 2**20  # 128 images x 128 maps x 13 x 13 floats
    assert line.split()[-2:] == [f"{mib:.2f}", f"{mib:.2f}"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    report = json.loads(js.read_text())
    assert {e["src"] for e in report["edges"]} >= {"pool2a", "pool3b", "hs2b"}


def test_split_of_one_column_run_and_single_device(tmp_path, capsys):
    layers, params = reference_files("145-half")
    # the 2012 file sets no image size (the data provider gave 224 x 224 crops): --image-size does
    assert split.main(["--cfg", str(layers), str(params), "--png", str(tmp_path / "x.png")]) == 2
    assert "sets no image size" in capsys.readouterr().err and not (tmp_path / "x.png").exists()
    assert split.main(["--cfg", str(layers), str(params), "--image-size", "224", "--png", str(tmp_path / "h.png")]) == 0
    assert "batch 128, 224x224 images" in capsys.readouterr().out
    assert split.main(["--network", "mini", "--single-device", "--png", str(tmp_path / "m.png")]) == 0
    out = capsys.readouterr().out
    assert "1 device(s)" in out and "32x32 images" in out
    # a size the network cannot take names the layer
    assert split.main(["--network", "mini", "--image-size", "4", "--png", str(tmp_path / "y.png")]) == 2
    assert "(input images 4x4)" in capsys.readouterr().err


def test_split_reports_bad_files_clearly(tmp_path, capsys):
    bad = tmp_path / "bad.cfg"
    bad.write_text("[conv]\ntype=deconv\n")
    assert split.main(["--cfg", str(bad), str(bad), "--png", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "bad.cfg: [conv] type: unsupported layer type 'deconv'" in err
    assert not (tmp_path / "x.png").exists()


def test_split_of_the_hybrid_shows_replicas_and_their_weight_traffic(tmp_path, capsys):
    from pathlib import Path

    here = Path(__file__).resolve().parent / "cuda-convnet2"
    files = [str(here / f"{kind}-imagenet-4gpu-data-model.cfg") for kind in ("layers", "layer-params")]
    js = tmp_path / "h.json"
    assert split.main(["--cfg", *files, "--image-size", "224", "--png", str(tmp_path / "h.png"), "--json", str(js)]) == 0
    out = capsys.readouterr().out
    assert "device 3: conv1[3], rnorm1[3]" in out and "data-parallel replicas: conv1 on 0,1,2,3" in out
    line = next(l for l in out.splitlines() if l.startswith("pool3 -> fc1024b"))
    mib = 3 * 32 * 256 * 6 * 6 * 4 / 2**20  # the three other replicas' 32 rows of pool3, to device 1
    assert line.split()[-3:] == ["0,2,3->1", f"{mib:.2f}", f"{mib:.2f}"]
    report = json.loads(js.read_text())
    kinds = report["bytes_by_kind"]
    assert kinds["gradient_sums"] == kinds["weight_broadcasts"] > 0
    assert "replicas: weight gradients summed" in out


def test_split_across_processes_gives_the_gradient_bytes_each_rank_sends(tmp_path, capsys):
    from alexnet_raw.distributed.shards import sent_bytes
    from alexnet_raw.engine.split_report import load_graph

    js = tmp_path / "p.json"
    assert split.main(["--processes", "2", "--png", str(tmp_path / "p.png"), "--json", str(js)]) == 0
    out = capsys.readouterr().out
    report = json.loads(js.read_text())["distributed"]
    g, size = load_graph("krizhevsky2012")
    elements = sum(g.parameter_counts(g.shapes(size)).values())  # run #145: 60,965,224 parameters
    assert elements == 60_965_224
    assert report == {"processes": 2, "shards": 2, "allreduce_bytes_per_step": 4 * elements,
                      "sent_bytes_per_step": sent_bytes(elements, 4, 2, 2)}
    # one shard per rank: each sends half the gradient twice (reduce-scatter, all-gather)
    assert report["sent_bytes_per_step"] == [4 * elements, 4 * elements]
    assert f"the gradient summed per step {4 * elements / 2**20:.2f} MiB" in out
    # with no --processes: nothing crosses processes
    assert split.main(["--png", str(tmp_path / "q.png"), "--json", str(js)]) == 0
    assert json.loads(js.read_text())["distributed"]["sent_bytes_per_step"] == [0]
    assert "shard(s) per batch" not in capsys.readouterr().out
    # fewer shards than processes cannot be spread
    assert split.main(["--processes", "3", "--shards", "2", "--png", str(tmp_path / "r.png")]) == 2
    assert "--shards 2 cannot be spread over --processes 3" in capsys.readouterr().err
