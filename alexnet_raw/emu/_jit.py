"""Compile CUDA C for the CPU runtime with the host C++ compiler, and cache the result on disk.

The translated source (see _translate.py) is wrapped in a generated module: the runtime header
before it, the scheduler after it, and for every kernel an entry with a launch thunk and the
parameter type codes the compiler deduced. The shared object is cached under a key made of
everything that affects it: source, options, compiler identity, runtime headers, flags, machine.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import os
import platform
import shlex
import subprocess
import tempfile
import threading
from pathlib import Path

from . import _translate

INCLUDE_DIR = Path(__file__).resolve().parent / "include"
RUNTIME_VERSION = "1"

# NVRTC/nvcc options that only concern GPU code generation: accepted and ignored on the CPU.
_GPU_ONLY_PREFIXES = (
    "-arch",
    "--gpu-architecture",
    "-lineinfo",
    "--generate-line-info",
    "-use_fast_math",
    "--use_fast_math",
    "-fmad",
    "--fmad",
    "-prec-div",
    "--prec-div",
    "-prec-sqrt",
    "--prec-sqrt",
    "-G",
    "--device-debug",
    "-dopt",
    "--dopt",
    "--extra-device-vectorization",
    "-extra-device-vectorization",
    "-restrict",
    "--restrict",
    "-default-device",
    "--device-as-default-execution-space",
    "-rdc",
    "--relocatable-device-code",
    "--ptxas-options",
    "-Xptxas",
    "-maxrregcount",
    "--maxrregcount",
    "-dw",
    "--disable-warnings",
    "-w",
    "--device-int128",
    "-ewp",
    "--minimal",
)


_FTZ_PREFIXES = ("-ftz=", "--ftz=")


def flushes_denormals(options) -> bool:
    """Whether NVRTC-style options flush float32 subnormals to zero: -ftz=true (which CuPy appends to
    every RawModule compilation), or --use_fast_math, which implies it; the last one given wins.
    The CPU runtime applies it at launch time (LaunchOptions.flush_denormals)."""
    flush = False
    for opt in (options,) if isinstance(options, str) else options:
        if not isinstance(opt, str):
            continue
        if opt.startswith(_FTZ_PREFIXES):
            value = opt.split("=", 1)[1]
            if value not in ("true", "false"):
                raise ValueError(f"option '{opt}': -ftz takes true or false")
            flush = value == "true"
        elif opt in ("-use_fast_math", "--use_fast_math"):
            flush = True
    return flush


class CompileError(RuntimeError):
    """The host compiler rejected the kernel source."""


class LaunchOptions(ctypes.Structure):
    # mirrors emu::LaunchOptions in cuda_emu_runtime.h
    _fields_ = [
        ("schedule", ctypes.c_int),
        ("seed", ctypes.c_ulonglong),
        ("num_threads", ctypes.c_int),
        ("poison", ctypes.c_int),
        ("max_shared_bytes", ctypes.c_size_t),
        ("flush_denormals", ctypes.c_int),
        ("timeout_seconds", ctypes.c_double),
        ("poll", ctypes.c_void_p),  # set by the module glue (generate_module)
        ("poll_context", ctypes.c_void_p),
    ]


def host_compiler() -> str:
    return os.environ.get("ALEXNET_RAW_CXX") or os.environ.get("CXX") or "g++"


@functools.lru_cache(maxsize=None)
def compiler_identity(cxx: str) -> str:
    try:
        out = subprocess.run([cxx, "--version"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise CompileError(
            f"the CPU runtime needs a C++17 compiler; '{cxx}' is not usable ({e}). "
            "Install g++ or set ALEXNET_RAW_CXX."
        ) from e
    return out.strip()


def sanitize_enabled() -> bool:
    return os.environ.get("ALEXNET_RAW_EMU_SANITIZE", "") not in ("", "0", "false", "no")


def debug_enabled() -> bool:
    return os.environ.get("ALEXNET_RAW_EMU_DEBUG", "") not in ("", "0", "false", "no")


def compile_flags() -> list:
    # -ffp-contract=fast: fuse a*b+c into FMA as nvcc does by default (--fmad=true)
    # -g1: line tables only, which is what a fault report's addr2line and the sanitizers' stack traces
    # read; full debug information (-g, for a debugger) doubles the compile time of conv2d.cu and
    # gemm.cu and is what ALEXNET_RAW_EMU_DEBUG=1 adds
    flags = ["-std=c++17", "-fPIC", "-shared", "-fvisibility=hidden", "-pthread", "-Wno-attributes",
             "-ffp-contract=fast"]
    if debug_enabled():
        flags += ["-g", "-O0"]
    elif sanitize_enabled():
        flags += ["-O1", "-fno-omit-frame-pointer"]
    else:
        # -O2, not -O3: GCC 12's -O3 SLP vectoriser scatters register tiles (acc[8][8] += a[i]*b[j])
        # over scalar multiplies and stack traffic; -O2 with the unroll hints keeps them in vector
        # registers (about 2x on the tiled GEMM of benchmarks/emu_gemm.py).
        flags += ["-O2"]
    if not debug_enabled():
        flags += ["-g1"]
    if not os.environ.get("ALEXNET_RAW_EMU_PORTABLE"):
        if platform.machine() in ("x86_64", "AMD64"):
            # 256-bit vectors even where the tuning prefers 128 (Zen 1): an 8x8 float tile then
            # needs 8 registers instead of all 16.
            flags += ["-march=native", "-mprefer-vector-width=256"]
        elif platform.machine() in ("aarch64", "arm64"):
            flags += ["-mcpu=native"]
    if sanitize_enabled():
        flags += ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined"]
    flags += shlex.split(os.environ.get("ALEXNET_RAW_EMU_CXXFLAGS", ""))
    return flags


@functools.lru_cache(maxsize=None)
def _machine_identity() -> str:
    ident = platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(("model name", "flags", "Features")):
                    ident += line
                if line.strip() == "":
                    break
    except OSError:
        pass
    return ident


def cache_dir() -> Path:
    root = os.environ.get("ALEXNET_RAW_CACHE_DIR")
    if root:
        return Path(root) / "emu"
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "alexnet_raw" / "emu"


def _runtime_fingerprint() -> str:
    h = hashlib.sha256(RUNTIME_VERSION.encode())
    for p in sorted(INCLUDE_DIR.iterdir()):
        if p.is_file():
            h.update(p.name.encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def parse_options(options):
    """Split NVRTC-style options into host compiler flags; GPU-only options are ignored."""
    if isinstance(options, str):
        options = (options,)
    host, include_dirs = [], []
    items = list(options)
    i = 0
    while i < len(items):
        opt = items[i]
        if not isinstance(opt, str):
            raise TypeError(f"compile options must be strings, got {opt!r}")
        nxt = items[i + 1] if i + 1 < len(items) else None
        if opt in ("-I", "--include-path", "-D", "--define-macro", "-U", "--undefine-macro") and nxt is not None:
            opt = opt + ("=" if opt.startswith("--") else "") + nxt
            i += 1
        if opt.startswith("--include-path="):
            include_dirs.append(opt.split("=", 1)[1])
        elif opt.startswith("-I"):
            include_dirs.append(opt[2:])
        elif opt.startswith("--define-macro="):
            host.append("-D" + opt.split("=", 1)[1])
        elif opt.startswith("--undefine-macro="):
            host.append("-U" + opt.split("=", 1)[1])
        elif opt.startswith(("-D", "-U")):
            host.append(opt)
        elif opt.startswith(("-std=", "--std=")):
            std = opt.split("=", 1)[1]
            if std not in ("c++17", "c++20"):
                raise ValueError(f"the CPU runtime compiles with -std=c++17 or c++20, got option '{opt}'")
            host.append("-std=" + std)
        elif opt.startswith(_FTZ_PREFIXES):
            flushes_denormals((opt,))  # checks the value; applied at launch time
        elif opt.startswith(_GPU_ONLY_PREFIXES):
            pass
        else:
            raise ValueError(
                f"unknown compile option '{opt}': the CPU runtime understands -I, -D, -U and -std=, and ignores "
                "GPU code-generation options such as -arch and --use_fast_math"
            )
        i += 1
    return host, include_dirs


def generate_module(translation, name_expressions) -> str:
    """The C++ translation unit for one module: runtime, kernels, and the exported kernel table."""
    names = list(name_expressions)
    for kname, is_template in translation.kernels:
        if not is_template and kname not in names:
            names.append(kname)
    fibers = "true" if translation.uses_barriers else "false"
    symbol = _translate.kernel_symbol  # kernels are renamed so that `abs` or `div` cannot clash with libc
    entries = ",\n".join(
        f'  {{"{n}", &::emu::thunk<&{symbol(n)}>, {fibers}}}' for n in names
    )
    codes = ",\n".join(f"  ::emu::param_codes(&{symbol(n)})" for n in names)
    count = len(names)
    return f"""#include "cuda_emu.h"
{translation.text}
#line 1 "<alexnet_raw.emu module glue>"
#include "cuda_emu_runtime.h"
#define EMU_EXPORT extern "C" __attribute__((visibility("default")))
// Python's C API, resolved against the running interpreter when the module is loaded (ctypes.PyDLL:
// emu_module_launch is entered holding the GIL). The launch releases the GIL and, every 50 ms,
// takes it back to run Python's signal handlers: one that raises (Ctrl-C's KeyboardInterrupt)
// stops the launch and its exception is what the ctypes call raises.
extern "C" void* PyEval_SaveThread(void);
extern "C" void PyEval_RestoreThread(void*);
extern "C" int PyErr_CheckSignals(void);
struct EmuPythonPoll {{
  void* thread_state;
}};
static int emu_python_poll(void* context) {{
  EmuPythonPoll* p = static_cast<EmuPythonPoll*>(context);
  PyEval_RestoreThread(p->thread_state);
  const int raised = PyErr_CheckSignals();
  p->thread_state = PyEval_SaveThread();
  return raised != 0;
}}
static ::emu::KernelEntry emu_kernels[{max(count, 1)}] = {{
{entries if count else '  {nullptr, nullptr, false}'}
}};
static const std::string& emu_codes(int i) {{
  static const std::string codes[{max(count, 1)}] = {{
{codes if count else '  std::string()'}
  }};
  return codes[i];
}}
EMU_EXPORT int emu_module_kernel_count() {{ return {count}; }}
EMU_EXPORT const char* emu_module_kernel_name(int i) {{ return emu_kernels[i].name; }}
EMU_EXPORT const char* emu_module_kernel_params(int i) {{ return emu_codes(i).c_str(); }}
EMU_EXPORT int emu_module_uses_barriers() {{ return {1 if translation.uses_barriers else 0}; }}
EMU_EXPORT int emu_module_launch(int i, const unsigned* grid, const unsigned* block, unsigned long long shared,
                                 void** args, const ::emu::LaunchOptions* options, char* error, size_t error_len) {{
  std::string message;
  ::emu::LaunchOptions o = *options;
  EmuPythonPoll poll{{PyEval_SaveThread()}};
  o.poll = &emu_python_poll;
  o.poll_context = &poll;
  int rc = ::emu::launch(emu_kernels[i], dim3(grid[0], grid[1], grid[2]), dim3(block[0], block[1], block[2]),
                         size_t(shared), args, o, &message);
  PyEval_RestoreThread(poll.thread_state);
  if (rc && error_len) {{
    snprintf(error, error_len, "%s", message.c_str());
  }}
  return rc;
}}
"""


_compile_lock = threading.Lock()


class CompiledModule:
    """A loaded shared object with its kernel table."""

    def __init__(self, path: Path):
        self.path = path
        # PyDLL: called holding the GIL (the launch releases it itself) and raising what a Python
        # signal handler raised while the kernel ran (see generate_module)
        self.lib = ctypes.PyDLL(str(path), mode=os.RTLD_LOCAL | getattr(os, "RTLD_NOW", 2))
        lib = self.lib
        lib.emu_module_kernel_count.restype = ctypes.c_int
        lib.emu_module_kernel_name.restype = ctypes.c_char_p
        lib.emu_module_kernel_name.argtypes = [ctypes.c_int]
        lib.emu_module_kernel_params.restype = ctypes.c_char_p
        lib.emu_module_kernel_params.argtypes = [ctypes.c_int]
        lib.emu_module_uses_barriers.restype = ctypes.c_int
        lib.emu_module_launch.restype = ctypes.c_int
        lib.emu_module_launch.argtypes = [
            ctypes.c_int,
            ctypes.POINTER(ctypes.c_uint),
            ctypes.POINTER(ctypes.c_uint),
            ctypes.c_ulonglong,
            ctypes.POINTER(ctypes.c_void_p),
            ctypes.POINTER(LaunchOptions),
            ctypes.c_char_p,
            ctypes.c_size_t,
        ]
        self.kernels = {}
        for i in range(lib.emu_module_kernel_count()):
            name = lib.emu_module_kernel_name(i).decode()
            params = lib.emu_module_kernel_params(i).decode()
            self.kernels[name] = (i, tuple(p for p in params.split(",") if p))
        self.uses_barriers = bool(lib.emu_module_uses_barriers())
        self.param_names = {}  # kernel (template name without arguments) -> parameter names, for messages

    def launch(self, index, grid, block, shared_mem, arg_pointers, options):
        g = (ctypes.c_uint * 3)(*grid)
        b = (ctypes.c_uint * 3)(*block)
        err = ctypes.create_string_buffer(4096)
        try:
            rc = self.lib.emu_module_launch(index, g, b, shared_mem, arg_pointers, ctypes.byref(options), err,
                                            len(err))
        except BaseException as e:  # KeyboardInterrupt (or what another signal handler raised)
            if err.value and hasattr(e, "add_note"):
                e.add_note("alexnet_raw.emu: " + err.value.decode(errors="replace"))
            raise
        return rc, err.value.decode(errors="replace")


def build(source_text: str, name: str, options=(), name_expressions=(), path: str | None = None) -> CompiledModule:
    """Translate, compile (or fetch from the cache) and load one module."""
    host_flags, include_dirs = parse_options(options)
    translation = _translate.translate(path, include_dirs, text=source_text, name=name, rename_kernels=True)
    unit = generate_module(translation, name_expressions)
    cxx = host_compiler()
    flags = compile_flags()
    key = hashlib.sha256(
        "\0".join(
            [
                unit,
                repr(host_flags),
                repr(include_dirs),
                compiler_identity(cxx),
                cxx,
                repr(flags),
                _runtime_fingerprint(),
                _machine_identity(),
            ]
        ).encode()
    ).hexdigest()[:32]
    directory = cache_dir()
    target = directory / f"{key}.so"
    with _compile_lock:
        if not target.exists():
            directory.mkdir(parents=True, exist_ok=True)
            with cache_entry_lock(directory / f"{key}.lock"):
                if not target.exists():  # another process may have built it while we waited
                    _compile_unit(unit, name, cxx, flags, host_flags, include_dirs, directory, key, target)
    module = CompiledModule(target)
    module.param_names = dict(translation.param_names)
    return module


@contextlib.contextmanager
def cache_entry_lock(path):
    """An exclusive lock on one cache entry across processes (pytest-xdist workers, two trainings
    starting together), so that a module is compiled once and the others wait for it."""
    try:
        import fcntl
    except ImportError:  # no POSIX locks: at worst two processes compile the same module
        yield
        return
    try:
        f = open(path, "a")
    except OSError:  # an unwritable cache directory: build without the lock
        yield
        return
    with f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _compile_unit(unit, name, cxx, flags, host_flags, include_dirs, directory, key, target):
    src = directory / f"{key}.cpp"
    src.write_text(unit, encoding="utf-8")
    fd, tmp = tempfile.mkstemp(prefix=f"{key}.", suffix=".so.tmp", dir=directory)
    os.close(fd)
    inc = [f"-I{INCLUDE_DIR}"] + [f"-I{d}" for d in include_dirs]
    cmd = [cxx, *flags, *host_flags, *inc, str(src), "-o", tmp]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        os.unlink(tmp)
        raise CompileError(
            f"compiling '{name}' for the CPU runtime failed:\n{proc.stderr.strip()}\n"
            f"command: {shlex.join(cmd)}"
        )
    os.replace(tmp, target)
