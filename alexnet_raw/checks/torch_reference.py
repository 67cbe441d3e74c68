"""Each op's PyTorch reference, written once. The kernel tests (tests/kernels/test_<op>.py),
`alexnet-raw verify`, the bench's PyTorch side (alexnet_raw/perf/bench/torch_side.py) and the engine's
reference model (tests/engine/reference_model.py) all compute an op through this module, so they
cannot drift apart. Functions take and return torch tensors (autograd works through them);
`forward_backward` runs one on NumPy arrays and returns the output and the input gradients.

PyTorch stays optional for users: torch is imported when a function runs, not when this module is
imported.

Where cuda-convnet's semantics differ from a plain torch call the difference is written here, once:
  conv2d        the ceil output-size rule (cuda-convnet's): the extra right/bottom outputs read
                implicit zeros past the input, i.e. torch's conv of the input zero-padded there
  local         cuda-convnet's locally connected layer (no torch op): torch's unfold of the input (padded
                for the ceil rule as conv2d's), one einsum over each output position's own filter bank
  same_map_norm cuda-convnet's rnorm (no torch op): x / (k + alpha * mean of the squares over a
                size x size window, zero outside the image, size // 2 before) ** beta
  neuron        the eight neurons as torch expressions; softrelu's threshold per dtype (below)
  convnet_pool2d cuda-convnet's pool layer with a negative start and an outputs count: torch's
                pooling of the image padded with -inf (max) or zeros over a count of the pixels
                inside (avg)
  eltwise_max   cuda-convnet2's eltmax: the maximum, whose gradient goes whole to every input equal
                to it (torch.maximum and amax share it at ties)
"""

from __future__ import annotations

import numpy as np

from ..ops import conv2d as conv_ops

# torch.nn.functional.softplus returns x itself where x > threshold (20 by default)
TORCH_SOFTPLUS_THRESHOLD = 20.0


def _torch():
    import torch

    return torch


def softplus_threshold(dtype) -> float:
    """The threshold at which torch's softplus computes log(1 + exp(x)) exactly in `dtype`:
    PyTorch's own default (20) where that is already past the point at which log1p(exp(-x)) is
    below half an ulp of x (float32: from x = 15 on, x + log1p(exp(-x)) rounds to x), else that
    point (float64: 34; the default 20 would drop 2e-9, about 1e-10 of x, far above float64's
    rounding). Our kernel (kernels/neuron.cu) computes x + log1p(exp(-x)) with no threshold."""
    dtype = np.dtype(dtype)
    t = 1
    while np.exp(-t) >= np.spacing(dtype.type(t)) / 2:  # exp(-x) falls and the ulp grows with x
        t += 1
    return float(max(TORCH_SOFTPLUS_THRESHOLD, t))


NEURON_NAMES = ("relu", "logistic", "tanh", "brelu", "abs", "square", "sqrt", "linear", "softrelu")


def neuron(x, name, a=None, b=None):
    """cuda-convnet's neuron `name` (parameters a, b as parse_neuron gives them) of tensor x."""
    torch = _torch()
    if name == "relu":
        return torch.relu(x)
    if name == "logistic":
        return torch.sigmoid(x)
    if name == "tanh":
        return a * torch.tanh(b * x)
    if name == "brelu":
        return torch.clamp(x, 0, a)
    if name == "abs":
        return torch.abs(x)
    if name == "square":
        return x * x
    if name == "sqrt":
        return torch.sqrt(x)
    if name == "linear":
        return a * x + b
    if name == "softrelu":
        dtype = {torch.float32: np.float32, torch.float64: np.float64}[x.dtype]
        return torch.nn.functional.softplus(x, threshold=softplus_threshold(dtype))
    raise ValueError(f"unknown neuron {name!r}: expected one of {', '.join(NEURON_NAMES)}")


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def ceil_rule_pad(x, kernel_size, stride, padding):
    """x (N, C, H, W) zero-padded on the right and bottom by what cuda-convnet's ceil rule reads past
    the input (nothing where the floor and ceil rules agree)."""
    torch = _torch()
    (kh, kw), (sh, sw), (ph, pw) = _pair(kernel_size), _pair(stride), _pair(padding)
    extra = []
    for size, k, s, p in ((x.shape[2], kh, sh, ph), (x.shape[3], kw, sw, pw)):
        out = conv_ops.output_size(size, k, s, p, True)
        extra.append(max(0, (out - 1) * s + k - (size + 2 * p)))
    return torch.nn.functional.pad(x, (0, extra[1], 0, extra[0])) if any(extra) else x


