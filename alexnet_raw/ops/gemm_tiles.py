"""Tile shapes of the matrix-multiply kernels (kernels/gemm_tile.cuh), and the choice among them: the
one place where a product's block tile is decided, for every path (conv2d and linear ops).

Each tile is (BM, BN) outputs per block of 256 threads, 4 x 4 per thread. (64, 64) is the general
tile; (16, 256) and (256, 16) serve products with few rows (few filters) or few columns (a fully
connected layer at a small batch), where a 64-wide tile would mostly compute padding.
"""

from __future__ import annotations

from ..launch import ceil_div

GENERAL = (64, 64)
FEW_ROWS = (16, 256)
FEW_COLUMNS = (256, 16)
THREADS = 256
K_SLICE = 16  # BK of gemm_tile.cuh: K ranges of split products are multiples of it


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
