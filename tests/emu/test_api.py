"""The CuPy-shaped API of the CPU runtime: modules, kernels, calls, argument checks, options, cache, errors.

emu.RawModule(code=..., options=..., name_expressions=...).get_function(name) and
emu.RawKernel(code, name) are called as k(grid, block, args, shared_mem=0) with every grid and
block form CuPy takes; every scalar type is packed where the kernel reads it; a scalar of the
wrong type, an array of the wrong dtype, a non-contiguous or read-only array and a wrong argument
count raise TypeError/ValueError naming the argument (position and name), the kernel's
signature, what was expected and what came; launches beyond a GPU's grid and block limits raise
KernelError. RawModule(path=...) finds includes next to the file and through -I; -D/-U/-std=
are honoured and GPU code-generation options ignored. Compiled modules are cached on disk under a
key of source and options (a changed option or source compiles again, an ignored option does
not), and a compile error is a Python exception carrying the compiler's message and the source
line.
"""

import subprocess

import numpy as np
import pytest

from alexnet_raw import emu
from alexnet_raw.emu import _jit

API_KERNELS = r"""
#ifndef SCALE
#define SCALE 1
#endif
// y[i] = SCALE * a * x[i] for the n first elements
extern "C" __global__ void scale(float* y, const float* x, float a, int n) {
  const int i = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  const int t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  const int j = i * blockDim.x * blockDim.y * blockDim.z + t;
  if (j < n) y[j] = SCALE * a * x[j];
}

// Each block reverses its blockDim.x elements through dynamic shared memory.
extern "C" __global__ void reverse_blocks(float* y, const float* x) {
  extern __shared__ float tile[];
  const int t = threadIdx.x, base = blockIdx.x * blockDim.x;
  tile[t] = x[base + t];
  __syncthreads();
  y[base + t] = tile[blockDim.x - 1 - t];
}

// Every scalar parameter type, in an order that needs padding between them.
extern "C" __global__ void scalars(long long* ints, double* reals, bool b, signed char i8, unsigned char u8,
                                   short i16, unsigned short u16, int i32, unsigned u32, long long i64,
                                   unsigned long long u64, float f32, double f64) {
  ints[0] = b; ints[1] = i8; ints[2] = u8; ints[3] = i16; ints[4] = u16; ints[5] = i32; ints[6] = u32;
  ints[7] = i64; ints[8] = (long long)u64;
  reals[0] = f32; reals[1] = f64;
}

template <typename T>
__global__ void twice(T* y, const T* x, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = 2 * x[i];
}

extern "C" __global__ void first_of_float4(float* y, const float4* v, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = v[i].x;
}
"""
SCALARS_SIGNATURE = ("scalars(long long*, double*, bool, signed char, unsigned char, short, unsigned short, int, "
                     "unsigned int, long long, unsigned long long, float, double)")
# (type the kernel declares, a value of exactly that type, a wrong value) for each scalar of `scalars`
SCALAR_CASES = [
    ("bool", np.bool_(True), True),
    ("signed char", np.int8(-128), np.uint8(1)),
    ("unsigned char", np.uint8(255), np.int8(1)),
    ("short", np.int16(-32768), np.int32(1)),
    ("unsigned short", np.uint16(65535), np.int16(1)),
    ("int", np.int32(-2**31), 7),  # a Python int: CuPy would pass 8 bytes
    ("unsigned int", np.uint32(2**32 - 1), np.int32(1)),
    ("long long", np.int64(-2**63), np.uint64(1)),
    ("unsigned long long", np.uint64(2**64 - 1), np.int64(1)),
    ("float", np.float32(-1.5e-39), np.float64(1.0)),
    ("double", np.float64(np.pi), 3.0),  # a Python float is a double, but not a NumPy scalar
]
SCALAR_NAMES = ["b", "i8", "u8", "i16", "u16", "i32", "u32", "i64", "u64", "f32", "f64"]


@pytest.fixture(scope="module")
def mod():
    # the module emu.RawKernel(API_KERNELS, "twice<double>") builds too: compiled once
    return emu.RawModule(code=API_KERNELS, name_expressions=("twice<double>",))


@pytest.mark.parametrize("grid,block", [(3, 64), ((3,), (64,)), ((3, 1), (8, 8)), ((1, 3, 1), (4, 4, 4)),
                                        ((np.int64(3),), [np.int32(64)])])
