"""Compile the kernels for GPU architectures without a GPU, and read ptxas's resource report.

* ``nvrtc_compile``: exactly the program the ``cupy`` backend compiles (kernel_sources.nvrtc_program,
  plus the -ftz=true CuPy appends), through the low-level NVRTC interface of cuda-bindings (CuPy's
  own compile call needs a device).
* ``nvcc_compile``: the kernel file as the ``cuda`` extension compiles it (nvcc, -lineinfo and
  kernels/gpu_options.txt, as CMakeLists.txt passes them).

Both return, per kernel instantiation, the registers, static shared memory, stack frame and spill
bytes ptxas reports, plus the cubin; builds are cached on disk (build_cache_dir), keyed by the
program text, options, architecture and compiler version. ``disassemble`` reads a cubin's SASS with nvdisasm, and
``hot_loop`` finds a kernel's innermost loop with the most FMAs and counts what it is made of.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
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


# --------------------------------------------------------------------------------------------
# builds are cached on disk (beside the CPU runtime's cache), keyed by everything that makes them:
# the program text (includes inlined), options, architecture, name expressions, compiler version
def build_cache_dir() -> Path:
    from ..emu import cache_dir

    return cache_dir().parent / "gpu"


def _read_cached(meta, cubin):
    try:
        data = json.loads(meta.read_text(encoding="utf-8"))
        build = GpuBuild(data["source"], data["arch"], data["compiler"],
                         {k: KernelResources(**v) for k, v in data["kernels"].items()}, cubin.read_bytes(), data["log"])
        if build.cubin[:4] == b"\x7fELF":
            return build
    except (OSError, ValueError, KeyError, TypeError):
        pass  # not cached yet, or a damaged entry: build again
    return None


def _cached(key_parts, make):
    from ..emu._jit import cache_entry_lock

    key = hashlib.sha256("\0".join(map(str, key_parts)).encode()).hexdigest()[:32]
    directory = build_cache_dir()
    meta, cubin = directory / f"{key}.json", directory / f"{key}.cubin"
    build = _read_cached(meta, cubin)
    if build is not None:
        return build
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError:
        pass  # an unwritable cache only costs time (the lock below is then skipped)
    with cache_entry_lock(directory / f"{key}.lock"):  # another process building the same entry: wait for it rather than build it twice
        build = _read_cached(meta, cubin)
        if build is not None:
            return build
        build = make()
        _write_cached(build, directory, key, meta, cubin)
    return build


def _write_cached(build, directory, key, meta, cubin):
    try:
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / f"{key}.{os.getpid()}.tmp"
        tmp.write_bytes(build.cubin)
        os.replace(tmp, cubin)
        record = {"source": build.source, "arch": build.arch, "compiler": build.compiler, "log": build.log,
                  "kernels": {k: dataclasses.asdict(v) for k, v in build.kernels.items()}}
        tmp.write_text(json.dumps(record), encoding="utf-8")
        os.replace(tmp, meta)
    except OSError:
        pass  # an unwritable cache only costs time


@functools.lru_cache(maxsize=None)
def _nvrtc_version() -> str:
    return str(_nvrtc().nvrtcVersion())


@functools.lru_cache(maxsize=None)
def _nvcc_version(nvcc: str) -> str:
    return subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout


def nvrtc_compile(source: str, arch: str) -> GpuBuild:
    """Compile kernels/<source> with NVRTC for `arch` exactly as the cupy backend does: its options,
    then what CuPy appends to every RawModule compilation (-ftz=true)."""
    text, options, names = kernel_sources.nvrtc_program(source)
    options = options + kernel_sources.CUPY_APPENDED_OPTIONS
    return _cached(("nvrtc", _nvrtc_version(), text, options, names, arch, source),
                   lambda: nvrtc_compile_text(text, names, arch, options, source))


def nvrtc_compile_text(text: str, names, arch: str, options=kernel_sources.COMPILE_OPTIONS,
                       source: str = "program.cu") -> GpuBuild:
    """Compile a self-contained CUDA program with NVRTC for `arch`, generating the kernels named by
    the name expressions `names` (e.g. "scale<float>")."""
    nvrtc = _nvrtc()
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
    text, _, names = kernel_sources.nvrtc_program(source)  # its content, headers included
    return _cached(("nvcc", _nvcc_version(nvcc), text, kernel_sources.gpu_options(), names, arch, source),
                   lambda: _nvcc_compile(nvcc, source, arch))


def _nvcc_compile(nvcc: str, source: str, arch: str) -> GpuBuild:
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
        cmd = [nvcc, "-cubin", f"-arch={arch}", *kernel_sources.COMPILE_OPTIONS, "-lineinfo",
               *kernel_sources.gpu_options(), "-Xptxas", "-v",
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


def _release(text: str) -> str:
    """'13.0.88' from a CUDA tool's --version text ("... release 13.0, V13.0.88"), else its last line."""
    m = re.search(r"V(\d+\.\d+\.\d+)", text)
    return m.group(1) if m else (text.strip().splitlines() or ["unknown"])[-1]


