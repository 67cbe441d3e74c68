"""Where the kernel sources are, and exactly what each backend compiles.

The same ``kernels/*.cu`` files are compiled three ways: by the CPU runtime's JIT (``emu``), by
NVRTC through CuPy (``cupy``) and by nvcc into the extension (``cuda``). The instantiations a file
provides are its ``ALX_INSTANTIATE(...)`` lines. ``nvrtc_program`` returns the exact source,
options and name expressions the ``cupy`` backend hands to NVRTC, so the compile check in the
tests (which cannot use CuPy without a GPU) compiles precisely what a GPU would get.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..emu import _translate

_PACKAGE_DIR = Path(__file__).resolve().parent.parent  # alexnet_raw/
_INSTANTIATE = re.compile(r"^[ \t]*ALX_INSTANTIATE\((.*)\)[ \t]*$", re.M)

# Options every backend compiles the kernels with (NVRTC spelling; the CPU runtime maps them).
COMPILE_OPTIONS = ("-std=c++17",)
# What CuPy appends to every RawModule compilation, after the caller's options, with no way to turn
# it off (cupy/cuda/compiler.py, _compile_with_cache_cuda; cupy issue 9576).
CUPY_APPENDED_OPTIONS = ("-ftz=true",)


def kernel_dir() -> Path:
    """The installed copy of kernels/ (a wheel), or the source tree's kernels/ (a checkout)."""
    installed = _PACKAGE_DIR / "kernels_src"
    if installed.is_dir():
        return installed
    checkout = _PACKAGE_DIR.parent / "kernels"
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(
        f"the kernel sources are missing: neither {installed} nor {checkout} exists (a broken install?)"
    )


def kernel_files():
    """Every kernel file, sorted by name."""
    return sorted(p.name for p in kernel_dir().glob("*.cu"))


def kernel_path(source: str) -> Path:
    path = kernel_dir() / source
    if not path.is_file():
        raise FileNotFoundError(f"no kernel file {source} in {kernel_dir()}")
    return path


def instantiations(source: str):
    """The name expressions of a kernel file: its ALX_INSTANTIATE lines outside comments."""
    text = kernel_path(source).read_text(encoding="utf-8")
    masked = _translate.mask_comments_and_strings(text)  # same positions, comments blanked
    return tuple(" ".join(text[m.start(1) : m.end(1)].split()) for m in _INSTANTIATE.finditer(masked))


def gpu_options():
    """The options both GPU builds add (kernels/gpu_options.txt: the nvcc extension gets them from
    CMake, the cupy backend passes them to NVRTC), as a tuple."""
    path = kernel_dir() / "gpu_options.txt"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise FileNotFoundError(f"{path} is missing (a broken install?): {e}") from None
    return tuple(line.strip() for line in lines if line.strip().startswith("-"))


def nvrtc_program(source: str):
    """(source text, options, name expressions) that the cupy backend compiles with NVRTC; CuPy
    then appends CUPY_APPENDED_OPTIONS.

    Local includes are inlined so that the program is self-contained: CuPy's kernel cache is keyed
    by the source text, and would not notice a change in an included header otherwise.
    """
    path = kernel_path(source)
    text = _translate.inline_includes(str(path), (str(kernel_dir()),))
    return text, COMPILE_OPTIONS + gpu_options(), instantiations(source)
