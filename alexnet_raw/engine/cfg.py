"""Reader for cuda-convnet's layer definition files (layers-*.cfg and layer-params-*.cfg).

A layers file has one section per layer in topological order: `type`, `inputs` (comma-separated
layer names), and the type's keys; keys of layers with several inputs hold one value per input
(`filters=192,192`). The params file holds the learning hyperparameters (`epsW`, `momW`, `wc`
per input; `epsB`, `momB`) and the normalisation constants (`scale`, `pow`, `minDiv`); `epsW` and
`epsB` may be cuda-convnet2's schedules over the run (`dexp[base=0.02;tgtFactor=250;numSteps=4]`,
`linear[...]`, `exp[...]`, `const[...]`: engine/param_schedules.py).

Supported layer types: data, conv, local (locally connected: unshared filters), pool (max and avg; cuda-convnet's start, negative, 0 or positive, and
outputsX), cmrnorm, rnorm, fc, hs, cuda-convnet2's dropout and dropout2 (keep/enable in the params
file), pass and concat (several inputs: their features concatenated), eltsum (coeffs in the params
file) and eltmax, neuron (a layer that only applies its neuron), softmax, cost.logreg; on any layer
with inputs but softmax and cost one of cuda-convnet's neurons: relu, logistic, tanh[a,b], brelu[a], abs, square, sqrt,
linear[a,b], softrelu, ident.

Strict, in one table (KEYS): every key a section may hold, by layer type and file, with what it
holds and the range its meaning allows. A key that is not in it is an error naming the file, the
section, the key and the closest known key. Keys the original uses for bookkeeping are accepted
and ignored (IGNORED, a reason each); keys that change what a layer computes are accepted only at
the value this engine implements (ONLY, e.g. sharedBiases=1); updatePeriod (an update every that many
minibatches, gradients accumulated in between) and wball (a bound on each filter's norm after an
update) are implemented;
`enable` on hs layers (either file) is implemented: enable=false passes the input through.
Every number must be finite in the model's dtype (the `dtype` the readers are given: float32
unless said otherwise), a nonzero one must not round to zero in it, and integers (sizes, counts,
indices) must fit the kernels' 32-bit indices.

Extensions of ours, all optional: `sizeRule=floor|ceil` on conv and pool layers (default ceil,
cuda-convnet's; floor is PyTorch's), `mode=original|inverted` on hs layers (default original:
mask at training, multiply by keep at test), `imgSize` and `channels` on the data layer (without
`imgSize` the size comes from the data, as in cuda-convnet: engine/model.py, Model.size_to).

`gpu=` names a layer's logical device, or (cuda-convnet2) a list of distinct devices: one data-
parallel replica on each (engine/graph.py has the rules and the placement).

Every error names the file, the section and the key.
"""

from __future__ import annotations

import configparser
import dataclasses
import difflib
import math
from pathlib import Path

import numpy as np

from ..ops.neuron import parse_neuron
from . import param_schedules

LAYER_TYPES = ("data", "conv", "local", "pool", "cmrnorm", "rnorm", "fc", "hs", "dropout", "dropout2", "pass", "concat",
               "eltsum", "eltmax", "neuron", "softmax", "cost.logreg")
DROPOUTS = ("hs", "dropout", "dropout2")
POOLS = ("max", "avg")


class CfgError(ValueError):
    """A layer or params file is malformed or inconsistent."""

    def __init__(self, file, section, key, message, key_in_prefix=True):
        where = f"{file}" + (f": [{section}]" if section else "") + (f" {key}" if key and key_in_prefix else "")
        super().__init__(f"{where}: {message}" if key_in_prefix or not section else f"{where} {message}")
        self.file, self.section, self.key = str(file), section, key


