"""Strict layer and params files (alexnet_raw/engine/cfg.py): unknown keys, the original's
bookkeeping keys, numbers finite in the model's dtype and inside their range, and networks too
large for the machine refused before allocation. Parsing only, apart from one model build per
memory test (no kernel runs)."""

import configparser
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

from alexnet_raw import Model
from alexnet_raw.engine import cfg, graph, layers as layers_mod
from alexnet_raw.engine.devices import Devices, host_available_bytes

HERE = Path(__file__).resolve().parent
# The example files of cuda-convnet (example-layers/), cuda-convnet2 (layers/) and the 2012 runs, copied
# from ../shared/reference with their licences.
REFERENCE_DIRS = [HERE / d for d in ("cuda-convnet", "cuda-convnet2", "cuda-convnet-2012")]
REFERENCE_PAIRS = sorted((p, p.with_name("layer-params" + p.name[len("layers"):]))
                         for d in REFERENCE_DIRS for p in d.glob("layers*.cfg"))
# The files that load today: all of them (a file added here that uses what is not implemented must be
# refused naming that).
LOADING = {"layers-18pct.cfg", "layers-145.cfg", "layers-145-half.cfg", "layers-147.cfg", "layers-148.cfg",
           "layers-150.cfg", "layers-imagenet-2gpu-model.cfg", "layers-conv-local-13pct.cfg",
           "layers-cifar10-11pct.cfg", "layers-imagenet-2gpu-data.cfg", "layers-imagenet-4gpu-data-model.cfg",
           "layers.gc.cfg"}
NOT_YET_TYPES = set()

# one section of every supported layer type
LAYERS = """
[data]
type=data
dataIdx=0
imgSize=16
[labels]
type=data
dataIdx=1
[conv1]
type=conv
inputs=data
channels=3
filters=8
filterSize=3
padding=1
stride=1
initW=0.01
[rnorm1]
type=cmrnorm
inputs=conv1
channels=8
size=5
[pool1]
type=pool
pool=max
inputs=rnorm1
sizeX=2
stride=2
neuron=relu
[snorm1]
type=rnorm
inputs=pool1
channels=8
size=3
[fc1]
type=fc
inputs=snorm1
outputs=6
initW=0.01
[relu1]
type=neuron
inputs=fc1
neuron=relu
[hs1]
type=hs
inputs=relu1
keep=0.5
[fc2]
type=fc
inputs=hs1
outputs=4
initW=0.01
[probs]
type=softmax
inputs=fc2
[logprob]
type=cost.logreg
inputs=labels,probs
"""
PARAMS = """
[conv1]
epsW=0.01
epsB=0.02
momW=0.9
momB=0.9
wc=0.0005
[fc1]
epsW=0.01
epsB=0.02
[fc2]
epsW=0.01
epsB=0.02
[rnorm1]
scale=0.0001
pow=0.75
minDiv=2
[snorm1]
scale=0.001
pow=0.75
[hs1]
enable=true
[logprob]
coeff=1
topk=1
"""


def _add(text, section, line):
    """`text` with `line` added as the first key of [section]."""
    header = f"[{section}]\n"
    assert header in text, section
    return text.replace(header, header + line + "\n", 1)


def _set(text, section, line):
    """`text` with the key of `line` ("key=value") set in [section]: replaced where it is, else added."""
    key = line.split("=")[0]
    replaced, count = re.subn(rf"(\[{section}\]\n(?:[^\[\n][^\n]*\n)*?){key}=[^\n]*", rf"\g<1>{line}", text, count=1)
    return replaced if count else _add(text, section, line)


def _refused(write_cfg, layers=LAYERS, params=PARAMS, dtype=np.float32):
    lp, pp = write_cfg(layers, params)
    with pytest.raises(cfg.CfgError) as info:
        cfg.read_params(pp, cfg.read_layers(lp, dtype), dtype)
    return info.value, lp, pp


