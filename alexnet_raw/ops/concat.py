"""Concatenation along axis 1 (features; channels in NCHW), as torch.cat(inputs, dim=1):
kernels/concat.cu, cuda-convnet2's concat layer and its pass layer of several inputs. Reference:
alexnet_raw/checks/torch_reference.py (concat); tests: tests/kernels/test_concat.py.

Every input is (N, K_i, *rest) with the same N and rest; the output (N, sum K_i, *rest). In C order
each image's block of input i is one run of K_i * prod(rest) elements, so the kernel copies rows of
a (N, columns_i) matrix into a (N, total) matrix at the input's column offset.
"""

from __future__ import annotations

import math

import numpy as np

from ..runtime.launch import Launch, c_type, elementwise
from . import _checks


SOURCE = "concat.cu"


def _launch(kernel, target, source, rows, columns, total, offset) -> Launch:
    grid, block = elementwise(rows * columns)
    return Launch(SOURCE, f"{kernel}<{c_type(target.dtype)}>", grid, block,
                  (target, source, np.int64(rows), np.int64(columns), np.int64(total), np.int64(offset)))


def concat(inputs):
    """torch.cat(inputs, dim=1): inputs of shape (N, K_i, *rest), one dtype and device."""
    if not isinstance(inputs, (list, tuple)):
        raise TypeError(f"inputs must be a list or tuple of arrays, got {type(inputs).__name__}")
    if not inputs:
        raise ValueError("inputs must hold at least one array, got none")
    first = _checks.tensor(inputs[0], "inputs[0]")
    if first.ndim < 2:
        raise ValueError(f"inputs[0] must have at least 2 dimensions (N, K, ...), got shape {tuple(first.shape)}")
    xs = [first]
    for i, x in enumerate(inputs[1:], 1):
        x = _checks.tensor(x, f"inputs[{i}]", like=first)
        if x.ndim != first.ndim or x.shape[0] != first.shape[0] or x.shape[2:] != first.shape[2:]:
            expected = (first.shape[0], "K") + tuple(first.shape[2:])
            raise ValueError(f"inputs[{i}] must have shape {expected} (as inputs[0] but along axis 1), "
                             f"got {tuple(x.shape)}")
        xs.append(x)
    rows, rest = first.shape[0], math.prod(first.shape[2:])
    shape = (rows, sum(x.shape[1] for x in xs)) + tuple(first.shape[2:])
    backend = _checks.backend(first)
    out = backend.empty(shape, first.dtype)
    total, offset = shape[1] * rest, 0
    for x in xs:
        columns = x.shape[1] * rest
        if rows * columns:
            backend.launch(_launch("concat_forward", out, x, rows, columns, total, offset))
        offset += columns
    return out


def concat_backward(grad_output, sizes):
    """The gradients of concat's inputs: grad_output (N, sum sizes, *rest) split along axis 1 into
    pieces of `sizes` (the inputs' K_i), as torch.split."""
    grad = _checks.tensor(grad_output, "grad_output")
    if grad.ndim < 2:
        raise ValueError(f"grad_output must have at least 2 dimensions (N, K, ...), got shape {tuple(grad.shape)}")
    if not isinstance(sizes, (list, tuple)) or not sizes:
        raise ValueError(f"sizes must be a non-empty list or tuple of ints (each input's size along axis 1), "
                         f"got {sizes!r}")
    sizes = [_checks.integer(k, f"sizes[{i}]", minimum=0) for i, k in enumerate(sizes)]
    if sum(sizes) != grad.shape[1]:
        raise ValueError(f"sizes must add up to grad_output's axis 1 ({grad.shape[1]}), got {sizes} "
                         f"(sum {sum(sizes)})")
    rows, rest = grad.shape[0], math.prod(grad.shape[2:])
    backend = _checks.backend(grad)
    total, offset, grads = grad.shape[1] * rest, 0, []
    for k in sizes:
        g = backend.empty((rows, k) + tuple(grad.shape[2:]), grad.dtype)
        columns = k * rest
        if rows * columns:
            backend.launch(_launch("concat_backward", g, grad, rows, columns, total, offset))
        offset += columns
        grads.append(g)
    return grads
