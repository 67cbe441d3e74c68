"""alexnet_raw.emu: run CUDA C kernels on the CPU, with a CuPy-shaped API.

    from alexnet_raw import emu
    mod = emu.RawModule(code=source, options=("-std=c++17",), name_expressions=("scale<float>",))
    k = mod.get_function("scale<float>")
    k((blocks,), (256,), (y, x, np.float32(2.0), np.int32(n)), shared_mem=0)

Arrays are NumPy arrays, scalars must be NumPy scalars of the parameter's exact type. Kernels run
on all cores (blocks spread over OS threads); inside a block every CUDA thread is a fiber and
``__syncthreads()`` is a real barrier. ``set_schedule`` changes the order in which a block's
threads resume after each barrier, so that a missing barrier changes the result instead of hiding.

Environment: ALEXNET_RAW_EMU_SCHEDULE (forward | reverse | random[:seed]), ALEXNET_RAW_EMU_THREADS,
ALEXNET_RAW_EMU_POISON (0 turns off shared-memory poisoning), ALEXNET_RAW_EMU_TIMEOUT (seconds: the
watchdog's limit per launch, see set_timeout),
ALEXNET_RAW_EMU_SANITIZE (1: compile with AddressSanitizer and UBSan; run Python with libasan
preloaded), ALEXNET_RAW_EMU_DEBUG (1: -O0 for stepping in gdb), ALEXNET_RAW_CACHE_DIR, ALEXNET_RAW_CXX.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import re
import shutil
import subprocess
import threading
from pathlib import Path

import numpy as np

from ..runtime import kernel_args
from ._jit import CompileError, LaunchOptions, build, cache_dir, flushes_denormals
from ._translate import TranslationError

__all__ = [
    "RawModule",
    "RawKernel",
    "KernelError",
    "DivergenceError",
    "KernelTimeout",
    "CompileError",
    "TranslationError",
    "set_schedule",
    "get_schedule",
    "schedule",
    "set_num_threads",
    "set_timeout",
    "get_timeout",
    "cache_dir",
]

SCHEDULES = ("forward", "reverse", "random")
GPU_DEFAULT_SHARED_BYTES = 48 * 1024  # without opting in, as on every GPU since Volta
GPU_MAX_SHARED_BYTES = 227 * 1024  # sm_90 opt-in limit per block


class KernelError(RuntimeError):
    """A kernel failed while running on the CPU runtime (assert, trap, bad launch, ...)."""


class DivergenceError(KernelError):
    """Threads of one block waited at different barriers: a hang or undefined behaviour on a GPU."""


class KernelTimeout(KernelError):
    """A launch ran longer than the watchdog's limit (set_timeout, ALEXNET_RAW_EMU_TIMEOUT)."""


class _Settings(threading.local):
    def __init__(self):
        self.schedule, self.seed = _schedule_from_env()
        threads = os.environ.get("ALEXNET_RAW_EMU_THREADS")
        self.num_threads = int(threads) if threads else 0
        self.timeout = _timeout_from_env()


def _checked_timeout(seconds, where):
    if seconds is None:
        return 0.0
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float, np.integer, np.floating)):
        raise TypeError(f"{where} must be a number of seconds or None, got {type(seconds).__name__} {seconds!r}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{where} must be a finite number of seconds >= 0 (0: no limit), got {seconds!r}")
    return float(seconds)


def _timeout_from_env():
    raw = os.environ.get("ALEXNET_RAW_EMU_TIMEOUT", "").strip()
    if not raw:
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"ALEXNET_RAW_EMU_TIMEOUT must be a number of seconds, got {raw!r}") from None
    return _checked_timeout(value, "ALEXNET_RAW_EMU_TIMEOUT")


def _schedule_from_env():
    raw = os.environ.get("ALEXNET_RAW_EMU_SCHEDULE", "forward").strip() or "forward"
    kind, _, seed = raw.partition(":")
    if kind not in SCHEDULES:
        raise ValueError(f"ALEXNET_RAW_EMU_SCHEDULE must be one of {SCHEDULES} (random may take ':seed'), got {raw!r}")
    return kind, int(seed) if seed else 0


_settings = _Settings()


