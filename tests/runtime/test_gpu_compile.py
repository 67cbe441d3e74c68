"""The GPU paths, checked without a GPU: every kernel compiles for sm_80 and sm_90 with NVRTC (the
exact program the cupy backend builds) without spills; the nvcc build as installed (the _cuda
extension, read with cuobjdump rather than compiled a second time) has no stack frames the kernel
report does not explain, and both builds do the same floating-point operations (flush-to-zero included); the
installed nvcc extension holds every kernel for both architectures; and the three builds agree on
every kernel's parameter types."""

import functools
import importlib
import re
from collections import Counter

import pytest

from alexnet_raw.runtime import gpu_compile, kernel_sources
from alexnet_raw.runtime.backends import get_backend
from gpu_paths import REAL_GPUS

FILES = kernel_sources.kernel_files()
ARCHS = gpu_compile.ARCHITECTURES


@functools.lru_cache(maxsize=None)
def nvrtc_build(source, arch):
    """One NVRTC build per (file, arch) for all the tests here (the nvcc build is checked as
    installed: shipped_kernels, binary_cubin)."""
    return gpu_compile.nvrtc_compile(source, arch)


def assert_spills_are_explained(build, source, arch):
    """No kernel spills unless the kernel report explains it (alexnet_raw/perf/kernel_report.py's
    MISS_REASONS: where, how much, and why the automatic choice may still take it or leaves it out)."""
    from alexnet_raw.perf import kernel_report

    unexplained = [k for k, r in build.kernels.items() if r.spills and not kernel_report.miss_reason(k, "SPILLS")]
    assert not unexplained, f"{source} spills on {arch}, unexplained: {unexplained}"


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("source", FILES)
def test_nvrtc_compiles_every_instantiation_without_spills(source, arch):
    build = nvrtc_build(source, arch)
    assert set(build.kernels) == set(kernel_sources.instantiations(source))
    assert build.cubin[:4] == b"\x7fELF"
    assert_spills_are_explained(build, source, arch)


def installed_cuda_extension():
    """The _cuda module the install built with nvcc (CMakeLists.txt), or a skip where no nvcc is."""
    try:
        return importlib.import_module("alexnet_raw._cuda")
    except ImportError:
        if gpu_compile.nvcc_path() is not None:
            pytest.fail("nvcc is installed but the _cuda extension was not built by the install")
        pytest.skip("no nvcc here, so no _cuda extension")


@functools.lru_cache(maxsize=None)
def shipped_kernels():
    """{arch: {kernel: (registers, stack, shared, local)}} of the installed _cuda (cuobjdump)."""
    return gpu_compile.binary_kernels(installed_cuda_extension().__file__)


@pytest.mark.parametrize("arch", ARCHS)
def test_shipped_nvcc_build_has_no_unexplained_stack_frames(arch):
    """The nvcc build as installed (not a second compile of it): a kernel with a stack frame, where
    ptxas's spill stores go, is one the kernel report explains (MISS_REASONS' SPILLS)."""
    from alexnet_raw.perf import kernel_report

    kernels = shipped_kernels()[arch]
    framed = {k: r[1] for k, r in kernels.items() if r[1] > 0}
    unexplained = {k: b for k, b in framed.items() if not kernel_report.miss_reason(k, "SPILLS")}
    assert not unexplained, f"_cuda {arch}: stack frames (bytes) the kernel report does not explain: {unexplained}"
    assert all(r[0] > 0 for r in kernels.values())


# floating-point instructions, with their modifiers (.FTZ, rounding); HFMA2.MMA is ptxas's way of
# moving constants into registers, not arithmetic on data
_FLOATING_POINT = re.compile(r"^(FFMA|FADD|FMUL|FMNMX|FSETP|FSEL|FCHK|DFMA|DADD|DMUL|DSETP|MUFU|FRND|F2F|I2F|F2I)")


@pytest.mark.parametrize("arch", ["sm_90"])  # the architecture of the project's targets (H100, H200)
@pytest.mark.parametrize("source", FILES)
def test_both_gpu_builds_execute_the_same_floating_point_instructions(source, arch):
    """The cupy backend's NVRTC build and the installed extension's nvcc build of every kernel do the same
    floating-point operations with the same modifiers (their registers and schedules differ):
    with -ftz=true missing from either build, the float kernels' .FTZ modifiers would differ."""
    shipped = gpu_compile.binary_cubin(installed_cuda_extension().__file__, source, arch)
    ours = gpu_compile.disassemble(nvrtc_build(source, arch).cubin)
    theirs = gpu_compile.disassemble(shipped)
    assert set(ours) == set(theirs)
    for kernel in ours:
        a, b = (Counter(i.opcode for i in f[kernel].instructions if _FLOATING_POINT.match(i.opcode))
                for f in (ours, theirs))
        assert a == b, f"{kernel} ({arch}): NVRTC has {dict(a - b)} more, nvcc {dict(b - a)} more"
        if "<float" in kernel and any(op.startswith(("FFMA", "FADD", "FMUL")) for op in a):
            assert any(".FTZ" in op for op in a), f"{kernel} ({arch}): no flush-to-zero arithmetic"


def _all_instantiations():
    return {n for f in FILES for n in kernel_sources.instantiations(f)}


def test_installed_cuda_extension_holds_every_kernel_for_both_architectures():
    cuda_ext = installed_cuda_extension()
    per_arch = shipped_kernels()
    for arch in ARCHS:
        assert arch in per_arch, f"_cuda has no {arch} code (has {sorted(per_arch)})"
        assert set(per_arch[arch]) == _all_instantiations(), f"_cuda {arch} kernels differ from kernels/*.cu"
    assert set(cuda_ext.kernels()) == _all_instantiations()
    count, status = cuda_ext.device_count()
    if REAL_GPUS:
        assert count == REAL_GPUS and status.startswith("cudaSuccess")
    else:
        assert count == 0 and "cudaError" in status  # no GPU here: reported, not a crash


def test_extension_and_jit_agree_on_parameter_types():
    emu_ext = importlib.import_module("alexnet_raw._emu_ext")
    assert set(emu_ext.kernels()) == _all_instantiations()
    jit = get_backend("emu")
    for source in FILES:
        module = jit.module(source)
        for name in kernel_sources.instantiations(source):
            assert ",".join(module.get_function(name).param_codes) == emu_ext.kernels()[name], name
    try:
        cuda_ext = importlib.import_module("alexnet_raw._cuda")
    except ImportError:
        return
    assert cuda_ext.kernels() == emu_ext.kernels()
