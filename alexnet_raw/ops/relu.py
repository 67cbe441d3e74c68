"""ReLU: kernels/relu.cu. Reference: torch.relu; tests: tests/kernels/test_relu.py."""

from __future__ import annotations

import numpy as np

from ..runtime.launch import Launch, c_type, elementwise
from . import _checks

SOURCE = "relu.cu"


def forward_launch(y, x) -> Launch:
    grid, block = elementwise(x.size)
    return Launch(SOURCE, f"relu_forward<{c_type(x.dtype)}>", grid, block, (y, x, np.int64(x.size)))


def backward_launch(grad_x, grad_y, y) -> Launch:
    grid, block = elementwise(y.size)
    return Launch(SOURCE, f"relu_backward<{c_type(y.dtype)}>", grid, block, (grad_x, grad_y, y, np.int64(y.size)))


def relu(input):
    """max(input, 0), elementwise; NaN propagates."""
    input = _checks.tensor(input, "input")
    backend = _checks.backend(input)
    out = backend.empty(input.shape, input.dtype)
    if input.size:
        backend.launch(forward_launch(out, input))
    return out


def relu_backward(grad_output, output):
    """Gradient of relu with respect to its input, from the gradient of and the forward output."""
    output = _checks.tensor(output, "output")
    grad_output = _checks.tensor(grad_output, "grad_output", like=output)
    backend = _checks.backend(output)
    _checks.same_shape(grad_output, "grad_output", output.shape, "output")
    grad_input = backend.empty(output.shape, output.dtype)
    if output.size:
        backend.launch(backward_launch(grad_input, grad_output, output))
    return grad_input
