"""A network in the style of cuda-convnet's own CIFAR-10 examples (its layers-18pct layout: one
tower, max and average pooling, same-map rnorm, neurons on pool layers, outputsX=0, partialSum):
read, trained one step and compared with PyTorch, so layer files other than AlexNet's work too."""

import numpy as np
import pytest
import reference_model

from alexnet_raw import Model
from alexnet_raw.engine.graph import ShapeError

LAYERS = """
[data]
type=data
dataIdx=0
imgSize=32

[labels]
type=data
dataIdx=1

[conv1]
type=conv
inputs=data
channels=3
filters=8
padding=2
stride=1
filterSize=5
initW=0.01
partialSum=4
sharedBiases=1

[pool1]
type=pool
pool=max
inputs=conv1
start=0
sizeX=3
stride=2
outputsX=0
channels=8
neuron=relu

[rnorm1]
type=rnorm
inputs=pool1
channels=8
size=3

[conv2]
type=conv
inputs=rnorm1
filters=8
padding=2
stride=1
filterSize=5
channels=8
neuron=relu
initW=0.01
partialSum=4
sharedBiases=1

[pool2]
type=pool
pool=avg
inputs=conv2
start=0
sizeX=3
stride=2
outputsX=0
channels=8

[conv3]
type=conv
inputs=pool2
filters=16
padding=2
stride=1
filterSize=5
channels=8
neuron=relu
initW=0.01
partialSum=4
sharedBiases=1

[pool3]
type=pool
pool=avg
inputs=conv3
start=0
sizeX=3
stride=2
outputsX=4
channels=16

[fc10]
type=fc
outputs=10
inputs=pool3
initW=0.01

[probs]
type=softmax
inputs=fc10

[logprob]
type=cost.logreg
inputs=labels,probs
"""

PARAMS = """
[conv1]
epsW=0.001
epsB=0.002
momW=0.9
momB=0.9
wc=0.004

[conv2]
epsW=0.001
epsB=0.002
momW=0.9
momB=0.9
wc=0.004

[conv3]
epsW=0.001
epsB=0.002
momW=0.9
momB=0.9
wc=0.004

[fc10]
epsW=0.001
epsB=0.002
momW=0.9
momB=0.9
wc=0.01

[rnorm1]
scale=0.00005
pow=.75
"""


def test_shapes_follow_cuda_convnets_ceil_rule(write_cfg):
    model = Model.from_cfg(*write_cfg(LAYERS, PARAMS), seed=1)
    # 32 -> conv 32 -> pool 16 -> conv 16 -> pool 8 -> conv 8 -> pool 4: each last window is clipped
    # by the image edge (ceil((n - 3) / 2) + 1), so the average pools divide by fewer pixels there
    assert model.shapes["pool1"] == (8, 16, 16)
    assert model.shapes["pool2"] == (8, 8, 8) and model.shapes["pool3"] == (16, 4, 4)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_train_step_matches_torch(write_cfg, dtype):
    model = Model.from_cfg(*write_cfg(LAYERS, PARAMS), seed=2, dtype=dtype)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 3, 32, 32)).astype(dtype)
    labels = rng.integers(0, 10, 3)
    state, momentum = model.state_dict(), model.momentum_state_dict()
    ref_loss, ref_logits, ref_grads, ref_params, _ = reference_model.train_step(model, state, momentum, x, labels)
    tol = dict(rtol=1e-9, atol=1e-12) if dtype == np.float64 else dict(rtol=2e-4, atol=2e-6)
    np.testing.assert_allclose(model.forward(x, train=True), ref_logits, **tol)
    assert model.backward(labels) == pytest.approx(ref_loss, rel=tol["rtol"])
    grads = model.gradient_dict()
    for key, ref in ref_grads.items():
        scale = max(1.0, float(np.abs(ref).max()))
        np.testing.assert_allclose(grads[key], ref, rtol=tol["rtol"], atol=tol["atol"] * scale, err_msg=key)
    model.step()
    for key, ref in ref_params.items():
        np.testing.assert_allclose(model.state_dict()[key], ref, rtol=tol["rtol"], atol=tol["atol"], err_msg=key)


def test_outputs_x_that_disagrees_is_an_error(write_cfg):
    with pytest.raises(ShapeError, match=r"\[pool3\] outputsX=5 but 8 pixels pooled by 3 at stride 2 give 4"):
        Model.from_cfg(*write_cfg(LAYERS.replace("outputsX=4", "outputsX=5"), PARAMS))


