"""Locally connected layer (cuda-convnet's `local`), forward and both backwards: kernels/local.cu
(implicit GEMMs per output position on the tile of kernels/gemm_tile.cuh) and kernels/bias_grad.cu.
Reference: alexnet_raw/checks/torch_reference.py `local` (unfold + einsum) and its autograd gradients;
tests: tests/kernels/test_local.py.

A convolution whose filters are not shared: weight (OH, OW, F, C/groups, KH, KW) holds one filter
bank per output position, bias (F, OH, OW) one bias per filter and position (cuda-convnet's local
layers). Stride, zero padding and groups as conv2d; OH and OW, the weight's first two dimensions, must
be the output size conv2d's rule gives (alexnet_raw/ops/conv2d.py `output_size`): ceil_mode=True
is cuda-convnet's (modulesX = 1 + ceil((2*padding + size - filterSize) / stride)), False PyTorch's
floor. cuda-convnet's randSparse (random channel subsets per filter group) is not supported: groups
read contiguous channel ranges, as conv2d's.
"""

from __future__ import annotations

import numpy as np

from ..runtime.launch import Launch, c_type, ceil_div
from . import _checks, gemm_tiles
from .bias_grad import bias_grad_launch
from .conv2d import INT32_MAX, ConvGeometry, output_size

SOURCE = "local.cu"
TILES = (gemm_tiles.GENERAL, gemm_tiles.FEW_ROWS)  # version 1's, for both dtypes (kernels/local.cu says why)
MAX_GROUPS = 65535  # one grid layer each


