"""Tile kernels of the matrix-multiply kernels (kernels/gemm_tile.cuh), and the choice among them: the
one place where a product's block tile and kernel version are decided, for every path (conv2d and
linear ops).

A tile kernel is (BM, BN, version): BM x BN outputs per block of 256 threads, and the version of
gemm_tile.cuh's numbered progression. Version 1, 4 x 4 per thread: (64, 64) is the general tile;
(16, 256) and (256, 16) serve products with few rows (few filters) or few columns (a fully
connected layer at a small batch), where a 64-wide tile would mostly compute padding. Version 2
(float): (128, 128) at 8 x 8 per thread, (128, 64) and (64, 128) at 8 x 4 / 4 x 8. Version 3:
version 2 double-buffered. Version 4 (gemm.cu): version 3 with 16-byte global loads. Each product
takes, for each tile shape its kernel file has, the newest version (the versions are cumulative),
and among those shapes the one an issue model of an H100 predicts fastest (`choose_by_model`,
below); `forced(kernel)` makes every product on this thread use `kernel` (to run, test or time one
version).
"""

from __future__ import annotations

import contextlib
import threading
from typing import NamedTuple

from ..runtime.launch import PLANNED_SMS, ceil_div


class TileKernel(NamedTuple):
    """(BM, BN, version) of gemm_tile.cuh: the template arguments after the element type."""

    rows: int
    columns: int
    version: int

    def __str__(self):
        return f"{self.rows} x {self.columns} v{self.version}"


GENERAL = TileKernel(64, 64, 1)
FEW_ROWS = TileKernel(16, 256, 1)
FEW_COLUMNS = TileKernel(256, 16, 1)
V2_SHAPES = ((128, 128), (128, 64), (64, 128))  # float only
V2 = tuple(TileKernel(m, n, 2) for m, n in V2_SHAPES)
V3 = tuple(TileKernel(m, n, 3) for m, n in V2_SHAPES)
V4 = tuple(TileKernel(m, n, 4) for m, n in V2_SHAPES)
# in double, one shape per later version (kernels/gemm_tile.cuh): for the tests' float64 checks of
# each version's code; the automatic choice gives double products version 1's tiles
DOUBLE_V2, DOUBLE_V3, DOUBLE_V4 = TileKernel(128, 128, 2), TileKernel(64, 64, 3), TileKernel(64, 64, 4)
THREADS = 256
K_SLICE = 16  # BK of gemm_tile.cuh: K ranges of split products are multiples of it

_forced = threading.local()


@contextlib.contextmanager
def forced(kernel):
    """Within the block, the conv2d and linear products this thread launches (forward and both
    backwards) use `kernel` (BM, BN, version) instead of the automatic choice; one that has no such
    instantiation for its dtype raises ValueError."""
    if (not isinstance(kernel, tuple) or len(kernel) != 3
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in kernel)):
        raise TypeError(f"kernel must be a (rows, columns, version) triple of ints, got {kernel!r}")
    old = getattr(_forced, "kernel", None)
    _forced.kernel = TileKernel(*kernel)
    try:
        yield _forced.kernel
    finally:
        _forced.kernel = old


@contextlib.contextmanager
def version_only(version: int):
    """Within the block, the automatic choice of this thread's conv2d and linear products considers
    the kernels of `version` only (the newest older one for a product that has none of it: a
    float64 product, conv2d's version 4); the bench times each version of the progression so."""
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= 4:
        raise ValueError(f"version must be 1, 2, 3 or 4 (kernels/gemm_tile.cuh's progression), got {version!r}")
    old = getattr(_forced, "version", None)
    _forced.version = version
    try:
        yield version
    finally:
        _forced.version = old


def newest(kernels):
    """Of `kernels`, the newest version of each tile shape, in the order the shapes first appear."""
    best = {}
    for k in tuple(kernels):
        if (k.rows, k.columns) not in best or k.version > best[(k.rows, k.columns)].version:
            best[(k.rows, k.columns)] = k
    return tuple(best.values())


