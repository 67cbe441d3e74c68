"""AlexNet by hand: a network read from cuda-convnet's layer files, run layer by layer on its
logical devices with every cross-device copy explicit and counted. No autograd: forward and
backward are flat sequences of our kernels (alexnet_raw.functional).

Conventions:
- The loss is the mean over the batch of the cost layer's log loss; backward leaves in each
  device's gradient block the gradient of that mean, and step() applies cuda-convnet's update
  inc = momW*inc - epsW*(grad + wc*W); W += inc per weight matrix (biases: epsB, momB, no decay),
  which equals the original's eps*grad_sum/N form.
- A layer's output feeding consumers on several devices is copied once to each of them; in
  backward each consumer's gradient is copied back and summed on the producer's device in the
  fixed order of the backward pass, so one placement or another gives bit-identical results.
- A layer whose params file sets updatePeriod = P > 1 (cuda-convnet2's) is updated after every P-th
  minibatch (step counts k with (k + 1) % P == 0) with the mean of the P minibatches' gradients,
  summed in an accumulator in step order; in between, its weights and momentum stay as they are.
- wball > 0 (cuda-convnet2's): after an update, each filter's weights (conv: a filter; fc: an
  output's; local: a filter at one position) are scaled to norm wball (conv, fc) or, where longer,
  down to it (local), as its HardWeightConstraintOperator and kNormalizeLCWeights do.
- Data-parallel replicas (cuda-convnet2's gpu=0,1,...: engine/graph.py): replica r of a layer
  computes its rows of the batch with its own copy of the weights; after backward the replicas'
  weight gradients are summed on replica 0's device in replica order, step() updates replica 0's
  weights and copies them to the replicas on other devices. Every such copy is counted
  (self.traffic_kinds). With single_device=True the replicas run on device 0 with the same sums.
- Dropout masks come from (seed, offset) with offset = step * (number of hs layers) + index of the
  hs layer: every (layer, step) draws its own mask, the same on every backend.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .. import functional as F
from . import cfg, graph as graph_mod, layers as layers_mod
from .devices import Devices
from .parameters import ParameterBlock

NETWORKS_DIR = Path(__file__).parent / "networks"
TRAFFIC_KINDS = graph_mod.TRAFFIC_KINDS
NETWORKS = {
    "krizhevsky2012": ("krizhevsky2012/layers-145.cfg", "krizhevsky2012/layer-params-145.cfg"),
    "torchvision": ("torchvision.cfg", "torchvision-params.cfg"),
    "mini": ("mini.cfg", "mini-params.cfg"),
}
# torchvision.models.alexnet's parameter names -> ours, for the "torchvision" network
TORCHVISION_KEYS = {
    "features.0": "conv1", "features.3": "conv2", "features.6": "conv3", "features.8": "conv4",
    "features.10": "conv5", "classifier.1": "fc6", "classifier.4": "fc7", "classifier.6": "fc8",
}


# The input size of a shipped network whose layer file, the original's, sets none (cuda-convnet took
# it from the data provider): run #145 trained on 224 x 224 crops of 256 x 256 ImageNet images.
NETWORK_IMAGE_SIZES = {"krizhevsky2012": 224}


def network_files(name):
    if name not in NETWORKS:
        raise ValueError(f"unknown network {name!r}; choose one of {', '.join(NETWORKS)}")
    layers, params = NETWORKS[name]
    return NETWORKS_DIR / layers, NETWORKS_DIR / params


def network_image_size(name, layer_specs=None):
    """The input size of a shipped network: its data layer's imgSize, else NETWORK_IMAGE_SIZES."""
    if layer_specs is None:
        layer_specs = cfg.read_layers(network_files(name)[0])
    data = [s for s in layer_specs if isinstance(s, cfg.DataSpec) and s.data_idx == 0]
    return (data[0].img_size if data and data[0].img_size else None) or NETWORK_IMAGE_SIZES.get(name)


class _StepContext:
    def __init__(self, seed, step, dropout_layers, train, row_start=0):
        self.seed, self.step, self.dropout_layers, self.train = seed, step, dropout_layers, train
        self.row_start = row_start  # the first batch row this replica computes (its dropout mask's place)

    def dropout_offset(self, index):
        return self.step * self.dropout_layers + index

    def for_rows(self, row_start):
        """The context of rows starting at `row_start` of this context's rows."""
        return _StepContext(self.seed, self.step, self.dropout_layers, self.train, self.row_start + row_start)


