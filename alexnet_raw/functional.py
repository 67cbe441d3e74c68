"""The kernels as functions, named like torch.nn.functional (NumPy in and out on the CPU runtime,
CuPy in and out on a GPU; float32 and float64; NCHW). Backward functions are explicit: there is
no autograd. Each op lives in alexnet_raw/ops/<op>.py, its kernel in kernels/<op>.cu.

Arguments (checked by alexnet_raw/ops/_checks.py, a TypeError or ValueError naming the argument,
what was expected and what came): arrays are plain numpy.ndarray / cupy.ndarray (np.matrix,
masked arrays and other subclasses are refused with the conversion to use; np.memmap is taken as
its memory); inputs may be strided (copied to contiguous memory on their device first, as
torch.nn.functional takes them), arrays written in place (accumulate's out, sgd_update's param and
momentum_buffer) must be C-contiguous and writable; scalars are real numbers or ints (never bool
or str), finite, in their range and representable in the arrays' dtype. topk_correct counts a row
holding NaN as wrong."""

# one import line per op module (keep sorted)
from .ops.accumulate import accumulate  # noqa: F401
from .ops.avg_pool2d import avg_pool2d, avg_pool2d_backward, convnet_avg_pool2d, convnet_avg_pool2d_backward  # noqa: F401
from .ops.channel_gather import channel_gather, channel_gather_backward  # noqa: F401
from .ops.concat import concat, concat_backward  # noqa: F401
from .ops.conv2d import conv2d, conv2d_backward  # noqa: F401
from .ops.softmax_cross_entropy import cross_entropy, cross_entropy_backward, softmax, topk_correct  # noqa: F401
from .ops.dropout import dropout, dropout_backward  # noqa: F401
from .ops.eltwise import eltwise_max, eltwise_max_backward, eltwise_sum, eltwise_sum_backward  # noqa: F401
from .ops.linear import linear, linear_backward  # noqa: F401
from .ops.local import local, local_backward  # noqa: F401
from .ops.local_response_norm import local_response_norm, local_response_norm_backward  # noqa: F401
from .ops.max_pool2d import convnet_max_pool2d, convnet_max_pool2d_backward, max_pool2d, max_pool2d_backward  # noqa: F401
from .ops.neuron import neuron, neuron_backward, parse_neuron  # noqa: F401
from .ops.norm_constraint import constrain_norms  # noqa: F401
from .ops.relu import relu, relu_backward  # noqa: F401
from .ops.same_map_norm import same_map_norm, same_map_norm_backward  # noqa: F401
from .ops.sgd_update import sgd_update  # noqa: F401

__all__ = [name for name in dir() if not name.startswith("_")]
