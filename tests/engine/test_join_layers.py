"""cuda-convnet2's layers that join towers: concat and pass of several inputs (the inputs' features
per image, in input order: channels when they share height and width), eltsum (coeffs from the
params file) and eltmax (the whole gradient to every input equal to the maximum). A network using
each, placed on one and on two logical devices, trains a float64 step as PyTorch does (every
gradient, updated parameter and momentum), and the two placements give bit-identical results;
bad files give errors naming file, section and key."""

import numpy as np
import pytest

import reference_model
from alexnet_raw import Model
from alexnet_raw.engine import cfg
from cfg_texts import DATA, classifier, conv_of_images

# two conv towers of different widths (concat, pass) or equal widths (eltsum, eltmax), joined, then
# a conv on the joined maps and an fc fed by the join and by one tower directly
LAYERS = DATA + conv_of_images("conva", extra="neuron=relu\ngpu=0") + conv_of_images("convb", "{width_b}", "gpu=1") + """
[join]
type={kind}
inputs=conva,convb
{join_keys}
[conv2]
type=conv
inputs=join
channels={joined}
filters=3
filterSize=3
stride=2
initW=0.3
[fc]
type=fc
inputs=conv2,join
outputs=5
initW=0.1,0.1
""" + classifier("fc")
PARAMS = """
[conva]
epsW=0.1
epsB=0.2
momW=0.9
momB=0.9
wc=0.01
[convb]
epsW=0.1
epsB=0.2
momW=0.9
momB=0.9
[conv2]
epsW=0.1
epsB=0.2
[fc]
epsW=0.1,0.05
epsB=0.2
{join_params}
"""
KINDS = {  # kind: (width of tower b, channels after the join, layers-file keys, params section)
    "concat": (6, 10, "neuron=tanh[1,1]", ""),
    "pass": (6, 10, "", ""),
    "eltsum": (4, 4, "neuron=relu", "[join]\ncoeffs=0.5,-2"),
    "eltmax": (4, 4, "", ""),
}


def model_of(write_cfg, kind, single_device=False, dtype=np.float64):
    width_b, joined, join_keys, join_params = KINDS[kind]
    lp, pp = write_cfg(LAYERS.format(kind=kind, width_b=width_b, joined=joined, join_keys=join_keys),
                       PARAMS.format(join_params=join_params))
    return Model.from_cfg(lp, pp, seed=5, dtype=dtype, image_size=7, single_device=single_device)


def batch(seed=0, n=3):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 3, 7, 7)), rng.integers(0, 5, n)


@pytest.mark.parametrize("kind", list(KINDS))
def test_join_layer_trains_a_step_as_torch(write_cfg, kind):
    model = model_of(write_cfg, kind)
    assert model.graph.nodes["conva"].device != model.graph.nodes["convb"].device  # the join crosses devices
    width_b, joined = KINDS[kind][:2]
    assert model.shapes["join"] == (joined, 7, 7)
    x, labels = batch()
    reference_model.assert_train_step_matches(model, x, labels)


@pytest.mark.parametrize("kind", list(KINDS))
def test_join_layer_is_bit_identical_on_one_device(write_cfg, kind):
    runs = []
    for single in (False, True):
        model = model_of(write_cfg, kind, single_device=single, dtype=np.float32)
        for step in range(2):
            x, labels = batch(step)
            loss, _ = model.train_step(x.astype(np.float32), labels)
        runs.append((float(loss), model.state_dict()))
    assert runs[0][0] == runs[1][0]
    for key, value in runs[0][1].items():
        assert value.tobytes() == runs[1][1][key].tobytes(), key


def test_eltmax_ties_send_the_whole_gradient_to_each_input(write_cfg):
    model = model_of(write_cfg, "eltmax")
    state = model.state_dict()
    state["convb.weights.0"], state["convb.biases"] = state["conva.weights.0"], state["conva.biases"]
    model.load_state_dict(state)  # the two towers equal before conva's relu: ties where conva > 0
    x, labels = batch()
    model.forward(x, train=True)
    model.backward(labels)
    ours = model.gradient_dict()["convb.weights.0"]
    assert np.abs(ours).max() > 0
    reference_model.assert_train_step_matches(model, x, labels)


def test_concat_of_differently_sized_maps_is_flat(write_cfg):
    lp, pp = write_cfg(
        LAYERS.format(kind="concat", width_b=6, joined=10, join_keys="").replace(
            "[convb]\ntype=conv\ninputs=data\nchannels=3\nfilters=6\nfilterSize=3\npadding=1",
            "[convb]\ntype=conv\ninputs=data\nchannels=3\nfilters=6\nfilterSize=3\npadding=0").replace(
            "[conv2]\ntype=conv\ninputs=join\nchannels=10\nfilters=3\nfilterSize=3\nstride=2\ninitW=0.3\n",
            "[conv2]\ntype=fc\ninputs=join\noutputs=3\ninitW=0.3\n"),
        PARAMS.format(join_params=""))
    model = Model.from_cfg(lp, pp, seed=5, dtype=np.float64, image_size=7)
    assert model.shapes["join"] == (4 * 7 * 7 + 6 * 5 * 5,)
    x, labels = batch()
    reference_model.assert_train_step_matches(model, x, labels)


@pytest.mark.parametrize("kind, change, section, key, message", [
    ("eltmax", ("inputs=conva,convb", "inputs=conva"), "join", "inputs", "at least 2 inputs"),
    ("eltsum", ("coeffs=0.5,-2", "coeffs=0.5,-2,1"), "join", "coeffs", "expected 2 comma-separated values"),
    ("eltsum", ("coeffs=0.5,-2", "coeffs=0.5,nan"), "join", "coeffs", "expected a finite number"),
    ("eltsum", ("coeffs=0.5,-2", "coefs=0.5"), "join", "coefs", "did you mean 'coeffs'"),
])
def test_bad_join_files_name_file_section_and_key(write_cfg, kind, change, section, key, message):
    width_b, joined, join_keys, join_params = KINDS[kind]
    layers = LAYERS.format(kind=kind, width_b=width_b, joined=joined, join_keys=join_keys)
    params = PARAMS.format(join_params=join_params)
    if change[0] in layers:
        layers = layers.replace(*change)
    else:
        params = params.replace(*change)
    lp, pp = write_cfg(layers, params)
    with pytest.raises(cfg.CfgError) as e:
        Model.from_cfg(lp, pp, dtype=np.float64, image_size=7)
    assert (e.value.section, e.value.key) == (section, key) and message in str(e.value), str(e.value)


def test_eltwise_inputs_of_different_sizes_name_the_layer(write_cfg):
    layers = LAYERS.format(kind="eltsum", width_b=6, joined=4, join_keys="")
    lp, pp = write_cfg(layers, PARAMS.format(join_params=""))
    with pytest.raises(ValueError, match=r"\[join\] the inputs of eltsum must hold the same number of features"):
        Model.from_cfg(lp, pp, dtype=np.float64, image_size=7)