def test_get_function_and_call_forms(mod, grid, block):
    n = 3 * 64 - 5
    x = np.arange(n, dtype=np.float32)
    y = np.zeros(n, np.float32)
    k = mod.get_function("scale")
    assert k is mod.get_function("scale")
    assert k.signature == "scale(float*, const float*, float, int)"
    k(grid, block, (y, x, np.float32(0.5), np.int32(n)))
    np.testing.assert_array_equal(y, 0.5 * x)
    y[:] = 0
    k(grid, block, [y, x, np.float32(-2), np.int32(n)], shared_mem=0, stream=None)  # a list, and keywords
    np.testing.assert_array_equal(y, -2 * x)


def test_dynamic_shared_memory_size_is_the_shared_mem_argument(mod):
    x = np.arange(4 * 96, dtype=np.float32)
    y = np.zeros_like(x)
    mod.get_function("reverse_blocks")((4,), (96,), (y, x), shared_mem=96 * 4)
    np.testing.assert_array_equal(y, x.reshape(4, 96)[:, ::-1].ravel())


def test_raw_kernel_of_a_template(mod):
    x = np.arange(10, dtype=np.float64)
    y = np.zeros_like(x)
    k = emu.RawKernel(API_KERNELS, "twice<double>")
    assert k.signature == "twice<double>(double*, const double*, int)"
    k((1,), (32,), (y, x, np.int32(10)))
    np.testing.assert_array_equal(y, 2 * x)
    with pytest.raises(TypeError, match="argument 1 \\('x'\\) of twice<double>.*got float32"):
        k((1,), (32,), (y, x.astype(np.float32), np.int32(10)))


def test_every_scalar_type_arrives_intact(mod):
    ints, reals = np.zeros(9, np.int64), np.zeros(2)
    mod.get_function("scalars")((1,), (1,), (ints, reals, *(v for _, v, _ in SCALAR_CASES)))
    expected_ints = [int(v) for _, v, _ in SCALAR_CASES[:9]]
    expected_ints[8] -= 2**64  # stored as long long
    assert ints.tolist() == expected_ints
    assert reals.tolist() == [float(np.float32(-1.5e-39)), np.pi]  # a float32 subnormal survives


@pytest.mark.parametrize("position", range(len(SCALAR_CASES)))
def test_scalar_of_the_wrong_type_names_argument_expected_and_given(mod, position):
    ctype, good, wrong = SCALAR_CASES[position]
    args = [np.zeros(9, np.int64), np.zeros(2)] + [v for _, v, _ in SCALAR_CASES]
    args[2 + position] = wrong
    given = f"numpy.{type(wrong).__name__}" if isinstance(wrong, np.generic) else type(wrong).__name__
    message = (f"argument {2 + position} ('{SCALAR_NAMES[position]}') of {SCALARS_SIGNATURE}: expected "
               f"numpy.{type(good).__name__} for C type '{ctype}', got {given}")
    with pytest.raises(TypeError) as info:
        mod.get_function("scalars")((1,), (1,), tuple(args))
    assert message in str(info.value)
    assert np.all(args[0] == 0)  # nothing ran


def test_array_arguments_are_checked(mod):
    k = mod.get_function("scale")
    x, y, n = np.zeros(8, np.float32), np.zeros(8, np.float32), np.int32(8)
    where = "of scale(float*, const float*, float, int)"
    cases = [
        ((y, x.astype(np.float64), np.float32(1), n), TypeError,
         f"argument 1 ('x') {where}: expected an array of float32 for 'const float*', got float64"),
        ((np.float32(0), x, np.float32(1), n), TypeError,
         f"argument 0 ('y') {where}: expected an array for 'float*', got numpy.float32"),
        ((y, x, x, n), TypeError, "argument 2 ('a') " + where + ": expected numpy.float32 for C type 'float', "
                                  "got numpy.ndarray of float32"),
        ((y, np.zeros(16, np.float32)[::2], np.float32(1), n), ValueError,
         f"argument 1 ('x') {where}: the array must be C-contiguous"),
        ((y, x, np.float32(1)), TypeError, "kernel scale(float*, const float*, float, int) takes 4 arguments, "
                                           "got 3"),
        ((y, x, np.float32(1), n, n), TypeError, "takes 4 arguments, got 5"),
    ]
    for args, error, message in cases:
        with pytest.raises(error) as info:
            k((1,), (8,), args)
        assert message in str(info.value)
    with pytest.raises(TypeError, match="must be a tuple or list, got numpy.ndarray"):
        k((1,), (8,), x)
    frozen = np.ones(8, np.float32)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="read-only but the kernel may write through 'float\\*'"):
        k((1,), (8,), (frozen, x, np.float32(1), n))
    k((1,), (8,), (y, frozen, np.float32(3), n))  # const float*: a read-only array is fine
    np.testing.assert_array_equal(y, 3)


