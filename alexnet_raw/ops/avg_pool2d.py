"""2-D average pooling: kernels/avg_pool2d.cu. Reference: torch.nn.functional.avg_pool2d (no
divisor_override) and its autograd backward; tests: tests/kernels/test_avg_pool2d.py.

Output size and argument checks: alexnet_raw/ops/pool_geometry.py, shared with max_pool2d.
Divisor: count_include_pad=True divides by the window cut at the end of the padding (PyTorch's
pool_size), False by its in-image elements. cuda-convnet's `pool=avg` is count_include_pad=False
with ceil_mode=True and padding 0.
"""

from __future__ import annotations

import numpy as np

from ..runtime.launch import Launch, c_type, elementwise
from . import _checks
from .pool_geometry import INT32_MAX, convnet_geometry, geometry, int_args

SOURCE = "avg_pool2d.cu"


def _geometry(input, kernel_size, stride, padding, ceil_mode, count_include_pad):
    """Checks the arguments; returns (input as a C-contiguous array, backend, geometry),
    count_include_pad last in the geometry."""
    count_include_pad = _checks.boolean(count_include_pad, "count_include_pad")
    input, backend, g = geometry(input, kernel_size, stride, padding, ceil_mode)
    kh, kw = g[4], g[5]
    if kh * kw > INT32_MAX:
        raise ValueError(f"windows of at most {INT32_MAX} elements are supported, got kernel_size {(kh, kw)}")
    return input, backend, g + (int(count_include_pad),)


def forward_launch(y, x, geometry) -> Launch:
    grid, block = elementwise(y.size)
    return Launch(SOURCE, f"avg_pool2d_forward<{c_type(x.dtype)}>", grid, block,
                  (y, x, np.int64(y.size)) + int_args(geometry))


def backward_launch(grad_x, grad_y, geometry) -> Launch:
    grid, block = elementwise(grad_x.size)
    return Launch(SOURCE, f"avg_pool2d_backward<{c_type(grad_x.dtype)}>", grid, block,
                  (grad_x, grad_y, np.int64(grad_x.size)) + int_args(geometry))


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """Average pooling of an (N, C, H, W) (or unbatched (C, H, W)) array over kernel_size windows
    (int or pair) at stride (default kernel_size), with implicit zero padding, PyTorch's output size
    rules (ceil_mode as torch) and divisor (count_include_pad as torch)."""
    if _checks.is_unbatched_image(input):
        return avg_pool2d(input[None], kernel_size, stride, padding, ceil_mode, count_include_pad)[0]
    return _forward(*_geometry(input, kernel_size, stride, padding, ceil_mode, count_include_pad))


def _forward(input, backend, g):
    n, c = input.shape[:2]
    out = backend.empty((n, c, g[2], g[3]), input.dtype)
    if out.size:
        backend.launch(forward_launch(out, input, g))
    return out


def avg_pool2d_backward(grad_output, input, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True):
    """Gradient of avg_pool2d with respect to its input (pass the forward's input, which gives only
    the shape and dtype, and its arguments): each window's gradient, divided by its divisor, goes to
    each of its in-image elements."""
    if _checks.is_unbatched_image(input):
        return avg_pool2d_backward(_checks.unbatched_grad(grad_output), input[None], kernel_size, stride, padding,
                                   ceil_mode, count_include_pad)[0]
    return _backward(grad_output, *_geometry(input, kernel_size, stride, padding, ceil_mode, count_include_pad))


def _backward(grad_output, input, backend, g):
    grad_output = _checks.tensor(grad_output, "grad_output", like=input)
    n, c = input.shape[:2]
    _checks.same_shape(grad_output, "grad_output", (n, c, g[2], g[3]), "the pooled output")
    grad_input = backend.empty(input.shape, input.dtype)
    if grad_input.size:
        backend.launch(backward_launch(grad_input, grad_output, g))
    return grad_input


def _convnet(input, size, stride, start, outputs):
    input, backend, g = convnet_geometry(input, size, stride, start, outputs)
    if g[4] * g[5] > INT32_MAX:
        raise ValueError(f"windows of at most {INT32_MAX} elements are supported, got size {g[4]}")
    return input, backend, g + (0,)  # divided by the window's pixels inside the image


def convnet_avg_pool2d(input, size, stride, start=0, outputs=0):
    """cuda-convnet's `pool=avg` layer: size x size windows at stride from pixel `start` (0 or
    negative), `outputs` per row and column (0: every window that starts inside the image), each
    the mean of its pixels inside the image (pool_geometry.convnet_geometry)."""
    return _forward(*_convnet(input, size, stride, start, outputs))


def convnet_avg_pool2d_backward(grad_output, input, size, stride, start=0, outputs=0):
    """Gradient of convnet_avg_pool2d."""
    return _backward(grad_output, *_convnet(input, size, stride, start, outputs))
