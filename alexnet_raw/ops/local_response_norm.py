"""Local response normalisation across channels: kernels/local_response_norm.cu. Reference:
torch.nn.functional.local_response_norm and its autograd backward; tests:
tests/kernels/test_local_response_norm.py.

    b_c = a_c / (k + alpha/size * sum_{c' in [c - size//2, c - size//2 + size)} a_c'^2) ^ beta

with the window clipped to the channels (torch's zero padding: size//2 channels before, (size-1)//2
after). cuda-convnet's cmrnorm is the same formula: its `scale` is alpha (divided by size by its
parser), `pow` is beta and `minDiv` is k; its window [c - size//2, c - size//2 + size) is placed as
torch's for even sizes too (run #145: size 5, scale 1e-4, pow 0.75, minDiv 2).
"""

from __future__ import annotations

import numpy as np

from ..runtime.launch import Launch, c_type, elementwise
from . import _checks

SOURCE = "local_response_norm.cu"
INT32_MAX = 2**31 - 1
MAX_SIZE = 2**30


def check_params(input, size, alpha, beta, k):
    """Checks an (N, C, H, W) input and the hyperparameters; returns the input as a C-contiguous
    array, backend, size, alpha, beta, k (the floats in the input's dtype)."""
    input = _checks.array(input, "input")
    if input.ndim < 3:
        raise ValueError(f"input must have 3 or more dimensions (N, C, ...), as torch's local_response_norm, "
                         f"got shape {tuple(input.shape)}")
    size = _checks.integer(size, "size", minimum=1, maximum=MAX_SIZE)
    if input.shape[1] + size > INT32_MAX:
        raise ValueError(f"C + size must be below 2^31, got C = {input.shape[1]}, size {size}")
    t = input.dtype.type
    alpha, beta, k = (t(_checks.finite(v, name, dtype=input.dtype)) for v, name in ((alpha, "alpha"), (beta, "beta"),
                                                                                    (k, "k")))
    return _checks.contiguous(input), _checks.backend(input), size, alpha, beta, k


def _dims(x):
    """(elements, C, positions per channel): the dimensions after C are one flat axis."""
    positions = int(np.prod(x.shape[2:]))
    return np.int64(x.size), np.int32(x.shape[1]), np.int64(positions)


def forward_launch(y, x, size, alpha, beta, k) -> Launch:
    grid, block = elementwise(x.size)
    return Launch(SOURCE, f"lrn_forward<{c_type(x.dtype)}>", grid, block,
                  (y, x) + _dims(x) + (np.int32(size), alpha, beta, k))


def backward_ratio_launch(grad_x, ratio, grad_y, x, size, alpha, beta, k) -> Launch:
    grid, block = elementwise(x.size)
    return Launch(SOURCE, f"lrn_backward_ratio<{c_type(x.dtype)}>", grid, block,
                  (grad_x, ratio, grad_y, x) + _dims(x) + (np.int32(size), alpha, beta, k))


def backward_finish_launch(grad_x, ratio, x, size, coef) -> Launch:
    grid, block = elementwise(x.size)
    return Launch(SOURCE, f"lrn_backward_finish<{c_type(x.dtype)}>", grid, block,
                  (grad_x, ratio, x) + _dims(x) + (np.int32(size), coef))


def local_response_norm(input, size, alpha=1e-4, beta=0.75, k=1.0):
    """Normalise each element of an (N, C, H, W) array (or (N, C, ...): any number of dimensions
    after C, as torch) by the squares of its `size` neighbouring channels at the same position
    (formula in the module docstring)."""
    input, backend, size, alpha, beta, k = check_params(input, size, alpha, beta, k)
    out = backend.empty(input.shape, input.dtype)
    if input.size:
        backend.launch(forward_launch(out, input, size, alpha, beta, k))
    return out


def local_response_norm_backward(grad_output, input, size, alpha=1e-4, beta=0.75, k=1.0):
    """Gradient of local_response_norm with respect to its input (pass the forward's input and
    hyperparameters), computed analytically."""
    input, backend, size, alpha, beta, k = check_params(input, size, alpha, beta, k)
    grad_output = _checks.tensor(grad_output, "grad_output", like=input)
    _checks.same_shape(grad_output, "grad_output", input.shape, "input")
    grad_input = backend.empty(input.shape, input.dtype)
    if input.size:
        t = input.dtype.type
        ratio = backend.empty(input.shape, input.dtype)
        backend.launch(backward_ratio_launch(grad_input, ratio, grad_output, input, size, alpha, beta, k))
        coef = _checks.computed(lambda: t(2) * beta * alpha / t(size), "2 * beta * alpha / size", input.dtype)
        backend.launch(backward_finish_launch(grad_input, ratio, input, size, coef))
    return grad_input
