"""What each layer type computes, forward and backward, as explicit calls of our kernels.

Every layer gets its inputs on its own device (the model copies remote ones over) and returns its
output; backward gets the gradient of its output and returns the gradient for each input (None
for data layers), writing parameter gradients into the device's gradient block. A layer's neuron
(`neuron=relu`, `tanh[a,b]`, ...) is applied to its output; backward starts by undoing it.
"""

from __future__ import annotations

from .. import functional as F
from . import cfg


class Layer:
    def __init__(self, spec, device, params=None, grads=None):
        self.spec, self.device = spec, device
        self.params, self.grads = params, grads  # dicts of views, for layers with weights

    @property
    def name(self):
        return self.spec.name

    def forward(self, xs, ctx):
        out = self.compute(xs, ctx)
        if self.spec.neuron is None:
            return out
        self.pre_neuron = out  # what the neuron's backward reads besides its output (abs, square: the input)
        return F.neuron(out, *self.spec.neuron)

    def backward(self, grad, xs, out, ctx, needs):
        """needs[i]: whether input i wants a gradient. Returns [grad or None per input]."""
        if self.spec.neuron is not None:
            grad = F.neuron_backward(grad, self.pre_neuron, out, *self.spec.neuron)
        return self.compute_backward(grad, xs, out, ctx, needs)


def _weights(layer, i):
    return layer.params[f"{layer.name}.weights.{i}"]


def _store(target, value):
    """Copy a computed parameter gradient into its view of the flat gradient block."""
    target[...] = value


class Conv(Layer):
    op_name = "conv2d"  # F.conv2d and F.conv2d_backward (looked up at each call)
    # cuda-convnet's randSparse: {input: the channels its filter groups read, in group order} (the
    # model draws them: Model.filter_conns); such an input is gathered first (F.channel_gather)
    filter_conns = {}

    def _args(self, i):
        s = self.spec
        return dict(stride=s.stride[i], padding=s.padding[i], groups=s.groups[i], ceil_mode=s.size_rule == "ceil")

    def _gathered(self, i, x):
        return F.channel_gather(x, self.filter_conns[i]) if i in self.filter_conns else x

    def compute(self, xs, ctx):
        out = None
        for i, x in enumerate(xs):
            bias = self.params[f"{self.name}.biases"] if i == 0 else None
            y = getattr(F, self.op_name)(self._gathered(i, x), _weights(self, i), bias, **self._args(i))
            out = y if out is None else F.accumulate(out, y)
        return out

    def compute_backward(self, grad, xs, out, ctx, needs):
        grads_in = []
        for i, x in enumerate(xs):
            gi, gw, gb = getattr(F, f"{self.op_name}_backward")(grad, self._gathered(i, x), _weights(self, i),
                                                                bias=i == 0, input_grad=bool(needs[i]), **self._args(i))
            _store(self.grads[f"{self.name}.weights.{i}"], gw)
            if i == 0:
                _store(self.grads[f"{self.name}.biases"], gb)
            if gi is not None and i in self.filter_conns:
                gi = F.channel_gather_backward(gi, self.filter_conns[i], x.shape[1])
            grads_in.append(gi)
        return grads_in


class Local(Conv):  # cuda-convnet's local: Conv's sum over inputs with unshared filters (F.local)
    op_name = "local"


class Fc(Layer):
    def compute(self, xs, ctx):
        out = None
        for i, x in enumerate(xs):
            bias = self.params[f"{self.name}.biases"] if i == 0 else None
            y = F.linear(x.reshape(x.shape[0], -1), _weights(self, i), bias)
            out = y if out is None else F.accumulate(out, y)
        return out

    def compute_backward(self, grad, xs, out, ctx, needs):
        grads_in = []
        for i, x in enumerate(xs):
            gi, gw, gb = F.linear_backward(grad, x.reshape(x.shape[0], -1), _weights(self, i), bias=i == 0)
            _store(self.grads[f"{self.name}.weights.{i}"], gw)
            if i == 0:
                _store(self.grads[f"{self.name}.biases"], gb)
            grads_in.append(gi.reshape(x.shape) if needs[i] else None)
        return grads_in


class Pool(Layer):  # pool=avg divides by the window's pixels inside the image, as cuda-convnet's AvgPooler
    def _args(self):
        s = self.spec
        args = dict(kernel_size=s.size, stride=s.stride, padding=0, ceil_mode=s.size_rule == "ceil")
        return args if s.pool == "max" else dict(args, count_include_pad=False)

    def _convnet_args(self):
        s = self.spec  # outputsX=0: every window that starts inside the image, as the graph counts
        return dict(size=s.size, stride=s.stride, start=s.start, outputs=s.outputs_x)

    def compute(self, xs, ctx):
        if self.spec.uses_convnet_geometry:  # a start before the image (cuda-convnet's pool geometry)
            pool = F.convnet_max_pool2d if self.spec.pool == "max" else F.convnet_avg_pool2d
            return pool(xs[0], **self._convnet_args())
        pool = F.max_pool2d if self.spec.pool == "max" else F.avg_pool2d
        return pool(xs[0], **self._args())

    def compute_backward(self, grad, xs, out, ctx, needs):
        if not needs[0]:
            return [None]
        if self.spec.uses_convnet_geometry:
            pool_backward = F.convnet_max_pool2d_backward if self.spec.pool == "max" else F.convnet_avg_pool2d_backward
            return [pool_backward(grad, xs[0], **self._convnet_args())]
        pool_backward = F.max_pool2d_backward if self.spec.pool == "max" else F.avg_pool2d_backward
        return [pool_backward(grad, xs[0], **self._args())]


