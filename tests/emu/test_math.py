"""Math functions and intrinsics of the CPU runtime against NumPy, within CUDA's documented ulp bounds.

Every float function is compared with the correctly rounded result (NumPy in float64, rounded to
float32); every double function with NumPy in long double (x86's 80-bit format), rounded to
float64. The allowed error is the maximum ulp error the CUDA C Programming Guide states for the
device function (Mathematical Functions appendix), so a kernel verified here cannot rely on more
accuracy than a GPU gives; special inputs (0, -0, inf, NaN, negatives of log and sqrt) must give
NumPy's value exactly. The device intrinsics (__expf, __fdividef, ...) run at full accuracy on
the CPU and are held to the accurate function's bound. Also: fmaf/fma fuse (one rounding), the
bit casts our kernels use to build -inf and NaN, the integer intrinsics (__umulhi drives the
dropout Philox generator), and the float-to-int conversions, which clamp and map NaN to 0 as PTX
cvt does.
"""

import numpy as np
import pytest

from alexnet_raw import emu

# (name, C expression of x (and y), maximum ulp error on a GPU, NumPy reference, input domain)
FLOAT_UNARY = [
    ("expf", "expf(x)", 2, np.exp, (-87, 88)),
    ("exp2f", "exp2f(x)", 2, np.exp2, (-125, 127)),
    ("logf", "logf(x)", 1, np.log, "positive"),
    ("log2f", "log2f(x)", 1, np.log2, "positive"),
    ("log1pf", "log1pf(x)", 1, np.log1p, (-0.999, 1e3)),
    ("expm1f", "expm1f(x)", 1, np.expm1, (-20, 20)),
    ("sqrtf", "sqrtf(x)", 0, np.sqrt, "positive"),
    ("rsqrtf", "rsqrtf(x)", 2, lambda v: 1 / np.sqrt(v), "positive"),
    ("tanhf", "tanhf(x)", 2, np.tanh, (-10, 10)),
    ("sinf", "sinf(x)", 2, np.sin, (-100, 100)),
    ("cosf", "cosf(x)", 2, np.cos, (-100, 100)),
    ("fabsf", "fabsf(x)", 0, np.abs, (-1e6, 1e6)),
    ("floorf", "floorf(x)", 0, np.floor, (-1e3, 1e3)),
    ("ceilf", "ceilf(x)", 0, np.ceil, (-1e3, 1e3)),
    ("rintf", "rintf(x)", 0, np.rint, (-1e3, 1e3)),
    ("__expf", "__expf(x)", 2, np.exp, (-87, 88)),
    ("__logf", "__logf(x)", 1, np.log, "positive"),
    ("__fsqrt_rn", "__fsqrt_rn(x)", 0, np.sqrt, "positive"),
    ("__frcp_rn", "__frcp_rn(x)", 0, lambda v: 1 / v, (-1e3, 1e3)),
    ("__saturatef", "__saturatef(x)", 0, lambda v: np.where(np.isnan(v), 0, np.clip(v, 0, 1)), (-2, 2)),
]
FLOAT_BINARY = [
    ("powf", "powf(x, y)", 4, np.power, "pow"),
    ("__powf", "__powf(x, y)", 4, np.power, "pow"),
    ("fmaxf", "fmaxf(x, y)", 0, np.fmax, (-1e3, 1e3)),
    ("fminf", "fminf(x, y)", 0, np.fmin, (-1e3, 1e3)),
    ("max", "max(x, y)", 0, np.fmax, (-1e3, 1e3)),
    ("min", "min(x, y)", 0, np.fmin, (-1e3, 1e3)),
    ("divide", "x / y", 0, np.divide, (-1e3, 1e3)),
    ("__fdividef", "__fdividef(x, y)", 2, np.divide, (-1e3, 1e3)),
    ("__fdiv_rn", "__fdiv_rn(x, y)", 0, np.divide, (-1e3, 1e3)),
]
DOUBLE_UNARY = [
    ("exp", "exp(x)", 1, np.exp, (-700, 700)),
    ("exp2", "exp2(x)", 1, np.exp2, (-1000, 1000)),
    ("log", "log(x)", 1, np.log, "positive"),
    ("log2", "log2(x)", 1, np.log2, "positive"),
    ("log1p", "log1p(x)", 1, np.log1p, (-0.999, 1e3)),
    ("expm1", "expm1(x)", 1, np.expm1, (-20, 20)),
    ("sqrt", "sqrt(x)", 0, np.sqrt, "positive"),
    ("rsqrt", "rsqrt(x)", 1, lambda v: 1 / np.sqrt(v), "positive"),
    # CUDA states 1 ulp; glibc's tanh is documented (and measured here) at 2 ulp on x86_64
    ("tanh", "tanh(x)", 2, np.tanh, (-20, 20)),
    ("sin", "sin(x)", 2, np.sin, (-100, 100)),
    ("cos", "cos(x)", 2, np.cos, (-100, 100)),
    ("fabs", "fabs(x)", 0, np.abs, (-1e6, 1e6)),
    ("floor", "floor(x)", 0, np.floor, (-1e3, 1e3)),
    ("ceil", "ceil(x)", 0, np.ceil, (-1e3, 1e3)),
]
DOUBLE_BINARY = [
    ("pow", "pow(x, y)", 2, np.power, "pow"),
    ("fmax", "fmax(x, y)", 0, np.fmax, (-1e3, 1e3)),
    ("fmin", "fmin(x, y)", 0, np.fmin, (-1e3, 1e3)),
    ("max", "max(x, y)", 0, np.fmax, (-1e3, 1e3)),
    ("min", "min(x, y)", 0, np.fmin, (-1e3, 1e3)),
    ("divide", "x / y", 0, np.divide, (-1e3, 1e3)),
]
SPECIALS = [0.0, -0.0, 1.0, -1.0, 0.5, 2.0, np.inf, -np.inf, np.nan]


