"""Compile the kernels for GPU architectures without a GPU, and read ptxas's resource report.

* ``nvrtc_compile``: exactly the program the ``cupy`` backend compiles (kernel_sources.nvrtc_program),
  through the low-level NVRTC interface of cuda-bindings (CuPy's own compile call needs a device).
* ``nvcc_compile``: the kernel file as the ``cuda`` extension compiles it (nvcc, -lineinfo).

Both return, per kernel instantiation, the registers, static shared memory, stack frame and spill
bytes ptxas reports, plus the cubin.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from . import kernel_sources

ARCHITECTURES = ("sm_80", "sm_90")

_ENTRY = re.compile(r"Compiling entry function '([^']+)' for '(sm_\d+a?)'")
_FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USED = re.compile(r"Used (\d+) registers(.*)")
_SMEM = re.compile(r"(\d+) bytes smem")


class GpuCompileError(RuntimeError):
    """The GPU compiler rejected a kernel file, or is not installed."""


@dataclasses.dataclass
class KernelResources:
    kernel: str  # name expression, e.g. relu_forward<float>
    arch: str
    registers: int = 0
    shared_bytes: int = 0
    stack_bytes: int = 0
    spill_store_bytes: int = 0
    spill_load_bytes: int = 0

    @property
    def spills(self) -> bool:
        return self.spill_store_bytes > 0 or self.spill_load_bytes > 0


@dataclasses.dataclass
class GpuBuild:
    source: str
    arch: str
    compiler: str
    kernels: dict  # name expression -> KernelResources
    cubin: bytes
    log: str


def parse_ptxas(log: str, arch: str, lowered_to_name: dict) -> dict:
    """Resources per kernel from a ptxas -v log. Unknown mangled names keep their mangled name."""
    out, current = {}, None
    for line in log.splitlines():
        m = _ENTRY.search(line)
        if m:
            name = lowered_to_name.get(m.group(1), m.group(1))
            current = out.setdefault(name, KernelResources(name, m.group(2)))
            continue
        if current is None:
            continue
        m = _FRAME.search(line)
        if m:
            current.stack_bytes, current.spill_store_bytes, current.spill_load_bytes = map(int, m.groups())
        m = _USED.search(line)
        if m:
            current.registers = int(m.group(1))
            s = _SMEM.search(m.group(2))
            current.shared_bytes = int(s.group(1)) if s else 0
    return out


def _nvrtc():
    try:
        from cuda.bindings import nvrtc
    except ImportError as e:
        raise GpuCompileError(
            f"NVRTC is not installed ({e}); pip install 'cuda-bindings==13.0.*' 'nvidia-cuda-nvrtc==13.0.*'"
        ) from None
    return nvrtc


def _check(result, what, prog=None, nvrtc=None):
    err = result[0] if isinstance(result, tuple) else result
    if int(err) != 0:
        log = ""
        if prog is not None:
            _, size = nvrtc.nvrtcGetProgramLogSize(prog)
            buf = b" " * size
            nvrtc.nvrtcGetProgramLog(prog, buf)
            log = buf.decode(errors="replace").rstrip("\0 \n")
        raise GpuCompileError(f"{what} failed ({err}){': ' + log if log else ''}")
    return result[1:] if isinstance(result, tuple) and len(result) > 1 else None


def nvrtc_compile(source: str, arch: str) -> GpuBuild:
    """Compile kernels/<source> with NVRTC for `arch` exactly as the cupy backend does."""
    nvrtc = _nvrtc()
    text, options, names = kernel_sources.nvrtc_program(source)
    prog = _check(nvrtc.nvrtcCreateProgram(text.encode(), source.encode(), 0, [], []), "nvrtcCreateProgram")[0]
    try:
        for n in names:
            _check(nvrtc.nvrtcAddNameExpression(prog, n.encode()), f"nvrtcAddNameExpression({n})")
        opts = [o.encode() for o in options] + [f"--gpu-architecture={arch}".encode(), b"--ptxas-options=-v"]
        _check(nvrtc.nvrtcCompileProgram(prog, len(opts), opts), f"NVRTC compiling {source} for {arch}", prog, nvrtc)
        _, size = nvrtc.nvrtcGetProgramLogSize(prog)
        buf = b" " * size
        nvrtc.nvrtcGetProgramLog(prog, buf)
        log = buf.decode(errors="replace").rstrip("\0")
        lowered = {}
        for n in names:
            mangled = _check(nvrtc.nvrtcGetLoweredName(prog, n.encode()), f"nvrtcGetLoweredName({n})")[0]
            lowered[mangled.decode() if isinstance(mangled, bytes) else mangled] = n
        _, size = nvrtc.nvrtcGetCUBINSize(prog)
        cubin = b" " * size
        _check(nvrtc.nvrtcGetCUBIN(prog, cubin), "nvrtcGetCUBIN")
    finally:
        nvrtc.nvrtcDestroyProgram(prog)
    kernels = parse_ptxas(log, arch, lowered)
    missing = [n for n in names if n not in kernels]
    if missing:
        raise GpuCompileError(f"NVRTC produced no code for {missing} in {source} ({arch})")
    return GpuBuild(source, arch, "nvrtc", kernels, bytes(cubin), log)


def nvcc_path() -> str | None:
    found = shutil.which("nvcc")
    if found:
        return found
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if root and Path(root, "bin", "nvcc").is_file():
            return str(Path(root, "bin", "nvcc"))
    return None


def demangle(names):
    """Demangled names via c++filt (binutils); the input where it is not available."""
    try:
        out = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True, check=True).stdout
        return out.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return list(names)


def name_expression(demangled: str) -> str:
    """'void relu_forward<float>(float*, ...)' -> 'relu_forward<float>'."""
    s = demangled.strip()
    if s.startswith("void "):
        s = s[5:]
    depth = 0
    for i, c in enumerate(s):
        if c == "<":
            depth += 1
        elif c == ">":
            depth -= 1
        elif c == "(" and depth == 0:
            return s[:i]
    return s


def nvcc_compile(source: str, arch: str) -> GpuBuild:
    """Compile kernels/<source> with nvcc for `arch`, as the cuda extension does (the instantiations
    are forced by the same ALX_INSTANTIATE lines, expanded to explicit instantiations)."""
    nvcc = nvcc_path()
    if nvcc is None:
        raise GpuCompileError("nvcc is not installed (looked on PATH, $CUDA_HOME and /usr/local/cuda)")
    path = kernel_sources.kernel_path(source)
    with tempfile.TemporaryDirectory() as tmp:
        wrapper = Path(tmp) / "instantiate.cuh"
        # taking each instantiation's address makes nvcc generate it, as registry.h does
        wrapper.write_text(
            "#define ALX_CAT_(a,b) a##b\n#define ALX_CAT(a,b) ALX_CAT_(a,b)\n"
            "#define ALX_INSTANTIATE(...) static const void* ALX_CAT(alx_keep_, __COUNTER__) "
            "__attribute__((used)) = (const void*)&__VA_ARGS__;\n"
        )
        out = Path(tmp) / "k.cubin"
        cmd = [nvcc, "-cubin", f"-arch={arch}", "-std=c++17", "-lineinfo", "-Xptxas", "-v",
               "-include", str(wrapper), "-I", str(kernel_sources.kernel_dir()), str(path), "-o", str(out)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise GpuCompileError(f"nvcc compiling {source} for {arch} failed:\n{proc.stderr.strip()}")
        log = proc.stderr
        cubin = out.read_bytes()
    mangled = [m.group(1) for m in _ENTRY.finditer(log)]
    lowered = {m: name_expression(d) for m, d in zip(mangled, demangle(mangled))}
    kernels = parse_ptxas(log, arch, lowered)
    return GpuBuild(source, arch, "nvcc", kernels, cubin, log)


def cuda_tool(name: str) -> str | None:
    """cuobjdump / nvdisasm: from the nvidia-cuda-* PyPI packages (not on PATH), else PATH."""
    try:
        import nvidia

        for base in getattr(nvidia, "__path__", []):
            for candidate in sorted(Path(base).glob(f"cu*/bin/{name}")):
                if os.access(candidate, os.X_OK):
                    return str(candidate)
    except ImportError:
        pass
    return shutil.which(name)


_FATBIN_ARCH = re.compile(r"^arch = (sm_\d+a?)", re.M)
_RES_FUNCTION = re.compile(r"^\s*Function ([^:\s]+):")
_RES_USAGE = re.compile(r"REG:(\d+)\s+STACK:(\d+)\s+SHARED:(\d+)\s+LOCAL:(\d+)")


def binary_kernels(path) -> dict:
    """{arch: {name expression: (registers, stack, shared, local)}} of the cubins in a binary (the
    _cuda extension), read with cuobjdump -res-usage."""
    tool = cuda_tool("cuobjdump")
    if tool is None:
        raise GpuCompileError("cuobjdump is not installed (pip install 'nvidia-cuda-cuobjdump>=13.2,<14')")
    proc = subprocess.run([tool, "-res-usage", str(path)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise GpuCompileError(f"cuobjdump failed on {path}: {proc.stderr.strip()}")
    result, arch, function, pending = {}, None, None, []
    for line in proc.stdout.splitlines():
        m = _FATBIN_ARCH.match(line.strip())
        if m:
            arch = m.group(1)
            continue
        m = _RES_FUNCTION.match(line)
        if m:
            function = m.group(1)
            continue
        m = _RES_USAGE.search(line)
        if m and arch and function:
            pending.append((arch, function, tuple(int(v) for v in m.groups())))
            function = None
    names = demangle([p[1] for p in pending])
    for (a, _, res), demangled in zip(pending, names):
        result.setdefault(a, {})[name_expression(demangled)] = res
    return result
