"""One module per kernel file: input checks, output allocation and the Launch of each of its
kernels. `ops/<name>.py` launches `kernels/<name>.cu` (its SOURCE) and is tested by
`tests/kernels/test_<name>.py`, except where a kernel file's name says what it computes better than
the op's (NAMED_APART). Beside them, modules that launch nothing: gemm_tiles (the tile plan of
conv2d.cu and gemm.cu) and pool_geometry (the pools' output sizes).

The public API is alexnet_raw.functional; the kernels are in kernels/.
"""

# op module -> kernel file, where the names differ: gemm.cu is the general matrix product (three
# transpositions, split K) that F.linear and its backward are made of; "linear" would hide that
NAMED_APART = {"linear": "gemm.cu"}
# modules of ops/ that launch no kernel of their own
NO_KERNEL = ("gemm_tiles", "pool_geometry")
