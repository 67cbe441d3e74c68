"""Channel gather, cuda-convnet's random sparse connectivity (randSparse): kernels/channel_gather.cu.
Reference: alexnet_raw/checks/torch_reference.py (channel_gather: torch.index_select along axis 1
and its autograd, which sums the gradients of a channel taken several times); tests:
tests/kernels/test_channel_gather.py.

channel_gather(x, index) = x[:, index] for x (N, C, ...) and index a 1-D integer array of channels;
channel_gather_backward(grad_output, index, channels) is its adjoint: each input channel receives
the sum of the gradients of the places it was taken to, in increasing order of those places.
"""

from __future__ import annotations

import math

import numpy as np

from ..runtime.launch import Launch, c_type, elementwise
from . import _checks

SOURCE = "channel_gather.cu"


def _index(index, channels):
    """index as an int64 NumPy array of channels in [0, channels) (a device array is read back: the
    table is small, and its range is checked on the host)."""
    if _checks.is_array(index) and not isinstance(index, np.ndarray):
        index = index.get()
    if not isinstance(index, (np.ndarray, list, tuple)):
        raise TypeError(f"index must be a 1-D array or list of ints (channels), got {type(index).__name__}")
    array = np.asarray(index)
    if array.ndim != 1 or (array.size and array.dtype.kind not in "iu"):
        raise ValueError(f"index must be a 1-D array of ints (channels), got shape {array.shape} of {array.dtype}")
    if array.size == 0:
        raise ValueError("index must name at least one channel, got none")
    if array.min() < 0 or array.max() >= channels:
        raise ValueError(f"index must hold channels in [0, {channels - 1}], got values in [{array.min()}, {array.max()}]")
    return np.ascontiguousarray(array, dtype=np.int64)


def _inverse(index, channels):
    """(first, which): the places k with index[k] == c are which[first[c]:first[c + 1]], increasing."""
    which = np.argsort(index, kind="stable").astype(np.int64)
    first = np.searchsorted(index[which], np.arange(channels + 1)).astype(np.int64)
    return first, which


def channel_gather(input, index):
    """input[:, index]: input (N, C, ...), index a 1-D int array (NumPy or a list) of channels; the
    result (N, len(index), ...)."""
    x = _checks.tensor(input, "input")
    if x.ndim < 2:
        raise ValueError(f"input must have at least 2 dimensions (N, C, ...), got shape {tuple(x.shape)}")
    n, c, rest = x.shape[0], x.shape[1], tuple(x.shape[2:])
    index = _index(index, c)
    backend = _checks.backend(x)
    out = backend.empty((n, index.size) + rest, x.dtype)
    if out.size:
        table = backend.array_module.asarray(index)
        grid, block = elementwise(out.size)
        backend.launch(Launch(SOURCE, f"channel_gather_forward<{c_type(x.dtype)}>", grid, block,
                              (out, x, table, np.int64(n), np.int64(c), np.int64(index.size),
                               np.int64(math.prod(rest)))))
    return out


def channel_gather_backward(grad_output, index, channels):
    """The gradient of channel_gather with respect to its input (N, channels, ...): each channel the
    sum of grad_output at the places index took it to (0 where it was not taken)."""
    g = _checks.tensor(grad_output, "grad_output")
    channels = _checks.integer(channels, "channels", minimum=1)
    index = _index(index, channels)
    if g.ndim < 2 or g.shape[1] != index.size:
        raise ValueError(f"grad_output must have shape (N, {index.size}, ...) (one channel per index), got "
                         f"{tuple(g.shape)}")
    n, rest = g.shape[0], tuple(g.shape[2:])
    backend = _checks.backend(g)
    out = backend.empty((n, channels) + rest, g.dtype)
    if out.size:
        first, which = (backend.array_module.asarray(a) for a in _inverse(index, channels))
        grid, block = elementwise(out.size)
        backend.launch(Launch(SOURCE, f"channel_gather_backward<{c_type(g.dtype)}>", grid, block,
                              (out, g, first, which, np.int64(n), np.int64(channels), np.int64(index.size),
                               np.int64(math.prod(rest)))))
    return out