class Model:
    """A network from cuda-convnet layer files, on the CPU runtime (NumPy) or GPUs (CuPy)."""

    # ------------------------------------------------------------------------------------------
    @classmethod
    def from_cfg(cls, layers_path, params_path, seed=0, single_device=False, backend=None, dtype=np.float32,
                 num_classes=None, overlap_transfers=False, image_size=None):
        """A model of a layers file and its params file. image_size: the side of its (square) input
        images; None takes the data layer's imgSize, and without one the first batch's size (as
        cuda-convnet took it from the data provider)."""
        layers_path, params_path = Path(layers_path), Path(params_path)
        layer_specs = cfg.read_layers(layers_path, dtype)
        learn = cfg.read_params(params_path, layer_specs, dtype)
        texts = (layers_path.read_text(encoding="utf-8"), params_path.read_text(encoding="utf-8"))
        return cls(layer_specs, learn, str(layers_path), seed, single_device, backend, dtype, num_classes, texts,
                   overlap_transfers, image_size)

    @classmethod
    def named(cls, name, seed=0, single_device=False, backend=None, dtype=np.float32, num_classes=None,
              overlap_transfers=False, image_size=None):
        layers_path, params_path = network_files(name)
        if image_size is None:
            image_size = NETWORK_IMAGE_SIZES.get(name)  # else the file's imgSize
        model = cls.from_cfg(layers_path, params_path, seed, single_device, backend, dtype, num_classes,
                             overlap_transfers, image_size)
        model.network_name = name
        return model

    @classmethod
    def from_cfg_text(cls, layers_text, params_text, seed=0, single_device=False, backend=None, dtype=np.float32,
                      num_classes=None, source="<checkpoint>", image_size=None):
        """A model from the texts of a layers file and a params file (as checkpoints store them)."""
        layer_specs = cfg.read_layers_text(layers_text, f"{source} layers", dtype)
        learn = cfg.read_params_text(params_text, layer_specs, f"{source} params", dtype)
        return cls(layer_specs, learn, source, seed, single_device, backend, dtype, num_classes,
                   (layers_text, params_text), image_size=image_size)

    def __init__(self, layer_specs, learn, source, seed, single_device, backend, dtype, num_classes, texts,
                 overlap_transfers=False, image_size=None):
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float64):
            raise TypeError(f"dtype must be float32 or float64, got {dtype}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**63:
            raise ValueError(f"seed must be an int in [0, 2**63), got {seed!r}")
        self.graph = graph_mod.Graph(layer_specs, source, single_device)
        if num_classes is not None:
            if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
                raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
            logits_spec = self.graph.nodes[self.graph.logits].spec
            if not isinstance(logits_spec, cfg.FcSpec):
                raise cfg.CfgError(source, logits_spec.name, "outputs", "num_classes needs an fc layer before the softmax")
            logits_spec.outputs = int(num_classes)
        self.source, self.seed, self.dtype = source, int(seed), dtype
        self.single_device = bool(single_device)
        self.network_name = None
        self.texts = texts
        self.learn = learn
        self.input_channels = self.graph.input_channels()
        # overlap_transfers: on GPUs, queue cross-device copies on streams so they overlap with compute
        # (engine/streams.py); results are the same, only the timing changes
        self.devices = Devices(self.graph.devices, backend, overlap=overlap_transfers)
        self.steps = 0  # optimisation steps taken (dropout streams and checkpoints use it)
        self.lr_scale = lambda epoch: 1.0  # the trainer may set a schedule: epoch -> factor on eps
        self._layer_specs = layer_specs
        self._last = None
        self._reset_traffic()
        # the input size: given, else the data layer's imgSize, else the first batch's (size_to)
        self.image_size = None
        self.shapes = None
        self.num_classes = self._classes_without_size()
        fixed = self.graph.default_image_size()
        if image_size is not None and fixed is not None and image_size != fixed:
            raise ValueError(f"{source} takes {fixed}x{fixed} images (its data layer's imgSize), "
                             f"got image_size={image_size!r}")
        size = image_size if image_size is not None else fixed
        if size is not None:
            self.size_to(size)

    def _classes_without_size(self):
        """The classifier's width where the layer file fixes it (an fc layer before the softmax)."""
        spec = self.graph.nodes[self.graph.logits].spec
        return spec.outputs if isinstance(spec, cfg.FcSpec) else None

    @property
    def sized(self) -> bool:
        """Whether the input size is known (and with it every shape and parameter)."""
        return self.image_size is not None

    def size_to(self, image_size):
        """Fix the input size (the side of square images) and build the parameters: a network whose
        files set no imgSize waits for it (the first batch, or the trainer's data). A size some
        layer cannot take is a graph.ShapeError naming the layer and the sizes; a model already
        sized takes only its own size."""
        if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size < 1:
            raise ValueError(f"image_size must be a positive int (the side of square input images), got {image_size!r}")
        image_size = int(image_size)
        if self.sized:
            if image_size != self.image_size:
                raise ValueError(f"{self.source} takes {self.image_size}x{self.image_size} images (its size is fixed), "
                                 f"got {image_size}x{image_size}")
            return
        shapes = self.graph.shapes(image_size)  # ShapeError naming the layer that does not fit
        self.shapes, self.image_size = shapes, image_size
        self.num_classes = self.shapes[self.graph.logits][0]
        self._per_image = None  # {device: {layer: activation elements per image}}, for check_memory
        try:
            self.check_memory()
            self._build(self._layer_specs)
        except BaseException:
            self.shapes, self.image_size, self.num_classes = None, None, self._classes_without_size()
            raise

    def _require_size(self, what):
        if not self.sized:
            raise ValueError(f"{self.source} has no input size yet ({what} needs its parameters): its data layer "
                             "sets no imgSize, so the size comes from the data; pass image_size= to the Model, "
                             "call size_to(n), or run a batch through it first")

    def check_memory(self, batch=None, train=False):
        """Refuse, before allocating, what cannot fit the memory of its device (Devices.available_bytes):
        without `batch`, the network itself: every layer's parameters with their gradients and
        momentum, one image's outputs and their gradients, and on the host the float64 draw of the
        largest weight matrix with its cast (_initialise); with `batch`, that batch's outputs (and
        with train=True their gradients; forward() checks every batch, a trainer may check its batch
        size up front). Raises graph.MemoryLimitError naming the largest layers and the bytes."""
        if batch is not None and (isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1):
            raise ValueError(f"batch must be a positive int (images), got {batch!r}")
        self._require_size("check_memory")
        itemsize = self.dtype.itemsize
        if self._per_image is None:
            self._per_image = self.graph.activation_counts(self.shapes)
        params = self.graph.parameter_counts(self.shapes) if batch is None else {}
        groups = {}  # memory key -> (its name, a logical device on it, {layer: bytes})
        for device, counts in self._per_image.items():
            key, where = self.devices.memory(device)
            needs = groups.setdefault(key, (where, device, {}))[2]
            for layer, elements in counts.items():
                if batch is None:  # parameters, gradients, momentum (and an accumulator for updatePeriod > 1)
                    copies = 3 + (self._update_period(layer) > 1)
                    needs[layer] = math.ceil((copies * params.get(layer, 0) + 2 * elements) * itemsize)
                else:  # elements per image of the batch (a replica's share of the rows)
                    needs[layer] = math.ceil(batch * elements * itemsize * (2 if train else 1))
        for key, (where, device, needs) in groups.items():
            extra = 0
            if batch is None and not self.devices.on_gpu and params:
                weights = self.graph.weight_shapes(self.shapes)
                extra = max(math.prod(w) for ws, b in weights.values() for w in ws + [b]) * (8 + itemsize)
            total = sum(needs.values()) + extra
            available = self.devices.available_bytes(device)
            if available is None or total <= available:
                continue
            what = (f"a batch of {batch} images{' (outputs and their gradients)' if train else ''}" if batch
                    else "the network (parameters, their gradients and momentum, one image's activations)")
            largest = sorted(needs, key=needs.get, reverse=True)[:3]
            raise graph_mod.MemoryLimitError(
                f"{self.source}: {what} needs {_bytes(total)} on {where}, which has {_bytes(available)} available; "
                f"largest: " + ", ".join(f"[{name}] {_bytes(needs[name])}" for name in largest))

    def _build(self, layer_specs):
        weight_shapes = self.graph.weight_shapes(self.shapes)
        entries = {d: [] for d in self.graph.devices}
        for name in self.graph.order:
            if name in weight_shapes:
                ws, b = weight_shapes[name]
                device = self.graph.nodes[name].device
                entries[device] += [(f"{name}.weights.{i}", w) for i, w in enumerate(ws)]
                entries[device].append((f"{name}.biases", b))
        self.blocks = {d: ParameterBlock(self.devices, d, e, self.dtype) for d, e in entries.items()}
        # updatePeriod > 1: the gradients summed since the layer's last update, one array per key
        self.accumulated = {}
        for name in self.graph.order:
            if name in weight_shapes and self._update_period(name) > 1:
                block = self.blocks[self.graph.nodes[name].device]
                for key in [k for k in block.shapes if k.startswith(f"{name}.")]:
                    self.accumulated[key] = self.devices.zeros(block.device, block.shapes[key], self.dtype)
        self.layers = []  # replica 0 of every layer, in order
        self.replicas = {}  # layer -> [its replicas' Layer objects]
        self.replica_params, self.replica_grads = {}, {}  # (layer, r >= 1) -> {key: array on its device}
        self.filter_conns = {}  # layer -> {randSparse input: the channels its groups read} (_filter_conns)
        dropout_index = 0
        for name in self.graph.order:
            node = self.graph.nodes[name]
            if isinstance(node.spec, (cfg.DataSpec, cfg.SoftmaxSpec, cfg.CostSpec)):
                continue
            block = self.blocks[node.device]
            replicas = [layers_mod.make_layer(node.spec, node.device, block.params, block.grads)]
            keys = [k for k in block.shapes if k.startswith(f"{name}.")] if name in weight_shapes else []
            for r, device in enumerate(node.replicas[1:], 1):
                params = ({k: block.params[k] for k in keys} if device == node.device  # one device: shared weights
                          else {k: self.devices.zeros(device, block.shapes[k], self.dtype) for k in keys})
                grads = {k: self.devices.zeros(device, block.shapes[k], self.dtype) for k in keys}
                self.replica_params[(name, r)], self.replica_grads[(name, r)] = params, grads
                replicas.append(layers_mod.make_layer(node.spec, device, params, grads))
            if isinstance(replicas[0], layers_mod.Dropout):
                for layer in replicas:
                    layer.index = dropout_index
                dropout_index += 1
            if isinstance(node.spec, cfg.ConvSpec) and any(node.spec.rand_sparse):
                conns = self._filter_conns(name)
                for layer in replicas:
                    layer.filter_conns = conns
            self.layers.append(replicas[0])
            self.replicas[name] = replicas
        self.dropout_layers = dropout_index
        self._initialise(weight_shapes)

    def _filter_conns(self, name):
        """cuda-convnet's random sparse connectivity of a layer: for each randSparse input, the
        channels its filter groups read, group g the g-th run of filterChannels (cuda-convnet's
        gen_rand_conns: groups x filterChannels / channels random permutations of the channels, one
        after the other), drawn from the model's seed and the layer's place in the file."""
        spec, position = self.graph.nodes[name].spec, self.graph.order.index(name)
        conns = {}
        for i, (sparse, c, g, fc) in enumerate(zip(spec.rand_sparse, spec.channels, spec.groups,
                                                   spec.filter_channels)):
            if sparse:
                rng = np.random.default_rng((self.seed, position, i))
                conns[i] = np.concatenate([rng.permutation(c) for _ in range(g * fc // c)]).astype(np.int64)
        self.filter_conns[name] = conns
        return conns

    def _initialise(self, weight_shapes):
        """Gaussian weights of standard deviation initW, constant biases initB, drawn in layer
        order from one generator (so placement does not change them), in float64, then cast."""
        rng = np.random.default_rng(self.seed)
        values = {}
        for name in self.graph.order:
            if name not in weight_shapes:
                continue
            spec = self.graph.nodes[name].spec
            ws, b = weight_shapes[name]
            for i, shape in enumerate(ws):
                values[f"{name}.weights.{i}"] = rng.standard_normal(shape) * spec.init_w[i]
            values[f"{name}.biases"] = np.full(b, spec.init_b)
        self.load_state_dict(values)

    # ------------------------------------------------------------------------------------------
    def parameter_keys(self):
        self._require_size("its parameters")
        return [k for d in self.graph.devices for k in self.blocks[d].shapes]

    def _block_of(self, key):
        for block in self.blocks.values():
            if key in block.shapes:
                return block
        raise KeyError(key)

    def state_dict(self):
        """{"<layer>.weights.<i>": array, "<layer>.biases": array} as host NumPy copies."""
        return {k: self.devices.to_host(self._block_of(k).params[k]) for k in self.parameter_keys()}

    def momentum_state_dict(self):
        """The momentum buffers (cuda-convnet's `inc`), same keys as state_dict."""
        return {k: self.devices.to_host(self._block_of(k).momentum[k]) for k in self.parameter_keys()}

    def gradient_dict(self):
        """The gradients left by the last backward(), same keys as state_dict (host copies)."""
        return {k: self.devices.to_host(self._block_of(k).grads[k]) for k in self.parameter_keys()}

    def load_state_dict(self, state, momentum=False):
        """Copy parameters (or, with momentum=True, momentum buffers) in; keys and shapes must match
        exactly; values must be finite real numbers (they are cast to the model's dtype)."""
        self._check_state(state, "momentum state" if momentum else "state dict")
        for key in self.parameter_keys():
            block = self._block_of(key)
            target = (block.momentum if momentum else block.params)[key]
            value = np.asarray(_to_numpy(state[key]), dtype=self.dtype)
            with self.devices.context(block.device):
                target[...] = self.devices.xp.asarray(value)
        if not momentum:
            self._broadcast_weights(count=False)

    def load_momentum_state_dict(self, state):
        self.load_state_dict(state, momentum=True)

    def _update_period(self, layer):
        learn = self.learn.get(layer)
        return learn.update_period if learn is not None else 1

    def accumulated_state_dict(self):
        """The gradients summed since their layer's last update, for the layers whose params file
        sets updatePeriod > 1 (host copies, state_dict's keys); {} for a network without any."""
        self._require_size("its accumulators")
        return {k: self.devices.to_host(v) for k, v in self.accumulated.items()}

    def load_accumulated_state_dict(self, state):
        """Copy accumulated gradients in (as a checkpoint stores them): exactly the keys of
        accumulated_state_dict(), finite real numbers of the right shapes."""
        self._require_size("its accumulators")
        if not isinstance(state, dict):
            raise TypeError(f"accumulated state must be a dict of arrays, got {type(state).__name__}")
        keys = set(self.accumulated)
        if set(state) != keys:
            raise KeyError(f"accumulated state does not fit the network {self.source}: missing "
                           f"{sorted(keys - set(state))[:6]}, unexpected {sorted(set(state) - keys)[:6]}")
        for key, target in self.accumulated.items():
            value = _to_numpy(state[key])
            if tuple(value.shape) != tuple(target.shape):
                raise ValueError(f"accumulated state[{key!r}] must have shape {tuple(target.shape)}, got {tuple(value.shape)}")
            if value.dtype.kind not in "fiu" or not np.isfinite(value).all():
                raise ValueError(f"accumulated state[{key!r}] must hold finite real numbers")
            with self.devices.context(self._block_of(key).device):
                target[...] = self.devices.xp.asarray(np.asarray(value, dtype=self.dtype))

    def _check_state(self, state, what):
        if not isinstance(state, dict):
            raise TypeError(f"{what} must be a dict of arrays, got {type(state).__name__}")
        keys = self.parameter_keys()
        missing = [k for k in keys if k not in state]
        unexpected = [k for k in state if k not in set(keys)]
        if missing or unexpected:
            raise KeyError(f"{what} does not fit the network {self.source}: missing {missing[:6]}"
                           f"{'...' if len(missing) > 6 else ''}, unexpected {unexpected[:6]}"
                           f"{'...' if len(unexpected) > 6 else ''}")
        for key in keys:
            value = _to_numpy(state[key])
            shape = self._block_of(key).shapes[key]
            if tuple(value.shape) != tuple(shape):
                raise ValueError(f"{what}[{key!r}] must have shape {tuple(shape)}, got {tuple(value.shape)}")
            if value.dtype.kind not in "fiu":
                raise TypeError(f"{what}[{key!r}] must hold real numbers, got dtype {value.dtype}")
            if not np.isfinite(value).all():
                raise ValueError(f"{what}[{key!r}] holds non-finite values (NaN or Inf)")

    def torchvision_state_dict(self):
        """Parameters under torchvision.models.alexnet's names (for the "torchvision" network)."""
        self._require_torchvision_layout()
        ours = self.state_dict()
        out = {}
        for tv, name in TORCHVISION_KEYS.items():
            out[f"{tv}.weight"] = ours[f"{name}.weights.0"]
            out[f"{tv}.bias"] = ours[f"{name}.biases"]
        return out

    def load_torchvision_state_dict(self, state):
        """Load a torchvision AlexNet state_dict (torch tensors or arrays) into this network."""
        self._require_torchvision_layout()
        if not isinstance(state, dict):
            raise TypeError(f"expected a state_dict (dict), got {type(state).__name__}")
        expected = {f"{tv}.{kind}" for tv in TORCHVISION_KEYS for kind in ("weight", "bias")}
        missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
        if missing or unexpected:
            raise KeyError(f"not a torchvision AlexNet state_dict: missing {missing}, unexpected {unexpected}")
        ours = {}
        for tv, name in TORCHVISION_KEYS.items():
            ours[f"{name}.weights.0"] = _to_numpy(state[f"{tv}.weight"])
            ours[f"{name}.biases"] = _to_numpy(state[f"{tv}.bias"])
        self.load_state_dict(ours)

    def _require_torchvision_layout(self):
        names = set(self.graph.order)
        needed = set(TORCHVISION_KEYS.values())
        if not needed <= names or any(len(self.graph.nodes[n].spec.inputs) != 1 for n in needed):
            raise ValueError(f"{self.source} does not have the torchvision layout (layers {sorted(needed)} "
                             "with one input each): use Model.named('torchvision')")

    # ------------------------------------------------------------------------------------------
    def _check_images(self, x):
        """Type, dtype and shape of a batch; its values too when it is on the host (a device batch
        is not read back: that would wait for the GPU; a NaN or Inf in it gives a NaN loss)."""
        xp = self.devices.xp
        kinds = (np.ndarray, xp.ndarray) if self.devices.on_gpu else (np.ndarray,)
        if not isinstance(x, kinds):
            raise TypeError(f"x must be a {'numpy.ndarray or cupy' if self.devices.on_gpu else 'numpy'}.ndarray "
                            f"of images, got {type(x).__module__}.{type(x).__name__}")
        if x.dtype != self.dtype:
            raise TypeError(f"x must be {self.dtype} (the model's dtype), got {x.dtype}")
        if x.ndim != 4 or x.shape[1] != self.input_channels or x.shape[0] < 1:
            raise ValueError(f"x must have shape (N >= 1, {self.input_channels}, H, W), got {tuple(x.shape)}")
        if not self.sized:
            if x.shape[2] != x.shape[3]:
                raise ValueError(f"{self.source} takes square images (its size comes from the first batch), "
                                 f"got {x.shape[2]}x{x.shape[3]}")
            self.size_to(int(x.shape[2]))
        if (x.shape[2], x.shape[3]) != (self.image_size, self.image_size):
            raise ValueError(f"{self.source} takes {self.image_size}x{self.image_size} images, "
                             f"got {x.shape[2]}x{x.shape[3]}")
        if not x.flags.c_contiguous:
            raise ValueError(f"x must be C-contiguous (NCHW), got strides {x.strides}")
        if isinstance(x, np.ndarray) and not np.isfinite(x).all():
            raise ValueError("x holds non-finite values (NaN or Inf)")

    def _count(self, src, device, direction, nbytes):
        entry = self.traffic.setdefault((src, device), {"forward_bytes": 0, "backward_bytes": 0})
        entry[f"{direction}_bytes"] += nbytes
        self.traffic_kinds["activations" if direction == "forward" else "activation_gradients"] += nbytes

    def _reset_traffic(self):
        self.traffic = {}  # (producer, destination device) -> bytes of a step's activation copies
        self.traffic_kinds = {kind: 0 for kind in TRAFFIC_KINDS}

    def _check_replica_batch(self, n):
        most = max(node.count for node in self.graph.nodes.values())
        if n < most:
            raise ValueError(f"{self.source} has layers of {most} data-parallel replicas, each computing a slice of "
                             f"the batch: a batch needs at least {most} images, got {n}")

    def forward(self, x, train=False, row_start=0):
        """Logits (N, classes) on the classifier's device. train=True keeps what backward needs and
        draws dropout masks; train=False is the cfg's test behaviour. row_start: where x's rows
        begin in the global batch they are part of (a shard of a data-parallel step across
        processes: alexnet_raw.distributed): dropout masks are drawn for those rows of the step's."""
        if isinstance(row_start, bool) or not isinstance(row_start, (int, np.integer)) or row_start < 0:
            raise ValueError(f"row_start must be a non-negative int (a batch row), got {row_start!r}")
        self._check_images(x)
        n = int(x.shape[0])
        self._check_replica_batch(n)
        self.check_memory(batch=n, train=bool(train))
        self.devices.synchronize()  # a previous forward's copies across GPUs (eval loops call no backward)
        ctx = _StepContext(self.seed, self.steps, self.dropout_layers, bool(train), int(row_start))
        self._reset_traffic()
        produced = {(self.graph.image_input, 0): x}  # (layer, replica) -> that replica's rows of its output
        placed = {}  # (producer, device, rows) -> those rows of its output on that device
        inputs_of = {}
        for layer in self.layers:
            node = self.graph.nodes[layer.name]
            for r, replica in enumerate(self.replicas[layer.name]):
                rows, device = graph_mod.replica_rows(n, node.count, r), node.replicas[r]
                xs = [self._rows_on(p, device, rows, n, produced, placed) for p in layer.spec.inputs]
                with self.devices.context(device):
                    produced[(layer.name, r)] = replica.forward(xs, ctx.for_rows(rows[0]))
                inputs_of[(layer.name, r)] = xs
        logits_node = self.graph.nodes[self.graph.logits]
        logits = self._rows_on(self.graph.logits, logits_node.device, (0, n), n, produced, placed)
        self._last = (ctx, produced, inputs_of, n) if train else None
        return logits

    def _rows_on(self, producer, device, rows, n, produced, placed):
        """Rows [a, b) of `producer`'s output on `device`: its replicas' pieces, copied over where
        they are elsewhere (counted) and joined in row order; each (producer, device, rows) once."""
        key = (producer, device, rows)
        if key in placed:
            return placed[key]
        node = self.graph.nodes[producer]
        parts = []
        for j, lo, hi in self.graph.row_pieces(producer, n, rows):
            src, (a, b) = produced[(producer, j)], graph_mod.replica_rows(n, node.count, j)
            if (lo, hi) != (a, b):
                src = src[lo - a:hi - a]  # whole rows of a C-contiguous array: contiguous
            home = node.replicas[j]
            if home == graph_mod.HOST:
                part = self.devices.receive(device, src)  # a device batch stays on the device
                self._count(producer, device, "forward", src.nbytes)
            elif home != device:
                part = self.devices.copy(src, device, home)
                self._count(producer, device, "forward", src.nbytes)
            else:
                part = src
            parts.append(part)
        if len(parts) == 1:
            out = parts[0]
        else:  # the rows of several replicas, one after the other
            with self.devices.context(device):
                out = F.concat([p.reshape(1, -1) for p in parts]).reshape((rows[1] - rows[0],) + parts[0].shape[1:])
        placed[key] = out
        return out

    def backward(self, labels, loss_scale=1.0, on_gradients=None):
        """Mean log loss of the last forward(train=True) against `labels` (N,) class indices (NumPy,
        or on a GPU also CuPy), times the cost layer's coeff (1 unless the params file sets one)
        and loss_scale (a shard's share of a global batch: alexnet_raw.distributed); leaves the
        gradient of that in every parameter's gradient view. on_gradients(layer), if given, is
        called as soon as a layer's weight gradients are complete (queued, on a GPU), in backward
        order: what an all-reduce across processes overlaps with the rest of backward.
        Returns the loss as a 0-d array on the classifier's device (NumPy on the CPU runtime):
        float(loss) reads it, which on a GPU waits for the step. Nothing here waits for the GPU;
        host labels are range-checked on the host, device labels are not read back (one out of
        range gives a NaN loss: the kernels never read outside a row)."""
        if self._last is None:
            raise RuntimeError("backward() needs a forward(x, train=True) first (and one backward per forward)")
        if not isinstance(loss_scale, (float, int, np.floating)) or isinstance(loss_scale, bool) \
                or not 0.0 < float(loss_scale) <= 1.0:
            raise ValueError(f"loss_scale must be a number in (0, 1] (a share of the batch), got {loss_scale!r}")
        ctx, produced, inputs_of, n = self._last
        grads = {}  # (layer, replica) -> gradient of that replica's rows of its output
        loss = self._loss_and_gradients(labels, n, produced, grads, float(loss_scale))
        for layer in reversed(self.layers):
            node = self.graph.nodes[layer.name]
            needs = [self.graph.nodes[p].device != graph_mod.HOST for p in layer.spec.inputs]
            for r, replica in enumerate(self.replicas[layer.name]):
                grad = grads.pop((layer.name, r), None)
                if grad is None:
                    raise RuntimeError(f"layer {layer.name} does not reach the cost layer")
                rows, device = graph_mod.replica_rows(n, node.count, r), node.replicas[r]
                with self.devices.context(device):
                    grads_in = replica.backward(grad, inputs_of[(layer.name, r)], produced[(layer.name, r)],
                                                ctx.for_rows(rows[0]), needs)
                for producer, g in zip(layer.spec.inputs, grads_in):
                    if g is not None:
                        self._send_gradient(producer, g, rows, device, n, grads)
            if on_gradients is not None and node.count == 1 and layer.name in self.learn:
                on_gradients(layer.name)
        self._sum_replica_gradients()
        if on_gradients is not None:  # replicated layers: complete once their replicas' sums are
            for name in self.gradient_order()[len(self._unreplicated_learning()):]:
                on_gradients(name)
        self._last = None
        self.devices.synchronize()  # copies across GPUs done: their source arrays may be freed
        return loss

    def _unreplicated_learning(self):
        return [l.name for l in reversed(self.layers) if self.graph.nodes[l.name].count == 1 and l.name in self.learn]

    def gradient_order(self):
        """The layers with weights in the order backward(on_gradients=) completes their gradients:
        the unreplicated ones in backward order, then the replicated ones (after their sums)."""
        return self._unreplicated_learning() + [l.name for l in reversed(self.layers)
                                                if self.graph.nodes[l.name].count > 1 and l.name in self.learn]

    def _loss_and_gradients(self, labels, n, produced, grads, scale=1.0):
        """The mean loss (on the classifier's device) and each classifier replica's gradient of it
        (its rows' cross-entropy gradient, weighted by its share of the batch when there are several),
        both times the cost layer's coeff (cuda-convnet's weight of a cost; 1 unless the files say)
        and `scale`."""
        node = self.graph.nodes[self.graph.logits]
        home = node.device
        coeff = self.graph.nodes[self.graph.cost].spec.coeff if self.graph.cost is not None else 1.0
        coeff *= scale
        labels = self._labels(labels, n, home)  # checked without a wait
        if node.count == 1:
            logits = produced[(self.graph.logits, 0)]
            with self.devices.context(home):
                g = F.cross_entropy_backward(logits, labels, validate_target=False)
                loss = F.cross_entropy(logits, labels, validate_target=False)
                if coeff != 1:
                    g, loss = F.eltwise_sum([g], [coeff]), F.eltwise_sum([loss], [coeff])
                grads[(self.graph.logits, 0)] = g
                return loss
        losses, shares = [], []
        for r in range(node.count):
            (a, b), device = graph_mod.replica_rows(n, node.count, r), node.replicas[r]
            mine = labels[a:b]
            if device != home:
                mine = self.devices.copy(mine, device, home)
                self._count(self.graph.label_input or "labels", device, "forward", mine.nbytes)
            logits, share = produced[(self.graph.logits, r)], coeff * (b - a) / n
            with self.devices.context(device):
                g = F.cross_entropy_backward(logits, mine, validate_target=False)
                grads[(self.graph.logits, r)] = F.eltwise_sum([g], [share])  # of the whole batch's mean
                loss = F.cross_entropy(logits, mine, validate_target=False)
            if device != home:
                loss = self.devices.copy(loss, home, device)
                self.traffic_kinds["activations"] += loss.nbytes  # the step's "loss" record
            losses.append(loss)
            shares.append(share)
        with self.devices.context(home):
            return F.eltwise_sum(losses, shares)

    def _send_gradient(self, producer, g, rows, device, n, grads):
        """Add the gradient `g` of rows [a, b) of `producer`'s output (computed on `device`) to the
        gradients of the producer replicas holding those rows, on their devices (copies counted)."""
        node = self.graph.nodes[producer]
        for j, lo, hi in self.graph.row_pieces(producer, n, rows):
            piece = g if (lo, hi) == rows else g[lo - rows[0]:hi - rows[0]]
            home = node.replicas[j]
            if home != device:
                piece = self.devices.copy(piece, home, device)
                self._count(producer, device, "backward", piece.nbytes)
            a, b = graph_mod.replica_rows(n, node.count, j)
            key = (producer, j)
            with self.devices.context(home):
                if (lo, hi) == (a, b) and key not in grads:
                    grads[key] = piece
                elif (lo, hi) == (a, b):
                    F.accumulate(grads[key], piece)
                else:  # part of the replica's rows: into that part of its gradient
                    if key not in grads:
                        grads[key] = self.devices.zeros(home, (b - a,) + tuple(piece.shape[1:]), self.dtype)
                    F.accumulate(grads[key][lo - a:hi - a], piece)

    def _sum_replica_gradients(self):
        """Each replicated layer's weight gradients: replica 0's plus the others', in replica order,
        on replica 0's device (the copies counted as gradient sums)."""
        for (name, r), grads in self.replica_grads.items():
            node = self.graph.nodes[name]
            block, device = self.blocks[node.device], node.replicas[r]
            for key, g in grads.items():
                if device != node.device:
                    g = self.devices.copy(g, node.device, device)
                    self.traffic_kinds["gradient_sums"] += g.nbytes
                with self.devices.context(node.device):
                    F.accumulate(block.grads[key], g)

    def _broadcast_weights(self, count=True, layer=None):
        """Replica 0's weights to the replicas on other devices (after an update of `layer`, or of
        every layer after a load)."""
        for (name, r), params in self.replica_params.items():
            if layer is not None and name != layer:
                continue
            node = self.graph.nodes[name]
            device = node.replicas[r]
            if device == node.device:
                continue  # shares replica 0's arrays
            block = self.blocks[node.device]
            for key, target in params.items():
                copied = self.devices.copy(block.params[key], device, node.device)
                with self.devices.context(device):
                    target[...] = copied
                if count:
                    self.traffic_kinds["weight_broadcasts"] += copied.nbytes

    def _labels(self, labels, n, device):
        if self.devices.on_gpu and isinstance(labels, self.devices.xp.ndarray):
            if labels.dtype.kind not in "iu":
                raise TypeError(f"labels must be integers (class indices), got dtype {labels.dtype}")
            if labels.shape != (n,):
                raise ValueError(f"labels must have shape ({n},) (one per image of the batch), got {labels.shape}")
            self._count(self.graph.label_input or "labels", device, "forward", n * 8)
            received = self.devices.receive(device, labels)  # ordered after the caller's stream
            if received.dtype == np.int64 and received.flags.c_contiguous:
                return received
            with self.devices.context(device):
                return self.devices.xp.ascontiguousarray(received, dtype=np.int64)
        array = labels if isinstance(labels, np.ndarray) else None
        if array is None:
            raise TypeError(f"labels must be an array of class indices, got {type(labels).__name__}")
        if array.dtype.kind not in "iu":
            raise TypeError(f"labels must be integers (class indices), got dtype {array.dtype}")
        if array.shape != (n,):
            raise ValueError(f"labels must have shape ({n},) (one per image of the batch), got {array.shape}")
        if n and (array.min() < 0 or array.max() >= self.num_classes):
            raise ValueError(f"labels must be in [0, {self.num_classes - 1}], got values in "
                             f"[{array.min()}, {array.max()}]")
        array = np.ascontiguousarray(array, dtype=np.int64)
        self._count(self.graph.label_input or "labels", device, "forward", array.nbytes)
        return self.devices.from_host(device, array)

    def step(self, epoch=0, progress=0.0):
        """One SGD step with each layer's epsW/epsB/momW/momB/wc: the rates the params file's schedules
        give at `progress` (the share of the run's steps done before this one, 0 to 1: constants
        unless the file has cuda-convnet2's linear/exp/dexp schedules), scaled by lr_scale(epoch)."""
        scale = float(self.lr_scale(epoch))
        if not 0.0 <= float(progress) <= 1.0:
            raise ValueError(f"progress must be in [0, 1] (the share of the run's steps done), got {progress!r}")
        for layer in self.layers:
            learn = self.learn.get(layer.name)
            if learn is None:
                continue
            eps_w, eps_b = learn.rates(progress)
            block = self.blocks[layer.device]
            period = learn.update_period
            with self.devices.context(layer.device):
                keys = [f"{layer.name}.weights.{i}" for i in range(len(layer.spec.inputs))] + [f"{layer.name}.biases"]
                grads = {key: block.grads[key] for key in keys}
                if period > 1:  # sum this minibatch's gradient in; update on the period's last minibatch only
                    for key in keys:
                        if self.steps % period == 0:
                            self.accumulated[key][...] = block.grads[key]
                        else:
                            F.accumulate(self.accumulated[key], block.grads[key])
                    if (self.steps + 1) % period:
                        continue
                    grads = {key: self.accumulated[key] for key in keys}  # their mean: batch_size=period below
                for i, key in enumerate(keys[:-1]):
                    F.sgd_update(block.params[key], grads[key], block.momentum[key], lr=eps_w[i] * scale,
                                 momentum=learn.mom_w[i], weight_decay=learn.wc[i], batch_size=period)
                    bound = learn.norm_bound(i)
                    if bound is not None:  # cuda-convnet2's wball: hard on conv and fc filters, a maximum on local ones
                        local = isinstance(layer.spec, cfg.LocalSpec)
                        F.constrain_norms(block.params[key], bound, mode="max" if local else "hard",
                                          row_dims=3 if local else 1)
                key = keys[-1]
                F.sgd_update(block.params[key], grads[key], block.momentum[key], lr=eps_b * scale,
                             momentum=learn.mom_b, weight_decay=0.0, batch_size=period)
            self._broadcast_weights(layer=layer.name)
        self.steps += 1

    @property
    def scheduled(self) -> bool:
        """Whether the params file schedules a rate over the run (cuda-convnet2's linear/exp/dexp)."""
        return any(learn.scheduled for learn in self.learn.values())

    def train_step(self, x, labels, epoch=0, progress=0.0):
        """forward(train=True), backward, step(epoch, progress); returns (loss, logits), both on the
        classifier's device (see backward). On a GPU nothing in it waits for the GPU, with one
        exception: a network whose copies cross GPUs or streams waits at the end for those copies."""
        logits = self.forward(x, train=True)
        loss = self.backward(labels)
        self.step(epoch, progress)
        return loss, logits

    def predict_proba(self, x):
        """Softmax probabilities (N, classes) of the test-mode forward pass."""
        logits = self.forward(x, train=False)
        with self.devices.context(self.graph.nodes[self.graph.logits].device):
            return F.softmax(logits)

    # ------------------------------------------------------------------------------------------
    def split_report(self, batch_size, processes=1, shards=None):
        """Bytes on every cross-device edge per training step, and memory per device; with
        processes/shards (alexnet_raw.distributed) the gradient bytes summed and sent per rank."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self._require_size("split_report")
        return self.graph.split_report(int(batch_size), self.image_size, self.dtype.itemsize, processes, shards)

    def parameter_count(self):
        self._require_size("parameter_count")
        return sum(b.size for b in self.blocks.values())


def _bytes(n):
    return f"{n:,} bytes ({n / 2**30:.3g} GiB)"


def _to_numpy(value):
    if hasattr(value, "detach"):  # a torch tensor
        return value.detach().cpu().numpy()
    if hasattr(value, "get") and not isinstance(value, (np.ndarray, dict)):  # a CuPy array
        return value.get()
    return np.asarray(value)
