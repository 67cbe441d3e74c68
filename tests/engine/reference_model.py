"""The network of a Model, computed again by PyTorch from its graph and parameters (autograd for the
gradients): the engine's reference in the tests. Dropout uses the mask of our generator (tested on
its own in tests/kernels/test_dropout.py), taken from the same (seed, offset) the engine uses."""

import numpy as np
import torch

from alexnet_raw import functional as F
from alexnet_raw.checks import torch_reference as reference
from alexnet_raw.engine import cfg


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
        conns = model.filter_conns.get(name, {})  # cuda-convnet's randSparse: the channels each group reads
        xs = [reference.channel_gather(xi, conns[i]) if i in conns else xi for i, xi in enumerate(xs)]
        if isinstance(spec, cfg.LocalSpec):
            y = sum(reference.local(xi, params[f"{name}.weights.{i}"], None, spec.stride[i], spec.padding[i],
                                    spec.groups[i], ceil_mode=spec.size_rule == "ceil")
                    for i, xi in enumerate(xs))
            y = y + params[f"{name}.biases"][None]
        elif isinstance(spec, cfg.ConvSpec):
            y = sum(reference.conv2d(xi, params[f"{name}.weights.{i}"], None, spec.stride[i], spec.padding[i],
                                     spec.groups[i], ceil_mode=spec.size_rule == "ceil")
                    for i, xi in enumerate(xs))
            y = y + params[f"{name}.biases"][None, :, None, None]
        elif isinstance(spec, cfg.FcSpec):
            y = sum(reference.linear(xi.flatten(1), params[f"{name}.weights.{i}"]) for i, xi in enumerate(xs))
            y = y + params[f"{name}.biases"]
        elif isinstance(spec, cfg.PoolSpec) and spec.uses_convnet_geometry:
            y = reference.convnet_pool2d(xs[0], spec.pool, spec.size, spec.stride, spec.start, spec.outputs_x)
        elif isinstance(spec, cfg.PoolSpec):
            ceil_mode = spec.size_rule == "ceil"
            if spec.pool == "max":
                y = reference.max_pool2d(xs[0], spec.size, spec.stride, 0, ceil_mode=ceil_mode)
            else:
                y = reference.avg_pool2d(xs[0], spec.size, spec.stride, 0, ceil_mode=ceil_mode, count_include_pad=False)
        elif spec.type == "cmrnorm":
            y = reference.local_response_norm(xs[0], spec.size, spec.scale, spec.pow, spec.min_div)
        elif spec.type == "rnorm":
            y = reference.same_map_norm(xs[0], spec.size, spec.scale, spec.pow, spec.min_div)
        elif isinstance(spec, cfg.NeuronSpec):
            y = xs[0]
        elif isinstance(spec, cfg.ConcatSpec):  # pass, concat
            stack = all(xi.dim() == 4 for xi in xs) and len({tuple(xi.shape[2:]) for xi in xs}) == 1
            y = reference.concat(xs if stack else [xi.flatten(1) for xi in xs])
        elif isinstance(spec, cfg.EltwiseSpec):
            like_first = [xi.reshape(xs[0].shape) for xi in xs]
            y = (reference.eltwise_sum(like_first, spec.coeffs) if spec.op == "sum"
                 else reference.eltwise_max(like_first))
        elif isinstance(spec, cfg.HsSpec):
            p = 1.0 - spec.keep
            if not spec.enabled:  # dropout2 scales by keep in every pass; hs and dropout pass through
                y = xs[0] * spec.keep if spec.scales_when_disabled else xs[0]
            elif train:
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
            y = reference.neuron(y, *spec.neuron)
        out[name] = y
    return out[g.logits]


def train_step(model, state, momentum, x, labels, epoch_scale=1.0, progress=0.0):
    """Loss, gradients and the parameters and momentum after cuda-convnet's update, all in torch
    (the rates of the params file's schedules at `progress`)."""
    params = {k: torch.from_numpy(v.copy()).requires_grad_() for k, v in state.items()}
    logits = forward(model, params, torch.from_numpy(x), train=True)
    loss = reference.cross_entropy(logits, torch.from_numpy(labels.astype(np.int64)))
    if model.graph.cost is not None:  # cuda-convnet's weight of the cost
        loss = loss * model.graph.nodes[model.graph.cost].spec.coeff
    loss.backward()
    new_params, new_momentum = {}, {}
    for key, p in params.items():
        layer, kind = key.split(".")[0], key.split(".")[1]
        learn = model.learn[layer]
        eps_w, eps_b = learn.rates(progress)
        if kind == "weights":
            i = int(key.split(".")[2])
            eps, mom, wc = eps_w[i] * epoch_scale, learn.mom_w[i], learn.wc[i]
        else:
            eps, mom, wc = eps_b * epoch_scale, learn.mom_b, 0.0
        w, inc = reference.cuda_convnet_update(p.detach(), p.grad, torch.from_numpy(momentum[key]), eps, mom, wc)
        bound = learn.norm_bound(i) if kind == "weights" else None
        if bound is not None:  # wball: hard on conv and fc filters, a maximum on local ones
            local = isinstance(model.graph.nodes[layer].spec, cfg.LocalSpec)
            w = reference.norm_constraint(w, bound, "max" if local else "hard", 3 if local else 1)
        new_momentum[key], new_params[key] = inc.numpy(), w.numpy()
    grads = {k: p.grad.numpy() for k, p in params.items()}
    return float(loss.detach()), logits.detach().numpy(), grads, new_params, new_momentum


# Tolerance policy for whole networks. float64: sums in other orders than torch's, through every
# layer: 1e-9 relative (measured below 1e-14 on the norm). float32 forward: 2e-3 relative, with an
# absolute floor of 2e-4 of the largest value. Gradients are compared in float64 only: in float32
# a max-pool window whose two largest inputs differ by an ulp may pick the other one than torch's,
# which moves that window's whole gradient (measured: 1.2% of the norm of conv1's gradient in #145),
# a legitimate result that no elementwise tolerance separates from a bug.
TOL = {np.float32: (2e-3, 2e-4), np.float64: (1e-9, 1e-12)}


def close(ours, ref, what, dtype=np.float64):
    rtol, atol_scale = TOL[dtype]
    scale = max(float(np.abs(ref).max()), 1e-30)
    np.testing.assert_allclose(ours, ref, rtol=rtol, atol=atol_scale * scale, err_msg=what)


def assert_train_step_matches(model, x, labels, progress=0.0):
    """One model.train_step against this module's train_step in float64: logits, loss, every
    gradient, every updated parameter and momentum within the whole-network tolerance."""
    state, momentum = model.state_dict(), model.momentum_state_dict()
    ref_loss, ref_logits, ref_grads, ref_params, ref_momentum = train_step(model, state, momentum, x, labels,
                                                                           progress=progress)
    loss, logits = model.train_step(x, labels, progress=progress)
    close(logits, ref_logits, "logits")
    assert abs(float(loss) - ref_loss) <= 1e-12 * abs(ref_loss), (float(loss), ref_loss)
    for key, grad in model.gradient_dict().items():
        close(grad, ref_grads[key], f"gradient {key}")
    for key, value in model.state_dict().items():
        close(value, ref_params[key], f"updated {key}")
    for key, value in model.momentum_state_dict().items():
        close(value, ref_momentum[key], f"momentum {key}")
