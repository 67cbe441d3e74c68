// neuron.cu: cuda-convnet's neurons, the elementwise activations a layer applies to its output
// (`neuron=...` in its layer file; relu has its own kernel, relu.cu, and ident needs none):
//
//   neuron       forward y = f(x)                    backward dx = dy * f'(x), from y or x
//   logistic     1 / (1 + exp(-x))                   dy * y * (1 - y)
//   tanh[a,b]    a * tanh(b * x)                     dy * (b / a) * (a - y) * (a + y)
//   brelu[a]     min(max(x, 0), a)                   dy where 0 < y < a, else 0
//   abs          |x|                                 dy * sign(x), sign(0) = sign(NaN) = 0 (as torch)
//   square       x * x                               dy * 2 * x
//   sqrt         sqrt(x)                             dy / (2 * y)
//   linear[a,b]  a * x + b, one fma (one rounding)   dy * a
//   softrelu     log(1 + exp(x)), stably:            dy * (1 - exp(-y)), computed as -expm1(-y), which
//                x > 0: x + log1p(exp(-x)),          keeps its relative accuracy where y is tiny
//                else log1p(exp(x))
//
// NaN propagates through every forward, and through every backward but brelu's and abs's, which
// give 0 at a NaN input as torch.clamp's and torch.abs's do.
// Each neuron is a struct with forward() and backward() and says which of x and y its backward
// reads (the other array is not touched); the kernels are templated on the element type and on it.
// Parameters a and b arrive as T (0 where unused), checked on the host (alexnet_raw/ops/neuron.py).
//
// Layout: any contiguous tensor, seen as a flat array of n elements (n is 64-bit).
// Tiling: none; one element per thread in a grid-stride loop (launch geometry: elementwise() in
// alexnet_raw/runtime/launch.py, used by alexnet_raw/ops/neuron.py).
// Reference: alexnet_raw/checks/torch_reference.py.
// Tests: tests/kernels/test_neuron.py (torch.sigmoid, a * torch.tanh(b * x),
// torch.clamp, torch.abs, x * x, torch.sqrt, a * x + b, torch.nn.functional.softplus and autograd).
#include "common.cuh"

__device__ __forceinline__ float neuron_exp(float v) { return expf(v); }
__device__ __forceinline__ double neuron_exp(double v) { return exp(v); }
__device__ __forceinline__ float neuron_expm1(float v) { return expm1f(v); }
__device__ __forceinline__ double neuron_expm1(double v) { return expm1(v); }
__device__ __forceinline__ float neuron_log1p(float v) { return log1pf(v); }
__device__ __forceinline__ double neuron_log1p(double v) { return log1p(v); }
__device__ __forceinline__ float neuron_tanh(float v) { return tanhf(v); }
__device__ __forceinline__ double neuron_tanh(double v) { return tanh(v); }
__device__ __forceinline__ float neuron_sqrt(float v) { return sqrtf(v); }
__device__ __forceinline__ double neuron_sqrt(double v) { return sqrt(v); }
__device__ __forceinline__ float neuron_abs(float v) { return fabsf(v); }
__device__ __forceinline__ double neuron_abs(double v) { return fabs(v); }
__device__ __forceinline__ float neuron_fma(float a, float x, float b) { return fmaf(a, x, b); }
__device__ __forceinline__ double neuron_fma(double a, double x, double b) { return fma(a, x, b); }

struct Logistic {
  static constexpr bool backward_reads_x = false, backward_reads_y = true;
  template <typename T>
  static __device__ __forceinline__ T forward(T x, T, T) {
    return T(1) / (T(1) + neuron_exp(-x));  // exp(100) = inf gives 0, not NaN
  }
  template <typename T>
  static __device__ __forceinline__ T backward(T dy, T, T y, T, T) {
    return dy * y * (T(1) - y);
  }
};

struct Tanh {
  static constexpr bool backward_reads_x = false, backward_reads_y = true;
  template <typename T>
  static __device__ __forceinline__ T forward(T x, T a, T b) {
    return a * neuron_tanh(b * x);
  }
  template <typename T>
  static __device__ __forceinline__ T backward(T dy, T, T y, T a, T b) {
    return dy * (b / a) * (a - y) * (a + y);  // a != 0 (checked on the host)
  }
};

struct BRelu {
  static constexpr bool backward_reads_x = false, backward_reads_y = true;
  template <typename T>
  static __device__ __forceinline__ T forward(T x, T a, T) {
    return x < T(0) ? T(0) : (x > a ? a : x);  // both comparisons false for NaN: it passes through
  }
  template <typename T>
  static __device__ __forceinline__ T backward(T dy, T, T y, T a, T) {
    return y > T(0) && y < a ? dy : T(0);
  }
};

struct Abs {
  static constexpr bool backward_reads_x = true, backward_reads_y = false;
  template <typename T>
  static __device__ __forceinline__ T forward(T x, T, T) {
    return neuron_abs(x);
  }
  template <typename T>
  static __device__ __forceinline__ T backward(T dy, T x, T, T, T) {
    const T sign = x > T(0) ? T(1) : (x < T(0) ? T(-1) : T(0));  // 0 for 0 and NaN, as torch.sign
    return dy * sign;
  }
};

