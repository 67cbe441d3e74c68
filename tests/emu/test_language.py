"""CUDA C language support of the CPU runtime: built-in variables in 3-D, templates, device functions.

threadIdx/blockIdx/blockDim/gridDim in x, y and z against np.indices; template kernels with type
and non-type parameters (instantiated through name_expressions, scalars checked against the
instantiation's types); __device__, __host__ __device__, __forceinline__ and __noinline__
functions, overloads, namespaces, __restrict__, __launch_bounds__ (also through a macro), #pragma
unroll, __constant__ data; the vector types (loads, stores, make_*, members) and their CUDA sizes
and alignments. The module has no barriers, so its blocks run on the runtime's barrier-free path.
"""

import numpy as np
import pytest

from alexnet_raw import emu
from emu_testing import ALL_SCHEDULES, run_under, same_bits

LANGUAGE_KERNELS = r"""
// Every thread writes its built-in variables, 12 values at its global linear index.
extern "C" __global__ void where_am_i(unsigned* out) {
  const dim3 b = blockDim, g = gridDim;
  const uint3 k = blockIdx, t = threadIdx;
  const unsigned block_linear = k.x + g.x * (k.y + g.y * k.z);
  const unsigned thread_linear = t.x + b.x * (t.y + b.y * t.z);
  unsigned* o = out + 12 * (block_linear * b.x * b.y * b.z + thread_linear);
  o[0] = threadIdx.x; o[1] = threadIdx.y; o[2] = threadIdx.z;
  o[3] = blockIdx.x;  o[4] = blockIdx.y;  o[5] = blockIdx.z;
  o[6] = blockDim.x;  o[7] = blockDim.y;  o[8] = blockDim.z;
  o[9] = gridDim.x;   o[10] = gridDim.y;  o[11] = gridDim.z;
}

namespace detail {
template <typename T>
__device__ __forceinline__ T multiply_add(T a, T b, T c) { return a * b + c; }
}  // namespace detail
__device__ __noinline__ float halve(float v) { return 0.5f * v; }
__device__ __noinline__ double halve(double v) { return 0.5 * v; }
__host__ __device__ inline int round_up(int v, int m) { return (v + m - 1) / m * m; }
__constant__ float kOffsets[4] = {0.f, 0.25f, -0.5f, 2.f};

// y[i] = a * x[i] + halve(y[i]) + kOffsets[i % 4], UNROLL consecutive elements per thread
template <typename T, int UNROLL>
__global__ void __launch_bounds__(128) axpy_half(T* __restrict__ y, const T* __restrict__ x, T a, int n) {
  static_assert(UNROLL > 0, "UNROLL must be positive");
  const int first = (blockIdx.x * blockDim.x + threadIdx.x) * UNROLL;
  if (first >= round_up(n, UNROLL)) return;
#pragma unroll UNROLL
  for (int u = 0; u < UNROLL; ++u) {
    const int i = first + u;
    if (i < n) y[i] = detail::multiply_add(a, x[i], halve(y[i])) + T(kOffsets[i % 4]);
  }
}

namespace lib {
namespace inner {
__global__ void iota(long long* y, long long start) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  y[i] = start + i;
}
}  // namespace inner
}  // namespace lib

extern "C" __global__ void vectors(float4* f4_out, const float4* __restrict__ f4, double2* d2_out,
                                   const double2* __restrict__ d2, int2* i2_out, const int2* i2, uint4* u4_out,
                                   const uint4* u4, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float4 v = f4[i];
  f4_out[i] = make_float4(v.w, v.z, v.y, v.x + v.y);
  const double2 d = d2[i];
  d2_out[i] = make_double2(d.y, 2.0 * d.x);
  const int2 p = i2[i];
  i2_out[i] = make_int2(p.x + p.y, p.x - p.y);
  const uint4 u = u4[i];
  u4_out[i] = make_uint4(u.x ^ u.y, u.z, u.w, u.x);
}

// __launch_bounds__ through a macro, as kernels/gemm_tile.cuh's ALX_GEMM_LAUNCH_BOUNDS does
#define BOUNDS(n) __launch_bounds__(n)
extern "C" __global__ void BOUNDS(64)
    bounded(int* __restrict__ ids, const int offset) {
  ids[threadIdx.x] = offset + threadIdx.x;
}

#define LAYOUT(T, k) out[2 * (k)] = int(sizeof(T)); out[2 * (k) + 1] = int(alignof(T));
extern "C" __global__ void vector_layout(int* out) {
  LAYOUT(char1, 0) LAYOUT(char2, 1) LAYOUT(char3, 2) LAYOUT(char4, 3)
  LAYOUT(short2, 4) LAYOUT(short4, 5) LAYOUT(int1, 6) LAYOUT(int2, 7) LAYOUT(int3, 8) LAYOUT(int4, 9)
  LAYOUT(uint2, 10) LAYOUT(uint4, 11) LAYOUT(float1, 12) LAYOUT(float2, 13) LAYOUT(float3, 14)
  LAYOUT(float4, 15) LAYOUT(double1, 16) LAYOUT(double2, 17) LAYOUT(double3, 18) LAYOUT(longlong2, 19)
}
"""
TEMPLATES = ("axpy_half<float, 1>", "axpy_half<float, 4>", "axpy_half<double, 3>")
# (lanes, bytes per lane) of the types vector_layout reports, in its order
LAYOUT_TYPES = [(1, 1), (2, 1), (3, 1), (4, 1), (2, 2), (4, 2), (1, 4), (2, 4), (3, 4), (4, 4), (2, 4), (4, 4),
                (1, 4), (2, 4), (3, 4), (4, 4), (1, 8), (2, 8), (3, 8), (2, 8)]


