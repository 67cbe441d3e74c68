"""Backends: where a Launch (alexnet_raw/runtime/launch.py) runs.

    emu      the CPU runtime's JIT (NumPy arrays): kernels/*.cu compiled by the host compiler
    emu_ext  the pybind11 extension built against the CPU runtime (NumPy arrays): the `cuda`
             backend's launch code, run on the CPU
    cupy     CuPy RawModule, compiled by NVRTC at run time (CuPy arrays, needs a GPU)
    cuda     the pybind11 extension compiled by nvcc (CuPy arrays, needs a GPU)

NumPy arrays run on the CPU backend (default ``emu``), CuPy arrays on the GPU backend (default
``cuda`` when the extension was built, else ``cupy``). Choose with ``set_backend(name)`` or the
environment variable ALEXNET_RAW_BACKEND (a comma-separated list, e.g. ``emu_ext,cupy``).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys
import threading
from pathlib import Path

import numpy as np

from . import kernel_args, kernel_sources
from .launch import Launch

CPU_BACKENDS = ("emu", "emu_ext")
GPU_BACKENDS = ("cupy", "cuda")
ALL_BACKENDS = CPU_BACKENDS + GPU_BACKENDS


class BackendUnavailable(RuntimeError):
    """The requested backend cannot run on this machine; the message says what is missing."""


class Backend:
    name = "?"
    array_module = np

    def prepare(self, launch: Launch):
        """Everything a launch needs done on the host (the kernel looked up, the arguments checked
        and packed), returned as a callable that queues the kernel: the benchmark times only that."""
        raise NotImplementedError

    def launch(self, launch: Launch) -> None:
        self.prepare(launch)()

    def empty(self, shape, dtype):
        return self.array_module.empty(shape, dtype)

    def zeros(self, shape, dtype):
        return self.array_module.zeros(shape, dtype)


# --------------------------------------------------------------------------------------------
class EmuBackend(Backend):
    """kernels/*.cu on the CPU runtime, one RawModule per kernel file: the same program text as the
    cupy backend hands to NVRTC (includes inlined, with #line markers naming the files), so the
    CPU runtime's compile cache serves both this backend and CuPy run on the CPU (the tests'
    stand-in); the GPU-only options do not change the CPU build."""

    name = "emu"

    def __init__(self):
        from .. import emu

        self._emu = emu
        self._modules = {}
        self._lock = threading.Lock()

    def module(self, source: str):
        with self._lock:
            m = self._modules.get(source)
            if m is None:
                text, _, names = kernel_sources.nvrtc_program(source)
                m = self._emu.RawModule(code=text, options=kernel_sources.COMPILE_OPTIONS, name_expressions=names)
                m.compile()
                self._modules[source] = m
            return m

    def prepare(self, launch: Launch):
        kernel = self.module(launch.source).get_function(launch.kernel)
        return lambda: kernel(launch.grid, launch.block, launch.args, shared_mem=launch.shared_bytes)


# --------------------------------------------------------------------------------------------
def _cupy_view(value):
    import cupy

    if isinstance(value, cupy.ndarray):
        return kernel_args.ArrayView(value.data.ptr, value.dtype, value.flags.c_contiguous, True, value.nbytes)
    return None


class ExtensionBackend(Backend):
    """The pybind11 extension: `_emu_ext` (CPU runtime, NumPy) or `_cuda` (nvcc, CuPy)."""

    def __init__(self, name, module, on_gpu):
        self.name = name
        self._ext = module
        self._codes = {k: tuple(c for c in v.split(",") if c) for k, v in module.kernels().items()}
        self._on_gpu = on_gpu
        if on_gpu:
            import cupy

            self.array_module = cupy

    def param_codes(self, kernel: str):
        try:
            return self._codes[kernel]
        except KeyError:
            raise KeyError(
                f"kernel {kernel} is not in the {self.name} extension; it was built from other kernel sources "
                "(rebuild with pip install .)"
            ) from None

    def prepare(self, launch: Launch):
        codes = self.param_codes(launch.kernel)
        ext, name, grid, block, shared = self._ext, launch.kernel, launch.grid, launch.block, launch.shared_bytes
        if self._on_gpu:
            import cupy

            blob, offsets, keep = kernel_args.pack(name, codes, launch.args, _cupy_view)

            def run():
                ext.launch(name, grid, block, shared, cupy.cuda.get_current_stream().ptr, blob, offsets)
                keep.clear()  # the arrays stay alive in the caller; CuPy's pool orders their reuse

            return run
        from .. import emu

        blob, offsets, keep = kernel_args.pack(name, codes, launch.args)

        def run_on_cpu():
            o = emu.launch_options()
            ext.configure(o.schedule, o.seed, o.num_threads, o.poison, o.max_shared_bytes, 0, o.timeout_seconds)
            try:
                ext.launch(name, grid, block, shared, 0, blob, offsets)
            except RuntimeError as e:
                emu.raise_launch_error(str(e))
            finally:
                keep.clear()

        return run_on_cpu


# --------------------------------------------------------------------------------------------
class CupyBackend(Backend):
    """kernels/*.cu compiled by NVRTC through cupy.RawModule."""

    name = "cupy"

    def __init__(self, cupy, codes_from=None):
        self._cupy = cupy
        self.array_module = cupy
        self._modules = {}
        self._codes_from = codes_from  # an ExtensionBackend to check arguments strictly, if built

    def module(self, source: str):
        m = self._modules.get(source)
        if m is None:
            text, options, names = kernel_sources.nvrtc_program(source)
            m = self._cupy.RawModule(code=text, options=options, name_expressions=names)
            self._modules[source] = m
        return m

    def prepare(self, launch: Launch):
        if self._codes_from is not None:  # CuPy itself would pack a wrong scalar type silently
            kernel_args.pack(launch.kernel, self._codes_from.param_codes(launch.kernel), launch.args, _cupy_view)
        kernel = self.module(launch.source).get_function(launch.kernel)
        return lambda: kernel(launch.grid, launch.block, launch.args, shared_mem=launch.shared_bytes)


class BoundToDevice(Backend):
    """A GPU backend bound to the GPU its arrays are on: allocations and launches go there,
    whichever GPU is current (as PyTorch runs an op on its tensors' device)."""

    def __init__(self, backend, device_id):
        import cupy

        self._backend, self.device_id, self._cupy = backend, device_id, cupy
        self.name, self.array_module = backend.name, backend.array_module

    def prepare(self, launch: Launch):
        with self._cupy.cuda.Device(self.device_id):
            run = self._backend.prepare(launch)

        def run_there():
            with self._cupy.cuda.Device(self.device_id):
                run()

        return run_there

    def empty(self, shape, dtype):
        with self._cupy.cuda.Device(self.device_id):
            return self._backend.empty(shape, dtype)

    def zeros(self, shape, dtype):
        with self._cupy.cuda.Device(self.device_id):
            return self._backend.zeros(shape, dtype)


# --------------------------------------------------------------------------------------------
_instances = {}
_instances_lock = threading.Lock()


def _import_extension(name: str):
    """alexnet_raw._cuda / alexnet_raw._emu_ext, or a build elsewhere named by an environment
    variable (ALEXNET_RAW_EMU_EXT_DIR: used for the sanitizer build of _emu_ext)."""
    override = os.environ.get("ALEXNET_RAW_EMU_EXT_DIR") if name == "_emu_ext" else None
    if override:
        candidates = sorted(Path(override).glob(f"{name}.*.so")) + sorted(Path(override).glob(f"{name}.*.pyd"))
        if not candidates:
            raise ImportError(f"ALEXNET_RAW_EMU_EXT_DIR={override} holds no {name} extension")
        spec = importlib.util.spec_from_file_location(name, candidates[0])
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    return importlib.import_module(f"alexnet_raw.{name}")


def _create(name: str) -> Backend:
    if name == "emu":
        from ..emu import _jit

        try:
            _jit.compiler_identity(_jit.host_compiler())
        except _jit.CompileError as e:
            raise BackendUnavailable(f"emu: {e}") from None
        return EmuBackend()
    if name == "emu_ext":
        try:
            module = _import_extension("_emu_ext")
        except ImportError as e:
            raise BackendUnavailable(
                f"emu_ext: the extension built against the CPU runtime is not installed ({e}); "
                "install the package with pip so that CMake builds it"
            ) from None
        return ExtensionBackend("emu_ext", module, on_gpu=False)
    if name in GPU_BACKENDS:
        try:
            import cupy
        except ImportError as e:
            raise BackendUnavailable(
                f"{name}: CuPy is not installed ({e}); GPU arrays are CuPy arrays (pip install cupy-cuda13x)"
            ) from None
        try:
            count = cupy.cuda.runtime.getDeviceCount()
        except Exception as e:  # cupy raises CUDARuntimeError without a driver
            raise BackendUnavailable(f"{name}: no usable GPU: the CUDA runtime reports {e}") from None
        if count < 1:
            raise BackendUnavailable(f"{name}: no usable GPU: the CUDA driver reports no device")
        if name == "cupy":
            try:
                codes = _create("cuda")
            except BackendUnavailable:
                codes = None
            return CupyBackend(cupy, codes)
        try:
            module = _import_extension("_cuda")
        except ImportError as e:
            raise BackendUnavailable(
                f"cuda: the nvcc extension is not installed ({e}); it is built at install time when nvcc is found"
            ) from None
        n, status = module.device_count()
        if n < 1:
            raise BackendUnavailable(f"cuda: no usable GPU: the CUDA runtime reports {status}")
        return ExtensionBackend("cuda", module, on_gpu=True)
    raise ValueError(f"unknown backend {name!r}; choose one of {ALL_BACKENDS}")


def get_backend(name: str) -> Backend:
    """The backend called `name`, or BackendUnavailable saying what is missing."""
    with _instances_lock:
        b = _instances.get(name)
    if b is None:
        b = _create(name)
        with _instances_lock:
            b = _instances.setdefault(name, b)
    return b


def reset() -> None:
    """Forget the backends created so far and this thread's GPU choice: they are created again on
    next use. For code that replaced CuPy or an extension module (the tests' CuPy stand-in)."""
    with _instances_lock:
        _instances.clear()
    _choice.gpu = None
    if _choice.cpu not in CPU_BACKENDS:
        _choice.cpu = "emu"


def available_backends():
    """Names of the backends that work on this machine."""
    names = []
    for name in ALL_BACKENDS:
        try:
            get_backend(name)
        except BackendUnavailable:
            continue
        names.append(name)
    return names


class RecordingBackend(Backend):
    """Records each Launch instead of running it; the outputs the ops allocate stay uninitialised.
    The kernel report and the GPU check learn from it which kernel, grid and block each op gives
    AlexNet's layers, from the ops' own code (alexnet_raw/perf/layer_cases.py). Use recording()."""

    name = "record"

    def __init__(self):
        self.launches = []

    def prepare(self, launch: Launch):
        return lambda: self.launches.append(launch)


class _Choice(threading.local):
    """This thread's backends. ALEXNET_RAW_BACKEND is read at the first use, not at import: a bad
    value is then an error where a backend is asked for (BackendUnavailable, which the CLI says on
    one line), not an import that fails."""

    def __init__(self):
        self._cpu, self._gpu, self._read = "emu", None, False
        self.recorder = None  # a RecordingBackend inside recording()
        self.wrap = None  # inside wrapped(wrap): backend_for returns wrap(backend)

    def _read_environment(self):
        if self._read:
            return
        for name in [n.strip() for n in os.environ.get("ALEXNET_RAW_BACKEND", "").split(",") if n.strip()]:
            if name in CPU_BACKENDS:
                self._cpu = name
            elif name in GPU_BACKENDS:
                self._gpu = name
            else:
                raise BackendUnavailable(f"ALEXNET_RAW_BACKEND names unknown backend {name!r}; choose from "
                                         f"{', '.join(ALL_BACKENDS)}")
        self._read = True

    @property
    def cpu(self):
        self._read_environment()
        return self._cpu

    @cpu.setter
    def cpu(self, name):
        self._read_environment()
        self._cpu = name

    @property
    def gpu(self):
        self._read_environment()
        return self._gpu

    @gpu.setter
    def gpu(self, name):
        self._read_environment()
        self._gpu = name


_choice = _Choice()


def set_backend(name: str) -> None:
    """Run NumPy arrays on `name` (emu, emu_ext) or CuPy arrays on `name` (cupy, cuda)."""
    if name not in ALL_BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {ALL_BACKENDS}")
    get_backend(name)  # raises BackendUnavailable with the reason
    if name in CPU_BACKENDS:
        _choice.cpu = name
    else:
        _choice.gpu = name


def current_backends():
    """(CPU backend name, GPU backend name or None) in use for this thread."""
    return _choice.cpu, _choice.gpu


@contextlib.contextmanager
def recording():
    """Within this block (on this thread), ops called on NumPy arrays record their Launch objects in
    the yielded list instead of running them; their outputs are uninitialised. Whatever an op
    raises (bad input, a shape it refuses) is raised as it would be outside the block."""
    previous, _choice.recorder = _choice.recorder, RecordingBackend()
    try:
        yield _choice.recorder.launches
    finally:
        _choice.recorder = previous


@contextlib.contextmanager
def wrapped(wrap):
    """Within this block (on this thread), backend_for(array) returns wrap(backend) instead of the
    backend itself: the bench times each launch this way (alexnet_raw/perf/bench/phases.py)."""
    previous, _choice.wrap = _choice.wrap, wrap
    try:
        yield
    finally:
        _choice.wrap = previous


def backend_for(array) -> Backend:
    """The backend that runs kernels on `array`'s kind of memory (for a CuPy array: on its GPU)."""
    if isinstance(array, np.ndarray) and _choice.recorder is not None:
        return _choice.recorder
    backend = _backend_for(array)
    return backend if _choice.wrap is None else _choice.wrap(backend)


def _backend_for(array) -> Backend:
    if isinstance(array, np.ndarray):
        return get_backend(_choice.cpu)
    cupy = sys.modules.get("cupy")
    if cupy is not None and isinstance(array, cupy.ndarray):
        if _choice.gpu is None:
            try:
                get_backend("cuda")
                _choice.gpu = "cuda"
            except BackendUnavailable:
                _choice.gpu = "cupy"
        backend = get_backend(_choice.gpu)
        device_id = array.device.id
        if device_id != cupy.cuda.runtime.getDevice():
            return BoundToDevice(backend, device_id)
        return backend
    raise TypeError(
        f"expected a numpy.ndarray (CPU) or a cupy.ndarray (GPU), got {type(array).__module__}.{type(array).__name__}"
    )
