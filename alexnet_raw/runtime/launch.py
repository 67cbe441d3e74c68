"""Launch geometry: the one place where grid, block and shared memory are computed.

Every op (alexnet_raw/ops/) describes each kernel call as a ``Launch`` built with the helpers
here, and hands it to the backend of its arrays. All backends (the CPU runtime, the extension
built against it, CuPy/NVRTC and the nvcc extension) receive the same ``Launch``, so the CPU tests
exercise exactly the geometry and argument packing a GPU gets.
"""

from __future__ import annotations

import dataclasses

import numpy as np

THREADS_PER_BLOCK = 256
# The SMs of the GPU launch geometry is planned for (an H100 SXM), fixed rather than read from the
# device: the tile and split-K choice (alexnet_raw/ops/gemm_tiles.py) follows from it, and with it
# the order of a split product's sum, so results are the same on every GPU and the CPU runtime.
PLANNED_SMS = 132
# Grid-stride kernels need no more blocks than fill a large GPU several times over (8 blocks of 256
# threads per SM at full occupancy, 4 times over); more only costs block start-up.
MAX_GRID_STRIDE_BLOCKS = PLANNED_SMS * 8 * 4
MAX_GRID_Y_Z = 65535
DEFAULT_SHARED_LIMIT = 48 * 1024  # per block, without opting in, on every GPU since Volta


@dataclasses.dataclass(frozen=True)
class Launch:
    """One kernel call: which kernel, its geometry and its arguments."""

    source: str  # kernel file in kernels/
    kernel: str  # name expression, one of the file's ALX_INSTANTIATE lines
    grid: tuple
    block: tuple
    args: tuple
    shared_bytes: int = 0

    def __post_init__(self):
        for what, dims in (("grid", self.grid), ("block", self.block)):
            if len(dims) != 3 or any(int(d) < 1 for d in dims):
                raise ValueError(f"{self.kernel}: {what} must be three positive ints, got {dims}")
        if self.grid[1] > MAX_GRID_Y_Z or self.grid[2] > MAX_GRID_Y_Z:
            raise ValueError(f"{self.kernel}: grid {self.grid} exceeds 65535 in y or z")
        if self.block[0] * self.block[1] * self.block[2] > 1024:
            raise ValueError(f"{self.kernel}: block {self.block} has more than 1024 threads")
        if not 0 <= self.shared_bytes <= DEFAULT_SHARED_LIMIT:
            raise ValueError(f"{self.kernel}: {self.shared_bytes} bytes of dynamic shared memory, limit 48 KB")


def ceil_div(a: int, b: int) -> int:
    return -(-int(a) // int(b))


def elementwise(n: int, threads: int = THREADS_PER_BLOCK):
    """(grid, block) for a grid-stride loop over n elements."""
    blocks = max(1, min(ceil_div(n, threads), MAX_GRID_STRIDE_BLOCKS))
    return (blocks, 1, 1), (threads, 1, 1)


def per_row(rows: int, row_length: int, max_threads: int = THREADS_PER_BLOCK):
    """(grid, block) for row reductions: one block per row in a grid-stride loop over rows, its
    threads (a multiple of 32, warp-shuffle friendly, up to max_threads) striding over the row.
    per_row(1, n) is one block reducing n values."""
    threads = min(max_threads, max(32, ceil_div(row_length, 32) * 32))
    blocks = max(1, min(int(rows), MAX_GRID_STRIDE_BLOCKS))
    return (blocks, 1, 1), (threads, 1, 1)


def c_type(dtype) -> str:
    """Template argument for a dtype: the kernels are instantiated for float and double."""
    dtype = np.dtype(dtype)
    if dtype == np.float32:
        return "float"
    if dtype == np.float64:
        return "double"
    raise TypeError(f"kernels are instantiated for float32 and float64, got {dtype}")
