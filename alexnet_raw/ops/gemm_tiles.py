"""Tile shapes of the matrix-multiply kernels (kernels/gemm_tile.cuh), and the choice among them: the
one place where a product's block tile is decided, for every path (conv2d and linear ops).

Each tile is (BM, BN) outputs per block of 256 threads. Version 1 of gemm_tile.cuh's progression,
4 x 4 per thread: (64, 64) is the general tile; (16, 256) and (256, 16) serve products with few rows
(few filters) or few columns (a fully connected layer at a small batch), where a 64-wide tile would
mostly compute padding. Version 2 (float, conv2d.cu and gemm.cu): (128, 128) at 8 x 8 per thread,
(128, 64) and (64, 128) at 8 x 4 / 4 x 8. Every product chooses among the tiles its kernel file has
with an issue model of an H100 (`choose_by_model`, below); `forced(tile)` makes every product on
this thread use `tile` (to run, test or time one version).
"""

from __future__ import annotations

import contextlib
import threading

from ..launch import ceil_div

GENERAL = (64, 64)
FEW_ROWS = (16, 256)
FEW_COLUMNS = (256, 16)
V2_TILES = ((128, 128), (128, 64), (64, 128))  # float only (kernels/conv2d.cu)
THREADS = 256
K_SLICE = 16  # BK of gemm_tile.cuh: K ranges of split products are multiples of it

_forced = threading.local()


@contextlib.contextmanager
def forced(tile):
    """Within the block, the conv2d and linear products this thread launches (forward and both
    backwards) use `tile` (BM, BN) instead of the automatic choice; one that has no such
    instantiation for its dtype raises ValueError."""
    if (not isinstance(tile, tuple) or len(tile) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in tile)):
        raise TypeError(f"tile must be a (rows, columns) pair of ints, got {tile!r}")
    old = getattr(_forced, "tile", None)
    _forced.tile = tile
    try:
        yield tile
    finally:
        _forced.tile = old


def pick(m: int, n: int, instantiated, issue_per_fma, what: str, depth: int = 1):
    """The tile of an M x N product (`depth` of them side by side): the forced one (which must be in
    `instantiated`, the tiles the kernel file has for this product and dtype), else the one the
    issue model below predicts fastest among them with the kernel file's `issue_per_fma` table."""
    tile = getattr(_forced, "tile", None)
    if tile is None:
        return choose_by_model(m, n, instantiated, depth, issue_per_fma)
    if tile not in instantiated:
        raise ValueError(f"{what} has no {tile[0]} x {tile[1]} tile; its tiles: "
                         + ", ".join(f"{a} x {b}" for a, b in instantiated))
    return tile


def grid(m: int, n: int, tile, depth: int = 1):
    """Grid of an M x N product: x over N, y over M, z over `depth` independent products."""
    bm, bn = tile
    return (ceil_div(n, bn), ceil_div(m, bm), depth)


# -- the issue model of the automatic choice for conv2d.cu ------------------------------------------
# A model, not a measurement, of an H100 SXM (the GPU the bench's targets are set on): 132 SMs, each
# issuing at most 4 warp instructions per cycle (one per scheduler), at 1.98 GHz. A block's hot loop
# issues BM * BN * K / 32 warp FFMAs times ISSUE_PER_FMA instructions; blocks are spread over the
# SMs, so the busiest SM runs ceil(blocks / 132) of them (the tail wave included), and the model
# assumes it is issue-bound (each thread's TM x TN independent accumulators are the ILP that covers
# latency). The DRAM bound is the kernel report's roofline, not part of this choice. The choice
# depends only on the product's shape, so every backend (the CPU runtime too) runs the same tile.
MODEL_SMS = 132
MODEL_WARP_ISSUE_PER_CYCLE = 4
MODEL_CLOCK_HZ = 1.98e9

# Hot-loop instructions per FFMA of each tile's float conv2d kernels: sm_90 SASS of NVRTC 13.0, the
# forward kernel's (the backwards are within 5%); `alexnet-raw kernels` measures them, and
# tests/test_kernel_report.py checks this table against what it measures.
CONV_ISSUE_PER_FMA = {(64, 64): 1.383, (16, 256): 1.832, (128, 128): 1.188, (128, 64): 1.254, (64, 128): 1.313}
# The same for gemm.cu (the fully connected layers), its forward product <.., false, true>; the two
# other transpositions are within 12%.
GEMM_ISSUE_PER_FMA = {(64, 64): 1.289, (16, 256): 1.340, (256, 16): 1.344, (128, 128): 1.120, (128, 64): 1.201,
                      (64, 128): 1.203}


def resident_blocks(tile, itemsize: int = 4) -> int:
    """Blocks per SM the kernel's register budget is set for (ALX_GEMM_LAUNCH_BOUNDS of gemm_tile.cuh)."""
    bm, bn = tile
    return (4 if bm * bn // THREADS <= 16 else 2) // (1 if itemsize == 4 else 2)


def predicted_seconds(m: int, n: int, k: int, tile, depth: int = 1, issue_per_fma=CONV_ISSUE_PER_FMA) -> float:
    """The model's time of an M x N x K product (`depth` of them side by side) with `tile`."""
    bm, bn = tile
    blocks = ceil_div(m, bm) * ceil_div(n, bn) * depth
    k_padded = ceil_div(k, K_SLICE) * K_SLICE
    warp_instructions = bm * bn * k_padded / 32 * issue_per_fma[tile]
    return ceil_div(blocks, MODEL_SMS) * warp_instructions / MODEL_WARP_ISSUE_PER_CYCLE / MODEL_CLOCK_HZ


def choose_by_model(m: int, n: int, tiles, depth: int = 1, issue_per_fma=CONV_ISSUE_PER_FMA):
    """The tile of `tiles` the model predicts fastest for an M x N product (ties: the earlier tile;
    K scales every tile alike and is left out)."""
    return min(tiles, key=lambda t: (predicted_seconds(m, n, K_SLICE, t, depth, issue_per_fma), tiles.index(t)))