def test_vector_pointer_arguments_need_whole_aligned_vectors(mod):
    k = mod.get_function("first_of_float4")
    y = np.zeros(3, np.float32)
    v = np.arange(12, dtype=np.float32)
    k((1,), (3,), (y, v, np.int32(3)))
    np.testing.assert_array_equal(y, [0, 4, 8])
    with pytest.raises(ValueError, match="argument 1 \\('v'\\) of first_of_float4.*whole 4-vectors aligned to 16"):
        k((1,), (3,), (y, v[:10], np.int32(2)))
    with pytest.raises(TypeError, match="expected an array of float32 for 'const float4\\*', got float64"):
        k((1,), (3,), (y, v.astype(np.float64), np.int32(3)))


def test_launch_configuration_and_names_are_checked(mod):
    k = mod.get_function("scale")
    args = (np.zeros(4, np.float32), np.zeros(4, np.float32), np.float32(1), np.int32(4))
    with pytest.raises(TypeError, match="grid must be an int or a tuple of 1 to 3 ints, got"):
        k((1, 1, 1, 1), (4,), args)
    with pytest.raises(TypeError, match="block must be an int or a tuple"):
        k((1,), 4.0, args)
    with pytest.raises(ValueError, match="grid dimensions must be in"):
        k((-1,), (4,), args)
    with pytest.raises(ValueError, match="shared_mem must be a non-negative int, got -4"):
        k((1,), (4,), args, shared_mem=-4)
    # a launch a GPU would refuse is refused with the GPU's limits
    with pytest.raises(emu.KernelError, match="invalid launch of 'scale': grid \\(0,1,1\\).* must be positive"):
        k((0,), (4,), args)
    with pytest.raises(emu.KernelError, match="block \\(1025,1,1\\) exceeds the GPU limits"):
        k((1,), (1025,), args)
    with pytest.raises(emu.KernelError, match="block \\(1,1,65\\) exceeds the GPU limits"):
        k((1,), (1, 1, 65), args)
    with pytest.raises(emu.KernelError, match="grid \\(1,65536,1\\) exceeds the GPU limits"):
        k((1, 65536), (4,), args)
    with pytest.raises(KeyError, match="kernel 'scal' is not in module <RawModule> \\(kernels: .*scale, "):
        mod.get_function("scal")


def test_module_arguments_and_options_are_checked():
    with pytest.raises(ValueError, match="exactly one of code= or path="):
        emu.RawModule()
    with pytest.raises(ValueError, match="exactly one of code= or path="):
        emu.RawModule(code=API_KERNELS, path="k.cu")
    with pytest.raises(TypeError, match="code must be a str, got bytes"):
        emu.RawModule(code=API_KERNELS.encode())
    with pytest.raises(ValueError, match="cooperative groups"):
        emu.RawModule(code=API_KERNELS, enable_cooperative_groups=True)
    # options are checked when the module is compiled (get_function), before the compiler runs
    with pytest.raises(ValueError, match="unknown compile option '--frobnicate'"):
        emu.RawModule(code=API_KERNELS, options=("--frobnicate",)).get_function("scale")
    with pytest.raises(ValueError, match="-std=c\\+\\+17 or c\\+\\+20, got option '-std=c\\+\\+11'"):
        emu.RawModule(code=API_KERNELS, options=("-std=c++11",)).get_function("scale")
    with pytest.raises(emu.TranslationError, match="__shared__ declaration .* at <RawModule>:1"):
        emu.RawModule(code="__global__ void k() { __shared__ float s[2] = {0, 1}; }").get_function("k")