def pick(m: int, n: int, instantiated, issue_per_fma, what: str, depth: int = 1, candidates=None, k=None,
         itemsize: int = 4):
    """The tile kernel of an M x N product (`depth` of them side by side): the forced one (which must
    be in `instantiated`, the kernels the kernel file has for this product and dtype), else among
    `candidates` (default: the newest version of each shape instantiated) the one the issue model
    below predicts fastest with the kernel file's `issue_per_fma` table. With `k`, the product may be
    split along K: returns (tile, ranges, K per range) from `plan` (the forced tile's best split)."""
    kernel = getattr(_forced, "kernel", None)
    if kernel is not None:
        if kernel not in instantiated:
            raise ValueError(f"{what} has no {kernel} tile kernel; it has: " + ", ".join(map(str, instantiated)))
        if k is None:
            return kernel
        table = issue_per_fma if kernel in issue_per_fma else {kernel: 1.0}  # a double kernel: no table entry
        return plan(m, n, k, (kernel,), depth, table, itemsize)
    candidates = newest(instantiated) if candidates is None else candidates
    version = getattr(_forced, "version", None)
    if version is not None:  # among the modelled kernels of the newest version <= `version`
        below = [c.version for c in instantiated if c.version <= version and c in issue_per_fma]
        if below:
            candidates = tuple(c for c in instantiated if c.version == max(below) and c in issue_per_fma)
    if k is None:
        return choose_by_model(m, n, candidates, depth, issue_per_fma)
    return plan(m, n, k, candidates, depth, issue_per_fma, itemsize)


def grid(m: int, n: int, tile, depth: int = 1):
    """Grid of an M x N product: x over N, y over M, z over `depth` independent products."""
    bm, bn = tile[:2]
    return (ceil_div(n, bn), ceil_div(m, bm), depth)


# -- the issue model of the automatic choice (conv2d.cu and gemm.cu) -----------------------------
# A model, not a measurement, of an H100 SXM (the GPU the bench's targets are set on): 132 SMs, each
# issuing at most 4 warp instructions per cycle (one per scheduler), at 1.98 GHz. A block's hot loop
# issues BM * BN * K / 32 warp FFMAs times ISSUE_PER_FMA instructions; blocks are spread over the
# SMs, so the busiest SM runs ceil(blocks / 132) of them (the tail wave included), and the model
# assumes it is issue-bound (each thread's TM x TN independent accumulators are the ILP that covers
# latency). It sees instructions only, not stalls, so it does not choose between versions of one
# shape (version 3's double buffering removes waits for global loads, which it assumes away): the
# newest version of each shape is taken, the model chooses the shape. The DRAM bound is the kernel
# report's roofline, not part of this choice. The choice depends only on the product's shape, so
# every backend (the CPU runtime too) runs the same kernel.
MODEL_SMS = PLANNED_SMS  # fixed, not the running device's (alexnet_raw/runtime/launch.py says why)
MODEL_WARP_ISSUE_PER_CYCLE = 4
MODEL_CLOCK_HZ = 1.98e9
MODEL_DRAM_BYTES_PER_S = 3.35e12  # HBM3 (NVIDIA's H100 SXM datasheet): the split-K sum's time
# Split K: a product with few output blocks and a long K may be cut into ranges of whole slices
# (grid z), each written to a workspace and summed in order (kernels/split_sum.cu); each range at
# least MIN_K_PER_SPLIT long, at most MAX_SPLITS of them. The model chooses the tile and the
# number of ranges together (`plan`), counting the sum's DRAM traffic.
MIN_K_PER_SPLIT = 1024
MAX_SPLITS = 64

# Hot-loop instructions per FFMA of each float tile kernel of conv2d.cu: sm_90 SASS of NVRTC 13.0,
# the forward kernel's (the backwards are within 6%); `alexnet-raw kernels` measures them, and
# tests/perf/test_kernel_report.py checks this table against what it measures.
CONV_ISSUE_PER_FMA = {GENERAL: 1.383, FEW_ROWS: 1.832, V2[0]: 1.188, V2[1]: 1.254, V2[2]: 1.312,
                      V3[0]: 1.191, V3[1]: 1.250, V3[2]: 1.309}
