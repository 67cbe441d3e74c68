"""Softmax cross-entropy and top-k accuracy: kernels/softmax_cross_entropy.cu. References:
torch.nn.functional.cross_entropy (mean reduction) and its autograd gradient, torch.topk; tests:
tests/kernels/test_softmax_cross_entropy.py.

Results: cross_entropy returns a 0-d array of the input's dtype on the input's device (NumPy on the
CPU, CuPy on a GPU: no device-to-host copy in a training step; float(loss) gives a Python float);
topk_correct returns a Python int (a count is wanted on the host).
"""

from __future__ import annotations

import numpy as np

from ..runtime.launch import Launch, c_type, per_row
from . import _checks

SOURCE = "softmax_cross_entropy.cu"
INT32_MAX = 2**31 - 1


def forward_rows_launch(row_loss, x, target) -> Launch:
    n, c = x.shape
    grid, block = per_row(n, c)
    return Launch(SOURCE, f"xent_forward_rows<{c_type(x.dtype)}>", grid, block,
                  (row_loss, x, target, np.int64(n), np.int32(c)))


def mean_launch(out, values) -> Launch:
    grid, block = per_row(1, values.size)
    return Launch(SOURCE, f"xent_mean<{c_type(values.dtype)}>", grid, block, (out, values, np.int64(values.size)))


def backward_launch(grad, x, target) -> Launch:
    n, c = x.shape
    t = x.dtype.type
    grid, block = per_row(n, c)
    return Launch(SOURCE, f"xent_backward<{c_type(x.dtype)}>", grid, block,
                  (grad, x, target, np.int64(n), np.int32(c), t(1) / t(n)))


def softmax_launch(probs, x) -> Launch:
    n, c = x.shape
    grid, block = per_row(n, c)
    return Launch(SOURCE, f"xent_softmax_rows<{c_type(x.dtype)}>", grid, block, (probs, x, np.int64(n), np.int32(c)))


def topk_rows_launch(flags, x, target, k: int) -> Launch:
    n, c = x.shape
    grid, block = per_row(n, c)
    return Launch(SOURCE, f"xent_topk_rows<{c_type(x.dtype)}>", grid, block,
                  (flags, x, target, np.int64(n), np.int32(c), np.int32(k)))


def count_launch(out, flags) -> Launch:
    grid, block = per_row(1, flags.size)
    return Launch(SOURCE, "xent_count", grid, block, (out, flags, np.int64(flags.size)))


def _check(input, target, validate_target=True):
    """Checks the (N, C) logits and the (N,) int64 class indices; returns (input, target as
    C-contiguous arrays, backend). validate_target=False skips the range check of the indices,
    which reads them on the host (on a GPU a wait for the device): for callers that checked them
    already."""
    input = _checks.array(input, "input", ndim=2)
    n, c = input.shape
    if c < 1:
        raise ValueError(f"input must have at least one class (shape (N, C) with C >= 1), got shape {input.shape}")
    if c > INT32_MAX:
        raise ValueError(f"input has {c} classes; at most {INT32_MAX} are supported")
    if not _checks.is_array(target):
        raise TypeError(f"target must be a numpy.ndarray or cupy.ndarray of int64 class indices, got "
                        f"{_checks._kind(target)}")
    target = _checks.plain(target, "target")
    if isinstance(target, np.ndarray) != isinstance(input, np.ndarray):
        raise TypeError(f"target is a {_checks._kind(target)} but input is a {_checks._kind(input)}: use one device")
    _checks.same_device(target, "target", input)
    if target.dtype != np.int64:
        raise TypeError(f"target must hold int64 class indices, got dtype {target.dtype}")
    if target.ndim != 1 or target.shape[0] != n:
        raise ValueError(f"target must have shape ({n},) (one class index per row of input), got {tuple(target.shape)}")
    validate_target = _checks.boolean(validate_target, "validate_target", "whether to check the range of target")
    if n and validate_target:
        lo, hi = int(target.min()), int(target.max())
        if lo < 0 or hi >= c:
            raise ValueError(f"target must hold class indices in [0, {c - 1}] (C = {c}), got values in [{lo}, {hi}]")
    return _checks.contiguous(input), _checks.contiguous(target), _checks.backend(input)


def softmax(input):
    """Row-wise softmax of (N, C) logits (torch.softmax(input, dim=1)), shifted by each row's max."""
    input = _checks.tensor(input, "input", ndim=2)
    if input.shape[1] < 1 or input.shape[1] > INT32_MAX:
        raise ValueError(f"input must have between 1 and {INT32_MAX} classes (shape (N, C)), got shape {input.shape}")
    backend = _checks.backend(input)
    probs = backend.empty(input.shape, input.dtype)
    if input.shape[0]:
        backend.launch(softmax_launch(probs, input))
    return probs


def cross_entropy(input, target, *, validate_target=True):
    """Mean over the N rows of -log softmax(input)[r, target[r]] (torch.nn.functional.cross_entropy
    with reduction "mean"), by a log-sum-exp shifted by each row's max. input: (N, C) float32/float64
    logits; target: (N,) int64 in [0, C). Returns a 0-d array of input's dtype; NaN for N = 0 and
    wherever a row holds NaN, as torch. validate_target=False: the caller has checked the range of
    target (else a ValueError; on a GPU the check waits for the device); an index out of range
    then gives a NaN loss."""
    input, target, backend = _check(input, target, validate_target)
    n = input.shape[0]
    row_loss = backend.empty((n,), input.dtype)
    out = backend.empty((), input.dtype)
    if n:
        backend.launch(forward_rows_launch(row_loss, input, target))
    backend.launch(mean_launch(out, row_loss))
    return out


def cross_entropy_backward(input, target, *, validate_target=True):
    """Gradient of cross_entropy(input, target) (the mean loss) with respect to input:
    (softmax(input) - onehot(target)) / N, shape (N, C). validate_target as for cross_entropy (a
    row whose index is out of range then gets NaN)."""
    input, target, backend = _check(input, target, validate_target)
    grad = backend.empty(input.shape, input.dtype)
    if input.shape[0]:
        backend.launch(backward_launch(grad, input, target))
    return grad


def topk_correct(input, target, k):
    """Number of rows r whose target is among the k largest entries of input[r], as a Python int:
    the one count of top-k correctness (training's top-1, `alexnet-raw evaluate`'s top-1/top-5,
    `verify`), on every backend.

    Tie rule: the target counts as among the top k when fewer than k entries of its row are
    strictly larger than input[r, target[r]], so an entry tied with the k-th largest counts (torch.topk
    would keep one of the tied entries, arbitrarily). A row holding NaN anywhere counts as wrong,
    whatever its target (a model that outputs NaN has not classified the example; ranking NaN
    as torch.topk does would count an all-NaN row as correct). k: int in [1, C]."""
    input, target, backend = _check(input, target)
    n, c = input.shape
    k = _checks.integer(k, "k", minimum=1)
    if k > c:
        raise ValueError(f"k must be at most the number of classes C = {c}, got {k}")
    flags = backend.empty((n,), np.int32)
    out = backend.empty((1,), np.int64)
    if n:
        backend.launch(topk_rows_launch(flags, input, target, k))
    backend.launch(count_launch(out, flags))
    return int(out[0])
