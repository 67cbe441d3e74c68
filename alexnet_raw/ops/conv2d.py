"""2-D convolution, forward and both backwards: kernels/conv2d.cu (implicit GEMM on the tile of
kernels/gemm_tile.cuh) and kernels/bias_grad.cu. Reference: torch.nn.functional.conv2d and its
autograd gradients; tests: tests/kernels/test_conv2d.py.

Output size per dimension, with span = in + 2*padding - kernel (must be >= 0):
    PyTorch (ceil_mode=False):       out = span // stride + 1
    cuda-convnet (ceil_mode=True):   out = ceil(span / stride) + 1
the extra right/bottom outputs of the ceil rule read zeros past the input (run #145's conv1: 224
input, 11x11, stride 4, no padding gives 55, where the floor rule gives 54). padding='valid' is 0;
padding='same' (stride 1) keeps the input size with PyTorch's split: (kernel - 1) // 2 zeros before,
the rest after, read past the input like the ceil rule's.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..launch import Launch, c_type, ceil_div, elementwise
from . import _checks, gemm_tiles
from .bias_grad import bias_grad_launch

SOURCE = "conv2d.cu"
INT32_MAX = 2**31 - 1
TILES = (gemm_tiles.GENERAL, gemm_tiles.FEW_ROWS)  # version 1's, conv2d.cu instantiates them for both dtypes
FLOAT_TILES = gemm_tiles.V2 + gemm_tiles.V3  # float only; version 4 is gemm.cu's (kernels/gemm_tile.cuh says why)
# Backward to the weights: a product with a long K (batch*OH*OW) and few outputs is split along K
# so that enough blocks run; each split covers at least MIN_K_PER_SPLIT of K.
TARGET_BLOCKS = gemm_tiles.MODEL_SMS * 2  # two blocks per SM of an H100 (the 128-register kernels' residency)
MIN_K_PER_SPLIT = 1024
MAX_SPLITS = 64


def output_size(size: int, kernel: int, stride: int, padding: int, ceil_mode: bool) -> int:
    """Outputs along one dimension (PyTorch's floor rule, or cuda-convnet's ceil rule); < 1 when
    the kernel is larger than the padded input."""
    span = size + 2 * padding - kernel
    if span < 0:
        return 0
    return (-(-span // stride) if ceil_mode else span // stride) + 1


@dataclasses.dataclass(frozen=True)
class ConvGeometry:
    batch: int
    channels: int
    height: int
    width: int
    filters: int
    out_height: int
    out_width: int
    kernel_h: int
    kernel_w: int
    stride_h: int
    stride_w: int
    pad_h: int
    pad_w: int
    groups: int

    def ints(self):
        """The kernels' shape arguments after `batch`, in order (C, H, W, F, OH, OW, KH, KW, sh, sw, ph, pw, groups)."""
        return (np.int32(self.batch),) + tuple(np.int32(v) for v in dataclasses.astuple(self)[1:])

    @property
    def channels_per_group(self):
        return self.channels // self.groups

    @property
    def filters_per_group(self):
        return self.filters // self.groups

    @property
    def taps(self):
        return self.kernel_h * self.kernel_w


