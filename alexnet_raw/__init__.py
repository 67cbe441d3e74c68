"""alexnet_raw: AlexNet from hand-written CUDA kernels, runnable on the CPU and on GPUs.

    import alexnet_raw
    alexnet_raw.available_backends()     # e.g. ['emu', 'emu_ext'] on a machine without a GPU
    from alexnet_raw import functional as F
    F.relu(numpy_array)                  # runs kernels/relu.cu on the CPU runtime
"""

from .backends import BackendUnavailable, available_backends, current_backends, set_backend

__version__ = "0.1.0"

__all__ = ["available_backends", "set_backend", "current_backends", "BackendUnavailable", "__version__"]
