"""Fully connected layer, forward and both backwards, on the hand-written tiled GEMM of
kernels/gemm.cu, and kernels/bias_grad.cu. Reference: torch.nn.functional.linear and its autograd
gradients; tests: tests/kernels/test_linear.py.

    forward          y  = x W^T + b     (batch, out)
    backward input   gx = gy W          (batch, in)
    backward weight  gW = gy^T x        (out, in)
    backward bias    gb = sum over the batch of gy
"""

from __future__ import annotations

import numpy as np

from ..runtime.launch import Launch, c_type
from . import _checks, gemm_tiles
from .bias_grad import bias_grad_launch
from .split_sum import split_sum_launch

SOURCE = "gemm.cu"
TILES = (gemm_tiles.GENERAL, gemm_tiles.FEW_ROWS, gemm_tiles.FEW_COLUMNS)  # version 1's, both dtypes
FLOAT_TILES = gemm_tiles.V2 + gemm_tiles.V3[:1] + gemm_tiles.V4  # version 3 at 128 x 128 only (the step)
DOUBLE_TILES = (gemm_tiles.DOUBLE_V2, gemm_tiles.DOUBLE_V3, gemm_tiles.DOUBLE_V4)  # for the float64 checks
# Kernels the automatic choice leaves out because their hot loop touches local memory (spills) on
# sm_90, by (trans_a, trans_b) (the kernel report's test holds this list to what ptxas says): that
# shape takes its previous version. None at present.
SPILLING = {}


def instantiated_tiles(dtype):
    """The tile kernels gemm.cu has for `dtype` (each transposition has the same): version 1's for
    both, versions 2 to 4 for float, and at one shape each for double."""
    return TILES + (FLOAT_TILES if np.dtype(dtype) == np.float32 else DOUBLE_TILES)


def candidate_tiles(dtype, leading_dimensions, transposition=(False, True)):
    """The kernels the automatic choice considers for a product with (trans_a, trans_b) =
    `transposition`: in float the newest version of each shape that does not spill (SPILLING),
    version 4 only where every leading dimension is a multiple of 4 (else it would run its scalar
    loop: version 3's, which is then taken for its shape where it exists); in double version 1's
    (its later versions are there for the float64 checks)."""
    if np.dtype(dtype) != np.float32:
        return TILES
    tiles = tuple(t for t in instantiated_tiles(dtype) if t not in SPILLING.get(tuple(transposition), ()))
    if any(ld % 4 for ld in leading_dimensions):
        tiles = tuple(t for t in tiles if t.version != 4)
    return gemm_tiles.newest(tiles)


def model_plan(m, n, k, dtype, trans_a=False, trans_b=True):
    """(tile kernel, ranges of K, K per range) gemm.cu's M x N x K product gets without forcing."""
    return gemm_tiles.plan(m, n, k, candidate_tiles(dtype, _leading_dimensions(m, n, k, trans_a, trans_b),
                                                    (trans_a, trans_b)), 1,
                           gemm_tiles.GEMM_ISSUE_PER_FMA, np.dtype(dtype).itemsize)


def model_tile(m, n, k, dtype, trans_a=False, trans_b=True):
    """The tile kernel gemm.cu's M x N x K product gets without forcing."""
    return model_plan(m, n, k, dtype, trans_a, trans_b)[0]


def _leading_dimensions(m, n, k, trans_a, trans_b):
    return (m if trans_a else k, k if trans_b else n)


