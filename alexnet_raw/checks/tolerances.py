"""Tolerance policy: how close a kernel must be to PyTorch, per op and dtype.

A result passes when |ours - torch| <= atol + rtol * |torch| elementwise (numpy.allclose's rule).
The bounds follow from how each op computes: elementwise selections (relu, max pooling, dropout
masks) are exact; reductions reorder sums, so their error grows with the summed length K like
sqrt(K) * eps, which the per-op rtol allows for AlexNet's largest K (conv2: 48*5*5 = 1200 per
tower, fc6: 9216) with margin. Tests and `alexnet-raw verify` both read this table.

Products (conv2d, linear, local) sum terms of both signs: an entry near zero keeps only the absolute
accuracy of the whole sum, so for them atol is taken relative to the largest |reference| entry (a
normwise bound, the usual one for GEMM) while rtol stays elementwise.
"""

from __future__ import annotations

import numpy as np

# op -> {dtype: (atol, rtol)}, one entry per op (keep sorted), with the reason in a comment
TOLERANCES = {
    # one addition per element, as NumPy's: exact
    "accumulate": {np.float32: (0.0, 0.0), np.float64: (0.0, 0.0)},
    # mean of a window: a sum of up to kh*kw terms and one division (forward), a sum of up to
    # ceil(kh/sh)*ceil(kw/sw) quotients (backward): a few ulps of the terms' size, absolute where they
    # cancel. Measured at the tests' AlexNet and CIFAR shapes (3x3 to 5x5 windows, padded, ceil and
    # floor, both divisors; standard normal inputs): bit-identical to torch's CPU kernels, which sum
    # in the same orders (0 error on both dtypes); against a float64 reference, ours and torch's own
    # float32 both 2.1e-7 (forward) and 1.3e-7 (backward) absolute; rtol is useless where sums cancel
    "avg_pool2d": {np.float32: (1e-6, 1e-5), np.float64: (1e-14, 1e-12)},
    # implicit GEMM over K = C/groups*KH*KW (forward), F/groups*KH*KW/stride^2 (backward to the input)
    # and N*OH*OW (backward to the weights, split-K partials summed in fixed order), float32 or float64
    # accumulation in another order than torch's; normwise (atol times max |reference|): measured at
    # every #145 and torchvision conv layer at batch 2 against a float64 reference, ours 2.7e-6
    # float32 (torch's own float32: 2.6e-6) and 6.1e-15 float64
    # a copy forward; backward sums the gradients of a channel taken k times (k = cuda-convnet's
    # overSample, 1 to a few): a few ulps of those terms where they cancel
    "channel_gather": {np.float32: (1e-6, 1e-6), np.float64: (1e-15, 1e-15)},
    # a copy: exact
    "concat": {np.float32: (0.0, 0.0), np.float64: (0.0, 0.0)},
    "conv2d": {np.float32: (2e-5, 1e-5), np.float64: (5e-14, 1e-12)},
    # loss and gradient of softmax cross-entropy: sums of C (1000) exps in another order than torch
    # and libm exp/log against torch's vectorised ones: the loss is within a few eps relative
    # (measured 1 eps); gradient entries are at most 1/N in size and differ by a few eps absolute
    # (measured 1.5e-7 float32, 1.1e-16 float64; underflowing softmax entries make rtol useless)
    "cross_entropy": {np.float32: (1e-6, 1e-5), np.float64: (1e-14, 1e-12)},
    # in * (mask ? T(1) / T(1 - p) : 0): the same multiplication as torch's input * noise: exact
    "dropout": {np.float32: (0.0, 0.0), np.float64: (0.0, 0.0)},
    # tiled GEMM over K = in (forward), out (backward to the input), batch (backward to the weights);
    # normwise as conv2d: measured at fc6/fc7/fc8 of both networks, ours 2.7e-6 float32 (torch's own
    # float32: 2.3e-6) and 7.1e-15 float64 against a float64 reference
    # eltmax: a selection, exact (forward and backward); eltsum: one product and one addition per
    # input, which a compiler may fuse (FMA, one rounding instead of two): a couple of ulps of the
    # terms' size, absolute where they cancel
    "eltwise_max": {np.float32: (0.0, 0.0), np.float64: (0.0, 0.0)},
    "eltwise_sum": {np.float32: (1e-6, 1e-6), np.float64: (1e-15, 1e-15)},
    "linear": {np.float32: (2e-5, 1e-5), np.float64: (5e-14, 1e-12)},
    # locally connected layer: small implicit GEMMs per output position over K = C/groups*KH*KW
    # (forward), F/groups times the covering positions (backward to the input), batch (backward to the
    # weights), the bias gradient a block-tree sum over the batch; normwise as conv2d: measured at
    # cuda-convnet's local layers (cifar10-11pct local3/local4, conv-local-13pct local4 at 8x8 and 6x6,
    # layers.gc.cfg's local32: 5x5/3, groups 2) at batch 2 against a float64 reference, ours 8.8e-7
    # float32 (torch's own float32: 3.9e-7) and 1.6e-15 float64; conv2d's bounds, with margin
    "local": {np.float32: (2e-5, 1e-5), np.float64: (5e-14, 1e-12)},
    # LRN across channels: a sum of `size` squares in torch's order, then powf/pow (libm against
    # torch's vectorised pow) and a division: a few ulps of the result (measured at #145's shapes,
    # inputs ~30: 2.4e-7 float32, 4.4e-16 float64 relative); the analytic backward against autograd's
    # chain differs by a few ulps of its unit-sized terms, absolute where they cancel (measured
    # 3.6e-7 float32, 6.7e-16 float64)
    "local_response_norm": {np.float32: (1e-6, 1e-5), np.float64: (1e-14, 1e-12)},
    # selection of a window's maximum (its first, or its last NaN, as torch), and a backward that sums
    # the gradients reaching an input in torch's order (increasing output index): exact
    "max_pool2d": {np.float32: (0.0, 0.0), np.float64: (0.0, 0.0)},
    # cuda-convnet's neurons: brelu, abs, square are exact and sqrt's backward is torch's formula; exp,
    # tanh, log1p, expm1 and sqrt are libm's against torch's vectorised ones, a few ulps (measured
    # relative 2.3e-7 float32, 4.1e-16 float64 over |x| <= 100); linear's fma rounds once where torch
    # rounds a * x and + b, and the backwards of logistic and tanh from y (1 - y, a - y) cancel near
    # saturation as torch's 1 - y * y does, so they agree to a few ulps of their unit-sized terms,
    # absolute (measured 9.5e-7 float32, 1.8e-15 float64; gradients from our own forward output:
    # tanh 7.2e-7 float32, 1.3e-15 float64)
    "neuron": {np.float32: (2e-6, 1e-5), np.float64: (1e-14, 1e-12)},
    # a sum of squares per row (in another order than torch's), a square root, a division and a product
    # per element: a few ulps relative
    "norm_constraint": {np.float32: (1e-7, 4e-6), np.float64: (1e-16, 1e-14)},
    # elementwise selection: exact
    "relu": {np.float32: (0.0, 0.0), np.float64: (0.0, 0.0)},
    # same-map (rnorm) normalisation: as local_response_norm, over size^2 squares summed row by row (the
    # reference's avg_pool2d may sum in another order); measured at #145's cnorm2 (inputs ~20): output
    # 2.1e-7 float32, 4.0e-16 float64 relative; gradient (entries up to ~4, cancelling terms)
    # 4.8e-7 float32, 1.3e-15 float64 absolute
    "same_map_norm": {np.float32: (2e-6, 1e-5), np.float64: (1e-14, 1e-12)},
    # SGD step: torch rounds param + (-lr) * buf and grad + wd * param once (fused multiply-add in
    # its vectorised CPU kernels; nvcc contracts the same way), we twice: about one ulp of the
    # parameter per step (measured 7.5e-9 float32, 1e-17 float64 for |param| ~ 0.05 over 5 steps);
    # atol covers parameters near 0 (AlexNet's are of order 0.01-1), rtol a few ulps a step
    "sgd": {np.float32: (1e-7, 1e-5), np.float64: (1e-15, 1e-12)},
    # a count of rows (an integer): exact
    "topk_correct": {np.float32: (0.0, 0.0), np.float64: (0.0, 0.0)},
}


