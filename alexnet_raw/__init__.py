"""alexnet_raw: AlexNet from hand-written CUDA kernels, runnable on the CPU and on GPUs.

    import alexnet_raw
    alexnet_raw.available_backends()     # e.g. ['emu', 'emu_ext'] on a machine without a GPU
    from alexnet_raw import functional as F
    F.relu(numpy_array)                  # runs kernels/relu.cu on the CPU runtime
    model = alexnet_raw.Model.named("mini")   # a network from cuda-convnet layer files
"""

from .runtime.backends import BackendUnavailable, available_backends, current_backends, set_backend

__version__ = "0.1.0"



def __getattr__(name):
    if name == "Model":  # imported on first use: `import alexnet_raw` stays light
        from .engine.model import Model

        return Model
    raise AttributeError(f"module 'alexnet_raw' has no attribute {name!r}")


__all__ = ["Model", "available_backends", "set_backend", "current_backends", "BackendUnavailable", "__version__"]
