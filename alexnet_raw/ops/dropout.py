"""Dropout with a counter-based mask: kernels/dropout.cu (the exact Philox stream is defined in its
header). Reference: torch.nn.functional.dropout's arithmetic; tests: tests/kernels/test_dropout.py.

Two modes:
  "inverted" (PyTorch): training  out = in * mask / (1 - p);  eval  out = in (the input itself).
  "original" (cuda-convnet's hs layers): training  out = in * mask;  eval  out = in * (1 - p).
The mask keeps an element with probability 1 - p. It is a pure function of (seed, offset, element
index): the same (seed, offset) gives the same mask on every backend and for float32 and float64,
and dropout_backward regenerates it instead of storing it. Give every (layer, step) its own offset
(e.g. offset = step * number_of_dropout_layers + layer): distinct offsets never share counters.
"""

from __future__ import annotations

import math

import numpy as np

from ..runtime import backends
from ..runtime.launch import Launch, c_type, elementwise
from . import _checks

SOURCE = "dropout.cu"
MODES = ("inverted", "original")
ELEMENTS_PER_THREAD = 4  # one Philox4x32 call gives four 32-bit words, one per element


def threshold(p: float) -> int:
    """The integer threshold of the kernel: element i is kept iff its word r_i >= ceil(p * 2^32).
    Exact: p * 2^32 only changes a double's exponent, and ceil of a double is exact."""
    return math.ceil(p * 4294967296.0)


def apply_launch(out, inp, seed: int, offset: int, threshold_: int, scale, start: int = 0) -> Launch:
    groups = (start + inp.size + 3) // ELEMENTS_PER_THREAD - start // ELEMENTS_PER_THREAD
    grid, block = elementwise(groups)
    return Launch(
        SOURCE,
        f"dropout_apply<{c_type(inp.dtype)}>",
        grid,
        block,
        (out, inp, np.int64(inp.size), np.uint64(seed), np.uint64(offset), np.uint64(threshold_), scale,
         np.int64(start)),
    )


def words_launch(out, seed: int, offset: int, first_group: int) -> Launch:
    grid, block = elementwise(-(-out.size // ELEMENTS_PER_THREAD))
    return Launch(
        SOURCE,
        "philox4x32_10_words",
        grid,
        block,
        (out, np.int64(out.size), np.uint64(seed), np.uint64(offset), np.uint64(first_group)),
    )


def philox_words(out, seed=0, offset=0, first_group=0):
    """Fill the uint32 array `out` with the raw Philox4x32-10 stream of (seed, offset):
    out.flat[w] = word w % 4 of the generator at counter (first_group + w // 4, offset), key seed.
    With first_group 0, out.flat[i] is the word r_i that decides dropout's element i. Returns out."""
    out = _checks.plain(out, "out")
    if out.dtype != np.uint32:
        raise TypeError(f"out must be a uint32 array, got {out.dtype}")
    if not out.flags.c_contiguous:
        raise ValueError(f"out must be C-contiguous (philox_words writes it in place), got shape {out.shape} with "
                         f"strides {out.strides}")
    _, seed, offset = _check_args(0.0, seed, offset, MODES[0])
    first_group = _checks.integer(first_group, "first_group", minimum=0)
    if first_group >= 2**64:
        raise ValueError(f"first_group must be < 2**64, got {first_group}")
    if out.size:
        backends.backend_for(out).launch(words_launch(out, seed, offset, first_group))
    return out


def _check_args(p, seed, offset, mode):
    p = _checks.finite(p, "p")
    if not 0.0 <= p < 1.0:
        raise ValueError(f"p (the drop probability) must be in [0, 1), got {p!r}")
    seed = _checks.integer(seed, "seed", minimum=0)
    offset = _checks.integer(offset, "offset", minimum=0)
    for name, v in (("seed", seed), ("offset", offset)):
        if v >= 2**64:
            raise ValueError(f"{name} must be < 2**64 (an unsigned 64-bit integer), got {v}")
    _checks.choice(mode, "mode", MODES)
    return p, seed, offset


def _start(start, size):
    """The stream index of element 0 (a slice of a batch: its first element's index in the batch)."""
    start = _checks.integer(start, "start", minimum=0)
    if start + size > 2**63 - 1:
        raise ValueError(f"start + the number of elements must fit a signed 64-bit index, got {start} + {size}")
    return start


def _run(x, p, seed, offset, threshold_, scale, start=0):
    """x: a checked C-contiguous array."""
    backend = _checks.backend(x)
    out = backend.empty(x.shape, x.dtype)
    if x.size:
        backend.launch(apply_launch(out, x, seed, offset, threshold_, x.dtype.type(scale), start))
    return out


def _training_scale(p, mode, dtype):
    if mode == "inverted":
        t = np.dtype(dtype).type
        return t(1) / t(1.0 - p)  # exactly PyTorch's noise.div_(1 - p) in the tensor's dtype
    return 1.0


def dropout(input, p=0.5, training=True, seed=0, offset=0, mode="inverted", start=0):
    """Dropout of `input` (float32/float64, any shape): every element is dropped (set to 0, or NaN
    for NaN/Inf inputs, as PyTorch's input * noise) with probability p, from the Philox stream of
    (seed, offset) defined in kernels/dropout.cu.

    mode "inverted": training multiplies the kept elements by 1/(1-p) (PyTorch); eval returns
    `input` itself (no copy, as PyTorch). mode "original": training multiplies by the 0/1 mask,
    eval multiplies every element by 1 - p (cuda-convnet). p in [0, 1); seed, offset in [0, 2^64).
    start: the stream index of input's first element (0: the array is the whole stream's start; a
    data-parallel replica's rows a.. of a batch pass a * row length and draw the batch's mask there).
    """
    checked = _checks.array(input, "input")
    p, seed, offset = _check_args(p, seed, offset, mode)
    start = _start(start, checked.size)
    training = _checks.boolean(training, "training")
    if not training and mode == "inverted":
        return input  # as PyTorch: the input itself, strided or not
    input = _checks.contiguous(checked)
    if training:
        return _run(input, p, seed, offset, threshold(p), _training_scale(p, mode, input.dtype), start)
    return _run(input, p, seed, offset, 0, 1.0 - p)  # threshold 0: keeps all, scales by 1 - p


def dropout_backward(grad_output, p=0.5, seed=0, offset=0, mode="inverted", start=0):
    """Gradient of training-mode dropout with respect to its input: grad_output times the forward's
    mask and scale, the mask regenerated from (seed, offset, start) (pass the forward's values)."""
    grad_output = _checks.array(grad_output, "grad_output")
    p, seed, offset = _check_args(p, seed, offset, mode)
    start = _start(start, grad_output.size)
    grad_output = _checks.contiguous(grad_output)
    return _run(grad_output, p, seed, offset, threshold(p), _training_scale(p, mode, grad_output.dtype), start)