def _kernel(name, T, table, binary):
    """out[i] = the `which`-th expression of `table` at x = xs[i] (and y = ys[i])."""
    cases = "\n".join(f"    case {k}: r = {expr}; break;" for k, (_, expr, *_) in enumerate(table))
    y = f"const {T} y = ys[i];" if binary else ""
    return f"""
extern "C" __global__ void {name}({T}* out, const {T}* xs, const {T}* ys, int which, int n) {{
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const {T} x = xs[i];
  {y}
  {T} r = -12345;
  switch (which) {{
{cases}
  }}
  out[i] = r;
}}
"""


MATH_KERNELS = (
    _kernel("unary_f32", "float", FLOAT_UNARY, False)
    + _kernel("binary_f32", "float", FLOAT_BINARY, True)
    + _kernel("unary_f64", "double", DOUBLE_UNARY, False)
    + _kernel("binary_f64", "double", DOUBLE_BINARY, True)
    + r"""
extern "C" __global__ void fused(float* f_out, const float* f, double* d_out, const double* d, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  f_out[2 * i] = fmaf(f[3 * i], f[3 * i + 1], f[3 * i + 2]);
  f_out[2 * i + 1] = __fmaf_rn(f[3 * i], f[3 * i + 1], f[3 * i + 2]);
  d_out[2 * i] = fma(d[3 * i], d[3 * i + 1], d[3 * i + 2]);
  d_out[2 * i + 1] = __fma_rn(d[3 * i], d[3 * i + 1], d[3 * i + 2]);
}

// -inf and NaN as max_pool2d.cu and softmax_cross_entropy.cu build them, and the casts both ways
extern "C" __global__ void bit_casts(float* f, int* fi, double* d, long long* di, const int* bits32,
                                     const long long* bits64, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  f[i] = __int_as_float(bits32[i]);
  fi[i] = __float_as_int(f[i]);
  d[i] = __longlong_as_double(bits64[i]);
  di[i] = __double_as_longlong(d[i]);
  if (i == 0) {
    f[n] = __int_as_float((int)0xff800000u);
    d[n] = __longlong_as_double((long long)0xfff0000000000000ULL);
    f[n + 1] = __int_as_float(0x7fc00000);
    d[n + 1] = __longlong_as_double(0x7ff8000000000000LL);
  }
}

#define INT_OPS 9
extern "C" __global__ void integer_intrinsics(unsigned* out, const unsigned* a, const unsigned* b, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const unsigned x = a[i], y = b[i];
  unsigned* o = out + INT_OPS * i;
  o[0] = __umulhi(x, y);
  o[1] = unsigned(__mulhi(int(x), int(y)));
  o[2] = unsigned(__popc(x));
  o[3] = unsigned(__clz(int(x)));
  o[4] = unsigned(__ffs(int(x)));
  o[5] = __brev(x);
  o[6] = __funnelshift_l(x, y, i);
  o[7] = __funnelshift_r(x, y, i);
  o[8] = unsigned(__umul64hi((unsigned long long)x << 32 | y, 0x9E3779B97F4A7C15ULL) >> 7);
}

extern "C" __global__ void float_to_int(int* rn, int* rz, int* rd, int* ru, unsigned* urn, const float* x, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  rn[i] = __float2int_rn(x[i]);
  rz[i] = __float2int_rz(x[i]);
  rd[i] = __float2int_rd(x[i]);
  ru[i] = __float2int_ru(x[i]);
  urn[i] = __float2uint_rn(x[i]);
}
"""
)

