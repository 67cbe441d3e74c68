"""One module per op: input checks, output allocation and the Launch of each of its kernels.

The public API is alexnet_raw.functional; the kernels are in kernels/, one file per op.
"""
