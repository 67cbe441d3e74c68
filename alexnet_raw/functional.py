"""The kernels as functions, named like torch.nn.functional (NumPy in and out on the CPU runtime,
CuPy in and out on a GPU; float32 and float64; NCHW). Backward functions are explicit: there is
no autograd. Each op lives in alexnet_raw/ops/<op>.py, its kernel in kernels/<op>.cu."""

# one import line per op module (keep sorted)
from .ops.relu import relu, relu_backward  # noqa: F401

__all__ = [name for name in dir() if not name.startswith("_")]