def test_module_from_a_path_with_includes_and_options(private_cache, tmp_path):
    (tmp_path / "inc").mkdir()
    (tmp_path / "inc" / "offset.cuh").write_text("#pragma once\n__device__ int offset() { return OFFSET; }\n")
    (tmp_path / "local.cuh").write_text('#pragma once\n#include "offset.cuh"\n'
                                        "__device__ __forceinline__ int twice(int v) { return 2 * v; }\n")
    (tmp_path / "k.cu").write_text('#include "local.cuh"\n'
                                   "#ifdef DROPPED\n#error DROPPED must be undefined by -U\n#endif\n"
                                   "extern \"C\" __global__ void f(int* y) { y[threadIdx.x] = twice(threadIdx.x) "
                                   "+ offset(); }\n")
    options = ("-I", str(tmp_path / "inc"), "--define-macro=OFFSET=5", "-DDROPPED", "-U", "DROPPED",
               "-arch=sm_80", "--use_fast_math", "-lineinfo")
    k = emu.RawModule(path=tmp_path / "k.cu", options=options).get_function("f")
    y = np.zeros(6, np.int32)
    k((1,), (6,), (y,))
    np.testing.assert_array_equal(y, 2 * np.arange(6) + 5)


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    """An empty compile cache, and a count of the host compiler's runs."""
    monkeypatch.setenv("ALEXNET_RAW_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("ALEXNET_RAW_EMU_DEBUG", "1")  # -O0: these modules always compile, and it is twice as fast
    runs = []
    real_run = subprocess.run

    def counting_run(cmd, *args, **kwargs):
        if "-shared" in cmd:
            runs.append(cmd)
        return real_run(cmd, *args, **kwargs)

    monkeypatch.setattr(_jit.subprocess, "run", counting_run)
    assert emu.cache_dir() == tmp_path / "emu"
    return runs


def test_compiled_code_is_cached_on_disk_by_source_and_options(private_cache):
    x = np.arange(5, dtype=np.float32)

    def run(code=API_KERNELS, options=(), raw_kernel=False):
        # emu.RawKernel(code, "scale", options) builds the same module as RawModule(code=code, options=options)
        if raw_kernel:
            k = emu.RawKernel(code, "scale", options)
        else:
            k = emu.RawModule(code=code, options=options).get_function("scale")
        y = np.zeros_like(x)
        k((1,), (8,), (y, x, np.float32(1), np.int32(5)))
        return y

    def cached():
        return {p.name: p.stat().st_mtime_ns for p in emu.cache_dir().glob("*.so")}

    np.testing.assert_array_equal(run(options=("-DSCALE=2",)), 2 * x)
    assert len(private_cache) == 1 and len(cached()) == 1
    first = cached()
    # the same source and options in a new module: loaded from disk, not compiled
    np.testing.assert_array_equal(run(options=("-DSCALE=2",), raw_kernel=True), 2 * x)
    # GPU code-generation options do not change the CPU code
    np.testing.assert_array_equal(run(options=("-DSCALE=2", "-arch=sm_90")), 2 * x)
    assert len(private_cache) == 1 and cached() == first
    # another option value: compiled again, into its own entry
    np.testing.assert_array_equal(run(options=("-DSCALE=3",)), 3 * x)
    assert len(private_cache) == 2 and len(cached()) == 2
    # another source: compiled again
    np.testing.assert_array_equal(run(code=API_KERNELS.replace("SCALE * a", "SCALE * a * 10")), 10 * x)
    assert len(private_cache) == 3 and len(cached()) == 3
    np.testing.assert_array_equal(run(options=("-DSCALE=3",)), 3 * x)
    assert len(private_cache) == 3


def test_compile_error_is_a_python_exception_with_the_compilers_message(private_cache, tmp_path):
    (tmp_path / "broken.cuh").write_text("#pragma once\n__device__ float helper(float v) {\n"
                                         "  return v * undeclared_factor;\n}\n")
    (tmp_path / "broken.cu").write_text('#include "broken.cuh"\n'
                                        "extern \"C\" __global__ void k(float* y) { y[0] = helper(1.f); }\n")
    with pytest.raises(emu.CompileError) as info:
        emu.RawModule(path=tmp_path / "broken.cu").get_function("k")
    message = str(info.value)
    assert "compiling 'broken.cu' for the CPU runtime failed" in message
    assert "broken.cuh:3" in message and "undeclared_factor" in message and "error" in message
    assert isinstance(info.value, RuntimeError)
    assert len(private_cache) == 1 and not list(emu.cache_dir().glob("*.so"))  # no broken cache entry
