"""alexnet_raw: AlexNet from hand-written CUDA kernels, runnable on the CPU and on GPUs."""

__version__ = "0.1.0"
