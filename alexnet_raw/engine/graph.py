"""The network as a graph: where each layer runs, what shape it produces, which edges cross devices.

Placement follows the original: a layer runs on the logical device its `gpu=` names; without it,
on the device of its first input; data layers live on the host and are copied to every device that
reads them. With single_device=True everything runs on device 0.

Shapes are per image: (channels, height, width) for image layers, (features,) after an fc layer.
Output sizes follow each layer's rule: cuda-convnet's ceil rule (conv: 1 + ceil((2*pad + in - f) /
stride); pool: ceil((in - size) / stride) + 1) or PyTorch's floor rule.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from ..ops import conv2d as conv2d_ops
from ..ops import pool_geometry
from . import cfg

HOST = "host"


class ShapeError(ValueError):
    """The input size does not fit the network (a window larger than its padded input, ...)."""


class MemoryLimitError(ValueError, MemoryError):
    """A network (or a batch) needs more memory than its device has: refused before allocating."""


def conv_output_size(size: int, filter_size: int, stride: int, padding: int, rule: str) -> int:
    """The conv kernels' own rule (alexnet_raw/ops/conv2d.py), with the graph's error."""
    if size + 2 * padding < filter_size:
        raise ShapeError(f"a {filter_size}-wide window does not fit {size} pixels with padding {padding}")
    return conv2d_ops.output_size(size, filter_size, stride, padding, rule == "ceil")


def convnet_pool_size(size: int, spec) -> int:
    """Windows per row of a pool layer with cuda-convnet's start/outputsX (outputsX=0: all that start
    inside the image, ceil((size - start - sizeX) / stride) + 1; else outputsX, at most that many)."""
    if spec.size > size:
        raise ShapeError(f"a {spec.size}-wide pooling window does not fit {size} pixels")
    fit = pool_geometry.convnet_output_size(size, spec.size, spec.stride, spec.start)
    if spec.outputs_x > fit:
        raise ShapeError(f"outputsX={spec.outputs_x} but only {fit} windows of {spec.size} at stride {spec.stride} "
                         f"from start {spec.start} begin inside {size} pixels")
    return spec.outputs_x or fit


def pool_output_size(size: int, window: int, stride: int, rule: str) -> int:
    """cuda-convnet's rule (ceil((size - window) / stride) + 1) or PyTorch's floor rule. A last window
    that would start past the image (possible with stride > window under the ceil rule, and empty in
    the original) is refused: the pooling kernels, like PyTorch, do not make it."""
    span = size - window
    if span < 0:
        raise ShapeError(f"a {window}-wide pooling window does not fit {size} pixels")
    if rule == "floor":
        return 1 + span // stride
    out = 1 + -(-span // stride)
    if out != pool_geometry.output_size(size, window, stride, 0, True):
        raise ShapeError(f"the ceil rule's last {window}-wide window at stride {stride} would start at pixel "
                         f"{(out - 1) * stride}, past the {size}-pixel image (an empty window); use sizeRule=floor "
                         f"or a stride no larger than the window")
    return out


def concat_shape(shapes):
    """The per-image shape of a concatenation (pass, concat): images of one height and width stack
    their channels; anything else is flattened and its features concatenated."""
    if all(len(s) == 3 for s in shapes) and len({s[1:] for s in shapes}) == 1:
        return (sum(s[0] for s in shapes), *shapes[0][1:])
    return (sum(math.prod(s) for s in shapes),)


@dataclasses.dataclass
class Node:
    spec: cfg.LayerSpec
    device: object  # int logical device, or HOST for data layers
    consumers: list = dataclasses.field(default_factory=list)

    @property
    def name(self):
        return self.spec.name


class Graph:
    def __init__(self, layers, source="network", single_device=False):
        self.source = source
        self.nodes = {}
        for spec in layers:
            if isinstance(spec, cfg.DataSpec):
                device = HOST
            elif single_device:
                device = 0
            elif spec.gpu is not None:
                device = spec.gpu
            else:
                first = self.nodes[spec.inputs[0]]
                device = 0 if first.device == HOST else first.device
            self.nodes[spec.name] = Node(spec, device)
            for i in spec.inputs:
                self.nodes[i].consumers.append(spec.name)
        self.order = list(self.nodes)
        self.devices = sorted({n.device for n in self.nodes.values() if n.device != HOST})
        data = [n for n in self.nodes.values() if isinstance(n.spec, cfg.DataSpec)]
        self.image_input = next((n.name for n in data if n.spec.data_idx == 0), None)
        self.label_input = next((n.name for n in data if n.spec.data_idx == 1), None)
        if self.image_input is None:
            raise cfg.CfgError(source, None, "dataIdx", "no data layer with dataIdx=0 (the images)")
        costs = [n for n in self.nodes.values() if isinstance(n.spec, cfg.CostSpec)]
        if len(costs) > 1:
            raise cfg.CfgError(source, costs[1].name, None, "only one cost layer is supported")
        self.cost = costs[0].name if costs else None
        if self.cost is not None:
            labels, probs = self.nodes[self.cost].spec.inputs
            if labels != self.label_input:
                raise cfg.CfgError(source, self.cost, "inputs", f"first input must be the labels data layer, got {labels}")
            if not isinstance(self.nodes[probs].spec, cfg.SoftmaxSpec):
                raise cfg.CfgError(source, self.cost, "inputs", f"second input must be a softmax layer, got {probs}")
        softmaxes = [n for n in self.nodes.values() if isinstance(n.spec, cfg.SoftmaxSpec)]
        if len(softmaxes) != 1:
            raise cfg.CfgError(source, None, "type", f"the network needs exactly one softmax layer, has {len(softmaxes)}")
        self.softmax = softmaxes[0].name
        self.logits = self.nodes[self.softmax].spec.inputs[0]
        self._check_channels_statically()

    # ------------------------------------------------------------------------------------------
    def _check_channels_statically(self):
        """Catch channel mismatches declared in the file before any input size is known."""
        declared = {}
        for name in self.order:
            spec = self.nodes[name].spec
            if isinstance(spec, cfg.DataSpec):
                declared[name] = spec.channels
            elif isinstance(spec, cfg.ConvSpec):
                for i, (inp, ch, g) in enumerate(zip(spec.inputs, spec.channels, spec.groups)):
                    have = declared.get(inp)
                    if have is not None and have != ch:
                        raise cfg.CfgError(self.source, name, "channels",
                                           f"input {i} ({inp}) has {have} channels but channels={ch}")
                    if ch % g:
                        raise cfg.CfgError(self.source, name, "groups", f"groups={g} must divide channels={ch}")
                declared[name] = spec.filters
            elif isinstance(spec, (cfg.PoolSpec, cfg.NormSpec)):
                have = declared.get(spec.inputs[0])
                if spec.channels is not None and have is not None and have != spec.channels:
                    raise cfg.CfgError(self.source, name, "channels",
                                       f"input {spec.inputs[0]} has {have} channels but channels={spec.channels}")
                declared[name] = have if have is not None else spec.channels
            elif isinstance(spec, cfg.ConcatSpec):  # pass and concat: the channels add up
                have = [declared.get(i) for i in spec.inputs]
                declared[name] = sum(have) if None not in have else None
            elif isinstance(spec, (cfg.HsSpec, cfg.EltwiseSpec, cfg.NeuronSpec, cfg.SoftmaxSpec)):
                declared[name] = declared.get(spec.inputs[0])
            else:
                declared[name] = None

    def default_image_size(self):
        """The data layer's imgSize, or None: cuda-convnet's files set no size, the data does."""
        return self.nodes[self.image_input].spec.img_size

    def input_channels(self):
        spec = self.nodes[self.image_input].spec
        if spec.channels:
            return spec.channels
        for consumer in self.nodes[self.image_input].consumers:
            c = self.nodes[consumer].spec
            if isinstance(c, cfg.ConvSpec):
                return c.channels[c.inputs.index(self.image_input)]
        return 3

    def shapes(self, image_size):
        """{layer: per-image output shape} for square images of `image_size` (or an (h, w) pair)."""
        h, w = (image_size, image_size) if np.isscalar(image_size) else tuple(image_size)
        shapes = {}
        for name in self.order:
            spec = self.nodes[name].spec
            try:
                shapes[name] = self._shape(spec, shapes, h, w)
            except ShapeError as e:
                raise ShapeError(f"{self.source}: [{name}] {e} (input images {h}x{w})") from None
        return shapes

    def _shape(self, spec, shapes, h, w):
        if isinstance(spec, cfg.DataSpec):
            return (self.input_channels(), h, w) if spec.data_idx == 0 else ()
        ins = [shapes[i] for i in spec.inputs]
        if isinstance(spec, cfg.ConvSpec):
            out = None
            for i, (shape, ch) in enumerate(zip(ins, spec.channels)):
                if len(shape) != 3:
                    raise ShapeError(f"input {i} ({spec.inputs[i]}) is not an image (shape {shape})")
                if shape[0] != ch:
                    raise ShapeError(f"input {i} ({spec.inputs[i]}) has {shape[0]} channels but channels={ch}")
                size = (
                    conv_output_size(shape[1], spec.filter_size[i], spec.stride[i], spec.padding[i], spec.size_rule),
                    conv_output_size(shape[2], spec.filter_size[i], spec.stride[i], spec.padding[i], spec.size_rule),
                )
                if out is not None and size != out:
                    raise ShapeError(f"inputs give different output sizes {out} and {size}")
                out = size
            if isinstance(spec, cfg.LocalSpec) and spec.modules_x and spec.modules_x != out[1]:
                raise ShapeError(f"modulesX={spec.modules_x} but the windows give {out[1]} output positions per row")
            return (spec.filters, *out)
        if isinstance(spec, cfg.PoolSpec):
            c, ih, iw = self._image(spec, ins[0])
            if spec.uses_convnet_geometry:  # a negative start or fewer windows than fit: cuda-convnet's geometry
                oh, ow = (convnet_pool_size(n, spec) for n in (ih, iw))
                return (c, oh, ow)
            oh, ow = (pool_output_size(n, spec.size, spec.stride, spec.size_rule) for n in (ih, iw))
            if spec.outputs_x and spec.outputs_x != ow:
                raise ShapeError(f"outputsX={spec.outputs_x} but {iw} pixels pooled by {spec.size} at stride "
                                 f"{spec.stride} give {ow} outputs")
            return (c, oh, ow)
        if isinstance(spec, cfg.NormSpec):
            return self._image(spec, ins[0])
        if isinstance(spec, cfg.FcSpec):
            return (spec.outputs,)
        if isinstance(spec, cfg.ConcatSpec):
            return concat_shape(ins)
        if isinstance(spec, cfg.EltwiseSpec):
            counts = [math.prod(shape) for shape in ins]
            if len(set(counts)) != 1:
                raise ShapeError(f"the inputs of {spec.type} must hold the same number of features, got "
                                 + ", ".join(f"{i} {shape}" for i, shape in zip(spec.inputs, ins)))
            return ins[0]
        if isinstance(spec, (cfg.HsSpec, cfg.NeuronSpec, cfg.SoftmaxSpec)):
            return ins[0]
        return ()  # cost

    def _image(self, spec, shape):
        if len(shape) != 3:
            raise ShapeError(f"input {spec.inputs[0]} is not an image (shape {shape})")
        if getattr(spec, "channels", None) is not None and shape[0] != spec.channels:
            raise ShapeError(f"input has {shape[0]} channels but channels={spec.channels}")
        return shape

    # ------------------------------------------------------------------------------------------
    def weight_shapes(self, shapes):
        """{layer: ([weight shape per input], bias shape)} for layers with parameters."""
        out = {}
        for name in self.order:
            spec = self.nodes[name].spec
            if isinstance(spec, cfg.LocalSpec):  # a filter bank per output position, a bias per filter and position
                _, oh, ow = shapes[name]
                ws = [(oh, ow, spec.filters, ch // g, f, f) for ch, g, f in zip(spec.channels, spec.groups, spec.filter_size)]
                out[name] = (ws, (spec.filters, oh, ow))
            elif isinstance(spec, cfg.ConvSpec):
                ws = [(spec.filters, ch // g, f, f) for ch, g, f in zip(spec.channels, spec.groups, spec.filter_size)]
                out[name] = (ws, (spec.filters,))
            elif isinstance(spec, cfg.FcSpec):
                ws = [(spec.outputs, math.prod(shapes[i])) for i in spec.inputs]  # Python ints: no overflow
                out[name] = (ws, (spec.outputs,))
        return out

    def parameter_counts(self, shapes):
        """{layer: its weights and biases, in elements} for the layers with parameters."""
        return {name: sum(math.prod(w) for w in ws) + math.prod(b) for name, (ws, b) in self.weight_shapes(shapes).items()}

    def activation_counts(self, shapes):
        """{device: {layer or "copy of <producer>": elements per image}}: the outputs of the layers
        on each device and the copies of the remote inputs it receives."""
        out = {d: {} for d in self.devices}
        for name in self.order:
            node = self.nodes[name]
            if node.device != HOST:
                out[node.device][name] = math.prod(shapes[name]) if shapes[name] else 0
        for producer, device, _ in self.transfers():
            out[device][f"copy of {producer}"] = math.prod(shapes[producer]) if shapes[producer] else 0
        return out

    def transfers(self):
        """[(producer, destination device, [consumers on it])]: every copy between devices."""
        result = []
        for name in self.order:
            node = self.nodes[name]
            by_device = {}
            for consumer in node.consumers:
                d = self.nodes[consumer].device
                if d != node.device:
                    by_device.setdefault(d, []).append(consumer)
            for d, consumers in by_device.items():
                result.append((name, d, consumers))
        return result

    def split_report(self, batch_size: int, image_size=None, itemsize: int = 4):
        """Bytes on every cross-device edge per training step, and memory per device."""
        image_size = image_size or self.default_image_size()
        if image_size is None:
            raise ShapeError(f"{self.source}: its data layer sets no imgSize; give the image size of the data")
        shapes = self.shapes(image_size)
        edges = []
        for producer, device, consumers in self.transfers():
            per_image = math.prod(shapes[producer]) if shapes[producer] else 1
            is_data = self.nodes[producer].device == HOST
            label = producer == self.label_input
            forward = batch_size * per_image * (8 if label else itemsize)
            edges.append({
                "src": producer,
                "dst": ",".join(consumers),
                "src_device": self.nodes[producer].device,
                "dst_device": device,
                "forward_bytes": forward,
                # each consumer sends its gradient back (summed on the producer's device, in the
                # backward order, as the original did)
                "backward_bytes": 0 if is_data else len(consumers) * batch_size * per_image * itemsize,
            })
        counts = self.parameter_counts(shapes)
        activations = self.activation_counts(shapes)
        devices = []
        for d in self.devices:
            params = sum(n for name, n in counts.items() if self.nodes[name].device == d)
            local = [n for n in self.order if self.nodes[n].device == d]
            devices.append({
                "device": d,
                "layers": local,
                "parameters": params,
                "parameter_bytes": params * itemsize,
                "gradient_bytes": params * itemsize,
                "momentum_bytes": params * itemsize,
                # outputs and their gradients of the layers here, plus the copies of remote inputs
                "activation_bytes": 2 * batch_size * sum(activations[d].values()) * itemsize,
            })
        return {"batch_size": batch_size, "image_size": image_size, "edges": edges, "devices": devices}
