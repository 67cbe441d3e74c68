"""2-D max pooling: kernels/max_pool2d.cu. Reference: torch.nn.functional.max_pool2d and its
autograd backward; tests: tests/kernels/test_max_pool2d.py.

Output size and argument checks: alexnet_raw/ops/pool_geometry.py (PyTorch's rules; with ceil_mode
and padding 0 they are cuda-convnet's for stride <= kernel).
Gradient tie rule: PyTorch's (the first maximum of a window takes it; cuda-convnet gives it to
every maximum). The backward recomputes every window's argmax from `input` into a temporary int32
array (the forward keeps no indices), then gathers.
"""

from __future__ import annotations

import numpy as np

from ..runtime.launch import Launch, c_type, elementwise
from . import _checks
from .pool_geometry import convnet_geometry as _convnet_geometry
from .pool_geometry import geometry as _geometry
from .pool_geometry import int_args as _ints
from .pool_geometry import output_size  # noqa: F401  (the output-size rule, re-exported)

SOURCE = "max_pool2d.cu"


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
    return _forward(*_geometry(input, kernel_size, stride, padding, ceil_mode))


def _forward(input, backend, g):
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
    return _backward(grad_output, *_geometry(input, kernel_size, stride, padding, ceil_mode))


def _backward(grad_output, input, backend, g):
    grad_output = _checks.tensor(grad_output, "grad_output", like=input)
    n, c = input.shape[:2]
    _checks.same_shape(grad_output, "grad_output", (n, c, g[2], g[3]), "the pooled output")
    grad_input = backend.empty(input.shape, input.dtype)
    if grad_input.size:
        arg = backend.empty(grad_output.shape, np.int32)
        backend.launch(argmax_launch(arg, input, g))
        backend.launch(backward_launch(grad_input, grad_output, arg, g))
    return grad_input


def convnet_max_pool2d(input, size, stride, start=0, outputs=0):
    """cuda-convnet's `pool=max` layer: size x size windows at stride from pixel `start` (0 or
    negative), `outputs` per row and column (0: every window that starts inside the image), each
    the maximum of its pixels inside the image (pool_geometry.convnet_geometry)."""
    return _forward(*_convnet_geometry(input, size, stride, start, outputs))


def convnet_max_pool2d_backward(grad_output, input, size, stride, start=0, outputs=0):
    """Gradient of convnet_max_pool2d (each window's to its first maximum, as max_pool2d_backward)."""
    return _backward(grad_output, *_convnet_geometry(input, size, stride, start, outputs))