def test_the_network_of_every_type_loads(write_cfg):
    lp, pp = write_cfg(LAYERS, PARAMS)
    specs = cfg.read_layers(lp)
    learn = cfg.read_params(pp, specs)
    assert [s.type for s in specs] == ["data", "data", "conv", "cmrnorm", "pool", "rnorm", "fc", "neuron", "hs",
                                       "fc", "softmax", "cost.logreg"]
    assert sorted(learn) == ["conv1", "fc1", "fc2"] and learn["conv1"].mom_w == [0.9]
    graph.Graph(specs, str(lp))


# ----------------------------------------------------------------------------------------------
# unknown keys
@pytest.mark.parametrize("section, typo, meant", [
    ("data", "imgSise=16", "imgSize"),
    ("conv1", "stide=2", "stride"),
    ("rnorm1", "sise=5", "size"),
    ("pool1", "sizex=2", "sizeX"),
    ("snorm1", "chanels=8", "channels"),
    ("fc1", "outptus=6", "outputs"),
    ("relu1", "nueron=relu", "neuron"),
    ("hs1", "keeep=0.5", "keep"),
    ("probs", "input=fc2", "inputs"),
    ("logprob", "coef=1", "coeff"),
])
def test_a_typo_in_each_kind_of_layer_section_names_the_closest_key(write_cfg, section, typo, meant):
    error, lp, _ = _refused(write_cfg, _add(LAYERS, section, typo))
    key = typo.split("=")[0]
    assert (error.file, error.section, error.key) == (str(lp), section, key)
    assert f"{lp}: [{section}] unknown key {key!r} (did you mean {meant!r}?)" in str(error)


@pytest.mark.parametrize("section, typo, meant", [
    ("conv1", "momw=0.9", "momW"),
    ("fc1", "epsw=0.01", "epsW"),
    ("rnorm1", "Pow=0.75", "pow"),
    ("snorm1", "mindiv=1", "minDiv"),
    ("hs1", "enabled=true", "enable"),
    ("logprob", "topK=5", "topk"),
])
def test_a_typo_in_each_kind_of_params_section_names_the_closest_key(write_cfg, section, typo, meant):
    error, _, pp = _refused(write_cfg, params=_add(PARAMS, section, typo))
    key = typo.split("=")[0]
    assert (error.file, error.section, error.key) == (str(pp), section, key)
    assert f"{pp}: [{section}] unknown key {key!r} (did you mean {meant!r}?)" in str(error)


def test_keys_in_the_wrong_file_or_layer_type(write_cfg):
    error, lp, _ = _refused(write_cfg, _add(LAYERS, "conv1", "epsW=0.01"))
    assert error.key == "epsW" and "(it belongs in the params file)" in str(error)
    error, _, pp = _refused(write_cfg, params=_add(PARAMS, "fc1", "outputs=6"))
    assert error.key == "outputs" and "(it belongs in the layers file)" in str(error)
    error, _, pp = _refused(write_cfg, params=PARAMS + "[pool1]\nepsW=0.01\n")  # pool layers have no params
    assert error.section == "pool1" and "the keys of the params of a pool layer: none" in str(error)
    error, lp, _ = _refused(write_cfg, _add(LAYERS, "data", "neuron=relu"))  # a data layer applies no neuron
    assert error.key == "neuron" and "not a key of a data layer; the keys of a data layer: type, dataIdx" in str(error)
    error, lp, _ = _refused(write_cfg, _add(LAYERS, "fc1", "frobnicate=1"))  # nothing close: the keys listed
    assert re.search(r"unknown key 'frobnicate' \(the keys of a fc layer: type, inputs, gpu, neuron, outputs", str(error))


# ----------------------------------------------------------------------------------------------
# numbers in the model's dtype
@pytest.mark.parametrize("dtype, value, limit", [(np.float32, "1e39", "3.4028235e+38"),
                                                 (np.float64, "1e309", "1.7976931e+308")])