def tool_versions(compiler: str = "nvrtc") -> dict:
    """The versions of the tools a kernel report is made with: the compiler (NVRTC's
    (major, minor), or nvcc's release) and nvdisasm's release; "missing" where a tool is absent."""
    out = {}
    if compiler == "nvrtc":
        try:
            major_minor = _nvrtc_version()
            out["nvrtc"] = ".".join(re.findall(r"\d+", major_minor)[-2:]) if major_minor else "unknown"
        except Exception as e:  # noqa: BLE001 - a report still names what it could not read
            out["nvrtc"] = f"missing ({type(e).__name__})"
    else:
        nvcc = nvcc_path()
        out["nvcc"] = _release(_nvcc_version(nvcc)) if nvcc else "missing"
    tool = cuda_tool("nvdisasm")
    if tool is None:
        out["nvdisasm"] = "missing"
    else:
        out["nvdisasm"] = _release(subprocess.run([tool, "--version"], capture_output=True, text=True).stdout)
    return out


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


def binary_cubin(path, source: str, arch: str) -> bytes:
    """The cubin nvcc made of one kernel file for one architecture inside a binary (the _cuda
    extension: CMake compiles kernels/<stem>.cu into the ELF cuobjdump lists as <stem>.<arch>.cubin)."""
    tool = cuda_tool("cuobjdump")
    if tool is None:
        raise GpuCompileError("cuobjdump is not installed (pip install 'nvidia-cuda-cuobjdump>=13.2,<14')")
    member = f"{Path(source).stem}.{arch}.cubin"
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run([tool, "-xelf", member, str(Path(path).resolve())], capture_output=True, text=True,
                              cwd=tmp)
        extracted = Path(tmp) / member
        if proc.returncode != 0 or not extracted.is_file():
            listing = subprocess.run([tool, "-lelf", str(path)], capture_output=True, text=True).stdout
            raise GpuCompileError(f"{path} holds no {member} (cuobjdump: {proc.stderr.strip() or 'not listed'}); "
                                  f"it holds:\n{listing.strip()}")
        return extracted.read_bytes()


# --------------------------------------------------------------------------------------------
# SASS: the instructions of each kernel (nvdisasm), its loops and the mix of its hot loop
_SASS_SECTION = re.compile(r"^\.text\.(\S+):\s*$")
_SASS_LABEL = re.compile(r"^(\.L\w+|\$\S+):\s*$")
_SASS_INSTRUCTION = re.compile(r"^\s*/\*([0-9a-f]+)\*/\s+(@!?U?P[T\d]+\s+)?([A-Z][A-Z0-9_.]*)\s*([^;]*);")
_SASS_TARGET = re.compile(r"`\(([^)]+)\)")


@dataclasses.dataclass
class Instruction:
    address: int
    opcode: str  # with modifiers, e.g. LDS.128, FFMA.FTZ
    operands: str
    predicate: str = ""

    @property
    def base(self) -> str:
        return self.opcode.split(".")[0]


@dataclasses.dataclass
class SassFunction:
    name: str  # name expression, e.g. relu_forward<float>
    instructions: list
    labels: dict  # label -> address
    body_end: int  # address where the kernel's own code ends (internal subroutines follow)

    def loops(self):
        """(start, end) address ranges of the loops: a backward branch at `end` to `start`
        (the one-instruction `BRA self` that pads the end of every kernel is not a loop)."""
        out = set()
        for ins in self.instructions:
            if ins.base != "BRA" or ins.address >= self.body_end:
                continue
            m = _SASS_TARGET.search(ins.operands)
            target = self.labels.get(m.group(1)) if m else None
            if target is None or target > ins.address or (target == ins.address and not ins.predicate):
                continue
            out.add((target, ins.address))
        return sorted(out)

    def innermost_loops(self):
        loops = self.loops()
        return [a for a in loops if not any(b != a and a[0] <= b[0] and b[1] <= a[1] for b in loops)]

    def between(self, start, end):
        return [i for i in self.instructions if start <= i.address <= end]


def parse_sass(text: str) -> dict:
    """{mangled kernel name: SassFunction} from `nvdisasm -c` output."""
    functions, current = {}, None
    pending = []
    for line in text.splitlines():
        m = _SASS_SECTION.match(line.strip())
        if m:
            current = functions.setdefault(m.group(1), SassFunction(m.group(1), [], {}, 1 << 62))
            pending = []
            continue
        if current is None:
            continue
        m = _SASS_LABEL.match(line.strip())
        if m:
            pending.append(m.group(1))
            continue
        m = _SASS_INSTRUCTION.match(line)
        if m:
            ins = Instruction(int(m.group(1), 16), m.group(3), m.group(4).strip(), (m.group(2) or "").strip())
            for label in pending:
                current.labels[label] = ins.address
                if label.startswith("$") and current.body_end > ins.address:
                    current.body_end = ins.address
            pending = []
            current.instructions.append(ins)
    return functions