def set_schedule(kind: str, seed: int = 0) -> None:
    """Order in which a block's threads run between barriers: 'forward', 'reverse' or 'random'."""
    if kind not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {kind!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"schedule seed must be a non-negative int, got {seed!r}")
    _settings.schedule, _settings.seed = kind, int(seed)


def get_schedule():
    """(kind, seed) of the current thread's schedule."""
    return _settings.schedule, _settings.seed


@contextlib.contextmanager
def schedule(kind: str, seed: int = 0):
    """Run the body under another thread schedule."""
    old = get_schedule()
    set_schedule(kind, seed)
    try:
        yield
    finally:
        set_schedule(*old)


def set_num_threads(n: int) -> None:
    """OS threads that run blocks (0: one per core)."""
    if not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"number of threads must be a non-negative int, got {n!r}")
    _settings.num_threads = int(n)


def set_timeout(seconds) -> None:
    """The watchdog: a launch on this Python thread that runs longer than ``seconds`` is stopped and
    raises KernelTimeout naming the kernel, block and thread it stopped (None or 0: no limit)."""
    _settings.timeout = _checked_timeout(seconds, "timeout")


def get_timeout() -> float:
    """The watchdog's limit in seconds for launches on this Python thread (0: none)."""
    return _settings.timeout


def launch_options(max_shared_bytes: int = GPU_DEFAULT_SHARED_BYTES, flush_denormals: bool = False) -> LaunchOptions:
    o = LaunchOptions()
    o.timeout_seconds = _settings.timeout
    o.flush_denormals = 1 if flush_denormals else 0
    o.schedule = SCHEDULES.index(_settings.schedule)
    o.seed = _settings.seed
    o.num_threads = _settings.num_threads
    o.poison = 0 if os.environ.get("ALEXNET_RAW_EMU_POISON", "1") in ("0", "false", "no") else 1
    o.max_shared_bytes = max_shared_bytes
    return o


def flush_applies(param_codes) -> bool:
    """-ftz=true flushes float32 only; the CPU's flush bits (x86 MXCSR FTZ/DAZ) flush doubles as
    well, so they are set only for kernels without a double parameter (scalar or pointer)."""
    return not any(c in ("f64", "p:f64", "pc:f64", "p:f64x2", "pc:f64x2") for c in param_codes)


_PC = re.compile(r" at pc (\S+)\+0x([0-9a-f]+)")


def source_location(message: str) -> str:
    """Replace the runtime's " at pc LIBRARY+0xOFFSET" with the source line addr2line finds for it
    (kernels are compiled with -g; the innermost inlined frame is the faulting line)."""
    m = _PC.search(message)
    tool = shutil.which("addr2line")
    if not m or not tool:
        return message
    try:
        out = subprocess.run([tool, "-s", "-i", "-e", m.group(1), "0x" + m.group(2)], capture_output=True, text=True,
                             timeout=30).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return message
    lines = [x for x in out if not x.startswith("??") and ":" in x and not x.endswith(":0")]
    if not lines:
        return message
    where = lines[0].split(" (discriminator")[0]
    return message[: m.start()] + f" at {where}" + message[m.end() :]


def raise_launch_error(message: str):
    message = source_location(message)
    if message.startswith("barrier divergence"):
        raise DivergenceError(message)
    if "stopped by the watchdog" in message:
        raise KernelTimeout(message)
    raise KernelError(message)