@pytest.mark.parametrize("where, section, key", [
    ("params", "conv1", "epsW"), ("params", "rnorm1", "scale"), ("layers", "fc1", "initW"),
    ("layers", "conv1", "initB"), ("params", "snorm1", "pow"),
])
def test_a_number_that_overflows_the_dtype_is_an_error(write_cfg, dtype, value, limit, where, section, key):
    layers, params = LAYERS, PARAMS
    if where == "params":
        params = _set(params, section, f"{key}={value}")
    else:
        layers = _set(layers, section, f"{key}={value}")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no NumPy overflow warning on the way
        error, lp, pp = _refused(write_cfg, layers, params, dtype)
    assert (error.file, error.section, error.key) == (str(pp if where == "params" else lp), section, key)
    name = np.dtype(dtype).name
    assert f"[{section}] {key}: {value} overflows {name} (its finite range is +-{limit})" in str(error)


def test_what_float64_holds_loads_in_float64_and_not_in_float32(write_cfg):
    params = PARAMS.replace("epsW=0.01", "epsW=1e39", 1).replace("epsB=0.02", "epsB=1e-50", 1)
    lp, pp = write_cfg(LAYERS.replace("outputs=6", "outputs=6\nneuron=tanh[1e39,1]"), params)
    learn = cfg.read_params(pp, cfg.read_layers(lp, np.float64), np.float64)
    assert learn["conv1"].eps_w == [1e39] and learn["conv1"].eps_b == 1e-50
    with pytest.raises(cfg.CfgError, match=r"\[fc1\] neuron: neuron 'tanh\[1e39,1\]': 1e\+39 overflows float32"):
        cfg.read_layers(lp)  # float32 unless told
    with pytest.raises(cfg.CfgError, match=r"\[conv1\] epsW: 1e39 overflows float32") as info:
        Model.from_cfg(*write_cfg(LAYERS, params))  # the model's default dtype reaches the reader
    assert info.value.file == str(pp)
    with pytest.raises(cfg.CfgError, match=r"\[conv1\] epsB: 1e-50 rounds to 0 in float32"):
        Model.from_cfg(*write_cfg(LAYERS, PARAMS.replace("epsB=0.02", "epsB=1e-50", 1)))
    model = Model.from_cfg(*write_cfg(LAYERS, params), dtype=np.float64)
    assert model.learn["conv1"].eps_w == [1e39]


# ----------------------------------------------------------------------------------------------
# ranges
@pytest.mark.parametrize("where, section, line, message", [
    ("params", "conv1", "momW=1", r"momW: must be in \[0, 1\), got 1"),
    ("params", "conv1", "momB=-0.1", r"momB: must be in \[0, 1\), got -0.1"),
    ("params", "conv1", "momW=0.99999999999", r"momW: must be in \[0, 1\), got 0.99999999999, which is 1.0 in float32"),
    ("params", "fc1", "epsB=-1", r"epsB: must be >= 0, got -1"),
    ("params", "conv1", "wc=-0.0005", r"wc: must be >= 0"),
    ("params", "rnorm1", "scale=-1", r"scale: must be >= 0"),
    ("params", "snorm1", "minDiv=0", r"minDiv: must be > 0, got 0"),
    ("params", "snorm1", "pow=nan", r"pow: expected a finite number, got 'nan'"),
    ("params", "rnorm1", "pow=-inf", r"pow: expected a finite number, got '-inf'"),
    ("params", "logprob", "topk=0", r"topk: must be positive, got 0"),
    ("params", "hs1", "enable=maybe", r"enable: expected a boolean"),
    ("layers", "conv1", "initW=-0.01", r"initW: must be >= 0, got -0.01"),
    ("layers", "conv1", "filters=0", r"filters: must be positive, got 0"),
    ("layers", "conv1", "filterSize=-3", r"filterSize: must be positive, got -3"),
    ("layers", "conv1", "stride=1.5", r"stride: expected an integer, got '1.5'"),
    ("layers", "conv1", "padding=-1", r"padding: must be >= 0, got -1"),
    ("layers", "rnorm1", "size=0", r"size: must be positive, got 0"),
    ("layers", "pool1", "sizeX=0", r"sizeX: must be positive, got 0"),
    ("layers", "fc1", "outputs=2147483648", r"outputs: must be at most 2147483647 in magnitude"),
    ("layers", "hs1", "keep=0", r"keep: must be in \(0, 1\], got 0"),
    ("layers", "hs1", "keep=1.5", r"keep: must be in \(0, 1\], got 1.5"),
    ("layers", "data", "dataIdx=-1", r"dataIdx: must be >= 0, got -1"),
    ("layers", "fc1", "gpu=-1", r"gpu: must be >= 0, got -1"),
    ("layers", "conv1", "sharedBiases=2", r"sharedBiases: expected a boolean"),
])
def test_values_outside_their_range_are_errors(write_cfg, where, section, line, message):
    key = line.split("=")[0]
    layers = _set(LAYERS, section, line) if where == "layers" else LAYERS
    params = _set(PARAMS, section, line) if where == "params" else PARAMS
    error, lp, pp = _refused(write_cfg, layers, params)
    assert (error.file, error.section, error.key) == (str(pp if where == "params" else lp), section, key)
    assert re.search(rf"\[{section}\] {message}", str(error)), str(error)