def conv2d(x, w, b=None, stride=1, padding=0, groups=1, ceil_mode=False):
    """torch.nn.functional.conv2d, with cuda-convnet's ceil output-size rule when ceil_mode."""
    torch = _torch()
    if ceil_mode:
        x = ceil_rule_pad(x, w.shape[2:], stride, padding)
    return torch.nn.functional.conv2d(x, w, b, _pair(stride), _pair(padding), groups=groups)


def local(x, w, b=None, stride=1, padding=0, groups=1, ceil_mode=True):
    """cuda-convnet's locally connected layer: x (N, C, H, W), w (OH, OW, F, C/groups, KH, KW) (a filter
    bank per output position), b (F, OH, OW); stride, zero padding and groups as conv2d, the ceil
    output-size rule when ceil_mode (the extra right/bottom outputs read zeros past the input)."""
    torch = _torch()
    oh, ow, f, cg, kh, kw = w.shape
    if ceil_mode:
        x = ceil_rule_pad(x, (kh, kw), stride, padding)
    cols = torch.nn.functional.unfold(x, (kh, kw), padding=_pair(padding), stride=_pair(stride))  # (N, C*KH*KW, L)
    if cols.shape[-1] != oh * ow:
        raise ValueError(f"weight's positions {(oh, ow)} are not the layer's output size ({cols.shape[-1]} windows)")
    cols = cols.reshape(x.shape[0], groups, cg * kh * kw, oh, ow)
    y = torch.einsum("ngkyx,yxgfk->ngfyx", cols, w.reshape(oh, ow, groups, f // groups, cg * kh * kw))
    y = y.reshape(x.shape[0], f, oh, ow)
    return y if b is None else y + b


def linear(x, w, b=None):
    return _torch().nn.functional.linear(x, w, b)


def max_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False):
    return _torch().nn.functional.max_pool2d(x, kernel_size, stride, padding, ceil_mode=ceil_mode)


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    return _torch().nn.functional.avg_pool2d(x, kernel_size, stride, padding, ceil_mode=ceil_mode,
                                             count_include_pad=count_include_pad)


def convnet_pool2d(x, pool, size, stride, start=0, outputs=0):
    """cuda-convnet's pool layer from torch ops: the image padded before by -start (and after as far
    as the last window reaches) with -inf (max) or zeros (avg, divided by a count of the pixels
    inside), pooled, `outputs` windows (0: cuda-convnet's count) kept."""
    from ..ops.pool_geometry import convnet_output_size

    torch = _torch()
    tf = torch.nn.functional
    h, w = x.shape[-2:]
    oh = outputs or convnet_output_size(h, size, stride, start)
    ow = outputs or convnet_output_size(w, size, stride, start)
    pad = (-start, max(0, start + (ow - 1) * stride + size - w), -start, max(0, start + (oh - 1) * stride + size - h))
    if pool == "max":
        y = tf.max_pool2d(tf.pad(x, pad, value=float("-inf")), size, stride)
    else:
        total = tf.avg_pool2d(tf.pad(x, pad), size, stride, divisor_override=1)
        count = tf.avg_pool2d(tf.pad(torch.ones_like(x[:1, :1]), pad), size, stride, divisor_override=1)
        y = total / count
    return y[..., :oh, :ow]


def local_response_norm(x, size, alpha, beta=0.75, k=1.0):
    """cuda-convnet's cmrnorm is torch's local_response_norm (alpha divided by size inside)."""
    return _torch().nn.functional.local_response_norm(x, size, alpha, beta, k)


def same_map_norm(x, size, alpha, beta=0.75, k=1.0):
    """cuda-convnet's rnorm: x / (k + alpha / size^2 * sum of the squares over the size x size window
    at the same map, zero outside the image, size // 2 before and (size - 1) // 2 after) ** beta."""
    torch = _torch()
    before, after = size // 2, (size - 1) // 2
    squares = torch.nn.functional.pad(x * x, (before, after, before, after))
    mean = torch.nn.functional.avg_pool2d(squares, size, stride=1)  # divisor size^2
    return x / (k + alpha * mean) ** beta


def relu(x):
    return _torch().relu(x)


def eltwise_sum(xs, coeffs):
    """cuda-convnet2's eltsum: sum_i coeffs[i] * xs[i]."""
    out = coeffs[0] * xs[0]
    for x, c in zip(xs[1:], coeffs[1:]):
        out = out + c * x
    return out


def eltwise_max(xs):
    """cuda-convnet2's eltmax: the element-wise maximum (torch.maximum, NaN propagates), whose
    backward gives the whole upstream gradient to every input equal to it."""
    torch = _torch()

    class EltwiseMax(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *inputs):
            top = inputs[0]
            for x in inputs[1:]:
                top = torch.maximum(top, x)
            ctx.save_for_backward(top, *inputs)
            return top

        @staticmethod
        def backward(ctx, grad):
            top, *inputs = ctx.saved_tensors
            return tuple(torch.where(x == top, grad, torch.zeros_like(grad)) for x in inputs)

    return EltwiseMax.apply(*xs)


def norm_constraint(w, bound, mode="hard", row_dims=1):
    """cuda-convnet2's wball on a tensor: each row (the first row_dims dimensions) scaled to norm
    bound ("hard"; zero rows kept) or, where longer, down to it ("max")."""
    torch = _torch()
    rows = w.reshape(int(np.prod(w.shape[:row_dims])), -1)
    norm = torch.linalg.vector_norm(rows, dim=1, keepdim=True)
    scale = torch.where(norm > 0, bound / torch.where(norm > 0, norm, torch.ones_like(norm)), torch.ones_like(norm))
    if mode == "max":
        scale = torch.where(norm > bound, scale, torch.ones_like(norm))
    return (rows * scale).reshape(w.shape)


def channel_gather(x, index):
    """cuda-convnet's random sparse connectivity: x[:, index] (index_select; its autograd sums the
    gradients of a channel taken several times)."""
    torch = _torch()
    return torch.index_select(x, 1, torch.as_tensor(np.asarray(index, dtype=np.int64)))


def concat(xs):
    """cuda-convnet2's concat (and pass of several inputs): torch.cat along axis 1."""
    return _torch().cat(xs, dim=1)


def cross_entropy(logits, labels):
    """Mean softmax cross-entropy of (N, C) logits and int64 labels."""
    return _torch().nn.functional.cross_entropy(logits, labels)


def cuda_convnet_update(w, grad, inc, eps, mom, wc):
    """cuda-convnet's Weights::update on tensors: inc = mom * inc - eps * (grad + wc * w), w += inc;
    eps 0 freezes the layer (inc unchanged, w unchanged). Returns (new w, new inc)."""
    if eps == 0:
        return w, inc
    inc = mom * inc - eps * (grad + wc * w)
    return w + inc, inc


def forward_backward(fn, arrays, grad=None):
    """fn applied to the NumPy `arrays` as torch tensors (None passes through). Returns the output as a
    NumPy array and, for upstream gradient `grad` (None: none), the gradients of every array (None for
    a None input)."""
    torch = _torch()
    tensors = [None if a is None else torch.from_numpy(np.asarray(a)).requires_grad_(grad is not None)
               for a in arrays]
    y = fn(*tensors)
    if grad is None:
        return y.detach().numpy(), None
    y.backward(torch.from_numpy(np.asarray(grad)))
    return y.detach().numpy(), [None if t is None else t.grad.numpy() for t in tensors]