# The same for gemm.cu (the fully connected layers), its forward product <.., false, true>; the two
# other transpositions are within 12%. Version 4: its 16-byte path (aligned operands, whole tiles).
GEMM_ISSUE_PER_FMA = {GENERAL: 1.289, FEW_ROWS: 1.340, FEW_COLUMNS: 1.344, V2[0]: 1.120, V2[1]: 1.201,
                      V2[2]: 1.203, V3[0]: 1.119, V4[0]: 1.110, V4[1]: 1.178, V4[2]: 1.178}


def resident_blocks(tile, itemsize: int = 4) -> int:
    """Blocks per SM the kernel's register budget is set for (ALX_GEMM_LAUNCH_BOUNDS of gemm_tile.cuh)."""
    bm, bn = tile[:2]
    return (4 if bm * bn // THREADS <= 16 else 2) // (1 if itemsize == 4 else 2)


def predicted_seconds(m: int, n: int, k: int, tile, depth: int = 1, issue_per_fma=CONV_ISSUE_PER_FMA) -> float:
    """The model's time of an M x N x K product (`depth` of them side by side) with the tile kernel `tile`."""
    bm, bn = tile[:2]
    blocks = ceil_div(m, bm) * ceil_div(n, bn) * depth
    k_padded = ceil_div(k, K_SLICE) * K_SLICE
    warp_instructions = bm * bn * k_padded / 32 * issue_per_fma[tile]
    return ceil_div(blocks, MODEL_SMS) * warp_instructions / MODEL_WARP_ISSUE_PER_CYCLE / MODEL_CLOCK_HZ


def split_ranges(k: int, splits: int):
    """(ranges, K per range) for cutting K into `splits` ranges of whole slices (the last may be
    shorter; fewer ranges than asked when whole slices leave one empty)."""
    if k <= 0:
        return 1, K_SLICE  # an empty K: one range, nothing summed
    per = ceil_div(ceil_div(k, splits), K_SLICE) * K_SLICE
    return ceil_div(k, per), per


def planned_seconds(m: int, n: int, k: int, tile, depth: int, issue_per_fma, splits: int = 1,
                    itemsize: int = 4) -> float:
    """The model's time of an M x N x K product (`depth` side by side) with `tile`, K cut into
    `splits` ranges: the product's blocks, plus the split sum reading every partial sum once and
    writing the result (DRAM time) when there are several."""
    ranges, per = split_ranges(k, splits)
    seconds = predicted_seconds(m, n, per, tile, depth * ranges, issue_per_fma)
    if ranges > 1:
        seconds += (ranges + 1) * m * n * depth * itemsize / MODEL_DRAM_BYTES_PER_S
    return seconds


def plan(m: int, n: int, k: int, tiles, depth: int = 1, issue_per_fma=CONV_ISSUE_PER_FMA, itemsize: int = 4):
    """(tile, ranges, K per range): the tile kernel of `tiles` and the split of K the model predicts
    fastest for an M x N x K product (ties: fewer ranges, then the earlier tile)."""
    most = max(1, min(MAX_SPLITS, k // MIN_K_PER_SPLIT, 65535 // max(1, depth)))
    best = min(((planned_seconds(m, n, k, t, depth, issue_per_fma, s, itemsize), split_ranges(k, s)[0], tiles.index(t), t)
                for t in tiles for s in range(1, most + 1)), key=lambda c: c[:3])
    return (best[3],) + split_ranges(k, best[1])


def choose_by_model(m: int, n: int, tiles, depth: int = 1, issue_per_fma=CONV_ISSUE_PER_FMA):
    """The tile kernel of `tiles` the model predicts fastest for an M x N product that is not split
    (ties: the earlier one; K scales every tile alike and is left out)."""
    return min(tiles, key=lambda t: (predicted_seconds(m, n, K_SLICE, t, depth, issue_per_fma), tiles.index(t)))