LONG_DOUBLE_IS_WIDER = np.finfo(np.longdouble).nmant > np.finfo(np.float64).nmant


@pytest.fixture(scope="module")
def mod():
    return emu.RawModule(code=MATH_KERNELS, name="math_cases.cu")


def inputs(domain, dtype, rng, n=4096):
    if domain == "positive":  # log-uniform over most of the normal range, plus subnormals
        lo, hi = (-37, 38) if dtype == np.float32 else (-300, 300)
        x = 10.0 ** rng.uniform(lo, hi, n)
        x[:16] = np.finfo(dtype).smallest_subnormal * rng.integers(1, 1000, 16)
    else:
        x = rng.uniform(domain[0], domain[1], n)
    return np.concatenate([x, SPECIALS]).astype(dtype)


def ordered(v):
    """Integers ordered like the floats v: adjacent floats differ by 1, -0 and +0 are both 0."""
    bits = v.view(np.int32 if v.dtype == np.float32 else np.int64).astype(np.int64)
    magnitude = bits & (0x7FFFFFFF if v.dtype == np.float32 else 0x7FFFFFFFFFFFFFFF)
    return np.where(bits < 0, -magnitude, magnitude)


def assert_within_ulps(got, exact, dtype, ulps, what):
    """got (dtype) is within `ulps` of `exact` rounded to dtype; non-finite values equal exactly."""
    with np.errstate(all="ignore"):
        ref = exact.astype(dtype)
    finite = np.isfinite(ref)
    np.testing.assert_array_equal(got[~finite], ref[~finite], err_msg=f"{what}: special values")
    assert np.isfinite(got[finite]).all(), f"{what}: non-finite result where the reference is finite"
    err = np.abs(ordered(got[finite]) - ordered(ref[finite]))
    worst = int(np.argmax(err)) if err.size else 0
    assert err.max(initial=0) <= ulps, (
        f"{what}: {err.max()} ulp > {ulps} at x = {np.flatnonzero(finite)[worst]}: got {got[finite][worst]!r}, "
        f"correctly rounded {ref[finite][worst]!r}"
    )


