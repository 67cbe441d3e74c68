"""The network of a Model, computed again by PyTorch from its graph and parameters (autograd for the
gradients): the engine's reference in the tests. Dropout uses the mask of our generator (tested on
its own in tests/kernels/test_dropout.py), taken from the same (seed, offset) the engine uses."""

import numpy as np
import torch
import torch.nn.functional as TF

from alexnet_raw import functional as F
from alexnet_raw.engine import cfg


def _ceil_pad(x, spec, i, out_hw):
    """Zero padding on the right and bottom that cuda-convnet's ceil rule reads implicitly."""
    f, s, p = spec.filter_size[i], spec.stride[i], spec.padding[i]
    extra = [max(0, (o - 1) * s + f - (size + 2 * p)) for o, size in zip(out_hw, x.shape[2:])]
    return TF.pad(x, (0, extra[1], 0, extra[0])) if any(extra) else x


# cuda-convnet's neurons as torch expressions: (name) -> f(x, a, b)
NEURONS = {
    "relu": lambda x, a, b: torch.relu(x),
    "logistic": lambda x, a, b: torch.sigmoid(x),
    "tanh": lambda x, a, b: a * torch.tanh(b * x),
    "brelu": lambda x, a, b: torch.clamp(x, 0.0, a),
    "abs": lambda x, a, b: torch.abs(x),
    "square": lambda x, a, b: x * x,
    "sqrt": lambda x, a, b: torch.sqrt(x),
    "linear": lambda x, a, b: a * x + b,
    "softrelu": lambda x, a, b: TF.softplus(x),
}


def same_map_norm(x, size, alpha, beta, k):
    before = size // 2
    squares = TF.pad(x * x, (before, size - 1 - before, before, size - 1 - before))
    sums = TF.avg_pool2d(squares, size, stride=1, divisor_override=1)
    return x / (k + alpha / (size * size) * sums) ** beta


def forward(model, params, x, train, step=None):
    """Logits of model's network on x (torch tensors), with parameters `params` (name -> tensor)."""
    g = model.graph
    step = model.steps if step is None else step
    out = {g.image_input: x}
    dropout_index = 0
    for name in g.order:
        spec = g.nodes[name].spec
        if isinstance(spec, (cfg.DataSpec, cfg.SoftmaxSpec, cfg.CostSpec)):
            continue
        xs = [out[i] for i in spec.inputs]
        if isinstance(spec, cfg.ConvSpec):
            shape = model.shapes[name]
            y = sum(TF.conv2d(_ceil_pad(xi, spec, i, shape[1:]) if spec.size_rule == "ceil" else xi,
                              params[f"{name}.weights.{i}"], None, spec.stride[i], spec.padding[i], 1, spec.groups[i])
                    for i, xi in enumerate(xs))
            y = y + params[f"{name}.biases"][None, :, None, None]
        elif isinstance(spec, cfg.FcSpec):
            y = sum(xi.flatten(1) @ params[f"{name}.weights.{i}"].T for i, xi in enumerate(xs))
            y = y + params[f"{name}.biases"]
        elif isinstance(spec, cfg.PoolSpec):
            ceil_mode = spec.size_rule == "ceil"
            if spec.pool == "max":
                y = TF.max_pool2d(xs[0], spec.size, spec.stride, 0, ceil_mode=ceil_mode)
            else:
                y = TF.avg_pool2d(xs[0], spec.size, spec.stride, 0, ceil_mode=ceil_mode, count_include_pad=False)
        elif spec.type == "cmrnorm":
            y = TF.local_response_norm(xs[0], spec.size, spec.scale, spec.pow, spec.min_div)
        elif spec.type == "rnorm":
            y = same_map_norm(xs[0], spec.size, spec.scale, spec.pow, spec.min_div)
        elif isinstance(spec, cfg.NeuronSpec):
            y = xs[0]
        elif isinstance(spec, cfg.HsSpec):
            p = 1.0 - spec.keep
            if train:
                ones = np.ones(tuple(xs[0].shape), model.dtype)
                offset = step * model.dropout_layers + dropout_index
                scale = F.dropout(ones, p=p, seed=model.seed, offset=offset, mode=spec.mode)
                y = xs[0] * torch.from_numpy(scale)
            else:
                y = xs[0] * spec.keep if spec.mode == "original" else xs[0]
            dropout_index += 1
        else:
            raise AssertionError(spec)
        if spec.neuron is not None:
            y = NEURONS[spec.neuron[0]](y, *spec.neuron[1:])
        out[name] = y
    return out[g.logits]


def train_step(model, state, momentum, x, labels, epoch_scale=1.0):
    """Loss, gradients and the parameters and momentum after cuda-convnet's update, all in torch."""
    params = {k: torch.from_numpy(v.copy()).requires_grad_() for k, v in state.items()}
    logits = forward(model, params, torch.from_numpy(x), train=True)
    loss = TF.cross_entropy(logits, torch.from_numpy(labels.astype(np.int64)))
    loss.backward()
    new_params, new_momentum = {}, {}
    for key, p in params.items():
        layer, kind = key.split(".")[0], key.split(".")[1]
        learn = model.learn[layer]
        if kind == "weights":
            i = int(key.split(".")[2])
            eps, mom, wc = learn.eps_w[i] * epoch_scale, learn.mom_w[i], learn.wc[i]
        else:
            eps, mom, wc = learn.eps_b * epoch_scale, learn.mom_b, 0.0
        w = p.detach()
        if eps == 0:
            inc = torch.from_numpy(momentum[key])
        else:
            inc = mom * torch.from_numpy(momentum[key]) - eps * (p.grad + wc * w)
        new_momentum[key] = inc.numpy()
        new_params[key] = (w + inc).numpy() if eps else w.numpy()
    grads = {k: p.grad.numpy() for k, p in params.items()}
    return float(loss.detach()), logits.detach().numpy(), grads, new_params, new_momentum
