"""The AlexNet layers of a network as benchmark cases, and the launches the ops make for them.

A kernel's block size (so its occupancy) is chosen at launch time by its op (alexnet_raw/ops/).
To report it without copying any geometry, ``representative_launches`` runs the ops' own code
through the public functions (alexnet_raw.functional) on every layer of an AlexNet network, with
a backend that records each ``Launch`` instead of running it. The arrays are uninitialised NumPy
arrays that nothing reads (no kernel runs), so recording full-size layers at batch 128 costs
neither time nor memory.

The benchmark (alexnet_raw/perf/bench/) uses the same layer table: ``network_layers`` lists the
distinct layers of a network (the two towers of krizhevsky2012 are identical, so each distinct
shape appears once with a count), ``make_layer_run`` builds one with its parameters, and
``layer_flops`` gives the multiply-add work of each phase. ``extra_layers`` adds layers of cuda-convnet's
layer files that no shipped network has (cuda-convnet2's CIFAR local3), built on the op directly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math

import numpy as np

from ..runtime import backends
from .. import functional as F
from ..engine import cfg, graph as graph_mod, layers as layers_mod
from ..engine.model import network_files, network_image_size
from ..ops import dropout as dropout_ops

NETWORKS = ("krizhevsky2012", "torchvision")
REPRESENTATIVE_BATCH = 128  # the original's batch size
KINDS = {cfg.ConvSpec: "conv", cfg.PoolSpec: "pool", cfg.FcSpec: "fc"}
# every neuron of kernels/neuron.cu, as a layer file writes it (the shipped networks use relu only)
NEURON_EXAMPLES = ("logistic", "tanh[1.7159,0.6666]", "brelu[6]", "abs", "square", "sqrt", "linear[2,-1]", "softrelu")


@dataclasses.dataclass
class LayerCase:
    network: str
    name: str  # the first layer of this shape (towers: "conv1a" stands for conv1a and conv1b)
    kind: str  # conv, pool, lrn (cmrnorm), rnorm (same-map norm), fc, local (extra_layers)
    spec: cfg.LayerSpec
    input_shapes: list  # per image, one per input
    output_shape: tuple  # per image
    weight_shapes: list  # per input (conv, fc), else []
    bias_shape: tuple | None
    count: int = 1  # how many layers of the network have exactly this shape

    @property
    def label(self):
        return f"{self.network}/{self.name}" + (f" (x{self.count})" if self.count > 1 else "")

    def describe(self):
        s, shape = self.spec, "x".join(map(str, self.input_shapes[0]))
        ins = f"{len(self.input_shapes)} inputs of " if len(self.input_shapes) > 1 else ""
        out = "x".join(map(str, self.output_shape))
        if self.kind == "conv":
            return f"{ins}{shape} -> {out}, {s.filter_size[0]}x{s.filter_size[0]}/{s.stride[0]} pad {s.padding[0]}" + (
                f" groups {s.groups[0]}" if s.groups[0] > 1 else "")
        if self.kind == "pool":
            return f"{shape} -> {out}, {s.size}x{s.size}/{s.stride}"
        if self.kind == "local":
            return f"{shape} -> {out}, {s.filter_size}x{s.filter_size}/{s.stride} pad {s.padding}, unshared" + (
                f" groups {s.groups}" if s.groups > 1 else "")
        if self.kind == "lrn":
            return f"{shape}, across {s.size} channels"
        if self.kind == "rnorm":
            return f"{shape}, same map {s.size}x{s.size}"
        return f"{ins}{math.prod(self.input_shapes[0])} -> {out}"


@dataclasses.dataclass(frozen=True)
class LocalSpec:
    """A locally connected layer of a cuda-convnet layer file (the engine reads no `local` layers yet):
    what the benchmark needs of it. Its neuron (relu in the CIFAR files) is left out: the row times
    F.local and F.local_backward."""

    name: str
    filters: int
    filter_size: int
    stride: int
    padding: int
    groups: int = 1
    init_w: tuple = (0.04,)


# layers benchmarked on their own, outside the shipped networks: (network label, input shape per image, spec)
EXTRA_LAYERS = (
    # cuda-convnet2 layers-cifar10-11pct.cfg local3 on 32 x 32 images (pool2 gives 8 x 8)
    ("cifar10-11pct", (64, 8, 8), LocalSpec("local3", filters=64, filter_size=3, stride=1, padding=1)),
)


def extra_layers():
    """EXTRA_LAYERS as LayerCases (kind "local", cuda-convnet's ceil output rule)."""
    from ..ops.conv2d import output_size

    cases = []
    for network, (c, h, w), s in EXTRA_LAYERS:
        oh, ow = (output_size(n, s.filter_size, s.stride, s.padding, True) for n in (h, w))
        cases.append(LayerCase(network, s.name, "local", s, [(c, h, w)], (s.filters, oh, ow),
                               [(oh, ow, s.filters, c // s.groups, s.filter_size, s.filter_size)], (s.filters, oh, ow)))
    return cases


class _LocalLayer:
    """F.local as the engine's layers are driven (compute / compute_backward, parameters by name, the
    parameter gradients handed to `grads`), for the benchmark's rows of a layer the engine does not read."""

    def __init__(self, spec, params, grads):
        self.spec, self.params, self.grads = spec, params, grads
        self.weight, self.bias = f"{spec.name}.weights.0", f"{spec.name}.biases"

    def _args(self):
        return self.spec.stride, self.spec.padding, self.spec.groups, True

    def compute(self, xs, ctx):
        return F.local(xs[0], self.params[self.weight], self.params[self.bias], *self._args())

    def compute_backward(self, grad, xs, output, ctx, needs):
        grad_x, grad_w, grad_b = F.local_backward(grad, xs[0], self.params[self.weight], *self._args(),
                                                  input_grad=needs[0])
        self.grads[self.weight][...] = grad_w
        self.grads[self.bias][...] = grad_b
        return [grad_x]


def _kind(spec):
    if isinstance(spec, cfg.NormSpec):
        return "lrn" if spec.type == "cmrnorm" else "rnorm"
    return KINDS.get(type(spec))


def network_layers(network: str):
    """The distinct conv, pool, norm and fc layers of a shipped network, in network order."""
    layers_path, _ = network_files(network)
    g = graph_mod.Graph(cfg.read_layers(layers_path), str(layers_path))
    shapes = g.shapes(network_image_size(network))
    weights = g.weight_shapes(shapes)
    cases, seen = [], {}
    for name in g.order:
        spec = g.nodes[name].spec
        kind = _kind(spec)
        if kind is None:
            continue
        ws, b = weights.get(name, ([], None))
        case = LayerCase(network, name, kind, spec, [tuple(shapes[i]) for i in spec.inputs], tuple(shapes[name]),
                         [tuple(w) for w in ws], tuple(b) if b else None)
        key = (kind, repr(dataclasses.replace(spec, name="", inputs=[], gpu=None)), tuple(case.input_shapes))
        if key in seen:
            seen[key].count += 1
            continue
        seen[key] = case
        cases.append(case)
    return cases


def layer_flops(case: LayerCase, batch: int) -> dict:
    """FLOP (multiply-add = 2) of forward, backward-data and backward-weights for conv, local and fc
    layers (each phase is one GEMM-sized product); None for the others (memory-bound)."""
    if case.kind == "conv":
        _, oh, ow = case.output_shape
        f = sum(2 * batch * w[0] * oh * ow * w[1] * w[2] * w[3] for w in case.weight_shapes)
    elif case.kind == "local":  # weights (OH, OW, F, C/groups, KH, KW): one multiply-add per weight and image
        f = sum(2 * batch * math.prod(w) for w in case.weight_shapes)
    elif case.kind == "fc":
        f = sum(2 * batch * w[0] * w[1] for w in case.weight_shapes)
    else:
        return {"forward": None, "backward_data": None, "backward_weights": None}
    return {"forward": f, "backward_data": f, "backward_weights": f}


def layer_bytes(case: LayerCase, batch: int, itemsize: int = 4) -> dict:
    """Compulsory memory traffic of each phase: every tensor read or written once."""
    x = batch * sum(math.prod(s) for s in case.input_shapes)
    y = batch * math.prod(case.output_shape)
    w = sum(math.prod(s) for s in case.weight_shapes)
    return {"forward": itemsize * (x + y + w), "backward_data": itemsize * (y + x + w + (x if case.kind in (
        "pool", "lrn", "rnorm") else 0)), "backward_weights": itemsize * (y + x + w)}


class _Capture:
    """Stands in for a gradient view: the engine copies a parameter gradient into it; here the
    computed array is kept (no copy) in the LayerRun's weight_grads."""

    def __init__(self, store, key):
        self.store, self.key = store, key

    def __setitem__(self, index, value):
        self.store[self.key] = value


class _Captures(dict):
    def __init__(self, store):
        super().__init__()
        self.store = store

    def __missing__(self, key):
        return _Capture(self.store, key)


@dataclasses.dataclass
class LayerRun:
    """One layer built for running: forward() -> output; backward(grad) -> input gradients, the
    parameter gradients left in weight_grads. Both call exactly what the engine calls."""

    case: LayerCase
    layer: object
    xs: list
    ctx: object
    weight_grads: dict

    def forward(self):
        return self.layer.compute(self.xs, self.ctx)

    def backward(self, grad):
        return self.layer.compute_backward(grad, self.xs, None, self.ctx, [True] * len(self.xs))


class _Ctx:
    seed, step, dropout_layers, train, row_start = 0, 0, 1, True, 0

    def dropout_offset(self, index):
        return index


def make_layer_run(case: LayerCase, batch: int, xp=np, dtype=np.float32, fill="random", seed=0) -> LayerRun:
    """The layer of `case` at `batch` with inputs and parameters as `xp` arrays: random normal
    values (fill="random", weights scaled by the spec's initW) or uninitialised (fill="empty")."""
    rng = np.random.default_rng(seed)

    def array(shape, scale=1.0):
        if fill == "empty":
            return xp.empty(shape, dtype)
        return xp.asarray((rng.standard_normal(shape) * scale).astype(dtype))

    params = {}
    for i, w in enumerate(case.weight_shapes):
        params[f"{case.name}.weights.{i}"] = array(w, case.spec.init_w[i] if case.spec.init_w else 0.01)
    if case.bias_shape:
        params[f"{case.name}.biases"] = array(case.bias_shape, 0.01)
    weight_grads = {}
    if case.kind == "local":
        layer = _LocalLayer(case.spec, params, _Captures(weight_grads))
    else:
        layer = layers_mod.make_layer(case.spec, 0, params, _Captures(weight_grads))
    xs = [array((batch, *s)) for s in case.input_shapes]
    return LayerRun(case, layer, xs, _Ctx(), weight_grads)


recording = backends.recording  # the recording backend: ops record their launches instead of running


def _extras(batch, dtype):
    """Kernels outside the layers: loss, predictions, the update, accumulation, dropout, relu, the
    other neurons, the joins of cuda-convnet2 (concat, eltsum, eltmax), its wball norm bound,
    cuda-convnet's channel gather (randSparse), average pooling and the
    locally connected layer (no shipped network uses these two: recorded at cuda-convnet's CIFAR
    pool shape and cuda-convnet2's CIFAR local3)."""
    classes, hidden = 1000, 4096
    logits, labels = np.empty((batch, classes), dtype), np.zeros(batch, np.int64)
    h, g = np.empty((batch, hidden), dtype), np.empty((batch, hidden), dtype)
    maps = np.empty((batch, 32, 32, 32), dtype)
    pooled = np.empty((batch, 32, 16, 16), dtype)
    w, dw, m = (np.empty((hidden, hidden), dtype) for _ in range(3))
    local_x, local_w, local_b = (np.empty(s, dtype) for s in ((batch, 64, 8, 8), (8, 8, 64, 64, 3, 3), (64, 8, 8)))
    return [
        ("cross-entropy of fc8 (N x 1000)", lambda: (F.cross_entropy(logits, labels),
                                                     F.cross_entropy_backward(logits, labels))),
        ("softmax of fc8", lambda: F.softmax(logits)),
        ("top-5 of fc8", lambda: F.topk_correct(logits, labels, 5)),
        ("SGD update of fc7 weights (4096 x 4096)", lambda: (
            F.sgd_update(w, dw, m, lr=0.01), F.sgd_update(w, dw, m, lr=0.01, convention="torch"))),
        ("accumulate fc7 gradients", lambda: F.accumulate(h, g)),
        ("dropout of fc6 (N x 4096)", lambda: (F.dropout(h, 0.5), F.dropout_backward(h, 0.5))),
        ("relu of fc6", lambda: (F.relu(h), F.relu_backward(h, h))),
        ("locally connected layer (cuda-convnet2 cifar10-11pct local3: 64x8x8, 64 filters 3x3 pad 1)", lambda: (
            F.local(local_x, local_w, local_b, 1, 1), F.local_backward(local_x, local_x, local_w, 1, 1))),
        ("avg_pool2d of 32x32x32 maps (cuda-convnet CIFAR pool=avg, 3x3/2)", lambda: (
            F.avg_pool2d(maps, 3, 2, ceil_mode=True, count_include_pad=False),
            F.avg_pool2d_backward(pooled, maps, 3, 2, ceil_mode=True, count_include_pad=False))),
        ("cuda-convnet's neurons on fc6", lambda: [(F.neuron(h, *F.parse_neuron(text)),
                                                     F.neuron_backward(g, h, h, *F.parse_neuron(text)))
                                                    for text in NEURON_EXAMPLES]),
        ("concat of four fc outputs (cuda-convnet2's hybrid: pass1a of layers-imagenet-4gpu-data-model)", lambda: (
            F.concat([h, h, h, h]), F.concat_backward(np.empty((batch, 4 * hidden), dtype), [hidden] * 4))),
        ("wball on fc7's weights (cuda-convnet2's norm bound, both modes)", lambda: (
            F.constrain_norms(w, 1.0), F.constrain_norms(w, 1.0, mode="max"))),
        ("channel gather of 64 maps into 2 groups of 32 (cuda-convnet's randSparse)", lambda: (
            F.channel_gather(maps, np.arange(64) % 32), F.channel_gather_backward(
                np.empty((batch, 64, 32, 32), dtype), np.arange(64) % 32, 32))),
        ("eltsum and eltmax of two fc outputs (cuda-convnet2's joins of towers)", lambda: (
            F.eltwise_sum([h, g], [0.5, 2.0]), F.eltwise_sum_backward(g, [0.5, 2.0]),
            F.eltwise_max([h, g]), F.eltwise_max_backward(g, [h, g], h))),
        ("dropout's raw Philox stream (N x 4096 words)", lambda: dropout_ops.philox_words(
            np.empty((batch, hidden), np.uint32))),
    ]


def representative_launches(batch: int = REPRESENTATIVE_BATCH, networks=NETWORKS):
    """{kernel: (Launch, where it came from)} over every layer of `networks` at `batch`,
    float32 and float64, forward and backward, plus the kernels outside the layers. A layer whose
    op fails raises its error (every layer of the shipped networks must record)."""
    found = {}

    def run(origin, fn):
        with recording() as launches:
            fn()
        for launch in launches:
            found.setdefault(launch.kernel, (launch, origin))

    for dtype in (np.float32, np.float64):
        for network in networks:
            for case in network_layers(network):
                lr = make_layer_run(case, batch, dtype=dtype, fill="empty")

                def step(lr=lr):
                    out = lr.layer.forward(lr.xs, lr.ctx)
                    lr.layer.backward(out, lr.xs, out, lr.ctx, [True] * len(lr.xs))

                run(f"{case.network}/{case.name} forward+backward, batch {batch}", step)
        for origin, fn in _extras(batch, dtype):
            run(f"{origin}, batch {batch}", fn)
    return found
