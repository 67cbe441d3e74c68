"""cuda-convnet's locally connected layers (type=local: a filter bank and a bias per output position,
F.local) in the engine: cuda-convnet's layers-conv-local-13pct.cfg and cuda-convnet2's
layers-cifar10-11pct.cfg train a float64 step at their data's size (24 x 24 crops of CIFAR-10) as
PyTorch does (every gradient, updated parameter and momentum); groups count filters per group as
both codebases do; the keys that ask for what is not implemented are refused naming file, section
and key."""

from pathlib import Path

import numpy as np
import pytest

import reference_model
from alexnet_raw import Model
from alexnet_raw.engine import cfg, graph
from cfg_texts import DATA, classifier, conv_of_images

HERE = Path(__file__).resolve().parent
FILES = {
    "conv-local-13pct": (HERE / "cuda-convnet" / "layers-conv-local-13pct.cfg",
                         HERE / "cuda-convnet" / "layer-params-conv-local-13pct.cfg"),
    "cifar10-11pct": (HERE / "cuda-convnet2" / "layers-cifar10-11pct.cfg",
                      HERE / "cuda-convnet2" / "layer-params-cifar10-11pct.cfg"),
}


@pytest.mark.parametrize("name", list(FILES))
def test_cuda_convnet_local_files_train_a_step_as_torch(name):
    model = Model.from_cfg(*FILES[name], seed=2, dtype=np.float64, image_size=24)
    assert model.shapes["local3"][1:] == model.shapes["pool2"][1:] == (6, 6)  # padding 1, 3x3: the input's size
    keys = model.state_dict()
    c = model.shapes["pool2"][0]
    assert keys["local3.weights.0"].shape == (6, 6, model.shapes["local3"][0], c, 3, 3)
    assert keys["local3.biases"].shape == (model.shapes["local3"][0], 6, 6)
    rng = np.random.default_rng(3)
    x, labels = rng.standard_normal((2, 3, 24, 24)), rng.integers(0, 10, 2)
    reference_model.assert_train_step_matches(model, x, labels)


LAYERS = DATA + conv_of_images() + """
[local2]
type=local
inputs=conv1,data
channels=4,3
filters={filters}
groups={groups}
filterSize=3,5
padding=0,1
stride=2,2
initW=0.2,0.1
initB=0.5
neuron=tanh[1,1]
{extra}
[fc]
type=fc
inputs=local2
outputs=3
initW=0.1
""" + classifier("fc")
PARAMS = """
[conv1]
epsW=0.1
epsB=0.2
[local2]
epsW=0.1,0.05
epsB=0.2
momW=0.9,0.5
momB=0.9
wc=0.01,0
[fc]
epsW=0.1
epsB=0.2
"""


def test_a_local_layer_of_two_inputs_with_groups_trains_as_torch(write_cfg):
    # groups 2 and 1: 3 filters per group and 6 in one group, 6 filters from each input
    lp, pp = write_cfg(LAYERS.format(filters="3,6", groups="2,1", extra=""), PARAMS)
    model = Model.from_cfg(lp, pp, seed=4, dtype=np.float64, image_size=7)
    assert model.shapes["local2"] == (6, 3, 3)
    state = model.state_dict()
    assert state["local2.weights.0"].shape == (3, 3, 6, 2, 3, 3) and state["local2.weights.1"].shape == (3, 3, 6, 3, 5, 5)
    rng = np.random.default_rng(1)
    x, labels = rng.standard_normal((3, 3, 7, 7)), rng.integers(0, 3, 3)
    reference_model.assert_train_step_matches(model, x, labels)


def test_conv_filters_count_per_group_as_in_cuda_convnet(write_cfg):
    text = LAYERS.format(filters="3,6", groups="2,1", extra="").replace("type=local", "type=conv")
    lp, pp = write_cfg(text, PARAMS)
    model = Model.from_cfg(lp, pp, seed=4, dtype=np.float64, image_size=7)
    assert model.state_dict()["local2.weights.0"].shape == (6, 2, 3, 3)  # 3 filters x 2 groups
    rng = np.random.default_rng(1)
    reference_model.assert_train_step_matches(model, rng.standard_normal((2, 3, 7, 7)), rng.integers(0, 3, 2))