def test_a_ceil_window_starting_past_the_image_is_refused(write_cfg):
    # pool1 with 1-wide windows at stride 3: cuda-convnet's rule gives 1 + ceil((n - 1) / 3) windows;
    # for n = 31 the last starts at 30 (inside), for n = 32 at 33, past the image (an empty window)
    text = LAYERS.replace("sizeX=3\nstride=2\noutputsX=0\nchannels=8\nneuron=relu",
                          "sizeX=1\nstride=3\noutputsX=0\nchannels=8\nneuron=relu").replace("outputsX=4", "outputsX=0")
    model = Model.from_cfg(*write_cfg(text.replace("imgSize=32", "imgSize=31"), PARAMS))
    assert model.shapes["pool1"] == (8, 11, 11)
    with pytest.raises(ShapeError, match=r"\[pool1\] the ceil rule's last 1-wide window at stride 3 would start at "
                                         r"pixel 33, past the 32-pixel image.*sizeRule=floor"):
        Model.from_cfg(*write_cfg(text, PARAMS))


def with_every_neuron(text):
    """The same network with each of cuda-convnet's neurons somewhere (sqrt after abs: inputs >= 0)."""
    for section, neuron in (("conv1", "tanh[1.7159,0.6666]"), ("pool1", "abs"), ("rnorm1", "sqrt"),
                            ("conv2", "logistic"), ("pool2", "square"), ("conv3", "softrelu"),
                            ("pool3", "brelu[6]"), ("fc10", "linear[2,-1]")):
        head = f"[{section}]\n"
        body_start = text.index(head) + len(head)
        body_end = text.find("\n[", body_start)
        body = "\n".join(line for line in text[body_start:body_end].split("\n") if not line.startswith("neuron="))
        text = text[:body_start] + f"neuron={neuron}\n" + body + text[body_end:]
    return text


def test_every_neuron_trains_as_torch(write_cfg):
    model = Model.from_cfg(*write_cfg(with_every_neuron(LAYERS), PARAMS), seed=4, dtype=np.float64)
    assert {name: model.graph.nodes[name].spec.neuron[0] for name in ("conv1", "pool1", "fc10")} == {
        "conv1": "tanh", "pool1": "abs", "fc10": "linear"}
    rng = np.random.default_rng(6)
    x, labels = rng.standard_normal((2, 3, 32, 32)), rng.integers(0, 10, 2)
    state, momentum = model.state_dict(), model.momentum_state_dict()
    ref_loss, ref_logits, ref_grads, _, _ = reference_model.train_step(model, state, momentum, x, labels)
    np.testing.assert_allclose(model.forward(x, train=True), ref_logits, rtol=1e-9, atol=1e-12)
    assert model.backward(labels) == pytest.approx(ref_loss, rel=1e-9)
    grads = model.gradient_dict()
    for key, ref in ref_grads.items():
        assert np.abs(ref).max() > 0, key  # every layer's gradient reaches it through the neurons
        np.testing.assert_allclose(grads[key], ref, rtol=1e-8, atol=1e-11 * max(1.0, float(np.abs(ref).max())),
                                   err_msg=key)


def test_neuron_layers_train_as_torch(write_cfg):
    # cuda-convnet's type=neuron: a layer that only applies its neuron (here between pool1 and rnorm1,
    # and an identity one before fc10)
    text = LAYERS.replace("[rnorm1]\ntype=rnorm\ninputs=pool1", "[act1]\ntype=neuron\ninputs=pool1\n"
                          "neuron=tanh[1.7159,0.6666]\n\n[rnorm1]\ntype=rnorm\ninputs=act1").replace(
        "[fc10]\ntype=fc\noutputs=10\ninputs=pool3", "[same3]\ntype=neuron\ninputs=pool3\nneuron=ident\n\n"
        "[fc10]\ntype=fc\noutputs=10\ninputs=same3")
    model = Model.from_cfg(*write_cfg(text, PARAMS), seed=7, dtype=np.float64)
    assert model.shapes["act1"] == model.shapes["pool1"] and model.shapes["same3"] == (16, 4, 4)
    rng = np.random.default_rng(8)
    x, labels = rng.standard_normal((2, 3, 32, 32)), rng.integers(0, 10, 2)
    state, momentum = model.state_dict(), model.momentum_state_dict()
    ref_loss, ref_logits, ref_grads, _, _ = reference_model.train_step(model, state, momentum, x, labels)
    np.testing.assert_allclose(model.forward(x, train=True), ref_logits, rtol=1e-9, atol=1e-12)
    assert model.backward(labels) == pytest.approx(ref_loss, rel=1e-9)
    for key, ref in ref_grads.items():
        np.testing.assert_allclose(model.gradient_dict()[key], ref, rtol=1e-8,
                                   atol=1e-11 * max(1.0, float(np.abs(ref).max())), err_msg=key)
