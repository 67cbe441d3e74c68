"""Pooling window geometry shared by max_pool2d and avg_pool2d: argument checks and PyTorch's
output-size rule (dilation 1).

Output size, PyTorch's rule, per dimension:
    out = floor((in + 2*pad - kernel + (stride - 1 if ceil_mode else 0)) / stride) + 1
    and with ceil_mode, out -= 1 if the last window would start at or past in + pad (PyTorch's rule:
    the last window starts inside the input or the left padding).
With padding 0 and stride <= kernel, ceil_mode=True is cuda-convnet's rule
`ceil((in - size) / stride) + 1` (run #145: 55 -> 27, 27 -> 13, 13 -> 6 with 3x3 windows at
stride 2; floor gives the same there). With stride > kernel cuda-convnet can add a window starting
past the input, which PyTorch's rule drops.
Padding is at most half the kernel (PyTorch's limit), so every window holds at least one input
element.
"""

from __future__ import annotations

import numpy as np

from . import _checks

INT32_MAX = 2**31 - 1


def output_size(size: int, kernel: int, stride: int, padding: int, ceil_mode: bool) -> int:
    """PyTorch's pooling output size for one dimension (may be < 1 for a window that does not fit)."""
    out = (size + 2 * padding - kernel + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


def geometry(input, kernel_size, stride, padding, ceil_mode):
    """Checks the arguments; returns (input as a C-contiguous array, backend,
    (H, W, OH, OW, kh, kw, sh, sw, ph, pw))."""
    input = _checks.array(input, "input", ndim=4)
    kh, kw = _checks.pair(kernel_size, "kernel_size", minimum=1)
    if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0):
        sh, sw = kh, kw
    else:
        sh, sw = _checks.pair(stride, "stride", minimum=1)
    ph, pw = _checks.pair(padding, "padding", minimum=0)
    ceil_mode = _checks.boolean(ceil_mode, "ceil_mode")
    if ph > kh // 2 or pw > kw // 2:
        raise ValueError(f"padding must be at most half the kernel size (kernel_size {(kh, kw)} allows at most "
                         f"{(kh // 2, kw // 2)}), got {(ph, pw)}")
    _, _, H, W = input.shape
    if H < 1 or W < 1:
        raise ValueError(f"input must have non-empty planes (N, C, H, W) with H, W >= 1, got shape {input.shape}")
    oh = output_size(H, kh, sh, ph, ceil_mode)
    ow = output_size(W, kw, sw, pw, ceil_mode)
    if oh < 1 or ow < 1:
        raise ValueError(f"kernel_size: the pooling window {(kh, kw)} is larger than the padded input "
                         f"{(H + 2 * ph, W + 2 * pw)} (input {(H, W)}, padding {(ph, pw)}): output size {(oh, ow)}")
    if H * W > INT32_MAX or oh * ow > INT32_MAX:
        raise ValueError(f"planes of at most {INT32_MAX} elements are supported, got input {(H, W)}, output {(oh, ow)}")
    return _checks.contiguous(input), _checks.backend(input), (H, W, oh, ow, kh, kw, sh, sw, ph, pw)


def int_args(geometry):
    """The geometry as the kernels' int parameters."""
    return tuple(np.int32(v) for v in geometry)
