"""2-D convolution, forward and both backwards: kernels/conv2d.cu (implicit GEMM on the tile of
kernels/gemm_tile.cuh) and kernels/bias_grad.cu. Reference: torch.nn.functional.conv2d with the ceil
rule's padding (alexnet_raw/checks/torch_reference.py `conv2d`) and its autograd gradients; tests:
tests/kernels/test_conv2d.py.

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

from ..runtime.launch import Launch, c_type, ceil_div
from . import _checks, gemm_tiles
from .bias_grad import bias_grad_launch
from .split_sum import split_sum_launch

SOURCE = "conv2d.cu"
INT32_MAX = 2**31 - 1
TILES = (gemm_tiles.GENERAL, gemm_tiles.FEW_ROWS)  # version 1's, conv2d.cu instantiates them for both dtypes
FLOAT_TILES = gemm_tiles.V2 + gemm_tiles.V3  # version 4 is gemm.cu's (kernels/gemm_tile.cuh says why)
DOUBLE_TILES = (gemm_tiles.DOUBLE_V2, gemm_tiles.DOUBLE_V3)  # for the float64 checks; never chosen automatically
# Kernels the automatic choice leaves out because their hot loop touches local memory (spills) on
# sm_90 (`alexnet-raw kernels`; the kernel report's test holds this list to what ptxas says): that
# shape takes its previous version.
SPILLING = {"backward_weight": (gemm_tiles.V3[0],)}


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
    versions 2 and 3 at every shape for float, at one shape each for double."""
    return TILES + (FLOAT_TILES if np.dtype(dtype) == np.float32 else DOUBLE_TILES)


def candidate_tiles(dtype, product="forward"):
    """The kernels the automatic choice considers for `product` (forward, backward_input,
    backward_weight): the newest version of each shape in float that does not spill (SPILLING),
    version 1's in double (its later versions are there for the float64 checks)."""
    if np.dtype(dtype) != np.float32:
        return TILES
    return gemm_tiles.newest(t for t in instantiated_tiles(dtype) if t not in SPILLING.get(product, ()))


def model_tile(m, n, dtype, depth=1):
    """The tile kernel an M x N conv product (`depth` side by side) gets without forcing."""
    return gemm_tiles.choose_by_model(m, n, candidate_tiles(dtype), depth, gemm_tiles.CONV_ISSUE_PER_FMA)


def _tile(m, n, dtype, product, depth):
    return gemm_tiles.pick(m, n, instantiated_tiles(dtype), gemm_tiles.CONV_ISSUE_PER_FMA,
                           f"conv2d's {product} in {np.dtype(dtype)}", depth, candidates=candidate_tiles(dtype))


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


def weight_plan(g: ConvGeometry, dtype):
    """(tile kernel, ranges, K per range) of the backward-to-weights product: M = filters per
    group, N = channels per group x taps, K = batch*OH*OW, split along K where the model predicts
    it faster (alexnet_raw/ops/gemm_tiles.py)."""
    m, n, k = g.filters_per_group, g.channels_per_group * g.taps, g.batch * g.out_height * g.out_width
    return gemm_tiles.pick(m, n, instantiated_tiles(dtype), gemm_tiles.CONV_ISSUE_PER_FMA,
                           f"conv2d's backward to the weights in {np.dtype(dtype)}", g.groups,
                           candidates=candidate_tiles(dtype, "backward_weight"), k=k,
                           itemsize=np.dtype(dtype).itemsize)


def backward_weight_launches(grad_w, grad_y, x, g: ConvGeometry, workspace_of):
    """The launches computing grad_w; `workspace_of(shape)` allocates the split partial sums."""
    m, n = g.filters_per_group, g.channels_per_group * g.taps
    tile, splits, per_split = weight_plan(g, x.dtype)
    out = grad_w if splits == 1 else workspace_of((splits,) + tuple(grad_w.shape))
    launches = [Launch(SOURCE, _kernel("conv2d_backward_weight", x.dtype, tile),
                       gemm_tiles.grid(m, n, tile, g.groups * splits), (gemm_tiles.THREADS, 1, 1),
                       (out, grad_y, x) + g.ints() + (np.int32(splits), np.int64(per_split)))]
    if splits > 1:
        launches.append(split_sum_launch(grad_w, out, splits, 1, grad_w.size))
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