def gemm_launches(c, a, b, bias, trans_a: bool, trans_b: bool, workspace_of):
    """The launches of c (M, N) = opA(a) opB(b) (+ bias[n]): a is (M, K), or (K, M) with trans_a; b
    is (K, N), or (N, K) with trans_b. A product split along K writes its ranges' partial sums to
    `workspace_of((ranges, M, N))` and adds them (and the bias) in order with kernels/split_sum.cu."""
    m, n = c.shape
    k = a.shape[0] if trans_a else a.shape[1]
    tile, splits, per_split = gemm_tiles.pick(
        m, n, instantiated_tiles(c.dtype), gemm_tiles.GEMM_ISSUE_PER_FMA, f"linear's gemm in {np.dtype(c.dtype)}",
        candidates=candidate_tiles(c.dtype, _leading_dimensions(m, n, k, trans_a, trans_b), (trans_a, trans_b)), k=k,
        itemsize=c.dtype.itemsize)
    name = (f"gemm<{c_type(c.dtype)}, {tile.rows}, {tile.columns}, {str(trans_a).lower()}, {str(trans_b).lower()}, "
            f"{tile.version}>")
    has_bias = bias is not None
    out = c if splits == 1 else workspace_of((splits, m, n))
    launches = [Launch(SOURCE, name, gemm_tiles.grid(m, n, tile, splits), (gemm_tiles.THREADS, 1, 1),
                       (out, a, b, bias if has_bias and splits == 1 else out, np.int32(has_bias and splits == 1),
                        np.int64(m), np.int64(n), np.int64(k), np.int64(per_split)))]
    if splits > 1:
        launches.append(split_sum_launch(c, out, splits, m, n, bias))
    return launches


def _workspace(backend, dtype):
    return lambda shape: backend.empty(shape, dtype)


def _run(backend, launches):
    for launch in launches:
        backend.launch(launch)


def _check(input, weight):
    """Checks input (N, in) and weight (out, in); returns them as C-contiguous arrays and the backend."""
    input = _checks.array(input, "input", ndim=2)
    weight = _checks.array(weight, "weight", ndim=2, like=input)
    if weight.shape[1] != input.shape[1]:
        raise ValueError(f"weight must be (out_features, in_features) with in_features = input.shape[1] = "
                         f"{input.shape[1]}, got weight shape {weight.shape} for input shape {input.shape}")
    return _checks.contiguous(input), _checks.contiguous(weight), _checks.backend(input)


def linear(input, weight, bias=None):
    """y = input weight^T + bias for input (N, in), weight (out, in), bias (out,) or None."""
    input, weight, backend = _check(input, weight)
    out_features = weight.shape[0]
    if bias is not None:
        bias = _checks.tensor(bias, "bias", ndim=1, like=input)
        _checks.same_shape(bias, "bias", (out_features,), "the output features (out,)")
    out = backend.empty((input.shape[0], out_features), input.dtype)
    if out.size:
        _run(backend, gemm_launches(out, input, weight, bias, False, True, _workspace(backend, input.dtype)))
    return out


def linear_backward(grad_output, input, weight, bias=True):
    """Gradients of linear for grad_output (N, out): (grad_input (N, in), grad_weight (out, in),
    grad_bias (out,) or None when bias=False)."""
    input, weight, backend = _check(input, weight)
    grad_output = _checks.tensor(grad_output, "grad_output", ndim=2, like=input)
    _checks.same_shape(grad_output, "grad_output", (input.shape[0], weight.shape[0]), "the output (N, out)")
    bias = _checks.boolean(bias, "bias", "whether to return the bias gradient")
    grad_input = backend.empty(input.shape, input.dtype)
    if grad_input.size:
        _run(backend, gemm_launches(grad_input, grad_output, weight, None, False, False, _workspace(backend, input.dtype)))
    grad_weight = backend.empty(weight.shape, input.dtype)
    if grad_weight.size:
        _run(backend, gemm_launches(grad_weight, grad_output, input, None, True, False, _workspace(backend, input.dtype)))
    grad_bias = None
    if bias:
        grad_bias = backend.empty((weight.shape[0],), input.dtype)
        if grad_bias.size:
            if grad_output.size:
                backend.launch(bias_grad_launch(grad_bias, grad_output))
            else:
                grad_bias[...] = 0
    return grad_input, grad_weight, grad_bias