def geometry(input, weight, stride, padding, groups, ceil_mode):
    """Checks the arguments; returns (backend, ConvGeometry)."""
    input = _checks.array(input, "input", ndim=4)
    weight = _checks.array(weight, "weight", ndim=4, like=input)
    sh, sw = _checks.pair(stride, "stride", minimum=1)
    ceil_mode = _checks.boolean(ceil_mode, "ceil_mode")
    same = isinstance(padding, str) and padding == "same"
    if isinstance(padding, str) and padding not in ("same", "valid"):
        raise ValueError(f"padding must be an int, a pair of ints, 'valid' or 'same', got {padding!r}")
    if same and (sh, sw) != (1, 1):
        raise ValueError(f"padding='same' needs stride 1 (as PyTorch), got stride {(sh, sw)}")
    if same and ceil_mode:
        raise ValueError("padding='same' fixes the output size; ceil_mode must be False")
    if isinstance(padding, str):
        ph = pw = 0
    else:
        ph, pw = _checks.pair(padding, "padding", minimum=0)
    groups = _checks.integer(groups, "groups", minimum=1, maximum=INT32_MAX)
    n, c, h, w = (int(v) for v in input.shape)
    f, cg, kh, kw = (int(v) for v in weight.shape)
    if c % groups:
        raise ValueError(f"groups ({groups}) must divide the input channels, got {c} channels (input shape {input.shape})")
    if f % groups:
        raise ValueError(f"groups ({groups}) must divide the filters, got {f} filters (weight shape {weight.shape})")
    if cg != c // groups:
        raise ValueError(f"weight must have input channels / groups = {c} / {groups} = {c // groups} channels "
                         f"in dimension 1, got weight shape {weight.shape} for input shape {input.shape}")
    if kh < 1 or kw < 1:
        raise ValueError(f"weight must have a non-empty kernel (F, C/groups, KH, KW), got shape {weight.shape}")
    if same:  # PyTorch's: (k - 1) // 2 zeros before, the rest after (read implicitly, as the ceil rule's)
        ph, pw = (kh - 1) // 2, (kw - 1) // 2
        oh, ow = h, w
    else:
        oh = output_size(h, kh, sh, ph, ceil_mode)
        ow = output_size(w, kw, sw, pw, ceil_mode)
    if oh < 1 or ow < 1:
        raise ValueError(f"weight: the kernel {(kh, kw)} is larger than the padded input {(h + 2 * ph, w + 2 * pw)} "
                         f"(input {(h, w)}, padding {(ph, pw)})")
    if groups * sh * sw > 65535:
        raise ValueError(f"groups * stride_h * stride_w must be at most 65535 (one grid layer each), got "
                         f"{groups} * {sh} * {sw}")
    for what, value in (("H*W", h * w), ("OH*OW", oh * ow), ("C/groups*KH*KW", cg * kh * kw),
                        ("F/groups*KH*KW", (f // groups) * kh * kw), ("channels", c), ("filters", f)):
        if value > INT32_MAX:
            raise ValueError(f"{what} must be at most {INT32_MAX}, got {value} (input {input.shape}, weight {weight.shape})")
    return _checks.backend(input), ConvGeometry(n, c, h, w, f, oh, ow, kh, kw, sh, sw, ph, pw, groups)


def _kernel(name, dtype, tile):
    return f"{name}<{c_type(dtype)}, {tile.rows}, {tile.columns}, {tile.version}>"


def instantiated_tiles(dtype):
    """The tile kernels conv2d.cu has for `dtype` (each product has the same): version 1's for both,
    versions 2 and 3 for float."""
    return TILES + (FLOAT_TILES if np.dtype(dtype) == np.float32 else ())


def model_tile(m, n, dtype, depth=1):
    """The tile kernel an M x N conv product (`depth` side by side) gets without forcing."""
    return gemm_tiles.choose_by_model(m, n, gemm_tiles.newest(instantiated_tiles(dtype)), depth,
                                      gemm_tiles.CONV_ISSUE_PER_FMA)


def _tile(m, n, dtype, product, depth):
    return gemm_tiles.pick(m, n, instantiated_tiles(dtype), gemm_tiles.CONV_ISSUE_PER_FMA,
                           f"conv2d's {product} in {np.dtype(dtype)}", depth)


def forward_launch(y, x, weight, bias, g: ConvGeometry) -> Launch:
    m, n = g.filters_per_group, g.batch * g.out_height * g.out_width
    tile = _tile(m, n, x.dtype, "forward", g.groups)
    has_bias = bias is not None
    return Launch(SOURCE, _kernel("conv2d_forward", x.dtype, tile), gemm_tiles.grid(m, n, tile, g.groups),
                  (gemm_tiles.THREADS, 1, 1), (y, x, weight, bias if has_bias else y, np.int32(has_bias)) + g.ints())


def backward_input_launch(grad_x, grad_y, weight, g: ConvGeometry) -> Launch:
    """One product per group and stride phase (grid z); x covers the largest phase's pixels."""
    m = g.channels_per_group
    n = g.batch * ceil_div(g.height, g.stride_h) * ceil_div(g.width, g.stride_w)
    tile = _tile(m, n, grad_y.dtype, "backward to the input", g.groups * g.stride_h * g.stride_w)
    return Launch(SOURCE, _kernel("conv2d_backward_input", grad_y.dtype, tile),
                  gemm_tiles.grid(m, n, tile, g.groups * g.stride_h * g.stride_w),
                  (gemm_tiles.THREADS, 1, 1), (grad_x, grad_y, weight) + g.ints())


def weight_splits(g: ConvGeometry, tile):
    """(splits, K per split) of the backward-to-weights product along K = batch*OH*OW."""
    m, n, k = g.filters_per_group, g.channels_per_group * g.taps, g.batch * g.out_height * g.out_width
    blocks = ceil_div(m, tile.rows) * ceil_div(n, tile.columns) * g.groups
    splits = max(1, min(ceil_div(TARGET_BLOCKS, blocks), k // MIN_K_PER_SPLIT, MAX_SPLITS, 65535 // g.groups))
    per_split = ceil_div(ceil_div(k, splits), gemm_tiles.K_SLICE) * gemm_tiles.K_SLICE
    return ceil_div(k, per_split), per_split


def backward_weight_launches(grad_w, grad_y, x, g: ConvGeometry, workspace_of):
    """The launches computing grad_w; `workspace_of(shape)` allocates the split partial sums."""
    m, n = g.filters_per_group, g.channels_per_group * g.taps
    tile = _tile(m, n, x.dtype, "backward to the weights", g.groups)
    splits, per_split = weight_splits(g, tile)
    out = grad_w if splits == 1 else workspace_of((splits,) + tuple(grad_w.shape))
    launches = [Launch(SOURCE, _kernel("conv2d_backward_weight", x.dtype, tile),
                       gemm_tiles.grid(m, n, tile, g.groups * splits), (gemm_tiles.THREADS, 1, 1),
                       (out, grad_y, x) + g.ints() + (np.int32(splits), np.int64(per_split)))]
    if splits > 1:
        grid, block = elementwise(grad_w.size)
        launches.append(Launch(SOURCE, f"conv2d_sum_splits<{c_type(x.dtype)}>", grid, block,
                               (grad_w, out, np.int64(grad_w.size), np.int32(splits))))
    return launches


def conv2d(input, weight, bias=None, stride=1, padding=0, groups=1, ceil_mode=False):
    """Convolution (cross-correlation, as torch.nn.functional.conv2d) of input (N, C, H, W) with
    weight (F, C/groups, KH, KW) plus bias (F,) if given; stride and zero padding an int or a pair
    (padding may also be 'valid' or 'same', as PyTorch's). ceil_mode=True is cuda-convnet's
    output-size rule. Returns (N, F, OH, OW); an unbatched input (C, H, W) gives (F, OH, OW)."""
    if _checks.is_unbatched_image(input):
        return conv2d(input[None], weight, bias, stride, padding, groups, ceil_mode)[0]
    input = _checks.tensor(input, "input", ndim=4)
    weight = _checks.tensor(weight, "weight", ndim=4, like=input)
    backend, g = geometry(input, weight, stride, padding, groups, ceil_mode)
    if bias is not None:
        bias = _checks.tensor(bias, "bias", ndim=1, like=input)
        _checks.same_shape(bias, "bias", (g.filters,), "the filters (F,)")
    out = backend.empty((g.batch, g.filters, g.out_height, g.out_width), input.dtype)
    if out.size:
        backend.launch(forward_launch(out, input, weight, bias, g))
    return out


def conv2d_backward(grad_output, input, weight, stride=1, padding=0, groups=1, ceil_mode=False, bias=True,
                    input_grad=True):
    """Gradients of conv2d for the upstream gradient grad_output (N, F, OH, OW): returns
    (grad_input, grad_weight, grad_bias), grad_bias None when bias=False, grad_input None when
    input_grad=False (a network's first layer needs none). Pass the forward's input, weight and
    arguments."""
    if _checks.is_unbatched_image(input):
        grad_input, grad_weight, grad_bias = conv2d_backward(_checks.unbatched_grad(grad_output), input[None], weight,
                                                             stride, padding, groups, ceil_mode, bias, input_grad)
        return (None if grad_input is None else grad_input[0]), grad_weight, grad_bias
    input = _checks.tensor(input, "input", ndim=4)
    weight = _checks.tensor(weight, "weight", ndim=4, like=input)
    backend, g = geometry(input, weight, stride, padding, groups, ceil_mode)
    grad_output = _checks.tensor(grad_output, "grad_output", like=input)
    _checks.same_shape(grad_output, "grad_output", (g.batch, g.filters, g.out_height, g.out_width),
                       "the convolution's output")
    bias = _checks.boolean(bias, "bias", "whether to return that gradient")
    input_grad = _checks.boolean(input_grad, "input_grad", "whether to return that gradient")
    grad_input = backend.empty(input.shape, input.dtype) if input_grad else None
    if input_grad and grad_input.size:
        if grad_output.size:
            backend.launch(backward_input_launch(grad_input, grad_output, weight, g))
        else:
            grad_input[...] = 0
    grad_weight = backend.empty(weight.shape, weight.dtype)
    if grad_weight.size:
        if grad_output.size:
            for launch in backward_weight_launches(grad_weight, grad_output, input, g,
                                                   lambda shape: backend.empty(shape, input.dtype)):
                backend.launch(launch)
        else:
            grad_weight[...] = 0
    grad_bias = None
    if bias:
        grad_bias = backend.empty((g.filters,), input.dtype)
        if g.filters:
            if grad_output.size:
                backend.launch(bias_grad_launch(grad_bias, grad_output))
            else:
                grad_bias[...] = 0
    return grad_input, grad_weight, grad_bias