class Function:
    """A kernel of a RawModule, called like a CuPy RawKernel: k(grid, block, args, shared_mem=0)."""

    def __init__(self, module, name, index, codes, param_names=()):
        self._module = module
        self.name = name
        self._index = index
        self.param_codes = codes
        self.param_names = tuple(param_names) if len(param_names) == len(codes) else ()
        self.max_dynamic_shared_size_bytes = 0

    @property
    def signature(self) -> str:
        return kernel_args.signature(self.name, self.param_codes)

    def __call__(self, grid, block, args, *, shared_mem=0, stream=None):
        grid = kernel_args.normalise_dim3(grid, "grid")
        block = kernel_args.normalise_dim3(block, "block")
        if not isinstance(shared_mem, (int, np.integer)) or shared_mem < 0:
            raise ValueError(f"shared_mem must be a non-negative int, got {shared_mem!r}")
        blob, offsets, keep = kernel_args.pack(self.name, self.param_codes, args, names=self.param_names)
        buf = (ctypes.c_char * max(len(blob), 1)).from_buffer(blob) if blob else (ctypes.c_char * 1)()
        base = ctypes.addressof(buf)
        pointers = (ctypes.c_void_p * max(len(offsets), 1))(*[base + o for o in offsets])
        limit = GPU_DEFAULT_SHARED_BYTES
        if self.max_dynamic_shared_size_bytes:
            limit = min(GPU_MAX_SHARED_BYTES, max(limit, int(self.max_dynamic_shared_size_bytes)))
        flush = self._module.flush_denormals and flush_applies(self.param_codes)
        rc, message = self._module._compiled.launch(
            self._index, grid, block, int(shared_mem), pointers, launch_options(limit, flush)
        )
        del keep, buf
        if rc:
            raise_launch_error(message)


class RawModule:
    """CUDA source compiled for the CPU runtime. Mirrors cupy.RawModule.

    ``code``: the source text; or ``path``: a .cu file (its directory is searched for includes).
    ``options``: NVRTC-style options; -I, -D, -U and -std= are honoured, and -ftz=true (or
    --use_fast_math) flushes float32 subnormals to zero while a kernel without double parameters
    runs (x86 MXCSR FTZ and DAZ); other GPU code-generation options are ignored.
    ``name_expressions``: template instantiations to export, as for CuPy.
    """

    def __init__(self, code=None, *, path=None, options=(), name_expressions=None, backend="nvrtc",
                 translate_cucomplex=False, enable_cooperative_groups=False, jitify=False, name=None):
        if (code is None) == (path is None):
            raise ValueError("give exactly one of code= or path=")
        if path is not None:
            path = str(Path(path).resolve())
            code = Path(path).read_text(encoding="utf-8")
        if not isinstance(code, str):
            raise TypeError(f"code must be a str, got {type(code).__name__}")
        if enable_cooperative_groups:
            raise ValueError("the CPU runtime does not support cooperative groups")
        self.code = code
        self.path = path
        self.options = tuple(options) if not isinstance(options, str) else (options,)
        self.name_expressions = tuple(name_expressions or ())
        self.flush_denormals = flushes_denormals(self.options)  # -ftz=true: applied to each launch
        self._name = name or (Path(path).name if path else "<RawModule>")
        self._compiled = None
        self._functions = {}

    def compile(self):
        if self._compiled is None:
            self._compiled = build(self.code, self._name, self.options, self.name_expressions, path=self.path)
        return self

    @property
    def kernel_names(self):
        return list(self.compile()._compiled.kernels)

    def get_function(self, name: str) -> Function:
        self.compile()
        if name not in self._functions:
            if name not in self._compiled.kernels:
                known = ", ".join(self._compiled.kernels) or "none"
                raise KeyError(
                    f"kernel '{name}' is not in module {self._name} (kernels: {known}); template kernels must be "
                    "listed in name_expressions"
                )
            index, codes = self._compiled.kernels[name]
            names = self._compiled.param_names.get(name.split("<", 1)[0].strip(), ())
            self._functions[name] = Function(self, name, index, codes, names)
        return self._functions[name]


class RawKernel:
    """One kernel from source. Mirrors cupy.RawKernel(code, name, options=())."""

    def __init__(self, code, name, options=(), backend="nvrtc", translate_cucomplex=False,
                 enable_cooperative_groups=False, jitify=False):
        self._module = RawModule(code=code, options=options, name_expressions=(name,) if "<" in name else (),
                                 enable_cooperative_groups=enable_cooperative_groups)
        self.name = name
        self.max_dynamic_shared_size_bytes = 0

    def compile(self):
        self._module.get_function(self.name)
        return self

    @property
    def param_codes(self):
        return self._module.get_function(self.name).param_codes

    @property
    def signature(self) -> str:
        return self._module.get_function(self.name).signature

    def __call__(self, grid, block, args, *, shared_mem=0, stream=None):
        f = self._module.get_function(self.name)
        f.max_dynamic_shared_size_bytes = self.max_dynamic_shared_size_bytes
        f(grid, block, args, shared_mem=shared_mem, stream=stream)