@pytest.fixture(scope="module")
def mod():
    return emu.RawModule(code=LANGUAGE_KERNELS, name="language_cases.cu", name_expressions=TEMPLATES)


@pytest.mark.parametrize("grid,block", [((3, 2, 2), (4, 3, 2)), ((1, 1, 5), (1, 7, 1)), ((2,), (33,)),
                                        ((1, 3), (2, 2, 8))])
def test_builtin_variables_in_three_dimensions(mod, grid, block):
    g = tuple(grid) + (1,) * (3 - len(grid))
    b = tuple(block) + (1,) * (3 - len(block))
    total = int(np.prod(g) * np.prod(b))

    def run():
        out = np.zeros(12 * total, np.uint32)
        mod.get_function("where_am_i")(grid, block, (out,))
        return out

    results = run_under(ALL_SCHEDULES[:2], run)
    assert same_bits(results[0], results[1])
    # row order: block index (x fastest), then thread index (x fastest)
    bz, by, bx, tz, ty, tx = (a.ravel() for a in np.indices((g[2], g[1], g[0], b[2], b[1], b[0])))
    expected = np.stack([tx, ty, tz, bx, by, bz] + [np.full(total, v) for v in b + g], axis=1)
    np.testing.assert_array_equal(results[0].reshape(total, 12), expected)


@pytest.mark.parametrize("name,dtype,unroll", [("axpy_half<float, 1>", np.float32, 1),
                                               ("axpy_half<float, 4>", np.float32, 4),
                                               ("axpy_half<double, 3>", np.float64, 3)])