class CrossMapNorm(Layer):  # cmrnorm: cuda-convnet's scale/pow/minDiv are torch's alpha/beta/k
    def _args(self):
        s = self.spec
        return dict(size=s.size, alpha=s.scale, beta=s.pow, k=s.min_div)

    def compute(self, xs, ctx):
        return F.local_response_norm(xs[0], **self._args())

    def compute_backward(self, grad, xs, out, ctx, needs):
        return [F.local_response_norm_backward(grad, xs[0], **self._args()) if needs[0] else None]


class SameMapNorm(CrossMapNorm):  # rnorm
    def compute(self, xs, ctx):
        return F.same_map_norm(xs[0], **self._args())

    def compute_backward(self, grad, xs, out, ctx, needs):
        return [F.same_map_norm_backward(grad, xs[0], **self._args()) if needs[0] else None]


class Dropout(Layer):  # hs, dropout, dropout2 (cfg.HsSpec); `index` numbers them for their random streams
    index = 0  # enable=false: the input passes through, or is scaled by keep (dropout2); the index still counts

    def _args(self, ctx, x):
        """The mask's stream: (seed, offset) of this layer and step; start: where this replica's rows
        begin in the batch (data-parallel replicas draw the whole batch's mask, slice by slice)."""
        start = ctx.row_start * (x.size // x.shape[0]) if x.shape[0] else 0
        return dict(p=1.0 - self.spec.keep, seed=ctx.seed, offset=ctx.dropout_offset(self.index), mode=self.spec.mode,
                    start=start)

    def _scaled_by_keep(self, x):
        return F.dropout(x, p=1.0 - self.spec.keep, training=False, mode="original")  # x * keep

    def compute(self, xs, ctx):
        if not self.spec.enabled:
            return self._scaled_by_keep(xs[0]) if self.spec.scales_when_disabled else xs[0].copy()
        if not ctx.train:
            return F.dropout(xs[0], p=1.0 - self.spec.keep, training=False, mode=self.spec.mode)
        return F.dropout(xs[0], training=True, **self._args(ctx, xs[0]))

    def compute_backward(self, grad, xs, out, ctx, needs):
        if not needs[0]:
            return [None]
        if not self.spec.enabled:
            return [self._scaled_by_keep(grad) if self.spec.scales_when_disabled else grad]
        return [F.dropout_backward(grad, **self._args(ctx, grad))]


class NeuronOnly(Layer):  # type=neuron: Layer.forward applies the neuron to the input as it is
    def compute(self, xs, ctx):
        return xs[0] if self.spec.neuron is not None else xs[0].copy()

    def compute_backward(self, grad, xs, out, ctx, needs):
        return [grad if needs[0] else None]


class Concat(Layer):  # pass and concat (cfg.ConcatSpec): the inputs' features per image, in input order
    def _flat(self, xs):
        """Images of one height and width concatenate along channels; others as flat feature rows."""
        if all(x.ndim == 4 for x in xs) and len({x.shape[2:] for x in xs}) == 1:
            return xs
        return [x.reshape(x.shape[0], -1) for x in xs]

    def compute(self, xs, ctx):
        return F.concat(self._flat(xs))

    def compute_backward(self, grad, xs, out, ctx, needs):
        flat = self._flat(xs)
        grads = F.concat_backward(grad.reshape(grad.shape[0], -1) if flat[0].ndim == 2 else grad,
                                  [x.shape[1] for x in flat])
        return [g.reshape(x.shape) if need else None for g, x, need in zip(grads, xs, needs)]


class Eltwise(Layer):  # eltsum, eltmax (cfg.EltwiseSpec): inputs of equal size, seen in the first's shape
    def _like_first(self, xs):
        return [x.reshape(xs[0].shape) for x in xs]

    def compute(self, xs, ctx):
        xs = self._like_first(xs)
        return F.eltwise_sum(xs, self.spec.coeffs) if self.spec.op == "sum" else F.eltwise_max(xs)

    def compute_backward(self, grad, xs, out, ctx, needs):
        if self.spec.op == "sum":
            grads = F.eltwise_sum_backward(grad, self.spec.coeffs)
        else:  # the maximum before the neuron, which Layer.forward kept when there is one
            top = out if self.spec.neuron is None else self.pre_neuron
            grads = F.eltwise_max_backward(grad, self._like_first(xs), top)
        return [g.reshape(x.shape) if need else None for g, x, need in zip(grads, xs, needs)]


LAYER_CLASSES = {
    cfg.ConvSpec: Conv,
    cfg.LocalSpec: Local,
    cfg.FcSpec: Fc,
    cfg.PoolSpec: Pool,
    cfg.HsSpec: Dropout,
    cfg.NeuronSpec: NeuronOnly,
    cfg.PassSpec: Concat,  # one input: a copy of it (and its neuron, if the file gives one)
    cfg.ConcatSpec: Concat,
    cfg.EltwiseSpec: Eltwise,
}


def make_layer(spec, device, params=None, grads=None):
    if isinstance(spec, cfg.NormSpec):
        cls = CrossMapNorm if spec.type == "cmrnorm" else SameMapNorm
    else:
        cls = LAYER_CLASSES[type(spec)]
    return cls(spec, device, params, grads)
