"""The kernels as functions, named like torch.nn.functional (NumPy in and out on the CPU runtime,
CuPy in and out on a GPU; float32 and float64; NCHW). Backward functions are explicit: there is
no autograd."""

from .ops.relu import relu, relu_backward

__all__ = ["relu", "relu_backward"]
