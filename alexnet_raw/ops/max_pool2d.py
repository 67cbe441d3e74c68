"""2-D max pooling: kernels/max_pool2d.cu. Reference: torch.nn.functional.max_pool2d and its
autograd backward; tests: tests/kernels/test_max_pool2d.py.

Output size, PyTorch's rule (dilation 1), per dimension:
    out = floor((in + 2*pad - kernel + (stride - 1 if ceil_mode else 0)) / stride) + 1
    and with ceil_mode, out -= 1 if the last window would start at or past in + pad (PyTorch's rule:
    the last window starts inside the input or the left padding).
With padding 0 and stride <= kernel, ceil_mode=True is cuda-convnet's rule
`ceil((in - size) / stride) + 1` (run #145: 55 -> 27, 27 -> 13, 13 -> 6 with 3x3 windows at
stride 2; floor gives the same there). With stride > kernel cuda-convnet can add a window starting
past the input, which PyTorch's rule drops.
Gradient tie rule: PyTorch's (the first maximum of a window takes it; cuda-convnet gives it to
every maximum). The backward recomputes every window's argmax from `input` into a temporary int32
array (the forward keeps no indices), then gathers.
"""

from __future__ import annotations

import numpy as np

from ..launch import Launch, c_type, elementwise
from . import _checks

SOURCE = "max_pool2d.cu"
INT32_MAX = 2**31 - 1


def output_size(size: int, kernel: int, stride: int, padding: int, ceil_mode: bool) -> int:
    """PyTorch's pooling output size for one dimension (may be < 1 for a window that does not fit)."""
    out = (size + 2 * padding - kernel + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


def _geometry(input, kernel_size, stride, padding, ceil_mode):
    """Checks the arguments; returns (backend, (H, W, OH, OW, kh, kw, sh, sw, ph, pw))."""
    backend = _checks.tensor(input, "input", ndim=4)
    kh, kw = _checks.pair(kernel_size, "kernel_size", minimum=1)
    if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0):
        sh, sw = kh, kw
    else:
        sh, sw = _checks.pair(stride, "stride", minimum=1)
    ph, pw = _checks.pair(padding, "padding", minimum=0)
    if not isinstance(ceil_mode, (bool, np.bool_)):
        raise TypeError(f"ceil_mode must be a bool, got {ceil_mode!r}")
    if ph > kh // 2 or pw > kw // 2:
        raise ValueError(f"padding must be at most half the kernel size (kernel_size {(kh, kw)} allows at most "
                         f"{(kh // 2, kw // 2)}), got {(ph, pw)}")
    _, _, H, W = input.shape
    if H < 1 or W < 1:
        raise ValueError(f"input must have non-empty planes (N, C, H, W) with H, W >= 1, got shape {input.shape}")
    oh = output_size(H, kh, sh, ph, bool(ceil_mode))
    ow = output_size(W, kw, sw, pw, bool(ceil_mode))
    if oh < 1 or ow < 1:
        raise ValueError(f"the pooling window {(kh, kw)} is larger than the padded input "
                         f"{(H + 2 * ph, W + 2 * pw)} (input {(H, W)}, padding {(ph, pw)}): output size {(oh, ow)}")
    if H * W > INT32_MAX or oh * ow > INT32_MAX:
        raise ValueError(f"planes of at most {INT32_MAX} elements are supported, got input {(H, W)}, output {(oh, ow)}")
    return backend, (H, W, oh, ow, kh, kw, sh, sw, ph, pw)


def _ints(geometry):
    return tuple(np.int32(v) for v in geometry)


def forward_launch(y, x, geometry) -> Launch:
    grid, block = elementwise(y.size)
    return Launch(SOURCE, f"max_pool2d_forward<{c_type(x.dtype)}>", grid, block,
                  (y, x, np.int64(y.size)) + _ints(geometry))


def argmax_launch(arg, x, geometry) -> Launch:
    grid, block = elementwise(arg.size)
    return Launch(SOURCE, f"max_pool2d_argmax<{c_type(x.dtype)}>", grid, block,
                  (arg, x, np.int64(arg.size)) + _ints(geometry))


def backward_launch(grad_x, grad_y, arg, geometry) -> Launch:
    grid, block = elementwise(grad_x.size)
    return Launch(SOURCE, f"max_pool2d_backward<{c_type(grad_x.dtype)}>", grid, block,
                  (grad_x, grad_y, arg, np.int64(grad_x.size)) + _ints(geometry))


def max_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False):
    """Max pooling of an (N, C, H, W) (or unbatched (C, H, W)) array over kernel_size windows (int or pair) at stride
    (default kernel_size), with implicit padding that never wins (it is not read), PyTorch's output
    size rules (ceil_mode as torch). NaN in a window gives NaN."""
    if _checks.is_unbatched_image(input):
        return max_pool2d(input[None], kernel_size, stride, padding, ceil_mode)[0]
    backend, g = _geometry(input, kernel_size, stride, padding, ceil_mode)
    n, c = input.shape[:2]
    out = backend.empty((n, c, g[2], g[3]), input.dtype)
    if out.size:
        backend.launch(forward_launch(out, input, g))
    return out


def max_pool2d_backward(grad_output, input, kernel_size, stride=None, padding=0, ceil_mode=False):
    """Gradient of max_pool2d with respect to its input (pass the forward's input and arguments):
    each window's gradient goes to its first maximum (its last NaN if it holds NaN), as PyTorch."""
    if _checks.is_unbatched_image(input):
        return max_pool2d_backward(_checks.unbatched_grad(grad_output), input[None], kernel_size, stride, padding,
                                   ceil_mode)[0]
    backend, g = _geometry(input, kernel_size, stride, padding, ceil_mode)
    _checks.tensor(grad_output, "grad_output", like=input)
    n, c = input.shape[:2]
    _checks.same_shape(grad_output, "grad_output", (n, c, g[2], g[3]), "the pooled output")
    grad_input = backend.empty(input.shape, input.dtype)
    if grad_input.size:
        arg = backend.empty(grad_output.shape, np.int32)
        backend.launch(argmax_launch(arg, input, g))
        backend.launch(backward_launch(grad_input, grad_output, arg, g))
    return grad_input