struct Square {
  static constexpr bool backward_reads_x = true, backward_reads_y = false;
  template <typename T>
  static __device__ __forceinline__ T forward(T x, T, T) {
    return x * x;
  }
  template <typename T>
  static __device__ __forceinline__ T backward(T dy, T x, T, T, T) {
    return dy * T(2) * x;
  }
};

struct Sqrt {
  static constexpr bool backward_reads_x = false, backward_reads_y = true;
  template <typename T>
  static __device__ __forceinline__ T forward(T x, T, T) {
    return neuron_sqrt(x);  // NaN for x < 0
  }
  template <typename T>
  static __device__ __forceinline__ T backward(T dy, T, T y, T, T) {
    return dy / (T(2) * y);
  }
};

struct Linear {
  static constexpr bool backward_reads_x = false, backward_reads_y = false;
  template <typename T>
  static __device__ __forceinline__ T forward(T x, T a, T b) {
    return neuron_fma(a, x, b);
  }
  template <typename T>
  static __device__ __forceinline__ T backward(T dy, T, T, T a, T) {
    return dy * a;
  }
};

struct SoftRelu {
  static constexpr bool backward_reads_x = false, backward_reads_y = true;
  template <typename T>
  static __device__ __forceinline__ T forward(T x, T, T) {
    // exp of a non-positive argument only: no overflow; NaN takes the second branch
    return x > T(0) ? x + neuron_log1p(neuron_exp(-x)) : neuron_log1p(neuron_exp(x));
  }
  template <typename T>
  static __device__ __forceinline__ T backward(T dy, T, T y, T, T) {
    return dy * -neuron_expm1(-y);
  }
};

template <typename T, typename Neuron>
__global__ void neuron_forward(T* __restrict__ y, const T* __restrict__ x, alx_index n, T a, T b) {
  ALX_GRID_STRIDE_LOOP(i, n) { y[i] = Neuron::forward(x[i], a, b); }
}

template <typename T, typename Neuron>
__global__ void neuron_backward(T* __restrict__ grad_x, const T* __restrict__ grad_y, const T* __restrict__ x,
                                const T* __restrict__ y, alx_index n, T a, T b) {
  ALX_GRID_STRIDE_LOOP(i, n) {
    const T xi = Neuron::backward_reads_x ? x[i] : T(0);
    const T yi = Neuron::backward_reads_y ? y[i] : T(0);
    grad_x[i] = Neuron::backward(grad_y[i], xi, yi, a, b);
  }
}

ALX_INSTANTIATE(neuron_forward<float, Logistic>)
ALX_INSTANTIATE(neuron_forward<double, Logistic>)
ALX_INSTANTIATE(neuron_backward<float, Logistic>)
ALX_INSTANTIATE(neuron_backward<double, Logistic>)
ALX_INSTANTIATE(neuron_forward<float, Tanh>)
ALX_INSTANTIATE(neuron_forward<double, Tanh>)
ALX_INSTANTIATE(neuron_backward<float, Tanh>)
ALX_INSTANTIATE(neuron_backward<double, Tanh>)
ALX_INSTANTIATE(neuron_forward<float, BRelu>)
ALX_INSTANTIATE(neuron_forward<double, BRelu>)
ALX_INSTANTIATE(neuron_backward<float, BRelu>)
ALX_INSTANTIATE(neuron_backward<double, BRelu>)
ALX_INSTANTIATE(neuron_forward<float, Abs>)
ALX_INSTANTIATE(neuron_forward<double, Abs>)
ALX_INSTANTIATE(neuron_backward<float, Abs>)
ALX_INSTANTIATE(neuron_backward<double, Abs>)
ALX_INSTANTIATE(neuron_forward<float, Square>)
ALX_INSTANTIATE(neuron_forward<double, Square>)
ALX_INSTANTIATE(neuron_backward<float, Square>)
ALX_INSTANTIATE(neuron_backward<double, Square>)
ALX_INSTANTIATE(neuron_forward<float, Sqrt>)
ALX_INSTANTIATE(neuron_forward<double, Sqrt>)
ALX_INSTANTIATE(neuron_backward<float, Sqrt>)
ALX_INSTANTIATE(neuron_backward<double, Sqrt>)
ALX_INSTANTIATE(neuron_forward<float, Linear>)
ALX_INSTANTIATE(neuron_forward<double, Linear>)
ALX_INSTANTIATE(neuron_backward<float, Linear>)
ALX_INSTANTIATE(neuron_backward<double, Linear>)
ALX_INSTANTIATE(neuron_forward<float, SoftRelu>)
ALX_INSTANTIATE(neuron_forward<double, SoftRelu>)
ALX_INSTANTIATE(neuron_backward<float, SoftRelu>)
ALX_INSTANTIATE(neuron_backward<double, SoftRelu>)