def geometry(input, weight, stride, padding, groups, ceil_mode):
    """Checks the arguments; returns (backend, ConvGeometry) (out_height, out_width: the weight's
    positions)."""
    input = _checks.array(input, "input", ndim=4)
    weight = _checks.array(weight, "weight", ndim=6, like=input)
    sh, sw = _checks.pair(stride, "stride", minimum=1)
    ph, pw = _checks.pair(padding, "padding", minimum=0)
    groups = _checks.integer(groups, "groups", minimum=1, maximum=MAX_GROUPS)
    ceil_mode = _checks.boolean(ceil_mode, "ceil_mode")
    n, c, h, w = (int(v) for v in input.shape)
    oh, ow, f, cg, kh, kw = (int(v) for v in weight.shape)
    if c % groups:
        raise ValueError(f"groups ({groups}) must divide the input channels, got {c} channels (input shape {input.shape})")
    if f % groups:
        raise ValueError(f"groups ({groups}) must divide the filters, got {f} filters (weight shape {weight.shape})")
    if cg != c // groups:
        raise ValueError(f"weight must have input channels / groups = {c} / {groups} = {c // groups} channels in "
                         f"dimension 3 (OH, OW, F, C/groups, KH, KW), got weight shape {weight.shape} for input shape "
                         f"{input.shape}")
    if kh < 1 or kw < 1:
        raise ValueError(f"weight must have a non-empty kernel (OH, OW, F, C/groups, KH, KW), got shape {weight.shape}")
    expected = (output_size(h, kh, sh, ph, ceil_mode), output_size(w, kw, sw, pw, ceil_mode))
    if min(expected) < 1:
        raise ValueError(f"weight: the kernel {(kh, kw)} is larger than the padded input {(h + 2 * ph, w + 2 * pw)} "
                         f"(input {(h, w)}, padding {(ph, pw)})")
    if (oh, ow) != expected:
        rule = "ceil_mode=True, cuda-convnet's" if ceil_mode else "ceil_mode=False, PyTorch's"
        raise ValueError(f"weight must have the output size {expected} in dimensions 0 and 1 (one filter bank per "
                         f"output position: input {(h, w)}, kernel {(kh, kw)}, stride {(sh, sw)}, padding {(ph, pw)}, "
                         f"{rule} rule), got weight shape {weight.shape}")
    for what, value in (("H*W", h * w), ("OH*OW", oh * ow), ("C/groups*KH*KW", cg * kh * kw),
                        ("F/groups*KH*KW", (f // groups) * kh * kw), ("F*OH*OW", f * oh * ow), ("channels", c),
                        ("batch", n)):
        if value > INT32_MAX:
            raise ValueError(f"{what} must be at most {INT32_MAX}, got {value} (input {input.shape}, weight {weight.shape})")
    return _checks.backend(input), ConvGeometry(n, c, h, w, f, oh, ow, kh, kw, sh, sw, ph, pw, groups)


def _kernel(name, dtype, tile):
    return f"{name}<{c_type(dtype)}, {tile.rows}, {tile.columns}, {tile.version}>"


def _launch(name, dtype, m, n, blocks, g: ConvGeometry, what, args):
    """One product of M x N per grid slot of `blocks` (output positions or input pixels) and group:
    grid (blocks * column blocks, row blocks, groups); the tile by the issue model (conv2d.cu's table:
    the same stagers and K loop) or gemm_tiles.forced."""
    tile = gemm_tiles.pick(m, n, TILES, gemm_tiles.CONV_ISSUE_PER_FMA, f"local's {what} in {np.dtype(dtype)}",
                           blocks * g.groups)
    columns = ceil_div(n, tile.columns)
    if blocks * columns > INT32_MAX:
        raise ValueError(f"local's {what}: {blocks} products of {columns} column blocks exceed the grid's "
                         f"{INT32_MAX} blocks (batch {g.batch})")
    return Launch(SOURCE, _kernel(name, dtype, tile), (blocks * columns, ceil_div(m, tile.rows), g.groups),
                  (gemm_tiles.THREADS, 1, 1), args + g.ints() + (np.int32(columns),))


def forward_launch(y, x, weight, bias, g: ConvGeometry) -> Launch:
    """M = filters per group, N = batch, per output position and group."""
    has_bias = bias is not None
    return _launch("local_forward", x.dtype, g.filters_per_group, g.batch, g.out_height * g.out_width, g, "forward",
                   (y, x, weight, bias if has_bias else y, np.int32(has_bias)))


def backward_input_launch(grad_x, grad_y, weight, g: ConvGeometry) -> Launch:
    """M = channels per group, N = batch, per input pixel and group."""
    return _launch("local_backward_input", grad_y.dtype, g.channels_per_group, g.batch, g.height * g.width, g,
                   "backward to the input", (grad_x, grad_y, weight))


def backward_weight_launch(grad_w, grad_y, x, g: ConvGeometry) -> Launch:
    """M = filters per group, N = channels per group x taps, K = batch, per output position and group."""
    return _launch("local_backward_weight", x.dtype, g.filters_per_group, g.channels_per_group * g.taps,
                   g.out_height * g.out_width, g, "backward to the weights", (grad_w, grad_y, x))


def local(input, weight, bias=None, stride=1, padding=0, groups=1, ceil_mode=True):
    """Locally connected layer of input (N, C, H, W) with weight (OH, OW, F, C/groups, KH, KW) (a filter
    bank per output position) plus bias (F, OH, OW) if given; stride and zero padding an int or a pair;
    ceil_mode=True (the default, cuda-convnet's) or False selects the output-size rule OH, OW must
    follow. Returns (N, F, OH, OW); an unbatched input (C, H, W) gives (F, OH, OW)."""
    if _checks.is_unbatched_image(input):
        return local(input[None], weight, bias, stride, padding, groups, ceil_mode)[0]
    backend, g = geometry(input, weight, stride, padding, groups, ceil_mode)  # before any copy of a strided array
    input = _checks.tensor(input, "input", ndim=4)
    weight = _checks.tensor(weight, "weight", ndim=6, like=input)
    if bias is not None:
        bias = _checks.tensor(bias, "bias", ndim=3, like=input)
        _checks.same_shape(bias, "bias", (g.filters, g.out_height, g.out_width), "the filters and positions (F, OH, OW)")
    out = backend.empty((g.batch, g.filters, g.out_height, g.out_width), input.dtype)
    if out.size:
        backend.launch(forward_launch(out, input, weight, bias, g))
    return out


def local_backward(grad_output, input, weight, stride=1, padding=0, groups=1, ceil_mode=True, bias=True,
                   input_grad=True):
    """Gradients of local for the upstream gradient grad_output (N, F, OH, OW): returns (grad_input,
    grad_weight, grad_bias), grad_bias (F, OH, OW) or None when bias=False, grad_input None when
    input_grad=False. Pass the forward's input, weight and arguments."""
    if _checks.is_unbatched_image(input):
        grad_input, grad_weight, grad_bias = local_backward(_checks.unbatched_grad(grad_output), input[None], weight,
                                                            stride, padding, groups, ceil_mode, bias, input_grad)
        return (None if grad_input is None else grad_input[0]), grad_weight, grad_bias
    backend, g = geometry(input, weight, stride, padding, groups, ceil_mode)  # before any copy of a strided array
    input = _checks.tensor(input, "input", ndim=4)
    weight = _checks.tensor(weight, "weight", ndim=6, like=input)
    grad_output = _checks.tensor(grad_output, "grad_output", like=input)
    _checks.same_shape(grad_output, "grad_output", (g.batch, g.filters, g.out_height, g.out_width),
                       "the layer's output")
    bias = _checks.boolean(bias, "bias", "whether to return that gradient")
    input_grad = _checks.boolean(input_grad, "input_grad", "whether to return that gradient")
    empty = grad_output.size == 0  # a batch of 0: zero gradients, nothing launched
    grad_input = backend.empty(input.shape, input.dtype) if input_grad else None
    if input_grad and grad_input.size:
        if empty:
            grad_input[...] = 0
        else:
            backend.launch(backward_input_launch(grad_input, grad_output, weight, g))
    grad_weight = backend.empty(weight.shape, weight.dtype)
    if grad_weight.size:
        if empty:
            grad_weight[...] = 0
        else:
            backend.launch(backward_weight_launch(grad_weight, grad_output, input, g))
    grad_bias = None
    if bias:
        grad_bias = backend.empty((g.filters, g.out_height, g.out_width), input.dtype)
        if grad_bias.size:
            if empty:
                grad_bias[...] = 0
            else:  # bias_grad.cu's per-channel sum, each (f, oy, ox) a channel of gy seen as (batch, F*OH*OW)
                backend.launch(bias_grad_launch(grad_bias, grad_output.reshape(g.batch, -1)))
    return grad_input, grad_weight, grad_bias
