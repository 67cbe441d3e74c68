"""Element-wise joins of several inputs, cuda-convnet2's eltsum and eltmax layers: kernels/eltwise.cu.
Reference: alexnet_raw/checks/torch_reference.py (eltwise_sum, eltwise_max); tests:
tests/kernels/test_eltwise.py.

eltwise_sum(inputs, coeffs) = sum_i coeffs[i] * inputs[i], the terms added in input order;
eltwise_max(inputs) = their element-wise maximum (NaN propagates), whose backward gives the whole
gradient to every input equal to the maximum (cuda-convnet2's rule; torch.maximum shares it at ties).
"""

from __future__ import annotations

import numpy as np

from ..runtime.launch import Launch, c_type, elementwise
from . import _checks

SOURCE = "eltwise.cu"


def _launch(kernel, out, *args) -> Launch:
    grid, block = elementwise(out.size)
    return Launch(SOURCE, f"{kernel}<{c_type(out.dtype)}>", grid, block, (out, *args, np.int64(out.size)))


def _inputs(inputs, name="inputs"):
    """A non-empty list or tuple of arrays of one shape, dtype and device, each C-contiguous."""
    if not isinstance(inputs, (list, tuple)):
        raise TypeError(f"{name} must be a list or tuple of arrays, got {type(inputs).__name__}")
    if not inputs:
        raise ValueError(f"{name} must hold at least one array, got none")
    first = _checks.tensor(inputs[0], f"{name}[0]")
    out = [first]
    for i, x in enumerate(inputs[1:], 1):
        x = _checks.tensor(x, f"{name}[{i}]", like=first)
        _checks.same_shape(x, f"{name}[{i}]", first.shape, f"{name}[0]")
        out.append(x)
    return out


def _coeffs(coeffs, count, dtype):
    if not isinstance(coeffs, (list, tuple)):
        raise TypeError(f"coeffs must be a list or tuple of numbers, got {type(coeffs).__name__}")
    if len(coeffs) != count:
        raise ValueError(f"coeffs must hold one number per input ({count}), got {len(coeffs)}")
    return [_checks.in_dtype(_checks.finite(c, f"coeffs[{i}]"), f"coeffs[{i}]", dtype) for i, c in enumerate(coeffs)]


def eltwise_sum(inputs, coeffs=None):
    """sum_i coeffs[i] * inputs[i] (coeffs default to 1), the terms added in input order."""
    xs = _inputs(inputs)
    cs = _coeffs([1.0] * len(xs) if coeffs is None else coeffs, len(xs), xs[0].dtype)
    backend = _checks.backend(xs[0])
    out = backend.empty(xs[0].shape, xs[0].dtype)
    if out.size:
        backend.launch(_launch("scale_into", out, xs[0], cs[0]))
        for x, c in zip(xs[1:], cs[1:]):
            backend.launch(_launch("scale_accumulate", out, x, c))
    return out


def eltwise_sum_backward(grad_output, coeffs):
    """[coeffs[i] * grad_output for each input]."""
    grad = _checks.tensor(grad_output, "grad_output")
    if not isinstance(coeffs, (list, tuple)) or not coeffs:
        raise ValueError(f"coeffs must be a non-empty list or tuple (one number per input), got {coeffs!r}")
    cs = _coeffs(coeffs, len(coeffs), grad.dtype)
    backend = _checks.backend(grad)
    grads = []
    for c in cs:
        g = backend.empty(grad.shape, grad.dtype)
        if g.size:
            backend.launch(_launch("scale_into", g, grad, c))
        grads.append(g)
    return grads


def eltwise_max(inputs):
    """The element-wise maximum of the inputs (NaN propagates, as torch.maximum)."""
    xs = _inputs(inputs)
    backend = _checks.backend(xs[0])
    out = backend.empty(xs[0].shape, xs[0].dtype)
    if out.size:
        backend.launch(_launch("scale_into", out, xs[0], xs[0].dtype.type(1)))  # the first input, exactly
        for x in xs[1:]:
            backend.launch(_launch("max_into", out, x))
    return out


def eltwise_max_backward(grad_output, inputs, output):
    """[grad_output where inputs[i] == output, else 0, for each input]: pass the forward's inputs
    and output; every input equal to the maximum gets the whole gradient (cuda-convnet2's rule)."""
    xs = _inputs(inputs)
    output = _checks.tensor(output, "output", like=xs[0])
    _checks.same_shape(output, "output", xs[0].shape, "inputs[0]")
    grad = _checks.tensor(grad_output, "grad_output", like=xs[0])
    _checks.same_shape(grad, "grad_output", xs[0].shape, "inputs[0]")
    backend = _checks.backend(grad)
    grads = []
    for x in xs:
        g = backend.empty(x.shape, x.dtype)
        if g.size:
            backend.launch(_launch("max_backward", g, grad, x, output))
        grads.append(g)
    return grads
