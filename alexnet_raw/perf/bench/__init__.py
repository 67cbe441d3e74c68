"""Layer-by-layer benchmark of our kernels against PyTorch, and of a whole training step.

    alexnet-raw bench [--out DIR] [--quick | --full] [--batch 1,2,4] [--network NAME] [--layer NAME]
                      [--repeats N] [--warmup N] [--no-train-step]

Every conv, pool, norm and fc layer of the krizhevsky2012 and torchvision networks (each distinct
shape once; layer_cases.network_layers) is run through exactly what the engine calls
(layer_cases.make_layer_run -> alexnet_raw.functional), forward then backward. Each kernel
launch is timed on its own and assigned to a phase by the arrays it touches: forward,
backward-data (writes the input gradient), backward-weights (writes a weight or bias gradient, or
feeds a kernel that does). PyTorch does the same work: F.conv2d / torch.nn.grad.conv2d_input /
conv2d_weight, matrix products for fc, autograd for pool and norm layers.

On a GPU: our `cupy` and `cuda` paths against cuDNN through PyTorch (cudnn.benchmark on; TF32 off
for the FP32 comparison, and a TF32 column), CUDA events, warm-up, the L2 cache flushed before
every repeat, batch sizes 1 to 256. Without a GPU: the CPU runtime against PyTorch's CPU kernels,
labelled as CPU figures, with the list of comparisons that need a GPU. Each row: median and
spread (interquartile range) of the repeats, achieved GFLOP/s, and the percentage of the device's
nominal FP32 peak. Our per-layer times are the sums of our kernels' times (on the CPU each
includes its launch's Python overhead); PyTorch's are its calls' times. Writes DIR/bench.json,
DIR/bench.md and DIR/bench.png.
"""

from .clocks import CpuClock, CudaEventClock, SyncedWallClock  # noqa: F401
from .cli import build_parser, main  # noqa: F401
from .machine import cpu_info, gpu_info  # noqa: F401
from .phases import PHASES, assign_phases, measure_ours, timed_launches  # noqa: F401
from .report import format_markdown, format_scaling, machine_line, write_chart, write_outputs  # noqa: F401
from .runs import NEEDS_GPU, Config, measure_train_ours, run_cpu, run_gpu, train_step_flop  # noqa: F401
from .stats import summarize, throughput  # noqa: F401
from .torch_side import TorchLayer, measure_torch, measure_train_torch, torch_alexnet  # noqa: F401
