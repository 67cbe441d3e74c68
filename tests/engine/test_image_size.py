"""A network's input size comes from its data, as in cuda-convnet (whose layer files set none): from
Model(image_size=...), the data layer's imgSize where a file sets one, or the first batch; a size a
layer cannot take is an error naming the layer; checkpoints record the size."""

from pathlib import Path

import numpy as np
import pytest

from alexnet_raw import Model
from alexnet_raw.engine import graph
from alexnet_raw.training import checkpoint as ck

HERE = Path(__file__).resolve().parent
CIFAR_18PCT = (HERE / "cuda-convnet" / "layers-18pct.cfg", HERE / "cuda-convnet" / "layer-params-18pct.cfg")


def fc_inputs(size):
    """The 18pct network's fc10 input width at `size` (3 x 3/2 pools, ceil rule; the convs keep the size)."""
    for _ in range(3):
        size = -(-(size - 3) // 2) + 1
    return 64 * size * size


def images(n, size, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 3, size, size)).astype(np.float32)


def test_a_file_without_imgsize_waits_for_its_data():
    model = Model.from_cfg(*CIFAR_18PCT)
    assert not model.sized and model.image_size is None and model.num_classes == 10
    with pytest.raises(ValueError, match="no input size yet .*imgSize.*image_size="):
        model.parameter_count()
    with pytest.raises(ValueError, match="no input size yet"):
        model.state_dict()
    logits = model.forward(images(2, 32))  # the first batch sizes it
    assert model.sized and model.image_size == 32 and logits.shape == (2, 10)
    assert model.shapes["pool3"] == (64, 4, 4)
    assert model.state_dict()["fc10.weights.0"].shape == (10, fc_inputs(32))
    with pytest.raises(ValueError, match="takes 32x32 images.*got 24x24"):
        model.forward(images(2, 24))


@pytest.mark.parametrize("size", [24, 32, 40])
def test_the_size_given_or_taken_from_the_first_batch_builds_the_same_model(size):
    given = Model.from_cfg(*CIFAR_18PCT, seed=3, image_size=size)
    assert given.sized and given.state_dict()["fc10.weights.0"].shape == (10, fc_inputs(size))
    late = Model.from_cfg(*CIFAR_18PCT, seed=3)
    late.size_to(size)
    for key, value in given.state_dict().items():
        np.testing.assert_array_equal(late.state_dict()[key], value)
    x = images(2, size, seed=1)
    np.testing.assert_array_equal(Model.from_cfg(*CIFAR_18PCT, seed=3).forward(x), given.forward(x))


def test_a_size_a_layer_cannot_take_names_the_layer_and_the_model_stays_unsized():
    model = Model.from_cfg(*CIFAR_18PCT)
    with pytest.raises(graph.ShapeError, match=r"\[pool\d\] .*\(input images 2x2\)"):
        model.size_to(2)
    assert not model.sized
    with pytest.raises(ValueError, match="square images"):
        model.forward(np.zeros((1, 3, 32, 24), np.float32))
    for bad in (0, -3, 2.5, True, "32"):
        with pytest.raises(ValueError, match="positive int"):
            model.size_to(bad)
    model.size_to(32)
    model.size_to(32)  # its own size again: nothing happens
    with pytest.raises(ValueError, match="takes 32x32 images .*fixed.*got 28x28"):
        model.size_to(28)


def test_imgsize_in_a_file_fixes_the_size_and_image_size_must_agree(tmp_path):
    layers = tmp_path / "l.cfg"
    layers.write_text(CIFAR_18PCT[0].read_text().replace("dataIdx=0\n", "dataIdx=0\nimgSize=24\n", 1))
    model = Model.from_cfg(layers, CIFAR_18PCT[1])
    assert model.image_size == 24
    with pytest.raises(ValueError, match="takes 24x24 images"):
        Model.from_cfg(layers, CIFAR_18PCT[1], image_size=32)


def test_shipped_networks_keep_their_sizes():
    assert Model.named("krizhevsky2012", single_device=True).image_size == 224  # run #145's crops
    assert Model.named("mini").image_size == 32  # its file's imgSize


def test_checkpoints_record_the_size_they_were_built_at(tmp_path):
    model = Model.from_cfg(*CIFAR_18PCT, seed=5)
    model.forward(images(1, 24))
    path = ck.save_checkpoint(tmp_path / "c.safetensors", model, {"epoch": 0})
    saved = ck.load_checkpoint(path)
    assert saved.input_size == 24
    again = saved.make_model()
    assert again.image_size == 24
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(again.state_dict()[key], value)
