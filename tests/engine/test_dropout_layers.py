"""cuda-convnet2's dropout, dropout2 and pass (of one input) layers: what each computes in training and test
passes and with enable=false (the facts from cuda-convnet2's layer.cu: dropout scales the kept
units by 1/keep at training and is the identity at test; dropout2 keeps them unscaled and
multiplies by keep at test, and also when disabled), and cuda-convnet2's two-GPU model split
(layers-imagenet-2gpu-model.cfg, which uses dropout) training a step as PyTorch does."""

from pathlib import Path

import numpy as np
import pytest

import reference_model
from alexnet_raw import Model
from alexnet_raw.engine import cfg
from reference_model import close
from cfg_texts import DATA

CONVNET2 = Path(__file__).resolve().parent / "cuda-convnet2"

LAYERS = DATA + """
[fc1]
type=fc
inputs=data
outputs=64
initW=0.1
[drop]
type={kind}
inputs=fc1
neuron=relu
[same]
type=pass
inputs=drop
[fc2]
type=fc
inputs=same
outputs=4
initW=0.1
[probs]
type=softmax
inputs=fc2
[logprob]
type=cost.logreg
inputs=labels,probs
"""
PARAMS = """
[fc1]
epsW=0.01
epsB=0.02
[fc2]
epsW=0.01
epsB=0.02
[drop]
enable={enable}
keep=0.75
"""


def model_of(write_cfg, kind, enable="true"):
    lp, pp = write_cfg(LAYERS.format(kind=kind), PARAMS.format(enable=enable))
    return Model.from_cfg(lp, pp, seed=3, dtype=np.float64, image_size=2)


def drop_output(model, x, train):
    """The dropout layer's output (before its relu) and the mask ratio, from a forward pass."""
    model.forward(x, train=train)
    if train:
        inputs_of = model._last[2]
        layer = next(layer for layer in model.layers if layer.name == "drop")
        return layer.pre_neuron, inputs_of[("drop", 0)][0]
    model._last = None
    return None, None


@pytest.mark.parametrize("kind, scale_at_train, scale_at_test", [("dropout", 1 / 0.75, 1.0),
                                                                 ("dropout2", 1.0, 0.75)])
def test_dropout_kinds_scale_as_cuda_convnet2(write_cfg, kind, scale_at_train, scale_at_test):
    model = model_of(write_cfg, kind)
    spec = model.graph.nodes["drop"].spec
    assert isinstance(spec, cfg.HsSpec) and spec.keep == 0.75 and spec.neuron == ("relu", None, None)
    x = np.random.default_rng(0).standard_normal((64, 3, 2, 2))
    y, fc1 = drop_output(model, x, train=True)
    ratio = np.divide(y, fc1, out=np.zeros_like(y), where=fc1 != 0)
    kept = ratio != 0
    np.testing.assert_allclose(ratio[kept], scale_at_train, rtol=1e-15)  # kept units, scaled or not
    assert 0.6 < kept.mean() < 0.9  # about keep = 0.75 of them
    # the test pass: identity (dropout) or x * keep (dropout2), through the relu
    fc1_out = model.layers[0].compute([x], None)
    test_logits = model.forward(x)
    w2, b2 = model.state_dict()["fc2.weights.0"], model.state_dict()["fc2.biases"]
    np.testing.assert_allclose(test_logits, np.maximum(fc1_out * scale_at_test, 0) @ w2.T + b2, rtol=1e-12)


@pytest.mark.parametrize("kind, factor", [("dropout", 1.0), ("dropout2", 0.75), ("hs", 1.0)])
def test_disabled_dropout_passes_through_or_scales_by_keep_in_every_pass(write_cfg, kind, factor):
    params = PARAMS.format(enable="false")
    lp, pp = write_cfg(LAYERS.format(kind=kind), params.replace("keep=0.75\n", "") if kind == "hs" else params)
    model = Model.from_cfg(lp, pp, seed=3, dtype=np.float64, image_size=2)
    x = np.random.default_rng(1).standard_normal((8, 3, 2, 2))
    fc1_out = model.layers[0].compute([x], None)
    w2, b2 = model.state_dict()["fc2.weights.0"], model.state_dict()["fc2.biases"]
    expected = np.maximum(fc1_out * factor, 0) @ w2.T + b2
    for train in (True, False):
        np.testing.assert_allclose(model.forward(x, train=train), expected, rtol=1e-12)
        model._last = None
    # and the backward scales the same way: the engine's gradients are torch's
    state, momentum = model.state_dict(), model.momentum_state_dict()
    labels = np.array([0, 1, 2, 3, 0, 1, 2, 3])
    _, _, ref_grads, ref_params, _ = reference_model.train_step(model, state, momentum, x, labels)
    model.train_step(x, labels)
    for key, grad in model.gradient_dict().items():
        close(grad, ref_grads[key], key)


def test_dropout_layers_need_their_params_section(write_cfg):
    lp, pp = write_cfg(LAYERS.format(kind="dropout2"), PARAMS.format(enable="true").split("[drop]")[0])
    with pytest.raises(cfg.CfgError, match=r"\[drop\]: missing section .*enable and keep") as info:
        cfg.read_params(pp, cfg.read_layers(lp))
    assert info.value.file == str(pp)
    lp, pp = write_cfg(LAYERS.format(kind="dropout").replace("[drop]\ntype=dropout\n", "[drop]\ntype=dropout\nkeep=0.5\n"),
                       PARAMS.format(enable="true"))
    with pytest.raises(cfg.CfgError, match=r"\[drop\] .*'keep'.*params file"):
        cfg.read_layers(lp)


def test_cuda_convnet2s_two_gpu_model_split_trains_a_step_as_torch():
    """layers-imagenet-2gpu-model.cfg (run #145's towers in cuda-convnet2's format, with dropout
    layers and dexp schedules) at its data's 224 x 224, one float64 step: every gradient and every
    updated parameter against the PyTorch model composed from torch ops."""
    lp, pp = (CONVNET2 / n for n in ("layers-imagenet-2gpu-model.cfg", "layer-params-imagenet-2gpu-model.cfg"))
    model = Model.from_cfg(lp, pp, seed=4, dtype=np.float64, image_size=224)
    assert model.graph.devices == [0, 1] and model.scheduled
    rng = np.random.default_rng(5)
    x, labels = rng.standard_normal((1, 3, 224, 224)), rng.integers(0, model.num_classes, 1)
    reference_model.assert_train_step_matches(model, x, labels, progress=0.6)  # the dexp schedules' second piece