# ----------------------------------------------------------------------------------------------
# the original's bookkeeping keys
def test_every_accepted_and_ignored_key_has_a_reason_and_a_rule():
    for table in (cfg.IGNORED, cfg.ONLY):
        for key, entry in table.items():
            reason = entry if isinstance(entry, str) else entry[2]
            assert key in cfg.KEYS and len(reason) > 20, key
    for keys in list(cfg.LAYER_KEYS.values()) + list(cfg.PARAM_KEYS.values()):
        assert set(keys) <= set(cfg.KEYS)


def test_bookkeeping_keys_are_accepted(write_cfg):
    layers = _add(_add(_add(LAYERS, "conv1", "partialSum=4\nsumWidth=3\nsharedBiases=true\nrandSparse=0\ngroups=1"),
                       "pool1", "start=0\noutputsX=0"), "hs1", "enable=1")
    params = _add(_add(PARAMS, "conv1", "wball=0.00\nupdatePeriod=1"), "fc1", "wball=0\nupdatePeriod=0")
    lp, pp = write_cfg(layers, params)
    specs = {s.name: s for s in cfg.read_layers(lp)}
    learn = cfg.read_params(pp, list(specs.values()))
    assert learn["conv1"].eps_w == [0.01] and specs["hs1"].enabled and specs["logprob"].topk == 1
    assert learn["conv1"].update_period == learn["fc1"].update_period == 1  # 0: every minibatch, as 1


@pytest.mark.parametrize("where, section, line", [
    ("layers", "conv1", "sharedBiases=0"),
])
def test_bookkeeping_keys_at_values_not_implemented_are_refused_by_name(write_cfg, where, section, line):
    key, value = line.split("=")
    layers = _set(LAYERS, section, line) if where == "layers" else LAYERS
    params = _set(PARAMS, section, line) if where == "params" else PARAMS
    error, lp, pp = _refused(write_cfg, layers, params)
    assert (error.file, error.section, error.key) == (str(pp if where == "params" else lp), section, key)
    assert "not implemented" in str(error) or "not supported" in str(error)
    assert value in str(error)


def test_enable_false_passes_the_input_through(write_cfg):
    lp, pp = write_cfg(LAYERS, PARAMS.replace("enable=true", "enable=false"))
    specs = {s.name: s for s in cfg.read_layers(lp)}
    cfg.read_params(pp, list(specs.values()))
    assert specs["hs1"].enabled is False
    layer = layers_mod.make_layer(specs["hs1"], 0)
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    for train in (True, False):
        out = layer.compute([x], ctx=type("Ctx", (), {"train": train, "seed": 0})())
        assert out is not x and np.array_equal(out, x)
    grad = np.ones_like(x)
    assert layer.compute_backward(grad, [x], x, None, [True])[0] is grad


# ----------------------------------------------------------------------------------------------
# every reference file: the supported ones load, the others are refused by name, every key is known
def _sections(path):
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str
    parser.read(path)
    return {s: dict(parser.items(s)) for s in parser.sections()}


def test_the_reference_copies_are_all_here():
    assert len(REFERENCE_PAIRS) == 12 and all(pp.is_file() for _, pp in REFERENCE_PAIRS)
    assert all((d / "LICENSE").is_file() for d in REFERENCE_DIRS)