NORMWISE = frozenset({"conv2d", "linear", "local"})  # ops whose atol is relative to max |reference|


def tolerance(op: str, dtype):
    """(atol, rtol) for op at dtype."""
    table = TOLERANCES[op]
    return table[np.dtype(dtype).type]


def max_errors(ours, reference):
    """(largest absolute error, largest error relative to |reference|); equal values (infinities
    of the same sign included) and NaN against NaN count as no error, NaN against a number as inf."""
    ours = np.asarray(ours, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if ours.size == 0:
        return 0.0, 0.0
    same = (ours == reference) | (np.isnan(ours) & np.isnan(reference))
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        diff = np.where(same, 0.0, np.abs(ours - reference))
        diff = np.where(np.isnan(diff), np.inf, diff)
        rel = np.where(same, 0.0, diff / np.maximum(np.abs(reference), np.finfo(np.float64).tiny))
    return float(diff.max()), float(np.nan_to_num(rel, nan=np.inf).max())


def atol_scale(reference, op: str) -> float:
    """What op's atol is relative to: 1, or for NORMWISE ops the largest finite |reference| entry."""
    reference = np.asarray(reference)
    if op not in NORMWISE or reference.size == 0:
        return 1.0
    return float(np.abs(reference[np.isfinite(reference)]).max(initial=0.0))


def close(ours, reference, op: str, dtype) -> bool:
    atol, rtol = tolerance(op, dtype)
    ours = np.asarray(ours)
    reference = np.asarray(reference)
    atol *= atol_scale(reference, op)
    return ours.shape == reference.shape and bool(np.allclose(ours, reference, atol=atol, rtol=rtol, equal_nan=True))