@pytest.mark.parametrize("n", [1, 130, 1001])
def test_template_kernel_with_device_functions(mod, name, dtype, unroll, n):
    rng = np.random.default_rng(n)
    x = (rng.integers(-64, 64, n) / 4).astype(dtype)  # quarters: every step below is exact
    y0 = (rng.integers(-64, 64, n) / 2).astype(dtype)
    a = dtype(1.5)
    expected = a * x + y0 / 2 + np.array([0, 0.25, -0.5, 2], dtype)[np.arange(n) % 4]
    threads = -(-n // unroll)

    def run():
        y = y0.copy()
        mod.get_function(name)((-(-threads // 128),), (128,), (y, x, a, np.int32(n)))
        return y

    for y in run_under(ALL_SCHEDULES[:2], run):
        np.testing.assert_array_equal(y, expected)
    wrong = np.float64(1.5) if dtype == np.float32 else np.float32(1.5)
    with pytest.raises(TypeError, match=f"expected numpy.{np.dtype(dtype).name} for C type"):
        mod.get_function(name)((1,), (128,), (y0.copy(), x, wrong, np.int32(n)))


def test_template_names_must_be_instantiated(mod):
    assert set(TEMPLATES) <= set(mod.kernel_names)
    with pytest.raises(KeyError, match="name_expressions"):
        mod.get_function("axpy_half<double, 4>")


def test_kernel_in_a_namespace(mod):
    y = np.zeros(3 * 40, np.int64)
    mod.get_function("lib::inner::iota")((3,), (40,), (y, np.int64(2**40)))
    np.testing.assert_array_equal(y, 2**40 + np.arange(120))
    assert "lib::inner::iota" in mod.kernel_names


def test_launch_bounds_through_a_macro(mod):
    ids = np.zeros(64, np.int32)
    k = mod.get_function("bounded")
    k((1,), (64,), (ids, np.int32(5)))
    np.testing.assert_array_equal(ids, 5 + np.arange(64))
    assert k.param_names == ("ids", "offset")
    with pytest.raises(TypeError, match="argument 1 \\('offset'\\) of bounded\\(int\\*, int\\)"):
        k((1,), (64,), (ids, np.int64(5)))


def test_vector_types(mod):
    rng = np.random.default_rng(7)
    n = 301
    f4 = rng.standard_normal((n, 4)).astype(np.float32)
    d2 = rng.standard_normal((n, 2))
    i2 = rng.integers(-2**20, 2**20, (n, 2), dtype=np.int32)
    u4 = rng.integers(0, 2**32, (n, 4), dtype=np.uint64).astype(np.uint32)
    outs = [np.zeros_like(f4), np.zeros_like(d2), np.zeros_like(i2), np.zeros_like(u4)]
    mod.get_function("vectors")((3,), (128,), (outs[0], f4, outs[1], d2, outs[2], i2, outs[3], u4, np.int32(n)))
    np.testing.assert_array_equal(outs[0], np.stack([f4[:, 3], f4[:, 2], f4[:, 1], f4[:, 0] + f4[:, 1]], axis=1))
    np.testing.assert_array_equal(outs[1], np.stack([d2[:, 1], 2 * d2[:, 0]], axis=1))
    np.testing.assert_array_equal(outs[2], np.stack([i2[:, 0] + i2[:, 1], i2[:, 0] - i2[:, 1]], axis=1))
    np.testing.assert_array_equal(outs[3], np.stack([u4[:, 0] ^ u4[:, 1], u4[:, 2], u4[:, 3], u4[:, 0]], axis=1))


def test_vector_type_sizes_and_alignments_are_cudas(mod):
    out = np.zeros(2 * len(LAYOUT_TYPES), np.int32)
    mod.get_function("vector_layout")((1,), (1,), (out,))
    # CUDA: size = lanes * lane size; 1-, 2- and 4-lane types are aligned to their size (at most
    # 16 bytes), 3-lane types only to their lane
    expected = [(k * s, s if k == 3 else min(k * s, 16)) for k, s in LAYOUT_TYPES]
    assert [tuple(p) for p in out.reshape(-1, 2)] == expected


def test_kernels_may_be_named_like_c_library_functions():
    # `abs`, `div` and `exp` are declared by the C library the runtime includes; the kernels keep
    # their names for get_function, and the library functions stay callable inside them
    source = r"""
extern "C" __global__ void abs(int* out) { out[threadIdx.x] = ::abs(-int(threadIdx.x)); }
extern "C" __global__ void div(int* out) { out[threadIdx.x] = int(threadIdx.x) / 2; }
template <typename T>
__global__ void exp(T* out) { out[threadIdx.x] = ::exp(T(threadIdx.x)); }
"""
    mod = emu.RawModule(code=source, name="libc_names.cu", name_expressions=("exp<double>",))
    out = np.zeros(8, np.int32)
    mod.get_function("abs")((1,), (8,), (out,))
    np.testing.assert_array_equal(out, np.arange(8))
    mod.get_function("div")((1,), (8,), (out,))
    np.testing.assert_array_equal(out, np.arange(8) // 2)
    d = np.zeros(8, np.float64)
    mod.get_function("exp<double>")((1,), (8,), (d,))
    np.testing.assert_array_equal(d, np.exp(np.arange(8.0)))
    assert sorted(mod.kernel_names) == ["abs", "div", "exp<double>"]