def run_table(mod, kernel, table, dtype, binary, case):
    k = [row[0] for row in table].index(case)
    name, _, ulps, reference, domain = table[k]
    rng = np.random.default_rng(k + (100 if binary else 0))
    if domain == "pow":  # bases over [1e-3, 1e3], exponents in [-8, 8] (AlexNet's LRN: d >= 1, beta 0.75)
        x = np.concatenate([10.0 ** rng.uniform(-3, 3, 4096), np.repeat(SPECIALS, len(SPECIALS))]).astype(dtype)
        y = np.concatenate([rng.uniform(-8, 8, 4096), np.tile(SPECIALS, len(SPECIALS))]).astype(dtype)
        x[:64], y[:64] = (1 + rng.uniform(0, 50, 64)).astype(dtype), dtype(0.75)
    else:
        x = inputs(domain, dtype, rng)
        y = inputs(domain, dtype, rng)[rng.permutation(x.size)] if binary else np.zeros_like(x)
    out = np.zeros_like(x)
    mod.get_function(kernel)(((x.size + 255) // 256,), (256,), (out, x, y, np.int32(k), np.int32(x.size)))
    wide = np.float64 if dtype == np.float32 else np.longdouble
    with np.errstate(all="ignore"):
        exact = reference(x.astype(wide), y.astype(wide)) if binary else reference(x.astype(wide))
    if dtype == np.float64 and not LONG_DOUBLE_IS_WIDER:
        ulps += 1  # the reference itself is only a double here
    assert_within_ulps(out, np.asarray(exact), dtype, ulps, f"{name} ({np.dtype(dtype).name})")


@pytest.mark.parametrize("case", [row[0] for row in FLOAT_UNARY])
def test_float_functions(mod, case):
    run_table(mod, "unary_f32", FLOAT_UNARY, np.float32, False, case)


@pytest.mark.parametrize("case", [row[0] for row in FLOAT_BINARY])
def test_float_binary_functions(mod, case):
    run_table(mod, "binary_f32", FLOAT_BINARY, np.float32, True, case)


@pytest.mark.parametrize("case", [row[0] for row in DOUBLE_UNARY])
def test_double_functions(mod, case):
    run_table(mod, "unary_f64", DOUBLE_UNARY, np.float64, False, case)


@pytest.mark.parametrize("case", [row[0] for row in DOUBLE_BINARY])
def test_double_binary_functions(mod, case):
    run_table(mod, "binary_f64", DOUBLE_BINARY, np.float64, True, case)


def test_ulp_distance_counts_adjacent_floats():
    for dtype in (np.float32, np.float64):
        x = np.array([1.0, -1.0, 0.0, 1e-40 if dtype == np.float32 else 1e-310], dtype)
        steps = np.nextafter(np.nextafter(x, dtype(np.inf)), dtype(np.inf))  # two ulps up
        np.testing.assert_array_equal(ordered(steps) - ordered(x), 2)
        assert ordered(np.array([-0.0], dtype))[0] == ordered(np.array([0.0], dtype))[0]
        assert_within_ulps(steps, x, dtype, 2, "two ulps")
        with pytest.raises(AssertionError, match="2 ulp > 1"):
            assert_within_ulps(steps, x, dtype, 1, "two ulps")
        with pytest.raises(AssertionError, match="special values"):
            assert_within_ulps(np.array([np.nan, 0.0], dtype), np.array([np.inf, 0.0]), dtype, 4, "inf")


def test_fma_rounds_once(mod):
    rng = np.random.default_rng(3)
    n = 2000
    # integers up to 2^14 over 2^7: a*b needs up to 28 bits (rounded in float32), a*b+c is exact in
    # float64, so rounding it to float32 once is the correctly rounded fmaf
    f = (rng.integers(-2**14, 2**14, (n, 3)) / 2**7).astype(np.float32)
    # for double, products of 30-bit integers: exact as Python ints
    di = rng.integers(-2**30, 2**30, (n, 3))
    d = di.astype(np.float64) / 2**10
    f_out, d_out = np.zeros((n, 2), np.float32), np.zeros((n, 2))
    mod.get_function("fused")(((n + 127) // 128,), (128,), (f_out, f, d_out, d, np.int32(n)))
    f_exact = (f[:, 0].astype(np.float64) * f[:, 1] + f[:, 2]).astype(np.float32)
    d_exact = np.array([float(int(a) * int(b) * 2**-20 + int(c) * 2**-10) for a, b, c in di])
    for j in range(2):
        np.testing.assert_array_equal(f_out[:, j], f_exact)
        np.testing.assert_array_equal(d_out[:, j], d_exact)
    # and fusing matters for these inputs: a separate multiply and add differ somewhere
    assert (f_exact != (f[:, 0] * f[:, 1]) + f[:, 2]).any()


def test_bit_casts(mod):
    rng = np.random.default_rng(4)
    n = 1000
    bits32 = rng.integers(-2**31, 2**31, n, dtype=np.int64).astype(np.int32)
    bits64 = rng.integers(-2**63, 2**63 - 1, n, dtype=np.int64)
    bits32[:4] = [0x7F800000, np.int32(-8388608), 0x00000001, 0x7FC00000]  # inf, -inf, subnormal, NaN
    f, fi = np.zeros(n + 2, np.float32), np.zeros(n, np.int32)
    d, di = np.zeros(n + 2), np.zeros(n, np.int64)
    mod.get_function("bit_casts")((8,), (128,), (f, fi, d, di, bits32, bits64, np.int32(n)))
    assert f[:n].tobytes() == bits32.tobytes() and d[:n].tobytes() == bits64.tobytes()
    np.testing.assert_array_equal(fi, bits32)
    np.testing.assert_array_equal(di, bits64)
    assert f[n] == -np.inf and d[n] == -np.inf and np.isnan(f[n + 1]) and np.isnan(d[n + 1])


def test_integer_intrinsics(mod):
    rng = np.random.default_rng(5)
    n = 3000
    a = rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32)
    b = rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32)
    a[:3] = [0, 1, 0x80000000]
    out = np.zeros((n, 9), np.uint32)
    mod.get_function("integer_intrinsics")(((n + 255) // 256,), (256,), (out, a, b, np.int32(n)))
    ai, bi = [int(v) for v in a], [int(v) for v in b]
    signed = [v - 2**32 if v >= 2**31 else v for v in ai]
    signed_b = [v - 2**32 if v >= 2**31 else v for v in bi]
    m32 = 2**32 - 1
    expected = np.array([
        [
            (x * y) >> 32,
            ((sx * sy) >> 32) & m32,
            bin(x).count("1"),
            32 - x.bit_length(),
            (x & -x).bit_length(),
            int(f"{x:032b}"[::-1], 2),
            (((y << 32 | x) << (i % 32)) >> 32) & m32,  # funnel shifts take the shift modulo 32
            ((y << 32 | x) >> (i % 32)) & m32,
            (((x << 32 | y) * 0x9E3779B97F4A7C15) >> 64 >> 7) & m32,
        ]
        for i, (x, y, sx, sy) in enumerate(zip(ai, bi, signed, signed_b))
    ], dtype=np.uint64).astype(np.uint32)
    np.testing.assert_array_equal(out, expected)


def test_float_to_int_conversions_round_clamp_and_map_nan_to_zero(mod):
    rng = np.random.default_rng(6)
    x = np.concatenate([rng.uniform(-1e3, 1e3, 1000), [0.5, 1.5, 2.5, -0.5, -1.5, -2.5, -0.0, 2**31, -2**31,
                                                     3e9, -3e9, 5e9, 2**32, np.inf, -np.inf, np.nan]])
    x = x.astype(np.float32)
    outs = [np.zeros(x.size, np.int32) for _ in range(4)] + [np.zeros(x.size, np.uint32)]
    mod.get_function("float_to_int")(((x.size + 255) // 256,), (256,), (*outs, x, np.int32(x.size)))
    wide = x.astype(np.float64)
    for got, rounded, lo, hi in zip(outs, [np.rint(wide), np.trunc(wide), np.floor(wide), np.ceil(wide),
                                          np.rint(wide)], [-2**31] * 4 + [0], [2**31 - 1] * 4 + [2**32 - 1]):
        expected = np.where(np.isnan(rounded), 0, np.clip(np.nan_to_num(rounded, posinf=hi, neginf=lo), lo, hi))
        np.testing.assert_array_equal(got.astype(np.int64), expected.astype(np.int64))