def disassemble(cubin: bytes) -> dict:
    """{name expression: SassFunction} of every kernel in a cubin, read with nvdisasm (from the
    nvidia-cuda-nvdisasm PyPI package)."""
    tool = cuda_tool("nvdisasm")
    if tool is None:
        raise GpuCompileError("nvdisasm is not installed (pip install 'nvidia-cuda-nvdisasm>=13.2,<14')")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "k.cubin"
        path.write_bytes(cubin)
        proc = subprocess.run([tool, "-c", str(path)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise GpuCompileError(f"nvdisasm failed: {proc.stderr.strip()}")
    functions = parse_sass(proc.stdout)
    mangled = list(functions)
    out = {}
    for m, demangled in zip(mangled, demangle(mangled)):
        fn = functions[m]
        fn.name = name_expression(demangled)
        out[fn.name] = fn
    return out


@dataclasses.dataclass
class LoopMix:
    """The instruction mix of a kernel's hot loop (NOPs not counted)."""

    start: int
    end: int
    instructions: int
    fma: int  # FFMA (float kernels) or DFMA (double kernels)
    fma_opcode: str
    shared_loads: int  # LDS*
    shared_loads_vector: int  # LDS.64 / LDS.128
    global_loads: int  # LDG*
    barriers: int  # BAR*
    counts: dict  # base opcode -> count
    unexpected: list  # strings
    # the other innermost loops with as many FMAs (a kernel's fallback paths): (instructions,
    # local-memory accesses) of each
    alternatives: tuple = ()
    shared_loads_16_bytes: int = 0  # LDS.128

    @property
    def fma_share(self) -> float:
        return self.fma / self.instructions if self.instructions else 0.0


_DOUBLE_OPS = ("DADD", "DMUL", "DFMA", "DSETP", "DMNMX")


def unexpected_instructions(instructions, is_double: bool) -> list:
    """What a well-written kernel should not have in its hot loop: local memory traffic, integer
    division (inline reciprocal sequence or a call), subroutine calls, double arithmetic in a
    float kernel."""
    notes, opcodes = [], [i.opcode for i in instructions]
    local = sum(1 for o in opcodes if o.split(".")[0] in ("LDL", "STL"))
    if local:
        notes.append(f"{local} local-memory accesses (LDL/STL)")
    division = sum(1 for o in opcodes if o.startswith("I2F") and ".RP" in o)
    if division:
        notes.append(f"{division} integer division sequence(s) (I2F.RP/MUFU.RCP)")
    # CALL.REL.NOINC to one of the function's own labels (.L_x_N) pushes no return address: ptxas's
    # jump to a block shared by several paths (sm_80 builds place one in the tiled loops), not a call
    calls = [i for i in instructions if i.base == "CALL"
             and not (".NOINC" in i.opcode and re.search(r"\.L_x_\d+", i.operands))]
    if calls:
        targets = sorted({(_SASS_TARGET.search(c.operands) or re.search(r"(\S+)", c.operands)).group(1) for c in calls})
        notes.append(f"{len(calls)} call(s): {', '.join(t.split('__cuda_')[-1] for t in targets)}")
    if not is_double:
        doubles = sum(1 for o in opcodes if o.split(".")[0] in _DOUBLE_OPS or o.startswith("F2F.F64"))
        if doubles:
            notes.append(f"{doubles} double-precision instruction(s) in a float kernel")
    return notes


def hot_loop(fn: SassFunction, is_double: bool):
    """The innermost loop with the most FMAs (ties: the shortest, the path a kernel with a fallback
    takes when it can; the others are its `alternatives`), and its mix; None without loops."""
    fma_opcode = "DFMA" if is_double else "FFMA"
    loops = []
    for start, end in fn.innermost_loops():
        body = [i for i in fn.between(start, end) if i.base != "NOP"]
        loops.append(((sum(1 for i in body if i.base == fma_opcode), -len(body)), (start, end, body)))
    if not loops:
        return None
    chosen = max(loops, key=lambda kv: kv[0])
    best_key = chosen[0]
    alternatives = tuple((len(b), sum(1 for i in b if i.base in ("LDL", "STL")))
                         for loop in loops if loop is not chosen and loop[0][0] == best_key[0] > 0
                         for b in (loop[1][2],))
    start, end, body = chosen[1]
    counts = {}
    for i in body:
        counts[i.base] = counts.get(i.base, 0) + 1
    lds = [i for i in body if i.base == "LDS"]
    return LoopMix(
        start, end, len(body), best_key[0], fma_opcode, len(lds),
        sum(1 for i in lds if ".64" in i.opcode or ".128" in i.opcode),
        counts.get("LDG", 0), counts.get("BAR", 0), dict(sorted(counts.items(), key=lambda kv: -kv[1])),
        unexpected_instructions(body, is_double), alternatives, sum(1 for i in lds if ".128" in i.opcode),
    )
