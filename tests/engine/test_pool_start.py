"""Pool layers with cuda-convnet's `start` before the image (layers.gc.cfg's start=-2) or after its first pixel, and an
explicit outputsX, in a network that trains a float64 step as the PyTorch model does."""

from pathlib import Path

import numpy as np
import pytest

import reference_model
from alexnet_raw import Model
from alexnet_raw.engine import cfg, graph

CONVNET = Path(__file__).resolve().parent / "cuda-convnet"


def network(tmp_path, pool1="start=-2", pool2="start=-1\noutputsX=7"):
    """The 18pct file with pool1's and pool2's start/outputsX lines replaced."""
    text = (CONVNET / "layers-18pct.cfg").read_text()
    for name, lines in (("pool1", pool1), ("pool2", pool2)):
        head = text.index(f"[{name}]")
        old = "start=0\nsizeX=3\nstride=2\noutputsX=0\n"
        at = text.index(old, head)
        text = text[:at] + f"{lines}\nsizeX=3\nstride=2\n" + text[at + len(old):]
    path = tmp_path / "layers.cfg"
    path.write_text(text)
    return path, CONVNET / "layer-params-18pct.cfg"


def test_pools_from_a_negative_start_train_a_step_as_torch(tmp_path):
    lp, pp = network(tmp_path)
    specs = {s.name: s for s in cfg.read_layers(lp)}
    assert (specs["pool1"].start, specs["pool2"].start, specs["pool2"].outputs_x) == (-2, -1, 7)
    model = Model.from_cfg(lp, pp, seed=6, dtype=np.float64, image_size=24)
    # 24 -> ceil((24 + 2 - 3) / 2) + 1 = 13 (pool1); 13 -> 7 of the ceil((13 + 1 - 3) / 2) + 1 = 7 (pool2)
    assert model.shapes["pool1"] == (32, 13, 13) and model.shapes["pool2"] == (32, 7, 7)
    rng = np.random.default_rng(2)
    reference_model.assert_train_step_matches(model, rng.standard_normal((2, 3, 24, 24)), np.array([3, 7]))


def test_pool_starts_that_cannot_work_are_refused_by_file_section_key(tmp_path):
    lp, _ = network(tmp_path, pool1="start=-3")
    with pytest.raises(cfg.CfgError, match=r"\[pool1\] start: must be greater than -sizeX = -3"):
        cfg.read_layers(lp)
    lp, _ = network(tmp_path, pool1="start=-1\nsizeRule=floor")
    with pytest.raises(cfg.CfgError, match=r"\[pool1\] sizeRule: floor"):
        cfg.read_layers(lp)
    lp, pp = network(tmp_path, pool2="start=-1\noutputsX=9")
    with pytest.raises(graph.ShapeError, match=r"\[pool2\] outputsX=9 but only 7 windows"):
        Model.from_cfg(lp, pp, image_size=24)


def test_pools_from_a_positive_start_train_a_step_as_torch(tmp_path):
    # cuda-convnet's positive start: the pixels before it are never pooled (nor get a gradient)
    lp, pp = network(tmp_path, pool1="start=1", pool2="start=2\noutputsX=4")
    model = Model.from_cfg(lp, pp, seed=6, dtype=np.float64, image_size=24)
    # 24 -> ceil((24 - 1 - 3) / 2) + 1 = 11 (pool1); 11 -> 4 of the ceil((11 - 2 - 3) / 2) + 1 = 4 (pool2)
    assert model.shapes["pool1"] == (32, 11, 11) and model.shapes["pool2"] == (32, 4, 4)
    rng = np.random.default_rng(3)
    reference_model.assert_train_step_matches(model, rng.standard_normal((2, 3, 24, 24)), np.array([1, 8]))
    lp, pp = network(tmp_path, pool1="start=23")
    with pytest.raises(graph.ShapeError, match=r"\[pool1\] a 3-wide pooling window from start 23 does not fit 24"):
        Model.from_cfg(lp, pp, image_size=24)
