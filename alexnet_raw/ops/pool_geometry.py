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


# ---------------------------------------------------------------------------------------------
# cuda-convnet's pool layer: square windows of `size` at `stride` starting at pixel `start` (0 or
# negative: the first window begins before the image), `outputs` windows per row and column (0:
# cuda-convnet's ceil((in - start - size) / stride) + 1, all that start inside the image). Windows
# are clipped to the image (max: the pixels inside; avg: divided by their number), as its kernels do.
def convnet_output_size(size_in: int, size: int, stride: int, start: int) -> int:
    """cuda-convnet's outputsX for outputsX=0: ceil((in - start - size) / stride) + 1."""
    return -(-(size_in - start - size) // stride) + 1


def convnet_geometry(input, size, stride, start=0, outputs=0):
    """Checks cuda-convnet's pool arguments; returns (input as a C-contiguous array, backend, the
    kernels' geometry (H, W, OH, OW, size, size, stride, stride, -start, -start))."""
    input = _checks.array(input, "input", ndim=4)
    size = _checks.integer(size, "size", minimum=1)
    stride = _checks.integer(stride, "stride", minimum=1)
    start = _checks.integer(start, "start", minimum=1 - size)
    outputs = _checks.integer(outputs, "outputs", minimum=0)
    _, _, H, W = input.shape
    if H < 1 or W < 1:
        raise ValueError(f"input must have non-empty planes (N, C, H, W) with H, W >= 1, got shape {input.shape}")
    out = []
    for n, axis in ((H, "rows"), (W, "columns")):
        computed = convnet_output_size(n, size, stride, start)
        if computed < 1 or size > n:  # cuda-convnet: sizeX at most the image's size
            raise ValueError(f"size: a {size}-wide window from start {start} does not fit {n} {axis}")
        if outputs > computed:
            raise ValueError(f"outputs={outputs}, but only {computed} windows of {size} at stride {stride} from start "
                             f"{start} begin inside {n} {axis}")
        out.append(outputs or computed)
    if H * W > INT32_MAX or out[0] * out[1] > INT32_MAX:
        raise ValueError(f"planes of at most {INT32_MAX} elements are supported, got input {(H, W)}, output {tuple(out)}")
    return _checks.contiguous(input), _checks.backend(input), (H, W, out[0], out[1], size, size, stride, stride,
                                                               -start, -start)
