"""Tile shapes of the matrix-multiply kernels (kernels/gemm_tile.cuh), and the choice among them: the
one place where a product's block tile is decided, for every path (conv2d and linear ops).

Each tile is (BM, BN) outputs per block of 256 threads. Version 1 of gemm_tile.cuh's progression,
4 x 4 per thread: (64, 64) is the general tile; (16, 256) and (256, 16) serve products with few rows
(few filters) or few columns (a fully connected layer at a small batch), where a 64-wide tile would
mostly compute padding. Version 2 (float, conv2d.cu): (128, 128) at 8 x 8 per thread, (128, 64) and
(64, 128) at 8 x 4 / 4 x 8. The automatic choice (`choose`) still picks among version 1's tiles;
`forced(tile)` makes every product on this thread use `tile` (to run, test or time one version).
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
    """Within the block, the conv2d products this thread launches (forward and both backwards) use
    `tile` (BM, BN) instead of the automatic choice; one that has no such instantiation for its
    dtype raises ValueError. (The fully connected layers' gemm.cu has version 1's tiles only and
    keeps its automatic choice.)"""
    if (not isinstance(tile, tuple) or len(tile) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in tile)):
        raise TypeError(f"tile must be a (rows, columns) pair of ints, got {tile!r}")
    old = getattr(_forced, "tile", None)
    _forced.tile = tile
    try:
        yield tile
    finally:
        _forced.tile = old


def pick(m: int, n: int, automatic, instantiated, what: str):
    """The tile of an M x N product: the forced one (which must be in `instantiated`, the tiles the
    kernel file has for this product and dtype), else choose(m, n, automatic)."""
    tile = getattr(_forced, "tile", None)
    if tile is None:
        return choose(m, n, automatic)
    if tile not in instantiated:
        raise ValueError(f"{what} has no {tile[0]} x {tile[1]} tile; its tiles: "
                         + ", ".join(f"{a} x {b}" for a, b in instantiated))
    return tile


def padded_work(m: int, n: int, tile) -> int:
    bm, bn = tile
    return ceil_div(m, bm) * bm * ceil_div(n, bn) * bn


def choose(m: int, n: int, tiles=(GENERAL, FEW_ROWS, FEW_COLUMNS)):
    """The tile computing the least padding for an M x N product (ties: the earlier tile)."""
    return min(tiles, key=lambda t: (padded_work(m, n, t), tiles.index(t)))


def grid(m: int, n: int, tile, depth: int = 1):
    """Grid of an M x N product: x over N, y over M, z over `depth` independent products."""
    bm, bn = tile
    return (ceil_div(n, bn), ceil_div(m, bm), depth)