# ----------------------------------------------------------------------------------------------
# Layer specifications (what the file says, checked; shapes come later in graph.py)
@dataclasses.dataclass
class LayerSpec:
    name: str
    type: str
    inputs: list
    gpu: int | tuple | None = None  # one logical device, or a tuple of them: data-parallel replicas
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
    # cuda-convnet's randSparse, per input: filter group g reads filter_channels[i] channels of a random
    # list (Model.filter_conns) instead of channels g*C/groups ..; False: the contiguous ranges
    rand_sparse: list = dataclasses.field(default_factory=list)
    filter_channels: list = dataclasses.field(default_factory=list)  # per input: channels one filter reads

    def __post_init__(self):
        self.rand_sparse = self.rand_sparse or [False] * len(self.channels)
        self.filter_channels = self.filter_channels or [c // g for c, g in zip(self.channels, self.groups)]


@dataclasses.dataclass
class LocalSpec(ConvSpec):
    """cuda-convnet's locally connected layer: a conv whose filters are not shared, one filter bank
    and one bias per output position (weights (OH, OW, F, C/groups, KH, KW), biases (F, OH, OW))."""

    modules_x: int = 0  # the file's modulesX: 0 = computed (the conv rule)


@dataclasses.dataclass
class PoolSpec(LayerSpec):
    pool: str = "max"  # "avg": the mean of the window's pixels inside the image, as cuda-convnet's AvgPooler
    size: int = 0
    stride: int = 0
    start: int = 0  # the first window's first pixel: negative (before the image), 0, or positive (pixels before never pooled)
    outputs_x: int = 0  # the file's outputsX: 0 = computed
    channels: int | None = None
    size_rule: str = "ceil"

    @property
    def uses_convnet_geometry(self) -> bool:
        """A start other than 0: windows from `start` (ops/pool_geometry.convnet_geometry)."""
        return self.start != 0


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
    """Dropout: cuda-convnet's hs (mode original unless the file says mode=inverted), cuda-convnet2's
    dropout (inverted: training keeps a unit with probability keep and scales it by 1/keep, the test
    pass is the identity) and dropout2 (original: the mask unscaled at training, x * keep at test).
    enable=false: hs and dropout pass their input through; dropout2 multiplies by keep in every
    pass (cuda-convnet2's Dropout2Layer scales whenever it is not training with its mask)."""

    keep: float = 0.5
    mode: str = "original"
    enabled: bool = True  # enable=false (layers or params file)
    scales_when_disabled: bool = False  # dropout2: enable=false still multiplies by keep


@dataclasses.dataclass
class ConcatSpec(LayerSpec):
    """cuda-convnet2's concat: the inputs' features concatenated per image, in input order (channels
    in NCHW when the inputs share their height and width; flat features otherwise)."""


@dataclasses.dataclass
class PassSpec(ConcatSpec):
    """cuda-convnet2's pass: its input, unchanged; of several inputs, their concatenation (how its
    hybrid joins model-parallel layers). Where devices meet, the copies are the model's."""


@dataclasses.dataclass
class EltwiseSpec(LayerSpec):
    """cuda-convnet2's eltsum (op "sum": sum_i coeffs[i] * x_i, coeffs from the params file, 1 by
    default) and eltmax (op "max": the element-wise maximum; the gradient goes whole to every input
    equal to it). The inputs hold the same number of features; the output has the first's shape."""

    op: str = "sum"
    coeffs: list = dataclasses.field(default_factory=list)


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
    """Hyperparameters of one layer with weights: per input for W, one value for the bias. eps_w and
    eps_b are the rates at the start of training; eps_w_schedules and eps_b_schedule (cuda-convnet2's
    schedules, engine/param_schedules.py; constants unless the file says otherwise) give them at
    every point of the run."""

    eps_w: list
    mom_w: list
    wc: list
    eps_b: float
    mom_b: float
    eps_w_schedules: list = None
    eps_b_schedule: object = None
    update_period: int = 1  # cuda-convnet2's updatePeriod: an update every that many minibatches (0 in the file: 1)
    wball: list = None  # per input: cuda-convnet2's bound on each filter's norm after an update (0: none)

    def __post_init__(self):
        if self.eps_w_schedules is None:
            self.eps_w_schedules = [param_schedules.constant(e) for e in self.eps_w]
        if self.eps_b_schedule is None:
            self.eps_b_schedule = param_schedules.constant(self.eps_b)
        if self.wball is None:
            self.wball = [0.0] * len(self.eps_w)

    def norm_bound(self, i):
        """The wball of input i's weights where cuda-convnet2 applies it (a bound > 0 on weights that
        learn: a base epsW > 0), else None."""
        return self.wball[i] if self.wball[i] > 0 and self.eps_w[i] > 0 else None

    def rates(self, progress: float = 0.0):
        """([epsW per input], epsB) at `progress` (the share of the run's steps done, 0 to 1)."""
        return [sch.value(progress) for sch in self.eps_w_schedules], self.eps_b_schedule.value(progress)

    @property
    def scheduled(self) -> bool:
        """Whether a rate changes over the run (a schedule other than a constant)."""
        return any(sch.kind != "const" for sch in [*self.eps_w_schedules, self.eps_b_schedule])


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


# ----------------------------------------------------------------------------------------------
# The keys: what each holds and the range its meaning allows, in one table
INT_MAX = 2**31 - 1  # integers are sizes, counts and indices: the kernels index with 32-bit ints


@dataclasses.dataclass(frozen=True)
class Rule:
    """What a key holds (int, float, bool or str) and, for numbers, its range: low and high are
    included unless low_open/high_open; integers are also bounded by +-INT_MAX."""

    kind: type
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def describe(self):
        if self.kind is int and self.low == 1 and self.high is None:
            return "positive"
        if self.low is not None and self.high is not None:
            return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        return "any"

    def admits(self, value):
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        if self.high is not None and (value >= self.high if self.high_open else value > self.high):
            return False
        return True


_COUNT = Rule(int, 1)  # sizes, strides, filters, channels, groups: positive integers
_INDEX = Rule(int, 0)  # padding, device and data indices, "0 = computed": non-negative integers
_RATE = Rule(float, 0)  # learning rates, weight decays, standard deviations: >= 0
_MOMENTUM = Rule(float, 0, 1, high_open=True)  # inc = mom*inc - ...: 1 or more never decays
_REAL = Rule(float)  # any finite number
_BOOL, _TEXT = Rule(bool), Rule(str)

KEYS = {
    # layers file
    "type": _TEXT, "inputs": _TEXT, "neuron": _TEXT, "pool": _TEXT, "sizeRule": _TEXT, "mode": _TEXT,
    "gpu": _INDEX, "dataIdx": _INDEX, "imgSize": _COUNT, "channels": _COUNT,
    "filters": _COUNT, "filterSize": _COUNT, "stride": _COUNT, "padding": _INDEX, "groups": _COUNT,
    "outputs": _COUNT, "sizeX": _COUNT, "size": _COUNT,  # cmrnorm/rnorm size: any positive (even: torch's placement)
    "start": Rule(int, -INT_MAX), "outputsX": _INDEX,
    "initW": _RATE, "initB": _REAL,
    "keep": Rule(float, 0, 1, low_open=True),  # the probability of keeping a unit
    "sharedBiases": _BOOL, "randSparse": _BOOL, "enable": _BOOL,
    "partialSum": _INDEX, "sumWidth": _COUNT, "filterChannels": _COUNT, "modulesX": _INDEX,
    # params file (coeff and topk may be in either)
    "epsW": _RATE, "epsB": _RATE, "momW": _MOMENTUM, "momB": _MOMENTUM, "wc": _RATE, "wball": _RATE,
    "updatePeriod": _INDEX,
    "scale": _RATE, "pow": _REAL, "minDiv": Rule(float, 0, low_open=True),  # the divisor's floor k: > 0
    "coeff": _RATE, "topk": _COUNT,
    "coeffs": _REAL,  # eltsum's weight of each input
}

_WITH_INPUTS = ("type", "inputs", "gpu")
LAYER_KEYS = {  # the keys a section of the layers file may hold, by layer type
    "data": ("type", "dataIdx", "imgSize", "channels"),
    "conv": _WITH_INPUTS + ("neuron", "filters", "filterSize", "stride", "padding", "channels", "groups", "initW",
                            "initB", "sizeRule", "sharedBiases", "randSparse", "filterChannels", "partialSum",
                            "sumWidth"),
    "local": _WITH_INPUTS + ("neuron", "filters", "filterSize", "stride", "padding", "channels", "groups", "initW",
                             "initB", "sizeRule", "randSparse", "filterChannels", "modulesX"),
    "pool": _WITH_INPUTS + ("neuron", "pool", "sizeX", "stride", "start", "outputsX", "channels", "sizeRule"),
    "cmrnorm": _WITH_INPUTS + ("neuron", "size", "channels"),
    "rnorm": _WITH_INPUTS + ("neuron", "size", "channels"),
    "fc": _WITH_INPUTS + ("neuron", "outputs", "initW", "initB"),
    "hs": _WITH_INPUTS + ("neuron", "keep", "mode", "enable"),
    "dropout": _WITH_INPUTS + ("neuron",),
    "dropout2": _WITH_INPUTS + ("neuron",),
    "pass": _WITH_INPUTS + ("neuron",),
    "concat": _WITH_INPUTS + ("neuron",),
    "eltsum": _WITH_INPUTS + ("neuron",),
    "eltmax": _WITH_INPUTS + ("neuron",),
    "neuron": _WITH_INPUTS + ("neuron",),
    "softmax": _WITH_INPUTS,
    "cost.logreg": _WITH_INPUTS + ("coeff", "topk"),
}
_LEARN = ("epsW", "epsB", "momW", "momB", "wc", "wball", "updatePeriod")
PARAM_KEYS = {  # the keys a section of the params file may hold, by layer type
    "conv": _LEARN, "local": _LEARN, "fc": _LEARN,
    "cmrnorm": ("scale", "pow", "minDiv"), "rnorm": ("scale", "pow", "minDiv"),
    "hs": ("enable",),
    "dropout": ("enable", "keep"),  # cuda-convnet2 reads both from the params file
    "dropout2": ("enable", "keep"),
    "eltsum": ("coeffs",),  # cuda-convnet2 reads them from the params file (EltwiseSumLayerParser.add_params)
    "cost.logreg": ("coeff", "topk"),
}

# Keys of the original that do not change what is computed: accepted (their values checked) and ignored.
IGNORED = {
    "partialSum": "cuda-convnet's weight-gradient kernel sums over this many output positions per block before "
                  "the final sum (0: all): a speed/memory setting; the gradient is the same sum",
    "sumWidth": "cuda-convnet2's setting of the same kind (the width of the output-position chunks its "
                "weight-gradient kernel sums per block)",
    "topk": "the k of the top-k error cuda-convnet prints; it does not enter the cost or the gradient "
            "(our training job reports top-1 and top-5)",
}

# Keys that change what is computed, accepted at the value(s) implemented here: (test, the values, what others mean).
ONLY = {
    "sharedBiases": (lambda v: v, "1", "one bias per filter and output position (unshared biases) is not implemented"),
}

_PER_INPUT = ()  # of the IGNORED and ONLY keys, those with one value per input

_BOOLEANS = {"1": True, "yes": True, "true": True, "on": True, "0": False, "no": False, "false": False, "off": False}


def check_in_dtype(value, dtype, shown=None):
    """None if float `value` is finite in `dtype` and, when nonzero, does not round to zero there;
    else what is wrong, naming the dtype's range (`shown`: the value as written, for the message)."""
    info, shown = np.finfo(dtype), repr(value) if shown is None else shown
    with np.errstate(over="ignore", under="ignore"):
        cast = np.dtype(dtype).type(value)
    if not np.isfinite(cast):
        return f"{shown} overflows {info.dtype} (its finite range is +-{info.max:.8g})"
    if value != 0 and cast == 0:
        return f"{shown} rounds to 0 in {info.dtype} (its smallest positive number is {info.smallest_subnormal:.8g})"
    return None


class _Section:
    """Typed access to one section's keys (kinds and ranges from KEYS), with errors that name
    file/section/key; numbers are checked in `dtype`."""

    def __init__(self, file, name, values, dtype=np.float32):
        self.file, self.name, self.values, self.dtype = file, name, values, np.dtype(dtype)

    def error(self, key, message):
        return CfgError(self.file, self.name, key, message)

    def has(self, key):
        return key in self.values

    def check_keys(self, allowed, what, other_file, elsewhere=()):
        """Every key of the section must be in `allowed`, the keys of `what` ("a conv layer");
        `elsewhere`: the keys such a section has in the other file (`other_file`), named as such."""
        for key in self.values:
            if key in allowed:
                continue
            listed = f"the keys of {what}: {', '.join(allowed) or 'none'}"
            if key in elsewhere:
                note = f" (it belongs in the {other_file} file)"
            elif key in KEYS:  # a key of other layer types
                note = f" (not a key of {what}; {listed})"
            else:
                note = _closest(key, allowed) or f" ({listed})"
            raise CfgError(self.file, self.name, key, f"unknown key {key!r}{note}", key_in_prefix=False)

    def raw(self, key, default=None, required=False):
        if key not in self.values:
            if required:
                raise self.error(key, "missing (required for this layer type)")
            return default
        return self.values[key].strip()

    def _convert(self, key, text):
        rule = KEYS[key]
        if rule.kind is bool:
            if text.lower() not in _BOOLEANS:
                raise self.error(key, f"expected a boolean (1/0, true/false), got {text!r}")
            return _BOOLEANS[text.lower()]
        if rule.kind is int:
            value = _integer(text)
            if value is None:
                raise self.error(key, f"expected an integer, got {text!r}")
            if not -INT_MAX <= value <= INT_MAX:
                raise self.error(key, f"must be at most {INT_MAX} in magnitude (the kernels' 32-bit indices), "
                                      f"got {text}")
        else:
            try:
                value = float(text)
            except ValueError:
                raise self.error(key, f"expected a number, got {text!r}") from None
            if math.isnan(value) or (math.isinf(value) and text.lstrip("+-").lower() in ("inf", "infinity")):
                raise self.error(key, f"expected a finite number, got {text!r}")
            problem = check_in_dtype(value, self.dtype, text)  # 1e39 in float32, 1e309 (inf here) in float64
            if problem is not None:
                raise self.error(key, problem)
            cast = float(self.dtype.type(value))
            if rule.admits(value) and not rule.admits(cast):  # momW=0.999999999 is 1 in float32
                raise self.error(key, f"must be {rule.describe()}, got {text}, which is {cast!r} in {self.dtype}")
        if not rule.admits(value):
            raise self.error(key, f"must be {rule.describe()}, got {text}")
        return value

    def number(self, key, default=None, required=False):
        """The key's value (of the kind KEYS gives it), `default` when absent."""
        text = self.raw(key, None, required)
        return default if text is None else self._convert(key, text)

    def numbers(self, key, count, default=None, required=False):
        """One value per input (a single value is applied to every input)."""
        text = self.raw(key, None, required)
        if text is None:
            return [default] * count
        parts = [p.strip() for p in text.split(",")]
        if len(parts) == 1:
            parts = parts * count
        if len(parts) != count:
            raise self.error(key, f"expected {count} comma-separated values (one per input), got {len(parts)}: {text!r}")
        return [self._convert(key, p) for p in parts]

    def schedules(self, key, count, required=False):
        """cuda-convnet2's schedules of a rate key, one per input (one value applies to every input):
        plain numbers (constants) or const[...], linear[...], exp[...], dexp[...]."""
        text = self.raw(key, None, required)
        if text is None:
            return None
        parts = param_schedules.split_per_input(text)
        if len(parts) == 1:
            parts = parts * count
        if len(parts) != count:
            raise self.error(key, f"expected {count} comma-separated values (one per input), got {len(parts)}: {text!r}")
        out = []
        for part in parts:
            try:
                out.append(param_schedules.parse(part, lambda t: self._convert(key, t)))
            except param_schedules.ScheduleError as e:
                raise self.error(key, str(e)) from None
        return out

    def choice(self, key, choices, default):
        text = self.raw(key, None)
        if text is None:
            return default
        if text not in choices:
            raise self.error(key, f"must be one of {', '.join(choices)}, got {text!r}")
        return text

    def accept_bookkeeping(self, count):
        """Check the values of the IGNORED and ONLY keys present (the per-input ones may list `count`)."""
        for key in [k for k in self.values if k in IGNORED or k in ONLY]:
            values = self.numbers(key, count) if key in _PER_INPUT else [self.number(key)]
            if key in ONLY:
                test, allowed, meaning = ONLY[key]
                for value in values:
                    if not test(value):
                        raise self.error(key, f"{meaning}: only {key}={allowed} is supported, "
                                              f"got {self.values[key].strip()}")


def _integer(text):
    """An integer written as one ("5", "-2") or as a float with an integral value ("5.0", "1e3"); else None."""
    try:
        return int(text, 10)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        return None
    return int(value) if math.isfinite(value) and value.is_integer() else None


def _closest(key, candidates):
    """' (did you mean ...?)' with the known key closest to `key` (the same letters in another case
    first, then difflib's closest), or ''."""
    same_case = [c for c in candidates if c.lower() == key.lower()]
    match = same_case or difflib.get_close_matches(key, list(candidates), n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _neuron(s):
    """A layer's neuron as (name, a, b) (alexnet_raw.ops.neuron.parse_neuron), None for an identity."""
    text = s.raw("neuron")
    if text is None:
        return None
    try:
        neuron = parse_neuron(text)
    except ValueError as e:
        raise s.error("neuron", str(e)) from None
    for value in neuron[1:]:
        problem = None if value is None else check_in_dtype(value, s.dtype)
        if problem is not None:
            raise s.error("neuron", f"neuron {text!r}: {problem}")
    if neuron[0] == "ident" or neuron == ("linear", 1.0, 0.0):
        return None
    return neuron


def _devices(s):
    """The layer's `gpu=`: one logical device (an int), cuda-convnet2's list of distinct devices (a
    tuple: data-parallel replicas, one per device), or None when absent."""
    text = s.raw("gpu")
    if text is None or "," not in text:
        return s.number("gpu")
    devices = tuple(s.numbers("gpu", len(text.split(","))))
    if len(set(devices)) != len(devices):
        raise s.error("gpu", f"the replicas of a layer must be on distinct devices, got {text}")
    return devices


def _layer(file, name, values, known_layers, dtype):
    s = _Section(file, name, values, dtype)
    type_ = s.raw("type", required=True)
    if type_ not in LAYER_TYPES:
        raise s.error("type", f"unsupported layer type {type_!r}; supported: {', '.join(LAYER_TYPES)}")
    s.check_keys(LAYER_KEYS[type_], f"a {type_} layer", "params", PARAM_KEYS.get(type_, ()))
    inputs = []
    if type_ != "data":
        text = s.raw("inputs", required=True)
        inputs = [i.strip() for i in text.split(",")]
        for i in inputs:
            if not i:
                raise s.error("inputs", f"empty layer name in {text!r}")
            if i not in known_layers:
                raise s.error("inputs", f"input {i!r} is not a layer defined above this one")
    n = len(inputs)
    s.accept_bookkeeping(max(n, 1))
    common = dict(name=name, type=type_, inputs=inputs, gpu=_devices(s), neuron=_neuron(s))

    if type_ == "data":
        spec = DataSpec(**common, data_idx=s.number("dataIdx", 0), img_size=s.number("imgSize"),
                        channels=s.number("channels"))
    elif type_ in ("conv", "local"):
        spec = _conv_like(s, common, n, LocalSpec if type_ == "local" else ConvSpec)
    elif type_ == "pool":
        pool = s.raw("pool", required=True)
        if pool not in POOLS:
            raise s.error("pool", f"unsupported pooling {pool!r}; supported: {', '.join(POOLS)}")
        spec = PoolSpec(
            **common,
            pool=pool,
            size=s.number("sizeX", required=True),
            stride=s.number("stride", required=True),
            start=s.number("start", 0),
            outputs_x=s.number("outputsX", 0),
            channels=s.number("channels"),
            size_rule=s.choice("sizeRule", ("ceil", "floor"), "ceil"),
        )
        if spec.start <= -spec.size:
            raise s.error("start", f"must be greater than -sizeX = {-spec.size} (the first window must reach the "
                                   f"image), got {spec.start}")
        if spec.start != 0 and spec.size_rule == "floor":
            raise s.error("sizeRule", "floor (PyTorch's rule) has no start: a start before the image is "
                                      "cuda-convnet's geometry, whose count is outputsX or ceil's")
    elif type_ in ("cmrnorm", "rnorm"):
        spec = NormSpec(**common, size=s.number("size", required=True), channels=s.number("channels"))
    elif type_ == "fc":
        spec = FcSpec(**common, outputs=s.number("outputs", required=True), init_w=s.numbers("initW", n, 0.01),
                      init_b=s.number("initB", 0.0))
    elif type_ == "hs":
        spec = HsSpec(**common, keep=s.number("keep", 0.5), mode=s.choice("mode", ("original", "inverted"), "original"),
                      enabled=s.number("enable", True))
    elif type_ in ("dropout", "dropout2"):  # keep and enable come from the params file
        spec = HsSpec(**common, mode="inverted" if type_ == "dropout" else "original",
                      scales_when_disabled=type_ == "dropout2")
    elif type_ == "pass":
        spec = PassSpec(**common)
    elif type_ == "concat":
        spec = ConcatSpec(**common)
    elif type_ in ("eltsum", "eltmax"):
        if type_ == "eltmax" and n < 2:
            raise s.error("inputs", f"an eltmax layer takes at least 2 inputs (cuda-convnet2's rule), got {n}")
        spec = EltwiseSpec(**common, op=type_[3:], coeffs=[1.0] * n)
    elif type_ == "softmax":
        spec = SoftmaxSpec(**common)
    elif type_ == "neuron":
        if not s.has("neuron"):
            raise s.error("neuron", "missing (required for this layer type)")
        spec = NeuronSpec(**common)
    else:  # cost.logreg
        if n != 2:
            raise s.error("inputs", f"cost.logreg takes two inputs (labels, probabilities), got {n}")
        spec = CostSpec(**common, coeff=s.number("coeff", 1.0), topk=s.number("topk", 5))
    if type_ in ("pool", "cmrnorm", "rnorm", *DROPOUTS, "neuron", "softmax") and n != 1:
        raise s.error("inputs", f"a {type_} layer takes one input, got {n}")
    return spec


def _conv_like(s, common, n, cls):
    """A conv or local layer. As in cuda-convnet and cuda-convnet2, `filters` counts the filters of
    one group: the layer has filters * groups in all (every input the same total)."""
    groups = s.numbers("groups", n, 1)
    channels = s.numbers("channels", n, required=True)
    per_group = s.numbers("filters", n, required=True)
    totals = [f * g for f, g in zip(per_group, groups)]
    if len(set(totals)) != 1:
        raise s.error("filters", f"every input must give the same number of filters (filters x groups), got "
                                 f"{' and '.join(f'{f} x {g}' for f, g in zip(per_group, groups))}")
    if totals[0] > INT_MAX:
        raise s.error("filters", f"filters x groups = {totals[0]} is past the kernels' 32-bit indices")
    sparse = s.numbers("randSparse", n, False)
    filter_channels = []
    for i, (fc, c, g, rand) in enumerate(zip(s.numbers("filterChannels", n, None), channels, groups, sparse)):
        if not rand:
            if c % g:
                raise s.error("groups", f"groups={g} must divide channels={c} (input {i})")
            if fc is not None and fc != c // g:
                raise s.error("filterChannels", f"filterChannels={fc} (input {i}) differs from channels / groups = "
                                                f"{c // g}: a group reading its own subset of the channels is "
                                                "cuda-convnet's random sparse connectivity; set randSparse=1")
            filter_channels.append(c // g)
            continue
        fc = c // g if fc is None else fc  # cuda-convnet's rules for randSparse (layer.py)
        if g == 1:
            raise s.error("randSparse", f"random sparse connectivity needs groups > 1 (input {i} has groups=1)")
        if c % fc or (g * fc) % c:
            raise s.error("filterChannels", f"filterChannels={fc} (input {i}) must divide channels={c}, and "
                                            f"channels must divide groups x filterChannels = {g * fc}")
        filter_channels.append(fc)
    extra = dict(modules_x=s.number("modulesX", 0)) if cls is LocalSpec else {}
    return cls(
        **common,
        filters=totals[0],
        filter_size=s.numbers("filterSize", n, required=True),
        stride=s.numbers("stride", n, 1),
        padding=s.numbers("padding", n, 0),
        channels=channels,
        groups=groups,
        init_w=s.numbers("initW", n, 0.01),
        init_b=s.number("initB", 0.0),
        size_rule=s.choice("sizeRule", ("ceil", "floor"), "ceil"),
        rand_sparse=sparse,
        filter_channels=filter_channels,
        **extra,
    )


def read_layers(path, dtype=np.float32) -> list:
    """The layers of a layers-*.cfg file, checked (numbers in `dtype`, the model's), in file order."""
    return _layers(read_sections(path), path, dtype)


def read_layers_text(text: str, source, dtype=np.float32) -> list:
    return _layers(read_sections_text(text, source), source, dtype)


def _layers(sections, path, dtype) -> list:
    if not sections:
        raise CfgError(path, None, None, "defines no layers")
    layers, known = [], set()
    for name, values in sections.items():
        layers.append(_layer(path, name, values, known, dtype))
        known.add(name)
    return layers


def read_params(path, layers, dtype=np.float32) -> dict:
    """{layer name: LearnSpec} for layers with weights, and normalisation constants (and the
    cost's coeff/topk, the hs layers' enable) filled into the specs; numbers checked in `dtype`.
    Every layer with weights or normalisation must have its section."""
    return _params(read_sections(path), path, layers, dtype)


def read_params_text(text: str, layers, source, dtype=np.float32) -> dict:
    return _params(read_sections_text(text, source), source, layers, dtype)


def _params(sections, path, layers, dtype) -> dict:
    known = {spec.name for spec in layers}
    for name in sections:
        if name not in known:
            raise CfgError(path, name, None, "section for a layer the layers file does not define")
    learn = {}
    for spec in layers:
        values = sections.get(spec.name)
        if values is None:
            if isinstance(spec, (ConvSpec, FcSpec)):
                raise CfgError(path, spec.name, None, f"missing section for layer {spec.name} ({spec.type} has weights)")
            if isinstance(spec, NormSpec):
                raise CfgError(path, spec.name, None,
                               f"missing section for layer {spec.name} ({spec.type} needs scale and pow)")
            if spec.type in ("dropout", "dropout2"):
                raise CfgError(path, spec.name, None, f"missing section for layer {spec.name} (cuda-convnet2's "
                                                      f"{spec.type} takes enable and keep from the params file)")
            continue
        s = _Section(path, spec.name, values, dtype)
        s.check_keys(PARAM_KEYS.get(spec.type, ()), f"the params of a {spec.type} layer", "layers",
                     LAYER_KEYS[spec.type])
        n = len(spec.inputs)
        s.accept_bookkeeping(max(n, 1))
        if isinstance(spec, (ConvSpec, FcSpec)):
            eps_w = s.schedules("epsW", n, required=True)
            (eps_b,) = s.schedules("epsB", 1, required=True)
            learn[spec.name] = LearnSpec(
                eps_w=[sch.base for sch in eps_w],
                mom_w=s.numbers("momW", n, 0.0),
                wc=s.numbers("wc", n, 0.0),
                eps_b=eps_b.base,
                mom_b=s.number("momB", 0.0),
                eps_w_schedules=eps_w,
                eps_b_schedule=eps_b,
                update_period=max(1, s.number("updatePeriod", 1)),
                wball=s.numbers("wball", n, 0.0),
            )
        elif isinstance(spec, NormSpec):
            spec.scale = s.number("scale", required=True)
            spec.pow = s.number("pow", required=True)
            spec.min_div = s.number("minDiv", 1.0)
        elif isinstance(spec, CostSpec):
            spec.coeff = s.number("coeff", spec.coeff)
            spec.topk = s.number("topk", spec.topk)
        elif isinstance(spec, EltwiseSpec):
            spec.coeffs = s.numbers("coeffs", n, 1.0)
        elif isinstance(spec, HsSpec):
            spec.enabled = s.number("enable", spec.enabled)
            if spec.type != "hs":
                spec.keep = s.number("keep", spec.keep)
    return learn
