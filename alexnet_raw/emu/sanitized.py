"""Run a command with the CPU runtime under AddressSanitizer and UBSan.

    python -m alexnet_raw.emu.sanitized [--build-ext DIR] -- pytest tests/kernels tests/emu

Kernels compiled by the JIT get -fsanitize=address,undefined (ALEXNET_RAW_EMU_SANITIZE=1, own
cache entries); libasan is preloaded into Python, as it must be for an instrumented module to
load; leak detection is off (Python's own allocations). With --build-ext, the pybind11 extension is
first built against the CPU runtime with the sanitizers (CMake option ALEXNET_RAW_SANITIZE, from
the source checkout in the current directory) into DIR, and the `emu_ext` backend loads it from
there. An out-of-bounds access in a kernel then aborts with ASan's report naming the kernel's
source line, and the command fails.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from ._jit import host_compiler


def runtime_library(name: str = "libasan.so") -> str:
    out = subprocess.run([host_compiler(), f"-print-file-name={name}"], capture_output=True, text=True, check=True)
    path = out.stdout.strip()
    if not os.path.isabs(path) or not os.path.exists(path):
        raise RuntimeError(f"the host compiler has no {name} (install the compiler's sanitizer runtime)")
    return path


def environment(base=None, ext_dir=None) -> dict:
    """Environment variables that run Python with the sanitizer build of the CPU runtime."""
    env = dict(os.environ if base is None else base)
    # libstdc++ right after the sanitizer runtime: ASan's __cxa_throw interceptor looks for the real
    # one when it starts, and Python itself does not load libstdc++ (a C++ exception thrown by the
    # extension, e.g. Ctrl-C's error_already_set, would otherwise stop the process)
    preload = (runtime_library(), runtime_library("libstdc++.so"), env.get("LD_PRELOAD", ""))
    env["LD_PRELOAD"] = " ".join(p for p in preload if p)
    env["ASAN_OPTIONS"] = "detect_leaks=0:abort_on_error=0:halt_on_error=1:" + env.get("ASAN_OPTIONS", "")
    env["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1:" + env.get("UBSAN_OPTIONS", "")
    env["ALEXNET_RAW_EMU_SANITIZE"] = "1"
    if ext_dir is not None:
        env["ALEXNET_RAW_EMU_EXT_DIR"] = str(Path(ext_dir).resolve())
    return env


def build_extension(build_dir: Path, source_dir: Path) -> None:
    """CMake build of _emu_ext with -DALEXNET_RAW_SANITIZE=ON (no nvcc build)."""
    import pybind11  # noqa: F401  (CMake finds it through this interpreter)

    cmake = os.environ.get("CMAKE") or str(Path(sys.executable).with_name("cmake"))
    if not os.path.exists(cmake):
        cmake = "cmake"
    subprocess.run(
        [cmake, "-S", str(source_dir), "-B", str(build_dir), f"-DPython_EXECUTABLE={sys.executable}",
         "-DALEXNET_RAW_SANITIZE=ON", "-DALEXNET_RAW_BUILD_CUDA=OFF", "-DCMAKE_BUILD_TYPE=RelWithDebInfo"],
        check=True,
    )
    subprocess.run([cmake, "--build", str(build_dir), "-j", str(os.cpu_count() or 1)], check=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m alexnet_raw.emu.sanitized", description=__doc__.splitlines()[0])
    ap.add_argument("--build-ext", metavar="DIR", type=Path,
                    help="first build the extension against the CPU runtime with sanitizers into DIR")
    ap.add_argument("--source", type=Path, default=Path.cwd(), help="source checkout for --build-ext (default: .)")
    ap.add_argument("command", nargs=argparse.REMAINDER, help="-- command to run")
    args = ap.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        ap.error("give a command to run after --")
    if args.build_ext:
        build_extension(args.build_ext, args.source)
    env = environment(ext_dir=args.build_ext)
    return subprocess.run(command, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
