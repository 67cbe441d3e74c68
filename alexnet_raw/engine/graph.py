"""The network as a graph: where each layer runs, what shape it produces, which edges cross devices.

Placement follows the original: a layer runs on the logical device its `gpu=` names; without it,
on the device of its first input; data layers live on the host and are copied to every device that
reads them. With single_device=True everything runs on device 0.

Data-parallel replicas (cuda-convnet2's `gpu=0,1,...`): a layer with R replicas runs R copies of
itself, replica r on the r-th device of its list, each on rows [N*r // R, N*(r+1) // R) of a batch
of N images (weights replicated; a layer without `gpu=` takes its first input's replicas). The
rules are cuda-convnet2's: the replica counts of a layer and of each input divide each other, the
inputs of a layer have equal counts, a pass layer has its inputs' count, and the devices of one
layer are distinct. Where counts differ, a replica gathers the rows of several producer replicas
(4 -> 1: the hybrid's conv-to-fc edge) or takes its rows from one (1 -> 4). single_device=True
keeps the replicas (and so the same sums in the same order) on device 0.

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
# what crosses devices in a training step, by kind (graph.split_report, Model.traffic_kinds)
TRAFFIC_KINDS = ("activations", "activation_gradients", "gradient_sums", "weight_broadcasts")


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
    if fit < 1:
        raise ShapeError(f"a {spec.size}-wide pooling window from start {spec.start} does not fit {size} pixels")
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


def replica_rows(batch: int, count: int, r: int):
    """Rows [a, b) of a batch of `batch` images that replica r of `count` computes."""
    return batch * r // count, batch * (r + 1) // count


@dataclasses.dataclass
class Node:
    spec: cfg.LayerSpec
    device: object  # int logical device (of replica 0), or HOST for data layers
    consumers: list = dataclasses.field(default_factory=list)
    replicas: tuple = ()  # the logical device of each replica ((device,) without replicas; (HOST,) for data)

    def __post_init__(self):
        if not self.replicas:
            self.replicas = (self.device,)

    @property
    def name(self):
        return self.spec.name

    @property
    def count(self) -> int:
        """Its number of replicas (1 without cuda-convnet2's gpu lists, and for data layers)."""
        return len(self.replicas)


class Graph:
    def __init__(self, layers, source="network", single_device=False):
        self.source = source
        self.nodes = {}
        for spec in layers:
            if isinstance(spec, cfg.DataSpec):
                replicas = (HOST,)
            elif spec.gpu is not None:
                replicas = spec.gpu if isinstance(spec.gpu, tuple) else (spec.gpu,)
            else:
                first = self.nodes[spec.inputs[0]]
                replicas = (0,) if first.device == HOST else first.replicas
            if single_device and replicas != (HOST,):
                replicas = (0,) * len(replicas)
            self.nodes[spec.name] = Node(spec, replicas[0], replicas=replicas)
            self._check_replicas(self.nodes[spec.name])
            for i in spec.inputs:
                self.nodes[i].consumers.append(spec.name)
        self.order = list(self.nodes)
        self.devices = sorted({d for n in self.nodes.values() for d in n.replicas if d != HOST})
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

    def _check_replicas(self, node):
        """cuda-convnet2's rules for the replica counts of a layer and its inputs."""
        spec, count = node.spec, node.count
        counts = {i: self.nodes[i].count for i in spec.inputs if self.nodes[i].device != HOST}
        for i, c in counts.items():
            if count % c and c % count:
                raise cfg.CfgError(self.source, spec.name, "gpu",
                                   f"{count} replicas cannot take input {i}'s {c}: replica counts of consecutive "
                                   "layers must divide each other")
        if len(set(counts.values())) > 1:
            raise cfg.CfgError(self.source, spec.name, "inputs",
                               "the inputs of a layer must have equal replica counts, got "
                               + ", ".join(f"{i} {c}" for i, c in counts.items()))
        if isinstance(spec, cfg.PassSpec) and counts and count != next(iter(counts.values())):
            raise cfg.CfgError(self.source, spec.name, "gpu",
                               f"a pass layer has as many replicas as its inputs ({next(iter(counts.values()))}), "
                               f"got {count}")

    def row_pieces(self, producer, batch, rows):
        """[(replica j of `producer`, first row, end row)]: the producer replicas holding rows [a, b)
        of a batch, in row order (one for a data layer: replica 0, the host's whole batch)."""
        node = self.nodes[producer]
        a, b = rows
        pieces = []
        for j in range(node.count):
            lo, hi = replica_rows(batch, node.count, j)
            if max(lo, a) < min(hi, b):
                pieces.append((j, max(lo, a), min(hi, b)))
        return pieces

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
                    if ch % g and not spec.rand_sparse[i]:
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
                ws = [(oh, ow, spec.filters, fc, f, f) for fc, f in zip(spec.filter_channels, spec.filter_size)]
                out[name] = (ws, (spec.filters, oh, ow))
            elif isinstance(spec, cfg.ConvSpec):
                ws = [(spec.filters, fc, f, f) for fc, f in zip(spec.filter_channels, spec.filter_size)]
                out[name] = (ws, (spec.filters,))
            elif isinstance(spec, cfg.FcSpec):
                ws = [(spec.outputs, math.prod(shapes[i])) for i in spec.inputs]  # Python ints: no overflow
                out[name] = (ws, (spec.outputs,))
        return out

    def parameter_counts(self, shapes):
        """{layer: its weights and biases, in elements} for the layers with parameters."""
        return {name: sum(math.prod(w) for w in ws) + math.prod(b) for name, (ws, b) in self.weight_shapes(shapes).items()}

    def _layer_order(self):
        return [n for n in self.order
                if not isinstance(self.nodes[n].spec, (cfg.DataSpec, cfg.SoftmaxSpec, cfg.CostSpec))]

    def representative_batch(self) -> int:
        """The smallest batch every layer's replicas split evenly (the lcm of the replica counts)."""
        return math.lcm(*(n.count for n in self.nodes.values()))

    def step_copies(self, batch):
        """Every copy between devices in a training step of `batch` images, as the model makes them
        (engine/model.py: one copy of each producer's rows per device, each consumer's gradient sent
        back, the replicas' weight gradients summed on replica 0's device and its weights sent back
        out): dicts {kind (model.TRAFFIC_KINDS), src (a layer, or "loss"), src_device, dst_device,
        consumers, rows (None: the layer's parameters)}."""
        plan, placed = [], {}

        def place(producer, device, rows, consumer):
            key = (producer, device, rows)
            if key in placed:
                for rec in placed[key]:
                    rec["consumers"].append(consumer)
                return
            placed[key] = []
            for j, lo, hi in self.row_pieces(producer, batch, rows):
                home = self.nodes[producer].replicas[j]
                if home != device:
                    rec = dict(kind="activations", src=producer, src_device=home, dst_device=device,
                               consumers=[consumer], rows=hi - lo)
                    plan.append(rec)
                    placed[key].append(rec)

        layers = self._layer_order()
        for name in layers:
            node = self.nodes[name]
            for r, device in enumerate(node.replicas):
                for p in node.spec.inputs:
                    place(p, device, replica_rows(batch, node.count, r), name)
        logits = self.nodes[self.logits]
        place(self.logits, logits.device, (0, batch), self.softmax)
        if self.label_input is not None:
            place(self.label_input, logits.device, (0, batch), self.cost or self.softmax)
            for r, device in enumerate(logits.replicas):
                if device != logits.device:  # each classifier replica's labels, and its loss sent back
                    a, b = replica_rows(batch, logits.count, r)
                    plan.append(dict(kind="activations", src=self.label_input, src_device=logits.device,
                                     dst_device=device, consumers=[self.cost or self.softmax], rows=b - a))
                    plan.append(dict(kind="activations", src="loss", src_device=device, dst_device=logits.device,
                                     consumers=[self.cost or self.softmax], rows=None))
        for name in reversed(layers):
            node = self.nodes[name]
            for r, device in enumerate(node.replicas):
                for p in node.spec.inputs:
                    if self.nodes[p].device == HOST:
                        continue
                    for j, lo, hi in self.row_pieces(p, batch, replica_rows(batch, node.count, r)):
                        home = self.nodes[p].replicas[j]
                        if home != device:
                            plan.append(dict(kind="activation_gradients", src=p, src_device=device,
                                             dst_device=home, consumers=[name], rows=hi - lo))
        for name in layers:
            node = self.nodes[name]
            if not isinstance(node.spec, (cfg.ConvSpec, cfg.FcSpec)):
                continue
            for device in node.replicas[1:]:
                if device != node.device:
                    plan.append(dict(kind="gradient_sums", src=name, src_device=device, dst_device=node.device,
                                     consumers=[name], rows=None))
                    plan.append(dict(kind="weight_broadcasts", src=name, src_device=node.device, dst_device=device,
                                     consumers=[name], rows=None))
        return plan

    def copy_bytes(self, rec, shapes, itemsize, parameter_counts=None):
        """The bytes of one record of step_copies."""
        if rec["src"] == "loss":
            return itemsize
        if rec["rows"] is None:
            return parameter_counts[rec["src"]] * itemsize
        if rec["src"] == self.label_input:
            return rec["rows"] * 8  # int64 class indices
        return rec["rows"] * math.prod(shapes[rec["src"]]) * itemsize

    def transfers(self):
        """[(producer, destination device, [consumers there])]: every activation copy between
        devices (at the representative batch), one entry per producer and device."""
        edges = {}
        for rec in self.step_copies(self.representative_batch()):
            if rec["kind"] == "activations" and rec["src"] != "loss":
                consumers = edges.setdefault((rec["src"], rec["dst_device"]), [])
                consumers += [c for c in rec["consumers"] if c not in consumers]
        return [(p, d, c) for (p, d), c in edges.items()]

    def activation_counts(self, shapes):
        """{device: {layer or "copy of <producer>": elements per image of the batch}}: the outputs
        of the layers (their replicas' share of the rows) on each device and the copies of remote
        rows it receives."""
        out = {d: {} for d in self.devices}
        for name in self.order:
            node = self.nodes[name]
            if node.device == HOST:
                continue
            per_image = math.prod(shapes[name]) if shapes[name] else 0
            for device in node.replicas:
                out[device][name] = out[device].get(name, 0) + per_image / node.count
        batch = self.representative_batch()
        for rec in self.step_copies(batch):
            if rec["kind"] == "activations" and rec["src"] not in ("loss", self.label_input):
                per_image = math.prod(shapes[rec["src"]]) if shapes[rec["src"]] else 0
                key = f"copy of {rec['src']}"
                out[rec["dst_device"]][key] = out[rec["dst_device"]].get(key, 0) + per_image * rec["rows"] / batch
        return out

    def split_report(self, batch_size: int, image_size=None, itemsize: int = 4, processes: int = 1, shards=None):
        """Bytes on every cross-device edge per training step (activations forward, their gradients
        backward), the step's bytes of each kind (with the replicas' gradient sums and weight
        broadcasts), and memory per device; with processes > 1 or shards > 1 (data parallelism
        across MPI processes, alexnet_raw.distributed) also the bytes of the gradient summed across
        the shards and the gradient bytes each rank sends per step."""
        from ..distributed.shards import ShardPlan, sent_bytes

        shards = processes if shards is None else shards
        ShardPlan(shards, processes, 0)  # ValueError for counts that do not fit
        image_size = image_size or self.default_image_size()
        if image_size is None:
            raise ShapeError(f"{self.source}: its data layer sets no imgSize; give the image size of the data")
        shapes = self.shapes(image_size)
        counts = self.parameter_counts(shapes)
        plan = self.step_copies(batch_size)
        edges, kinds = {}, {}
        for rec in plan:
            nbytes = self.copy_bytes(rec, shapes, itemsize, counts)
            kinds[rec["kind"]] = kinds.get(rec["kind"], 0) + nbytes
            if rec["kind"] not in ("activations", "activation_gradients") or rec["src"] == "loss":
                continue
            forward = rec["kind"] == "activations"
            remote = rec["dst_device"] if forward else rec["src_device"]
            edge = edges.setdefault((rec["src"], remote), {
                "src": rec["src"], "dst": [], "src_device": [], "dst_device": remote,
                "forward_bytes": 0, "backward_bytes": 0})
            edge["forward_bytes" if forward else "backward_bytes"] += nbytes
            edge["dst"] += [c for c in rec["consumers"] if c not in edge["dst"]]
            home = rec["src_device"] if forward else rec["dst_device"]
            edge["src_device"] += [] if home in edge["src_device"] else [home]
        for edge in edges.values():
            edge["dst"] = ",".join(edge["dst"])
            # the producer's device, or (rows of several replicas) the list of the devices they come from
            edge["src_device"] = edge["src_device"][0] if len(edge["src_device"]) == 1 else edge["src_device"]
        activations = self.activation_counts(shapes)
        devices = []
        for d in self.devices:
            masters = sum(n for name, n in counts.items() if self.nodes[name].device == d)
            replicas = sum(n for name, n in counts.items()
                           for r, dev in enumerate(self.nodes[name].replicas) if r and dev == d != self.nodes[name].device)
            local = [n for n in self.order if d in self.nodes[n].replicas]
            devices.append({
                "device": d,
                "layers": local,
                "parameters": masters,  # the copies each step updates (replica 0's)
                "replica_parameters": replicas,  # copies of other devices' weights (data-parallel replicas)
                "parameter_bytes": (masters + replicas) * itemsize,
                "gradient_bytes": (masters + replicas) * itemsize,
                "momentum_bytes": masters * itemsize,
                # outputs and their gradients of the layers here, plus the copies of remote rows
                "activation_bytes": math.ceil(2 * batch_size * sum(activations[d].values()) * itemsize),
            })
        elements = sum(counts.values())
        sharded = shards > 1 or processes > 1
        distributed = {"processes": processes, "shards": shards,
                       "allreduce_bytes_per_step": elements * itemsize if sharded else 0,
                       "sent_bytes_per_step": sent_bytes(elements, itemsize, shards, processes) if sharded else [0]}
        return {"batch_size": batch_size, "image_size": image_size, "edges": list(edges.values()),
                "distributed": distributed,
                "bytes_by_kind": {k: kinds.get(k, 0) for k in TRAFFIC_KINDS}, "devices": devices,
                "replicas": {n: list(self.nodes[n].replicas) for n in self.order if self.nodes[n].count > 1}}
