"""Reader for cuda-convnet's layer definition files (layers-*.cfg and layer-params-*.cfg).

A layers file has one section per layer in topological order: `type`, `inputs` (comma-separated
layer names), and the type's keys; keys of layers with several inputs hold one value per input
(`filters=192,192`). The params file holds the learning hyperparameters (`epsW`, `momW`, `wc`
per input; `epsB`, `momB`) and the normalisation constants (`scale`, `pow`, `minDiv`).

Supported layer types: data, conv, pool (max and avg), cmrnorm, rnorm, fc, hs, neuron (a layer
that only applies its neuron), softmax, cost.logreg; on any layer one of cuda-convnet's neurons:
relu, logistic, tanh[a,b], brelu[a], abs, square, sqrt, linear[a,b], softrelu, ident. Keys that
change what a layer computes and that this engine does not implement (sharedBiases=0,
randSparse=1, start other than 0) are errors; bookkeeping keys of the original (partialSum, wball,
enable, ...) are accepted and ignored, and `outputsX`, when not 0, must equal the computed size.

Extensions of ours, all optional: `sizeRule=floor|ceil` on conv and pool layers (default ceil,
cuda-convnet's; floor is PyTorch's), `mode=original|inverted` on hs layers (default original:
mask at training, multiply by keep at test), `imgSize` and `channels` on the data layer.

Every error names the file, the section and the key.
"""

from __future__ import annotations

import configparser
import dataclasses
import math
import warnings
from pathlib import Path

from ..ops.neuron import parse_neuron

LAYER_TYPES = ("data", "conv", "pool", "cmrnorm", "rnorm", "fc", "hs", "neuron", "softmax", "cost.logreg")
POOLS = ("max", "avg")


class CfgError(ValueError):
    """A layer or params file is malformed or inconsistent."""

    def __init__(self, file, section, key, message):
        where = f"{file}" + (f": [{section}]" if section else "") + (f" {key}" if key else "")
        super().__init__(f"{where}: {message}")
        self.file, self.section, self.key = str(file), section, key


# ----------------------------------------------------------------------------------------------
# Layer specifications (what the file says, checked; shapes come later in graph.py)
@dataclasses.dataclass
class LayerSpec:
    name: str
    type: str
    inputs: list
    gpu: int | None = None
    neuron: tuple | None = None  # (name, a, b) of alexnet_raw.ops.neuron; None: the identity


@dataclasses.dataclass
class DataSpec(LayerSpec):
    data_idx: int = 0
    img_size: int | None = None
    channels: int | None = None


@dataclasses.dataclass
class ConvSpec(LayerSpec):
    filters: int = 0
    filter_size: list = dataclasses.field(default_factory=list)  # per input
    stride: list = dataclasses.field(default_factory=list)
    padding: list = dataclasses.field(default_factory=list)
    channels: list = dataclasses.field(default_factory=list)
    groups: list = dataclasses.field(default_factory=list)
    init_w: list = dataclasses.field(default_factory=list)
    init_b: float = 0.0
    size_rule: str = "ceil"


@dataclasses.dataclass
class PoolSpec(LayerSpec):
    pool: str = "max"  # "avg": the mean of the window's pixels inside the image, as cuda-convnet's AvgPooler
    size: int = 0
    stride: int = 0
    start: int = 0
    outputs_x: int = 0  # the file's outputsX: 0 = computed
    channels: int | None = None
    size_rule: str = "ceil"


@dataclasses.dataclass
class NormSpec(LayerSpec):  # cmrnorm (across maps) and rnorm (same map)
    size: int = 0
    channels: int | None = None
    scale: float = 0.0
    pow: float = 0.0
    min_div: float = 1.0


@dataclasses.dataclass
class FcSpec(LayerSpec):
    outputs: int = 0
    init_w: list = dataclasses.field(default_factory=list)
    init_b: float = 0.0