@pytest.mark.parametrize("filters, groups, extra, key, message", [
    ("3,3", "2,1", "", "filters", "every input must give the same number of filters (filters x groups), got 3 x 2 and 3 x 1"),
    ("2,6", "3,1", "", "groups", "groups=3 must divide channels=4"),
    ("3,6", "2,1", "filterChannels=1,3", "filterChannels", "random sparse connectivity"),
    ("3,6", "2,1", "randSparse=true", "randSparse", "random sparse connectivity needs groups > 1 (input 1"),
    ("3,6", "2,1", "randSparse=1,0\nfilterChannels=3,3", "filterChannels", "must divide channels=4"),
    ("3,6", "2,1", "sharedBiases=1", "sharedBiases", "not a key of a local layer"),
])
def test_bad_local_layers_name_file_section_and_key(write_cfg, filters, groups, extra, key, message):
    lp, pp = write_cfg(LAYERS.format(filters=filters, groups=groups, extra=extra), PARAMS)
    with pytest.raises(cfg.CfgError) as e:
        Model.from_cfg(lp, pp, dtype=np.float64, image_size=7)
    assert (e.value.file, e.value.section, e.value.key) == (str(lp), "local2", key) and message in str(e.value), str(e.value)


def test_modules_x_must_be_the_computed_count(write_cfg):
    lp, pp = write_cfg(LAYERS.format(filters="3,6", groups="2,1", extra="modulesX=3"), PARAMS)
    assert Model.from_cfg(lp, pp, dtype=np.float64, image_size=7).shapes["local2"] == (6, 3, 3)
    lp, pp = write_cfg(LAYERS.format(filters="3,6", groups="2,1", extra="modulesX=4"), PARAMS)
    with pytest.raises(graph.ShapeError, match=r"\[local2\] modulesX=4 but the windows give 3 output positions"):
        Model.from_cfg(lp, pp, dtype=np.float64, image_size=7)


GC = (HERE / "cuda-convnet" / "layers.gc.cfg", HERE / "cuda-convnet" / "layer-params.gc.cfg")


def test_cuda_convnets_gradient_check_file_with_random_sparse_groups_trains_as_torch():
    """layers.gc.cfg: a local layer of 2 groups with randSparse (each group reads 8 of the 16
    channels, a random permutation's halves), a pool starting before the image, an fc of two
    inputs; at CIFAR's 32 x 32, one float64 step as PyTorch (the reference gathers the same channels)."""
    model = Model.from_cfg(*GC, seed=6, dtype=np.float64, image_size=32)
    conns = model.filter_conns["local32"][0]
    assert sorted(conns) == list(range(16))  # one permutation: groups x filterChannels = channels
    assert model.state_dict()["local32.weights.0"].shape[-3:] == (8, 5, 5)
    rng = np.random.default_rng(4)
    x, labels = rng.standard_normal((2, 3, 32, 32)), rng.integers(0, 10, 2)
    reference_model.assert_train_step_matches(model, x, labels)
    again = Model.from_cfg(*GC, seed=6, dtype=np.float64, image_size=32)
    assert np.array_equal(again.filter_conns["local32"][0], conns)  # drawn from the seed: checkpoints rebuild it


def test_random_sparse_groups_that_share_channels_train_as_torch(write_cfg):
    # 4 groups x 2 filter channels of 4 channels: 2 permutations, every channel read by 2 groups
    lp, pp = write_cfg(LAYERS.format(filters="2,8", groups="4,1", extra="randSparse=1,0\nfilterChannels=2,3"), PARAMS)
    model = Model.from_cfg(lp, pp, seed=4, dtype=np.float64, image_size=7)
    conns = model.filter_conns["local2"]
    assert list(conns) == [0] and len(conns[0]) == 8 and sorted(conns[0]) == sorted(list(range(4)) * 2)
    assert model.state_dict()["local2.weights.0"].shape == (3, 3, 8, 2, 3, 3)
    rng = np.random.default_rng(1)
    reference_model.assert_train_step_matches(model, rng.standard_normal((2, 3, 7, 7)), rng.integers(0, 3, 2))
