"""The kernels as functions, named like torch.nn.functional (NumPy in and out on the CPU runtime,
CuPy in and out on a GPU; float32 and float64; NCHW). Backward functions are explicit: there is
no autograd. Each op lives in alexnet_raw/ops/<op>.py, its kernel in kernels/<op>.cu."""

# one import line per op module (keep sorted)
from .ops.accumulate import accumulate  # noqa: F401
from .ops.avg_pool2d import avg_pool2d, avg_pool2d_backward  # noqa: F401
from .ops.conv2d import conv2d, conv2d_backward  # noqa: F401
from .ops.cross_entropy import cross_entropy, cross_entropy_backward, softmax, topk_correct  # noqa: F401
from .ops.dropout import dropout, dropout_backward  # noqa: F401
from .ops.linear import linear, linear_backward  # noqa: F401
from .ops.local_response_norm import local_response_norm, local_response_norm_backward  # noqa: F401
from .ops.max_pool2d import max_pool2d, max_pool2d_backward  # noqa: F401
from .ops.neuron import neuron, neuron_backward, parse_neuron  # noqa: F401
from .ops.relu import relu, relu_backward  # noqa: F401
from .ops.same_map_norm import same_map_norm, same_map_norm_backward  # noqa: F401
from .ops.sgd import sgd_update  # noqa: F401

__all__ = [name for name in dir() if not name.startswith("_")]