@dataclasses.dataclass
class HsSpec(LayerSpec):
    keep: float = 0.5
    mode: str = "original"


@dataclasses.dataclass
class SoftmaxSpec(LayerSpec):
    pass


@dataclasses.dataclass
class NeuronSpec(LayerSpec):  # a layer that only applies its `neuron=` to its input
    pass


@dataclasses.dataclass
class CostSpec(LayerSpec):
    coeff: float = 1.0
    topk: int = 5


@dataclasses.dataclass
class LearnSpec:
    """Hyperparameters of one layer with weights: per input for W, one value for the bias."""

    eps_w: list
    mom_w: list
    wc: list
    eps_b: float
    mom_b: float


# ----------------------------------------------------------------------------------------------
def read_sections(path) -> dict:
    """{section: {key: value}} in file order; keys keep their case."""
    path = Path(path)
    if not path.is_file():
        raise CfgError(path, None, None, "no such file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise CfgError(path, None, None, f"not a text file: {e}") from None
    return read_sections_text(text, path)


def read_sections_text(text: str, source) -> dict:
    """read_sections for the text of a file; `source` names it in errors."""
    parser = configparser.ConfigParser(
        strict=True, interpolation=None, comment_prefixes=("#", ";"), inline_comment_prefixes=None,
        empty_lines_in_values=False, delimiters=("=",)
    )
    parser.optionxform = str  # cuda-convnet's keys are case-sensitive (filterSize, epsW)
    try:
        parser.read_string(text, source=str(source))
    except configparser.Error as e:
        raise CfgError(source, None, None, f"not a valid layer file: {e}") from None
    return {s: dict(parser.items(s)) for s in parser.sections()}


class _Section:
    """Typed access to one section's keys, with errors that name file/section/key."""

    def __init__(self, file, name, values):
        self.file, self.name, self.values = file, name, values
        self.used = set()

    def error(self, key, message):
        return CfgError(self.file, self.name, key, message)

    def has(self, key):
        return key in self.values

    def raw(self, key, default=None, required=False):
        if key not in self.values:
            if required:
                raise self.error(key, "missing (required for this layer type)")
            return default
        self.used.add(key)
        return self.values[key].strip()

    def _convert(self, key, text, kind):
        try:
            if kind is int:
                value = float(text)
                if not value.is_integer():
                    raise ValueError
                return int(value)
            value = float(text)
            if not math.isfinite(value):
                raise ValueError
            return value
        except ValueError:
            raise self.error(key, f"expected {'an integer' if kind is int else 'a finite number'}, got {text!r}") from None

    def number(self, key, kind=float, default=None, required=False, minimum=None, positive=False):
        text = self.raw(key, None, required)
        if text is None:
            return default
        value = self._convert(key, text, kind)
        self._bounds(key, value, minimum, positive)
        return value

    def numbers(self, key, count, kind=float, default=None, required=False, minimum=None, positive=False):
        """One value per input (a single value is applied to every input)."""
        text = self.raw(key, None, required)
        if text is None:
            return [default] * count
        parts = [p.strip() for p in text.split(",")]
        if len(parts) == 1:
            parts = parts * count
        if len(parts) != count:
            raise self.error(key, f"expected {count} comma-separated values (one per input), got {len(parts)}: {text!r}")
        values = [self._convert(key, p, kind) for p in parts]
        for v in values:
            self._bounds(key, v, minimum, positive)
        return values

    def _bounds(self, key, value, minimum, positive):
        if positive and value <= 0:
            raise self.error(key, f"must be positive, got {value}")
        if minimum is not None and value < minimum:
            raise self.error(key, f"must be >= {minimum}, got {value}")

    def choice(self, key, choices, default):
        text = self.raw(key, None)
        if text is None:
            return default
        if text not in choices:
            raise self.error(key, f"must be one of {', '.join(choices)}, got {text!r}")
        return text


# keys of the original that do not change what a layer computes here
_IGNORED = {"partialSum", "wball", "enable", "randSparse", "sharedBiases", "groups", "dataIdx"}


def _neuron(s):
    """A layer's neuron as (name, a, b) (alexnet_raw.ops.neuron.parse_neuron), None for an identity."""
    text = s.raw("neuron")
    if text is None:
        return None
    try:
        neuron = parse_neuron(text)
    except ValueError as e:
        raise s.error("neuron", str(e)) from None
    if neuron[0] == "ident" or neuron == ("linear", 1.0, 0.0):
        return None
    return neuron


def _layer(file, name, values, known_layers):
    s = _Section(file, name, values)
    type_ = s.raw("type", required=True)
    if type_ not in LAYER_TYPES:
        raise s.error("type", f"unsupported layer type {type_!r}; supported: {', '.join(LAYER_TYPES)}")
    inputs = []
    if type_ != "data":
        text = s.raw("inputs", required=True)
        inputs = [i.strip() for i in text.split(",")]
        for i in inputs:
            if not i:
                raise s.error("inputs", f"empty layer name in {text!r}")
            if i not in known_layers:
                raise s.error("inputs", f"input {i!r} is not a layer defined above this one")
    gpu = s.number("gpu", int, minimum=0)
    neuron = _neuron(s)
    common = dict(name=name, type=type_, inputs=inputs, gpu=gpu, neuron=neuron)
    n = len(inputs)

    if type_ == "data":
        spec = DataSpec(**common, data_idx=s.number("dataIdx", int, 0, minimum=0),
                        img_size=s.number("imgSize", int, None, positive=True),
                        channels=s.number("channels", int, None, positive=True))
    elif type_ == "conv":
        if s.raw("sharedBiases", "1") not in ("1", "true", "True"):
            raise s.error("sharedBiases", "only shared biases (sharedBiases=1, one bias per filter) are supported")
        if s.raw("randSparse", "0") not in ("0", "false", "False"):
            raise s.error("randSparse", "random sparse connectivity (randSparse=1) is not supported")
        filters = s.numbers("filters", n, int, required=True, positive=True)
        if len(set(filters)) != 1:
            raise s.error("filters", f"every input must have the same number of filters, got {filters}")
        spec = ConvSpec(
            **common,
            filters=filters[0],
            filter_size=s.numbers("filterSize", n, int, required=True, positive=True),
            stride=s.numbers("stride", n, int, 1, positive=True),
            padding=s.numbers("padding", n, int, 0, minimum=0),
            channels=s.numbers("channels", n, int, required=True, positive=True),
            groups=s.numbers("groups", n, int, 1, positive=True),
            init_w=s.numbers("initW", n, float, 0.01, minimum=0),
            init_b=s.number("initB", float, 0.0),
            size_rule=s.choice("sizeRule", ("ceil", "floor"), "ceil"),
        )
    elif type_ == "pool":
        pool = s.raw("pool", required=True)
        if pool not in POOLS:
            raise s.error("pool", f"unsupported pooling {pool!r}; supported: {', '.join(POOLS)}")
        spec = PoolSpec(
            **common,
            pool=pool,
            size=s.number("sizeX", int, required=True, positive=True),
            stride=s.number("stride", int, required=True, positive=True),
            start=s.number("start", int, 0),
            outputs_x=s.number("outputsX", int, 0, minimum=0),
            channels=s.number("channels", int, None, positive=True),
            size_rule=s.choice("sizeRule", ("ceil", "floor"), "ceil"),
        )
        if spec.start != 0:
            raise s.error("start", "only start=0 is supported")
    elif type_ in ("cmrnorm", "rnorm"):
        spec = NormSpec(**common, size=s.number("size", int, required=True, positive=True),
                        channels=s.number("channels", int, None, positive=True))
    elif type_ == "fc":
        spec = FcSpec(**common, outputs=s.number("outputs", int, required=True, positive=True),
                      init_w=s.numbers("initW", n, float, 0.01, minimum=0), init_b=s.number("initB", float, 0.0))
    elif type_ == "hs":
        keep = s.number("keep", float, 0.5)
        if not 0.0 < keep <= 1.0:
            raise s.error("keep", f"must be in (0, 1], got {keep}")
        spec = HsSpec(**common, keep=keep, mode=s.choice("mode", ("original", "inverted"), "original"))
    elif type_ == "softmax":
        spec = SoftmaxSpec(**common)
    elif type_ == "neuron":
        if not s.has("neuron"):
            raise s.error("neuron", "missing (required for this layer type)")
        spec = NeuronSpec(**common)
    else:  # cost.logreg
        if n != 2:
            raise s.error("inputs", f"cost.logreg takes two inputs (labels, probabilities), got {n}")
        spec = CostSpec(**common, coeff=s.number("coeff", float, 1.0), topk=s.number("topk", int, 5, positive=True))
    if type_ in ("pool", "cmrnorm", "rnorm", "hs", "neuron", "softmax") and n != 1:
        raise s.error("inputs", f"a {type_} layer takes one input, got {n}")
    unknown = set(values) - s.used - _IGNORED - {"type", "inputs", "gpu", "neuron"}
    if unknown:
        warnings.warn(f"{file}: [{name}] ignores unknown key(s) {', '.join(sorted(unknown))}", stacklevel=3)
    return spec


def read_layers(path) -> list:
    """The layers of a layers-*.cfg file, checked, in file order."""
    return _layers(read_sections(path), path)


def read_layers_text(text: str, source) -> list:
    return _layers(read_sections_text(text, source), source)


def _layers(sections, path) -> list:
    if not sections:
        raise CfgError(path, None, None, "defines no layers")
    layers, known = [], set()
    for name, values in sections.items():
        layers.append(_layer(path, name, values, known))
        known.add(name)
    return layers


def read_params(path, layers) -> dict:
    """{layer name: LearnSpec} for layers with weights, and normalisation constants filled into
    the cmrnorm/rnorm specs. Every layer with weights or normalisation must have its section."""
    return _params(read_sections(path), path, layers)


def read_params_text(text: str, layers, source) -> dict:
    return _params(read_sections_text(text, source), source, layers)


def _params(sections, path, layers) -> dict:
    learn = {}
    for spec in layers:
        values = sections.get(spec.name)
        if isinstance(spec, (ConvSpec, FcSpec)):
            if values is None:
                raise CfgError(path, spec.name, None, f"missing section for layer {spec.name} ({spec.type} has weights)")
            s = _Section(path, spec.name, values)
            n = len(spec.inputs)
            learn[spec.name] = LearnSpec(
                eps_w=s.numbers("epsW", n, float, required=True, minimum=0),
                mom_w=s.numbers("momW", n, float, 0.0, minimum=0),
                wc=s.numbers("wc", n, float, 0.0, minimum=0),
                eps_b=s.number("epsB", float, required=True, minimum=0),
                mom_b=s.number("momB", float, 0.0, minimum=0),
            )
        elif isinstance(spec, NormSpec):
            if values is None:
                raise CfgError(path, spec.name, None, f"missing section for layer {spec.name} ({spec.type} needs scale and pow)")
            s = _Section(path, spec.name, values)
            spec.scale = s.number("scale", float, required=True, minimum=0)
            spec.pow = s.number("pow", float, required=True)
            spec.min_div = s.number("minDiv", float, 1.0, positive=True)
        elif isinstance(spec, CostSpec) and values is not None:
            s = _Section(path, spec.name, values)
            spec.coeff = s.number("coeff", float, spec.coeff)
            spec.topk = s.number("topk", int, spec.topk, positive=True)
    known = {spec.name for spec in layers}
    for name in sections:
        if name not in known:
            raise CfgError(path, name, None, "section for a layer the layers file does not define")
    return learn
