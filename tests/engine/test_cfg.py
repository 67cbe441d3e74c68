"""The reader of cuda-convnet's layer and params files (alexnet_raw/engine/cfg.py)."""

import warnings

import pytest
from reference_runs import RUNS, reference_files

from alexnet_raw.engine import cfg
from cfg_texts import DATA

MINIMAL = DATA + """
[conv1]
type=conv
inputs=data
channels=3
filters=4
filterSize=3
[fc1]
type=fc
inputs=conv1
outputs=5
[probs]
type=softmax
inputs=fc1
[logprob]
type=cost.logreg
inputs=labels,probs
"""
PARAMS = """
[conv1]
epsW=0.01
epsB=0.02
[fc1]
epsW=0.01
epsB=0.02
"""


@pytest.mark.parametrize("run", RUNS)
def test_every_original_run_parses_without_warnings(run):
    layers_path, params_path = reference_files(run)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        layers = cfg.read_layers(layers_path)
        learn = cfg.read_params(params_path, layers)
    types = {spec.type for spec in layers}
    assert {"data", "conv", "pool", "fc", "softmax", "cost.logreg"} <= types
    with_weights = [s.name for s in layers if isinstance(s, (cfg.ConvSpec, cfg.FcSpec))]
    assert sorted(learn) == sorted(with_weights)
    for spec in layers:
        if isinstance(spec, cfg.NormSpec):
            assert spec.scale > 0 and spec.pow > 0


def test_run_145_details():
    layers_path, params_path = reference_files("145")
    layers = {s.name: s for s in cfg.read_layers(layers_path)}
    learn = cfg.read_params(params_path, list(layers.values()))
    c1 = layers["conv1a"]
    assert (c1.filters, c1.filter_size, c1.stride, c1.padding, c1.channels, c1.gpu, c1.neuron) == (
        48, [11], [4], [0], [3], 0, None)
    assert layers["pool1a"].neuron == ("relu", None, None) and layers["pool1a"].size == 3
    c3 = layers["conv3b"]
    assert c3.inputs == ["pool2a", "pool2b"] and c3.channels == [128, 128] and c3.init_w == [0.03, 0.03]
    assert layers["fc2048ba"].inputs == ["hs1a", "hs1b"] and layers["fc2048ba"].init_b == 1.0
    assert layers["hs1a"].keep == 0.5 and layers["hs1a"].mode == "original"
    assert layers["rnorm1a"].type == "cmrnorm" and layers["cnorm2a"].type == "rnorm"
    assert (layers["rnorm1a"].scale, layers["rnorm1a"].pow, layers["rnorm1a"].min_div) == (0.0001, 0.75, 2.0)
    assert learn["conv1a"].eps_w == [0.0] and learn["conv3a"].mom_w == [0.9, 0.9]
    assert learn["fc1000"].wc == [0.0005, 0.0005]


def test_minimal_network_and_text_reader(write_cfg):
    lp, pp = write_cfg(MINIMAL, PARAMS)
    a = cfg.read_layers(lp)
    b = cfg.read_layers_text(MINIMAL, "inline")
    assert [s.name for s in a] == [s.name for s in b] == ["data", "labels", "conv1", "fc1", "probs", "logprob"]
    assert cfg.read_params(pp, a)["fc1"].eps_b == 0.02