@pytest.mark.parametrize("lp, pp", REFERENCE_PAIRS, ids=[f"{p.parent.name}/{p.name}" for p, _ in REFERENCE_PAIRS])
def test_every_reference_file_loads_or_is_refused_for_a_named_missing_feature(lp, pp):
    if lp.name in LOADING:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            specs = cfg.read_layers(lp)
            cfg.read_params(pp, specs)
        graph.Graph(specs, str(lp))
        return
    with pytest.raises(cfg.CfgError) as info:
        cfg.read_params(pp, cfg.read_layers(lp))
    error, section = info.value, _sections(lp)[info.value.section]
    assert error.file == str(lp) and str(lp) in str(error) and f"[{error.section}] {error.key}:" in str(error)
    if error.key == "type":
        assert section["type"] in NOT_YET_TYPES and repr(section["type"]) in str(error)
    elif error.key == "gpu":
        assert "," in section["gpu"] and "not supported yet" in str(error)
    else:
        assert error.key == "start" and int(section["start"]) > 0 and "not implemented" in str(error)


def test_every_key_of_the_reference_files_is_known_where_it_is():
    seen = set()
    for lp, pp in REFERENCE_PAIRS:
        layer_sections = _sections(lp)
        for name, values in layer_sections.items():
            type_ = values["type"]
            for key in values:
                seen.add(key)
                assert key in (cfg.LAYER_KEYS.get(type_) or cfg.KEYS), (lp.name, name, key)
        for name, values in _sections(pp).items():
            type_ = layer_sections[name]["type"]
            for key in values:
                seen.add(key)
                if type_ in cfg.PARAM_KEYS:
                    assert key in cfg.PARAM_KEYS[type_], (pp.name, name, key)
                elif type_ not in NOT_YET_TYPES:
                    raise AssertionError(f"{pp.name} [{name}] {key}: params for a {type_} layer")
    # the bookkeeping keys of the brief are among them, and known
    assert {"wball", "sumWidth", "minDiv", "topk", "updatePeriod", "partialSum"} <= seen
    assert seen <= set(cfg.KEYS)


# ----------------------------------------------------------------------------------------------
# sizes that cannot fit
def test_a_layer_too_large_for_the_machine_is_refused_before_allocation(write_cfg):
    lp, pp = write_cfg(LAYERS.replace("outputs=6", "outputs=1000000000"), PARAMS)
    with pytest.raises(graph.MemoryLimitError) as info:
        Model.from_cfg(lp, pp)
    message = str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, MemoryError)
    # fc1: 1e9 x 512 weights + 1e9 biases, x3 (values, gradients, momentum) x 4 bytes, + 2 x 1e9 x 4 of outputs
    fc1 = (3 * (10**9 * 512 + 10**9) + 2 * 10**9) * 4
    assert re.search(rf"{re.escape(str(lp))}: the network .* needs [\d,]+ bytes .* on the host, which has "
                     rf"[\d,]+ bytes .* available; largest: \[fc1\] {fc1:,} bytes", message), message


def test_the_limit_is_the_memory_available(write_cfg, monkeypatch):
    available = host_available_bytes()
    assert isinstance(available, int) and 0 < available
    import os
    assert available <= os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    lp, pp = write_cfg(LAYERS, PARAMS)
    model = Model.from_cfg(lp, pp)  # small: fits
    fc1 = (3 * (6 * 512 + 6) + 2 * 6) * 4  # the largest layer: weights, biases x3, one image's output x2
    monkeypatch.setattr(Devices, "available_bytes", lambda self, device: fc1)
    with pytest.raises(graph.MemoryLimitError, match=rf"on the host, which has {fc1:,} bytes .*largest: \[fc1\] {fc1:,}"):
        Model.from_cfg(lp, pp)
    # a batch is checked when the model sees it, before anything runs: 1000 images' outputs of conv1 alone
    batch = 1000 * 8 * 16 * 16 * 4 * 2
    monkeypatch.setattr(Devices, "available_bytes", lambda self, device: batch)
    x = np.zeros((1000, 3, 16, 16), np.float32)
    with pytest.raises(graph.MemoryLimitError, match=r"a batch of 1000 images \(outputs and their gradients\) needs"):
        model.forward(x, train=True)
