"""Same-map response normalisation (cuda-convnet's `rnorm`): kernels/same_map_norm.cu. Reference:
alexnet_raw/checks/torch_reference.py `same_map_norm` (avg_pool2d of the zero-padded squares) and its
autograd backward; tests: tests/kernels/test_same_map_norm.py.

    b = a / (k + alpha/size^2 * sum over the size x size window of a^2) ^ beta

within each channel, the window covering rows [y - size//2, y - size//2 + size) and the same columns
around x, clipped to the image (zero outside; the divisor stays size^2). cuda-convnet's rnorm layer
is this with its `scale` as alpha (its parser divides by size^2), `pow` as beta, k = 1 (run #145's
cnorm2: size 5, scale 1e-3, pow 0.75).
"""

from __future__ import annotations

import numpy as np

from ..runtime.launch import Launch, c_type, elementwise
from . import _checks

SOURCE = "same_map_norm.cu"
INT32_MAX = 2**31 - 1
MAX_SIZE = 2**30


def check_params(input, size, alpha, beta, k):
    """Checks an (N, C, H, W) input and the hyperparameters; returns the input as a C-contiguous
    array, backend, size, alpha, beta, k (the floats in the input's dtype)."""
    input = _checks.array(input, "input", ndim=4)
    size = _checks.integer(size, "size", minimum=1, maximum=MAX_SIZE)
    _, _, h, w = input.shape
    if h * w > INT32_MAX or max(h, w) + size > INT32_MAX:
        raise ValueError(f"planes of at most {INT32_MAX} elements (and H, W + size below 2^31) are supported, "
                         f"got {(h, w)} with size {size}")
    t = input.dtype.type
    alpha, beta, k = (t(_checks.finite(v, name, dtype=input.dtype)) for v, name in ((alpha, "alpha"), (beta, "beta"),
                                                                                    (k, "k")))
    return _checks.contiguous(input), _checks.backend(input), size, alpha, beta, k


def _dims(x):
    _, _, h, w = x.shape
    return np.int64(x.size), np.int32(h), np.int32(w)


def forward_launch(y, x, size, alpha, beta, k) -> Launch:
    grid, block = elementwise(x.size)
    return Launch(SOURCE, f"smn_forward<{c_type(x.dtype)}>", grid, block,
                  (y, x) + _dims(x) + (np.int32(size), alpha, beta, k))


def backward_ratio_launch(grad_x, ratio, grad_y, x, size, alpha, beta, k) -> Launch:
    grid, block = elementwise(x.size)
    return Launch(SOURCE, f"smn_backward_ratio<{c_type(x.dtype)}>", grid, block,
                  (grad_x, ratio, grad_y, x) + _dims(x) + (np.int32(size), alpha, beta, k))


def backward_finish_launch(grad_x, ratio, x, size, coef) -> Launch:
    grid, block = elementwise(x.size)
    return Launch(SOURCE, f"smn_backward_finish<{c_type(x.dtype)}>", grid, block,
                  (grad_x, ratio, x) + _dims(x) + (np.int32(size), coef))


def same_map_norm(input, size, alpha, beta=0.75, k=1.0):
    """Normalise each element of an (N, C, H, W) array by the squares in its size x size spatial
    neighbourhood of the same channel (formula in the module docstring)."""
    input, backend, size, alpha, beta, k = check_params(input, size, alpha, beta, k)
    out = backend.empty(input.shape, input.dtype)
    if input.size:
        backend.launch(forward_launch(out, input, size, alpha, beta, k))
    return out


def same_map_norm_backward(grad_output, input, size, alpha, beta=0.75, k=1.0):
    """Gradient of same_map_norm with respect to its input (pass the forward's input and
    hyperparameters), computed analytically."""
    input, backend, size, alpha, beta, k = check_params(input, size, alpha, beta, k)
    grad_output = _checks.tensor(grad_output, "grad_output", like=input)
    _checks.same_shape(grad_output, "grad_output", input.shape, "input")
    grad_input = backend.empty(input.shape, input.dtype)
    if input.size:
        t = input.dtype.type
        ratio = backend.empty(input.shape, input.dtype)
        backend.launch(backward_ratio_launch(grad_input, ratio, grad_output, input, size, alpha, beta, k))
        coef = _checks.computed(lambda: t(2) * beta * alpha / (t(size) * t(size)), "2 * beta * alpha / size^2",
                                input.dtype)
        backend.launch(backward_finish_launch(grad_input, ratio, input, size, coef))
    return grad_input