@pytest.mark.parametrize("edit, section, key, message", [
    (("type=conv", "type=deconv"), "conv1", "type", "unsupported layer type 'deconv'"),
    (("filterSize=3", "filterSize=three"), "conv1", "filterSize", "expected an integer, got 'three'"),
    (("filterSize=3", "filterSize=0"), "conv1", "filterSize", "must be positive"),
    (("channels=3\n", ""), "conv1", "channels", "missing"),
    (("inputs=conv1", "inputs=nothing"), "fc1", "inputs", "not a layer defined above"),
    (("outputs=5", "outputs=5\nneuron=tanh"), "fc1", "neuron", r"neuron 'tanh': expected tanh\[a,b\] with 2 number"),
    (("outputs=5", "outputs=5\nneuron=gelu"), "fc1", "neuron", r"neuron 'gelu': expected one of"),
    (("inputs=labels,probs", "inputs=probs"), "logprob", "inputs", "two inputs"),
    (("filterSize=3", "filterSize=3\nsharedBiases=0"), "conv1", "sharedBiases", "shared biases"),
    (("outputs=5", "outputs=5\nneuron=brelu[0]"), "fc1", "neuron", r"brelu\[a\] needs a > 0"),
    (("type=fc\ninputs=conv1\noutputs=5", "type=neuron\ninputs=conv1"), "fc1", "neuron", "missing"),
    (("outputs=5", "outputs=5\nneuron=linear[1]"), "fc1", "neuron", r"expected linear\[a,b\], 2 number\(s\), got 1"),
    (("sizeX=2", "sizeX=2"), "pool1", "pool", "unsupported pooling 'median'; supported: max, avg"),
])
def test_errors_name_file_section_and_key(write_cfg, edit, section, key, message):
    text = MINIMAL.replace("[fc1]", "[pool1]\ntype=pool\npool=median\ninputs=conv1\nsizeX=2\nstride=2\n[fc1]") \
        if section == "pool1" else MINIMAL
    lp, _ = write_cfg(text.replace(*edit, 1))
    with pytest.raises(cfg.CfgError, match=message) as info:
        cfg.read_layers(lp)
    assert info.value.section == section and info.value.key == key
    assert str(lp) in str(info.value) and f"[{section}]" in str(info.value)


def test_neurons_and_both_poolings(write_cfg):
    text = MINIMAL.replace("filterSize=3", "filterSize=3\nneuron=linear[1,0]").replace(
        "[fc1]", "[pool1]\ntype=pool\npool=avg\ninputs=conv1\nsizeX=3\nstride=2\noutputsX=0\nneuron=ident\n[fc1]")
    layers = {s.name: s for s in cfg.read_layers(write_cfg(text)[0])}
    assert layers["conv1"].neuron is None and layers["pool1"].neuron is None
    assert layers["pool1"].pool == "avg" and layers["pool1"].outputs_x == 0
    text = MINIMAL.replace("filterSize=3", "filterSize=3\nneuron=tanh[1.7159, 0.6666]").replace(
        "outputs=5", "outputs=5\nneuron=linear[2,-1]")
    layers = {s.name: s for s in cfg.read_layers(write_cfg(text)[0])}
    assert layers["conv1"].neuron == ("tanh", 1.7159, 0.6666) and layers["fc1"].neuron == ("linear", 2.0, -1.0)


def test_params_errors(write_cfg):
    lp, pp = write_cfg(MINIMAL, PARAMS.replace("[fc1]\nepsW=0.01\n", "[fc1]\n"))
    with pytest.raises(cfg.CfgError, match=r"\[fc1\] epsW: missing"):
        cfg.read_params(pp, cfg.read_layers(lp))
    lp, pp = write_cfg(MINIMAL, PARAMS + "[ghost]\nepsW=1\n")
    with pytest.raises(cfg.CfgError, match=r"\[ghost\].*does not define"):
        cfg.read_params(pp, cfg.read_layers(lp))
    lp, pp = write_cfg(MINIMAL, PARAMS.replace("epsB=0.02", "epsB=-1", 1))
    with pytest.raises(cfg.CfgError, match=r"\[conv1\] epsB: must be >= 0"):
        cfg.read_params(pp, cfg.read_layers(lp))


def test_corrupt_and_missing_files(tmp_path):
    with pytest.raises(cfg.CfgError, match="no such file"):
        cfg.read_layers(tmp_path / "absent.cfg")
    bad = tmp_path / "bad.cfg"
    bad.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(cfg.CfgError, match="not a text file"):
        cfg.read_layers(bad)
    bad.write_text("type=conv\n")
    with pytest.raises(cfg.CfgError, match="not a valid layer file"):
        cfg.read_layers(bad)
    bad.write_text("[a]\ntype=data\n[a]\ntype=data\n")
    with pytest.raises(cfg.CfgError, match="not a valid layer file"):
        cfg.read_layers(bad)
    bad.write_text("")
    with pytest.raises(cfg.CfgError, match="defines no layers"):
        cfg.read_layers(bad)


def test_unknown_keys_are_errors_with_their_names(write_cfg):  # more in test_cfg_strict.py
    lp, _ = write_cfg(MINIMAL.replace("outputs=5", "outputs=5\nfrobnicate=1"))
    with pytest.raises(cfg.CfgError, match=r"\[fc1\] unknown key 'frobnicate' \(the keys of a fc layer: "):
        cfg.read_layers(lp)
