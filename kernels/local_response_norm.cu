// local_response_norm.cu: local response normalisation across channels (cuda-convnet's cmrnorm),
// forward and backward, in torch.nn.functional.local_response_norm's convention.
//
//   window of channel c:  W(c) = [c - size/2, c - size/2 + size) clipped to [0, C)   (size/2 floored:
//                         size/2 channels before c, (size-1)/2 after, as torch pads; for an even size
//                         the extra channel is on the low side, as cuda-convnet's cmrnorm)
//   d_c = k + alpha * (S_c / size),  S_c = sum_{c' in W(c)} a_c'^2    (alpha/size: cuda-convnet's
//         `scale`/size, k its `minDiv`, beta its `pow`)
//   b_c = a_c / d_c^beta
//   backward: grad_a_j = g_j / d_j^beta - (2*beta*alpha/size) * a_j * sum_{c : j in W(c)} r_c,
//             r_c = g_c * a_c / (d_c^beta * d_c),  {c : j in W(c)} = [j - (size-1)/2, j + size/2] clipped
//
// Layout: NCHW, contiguous; channel c of an element at flat index i is (i / HW) % C, its channel
// neighbours are HW apart. Flat indices 64-bit.
// Tiling: one thread per element in a grid-stride loop (consecutive threads on consecutive x:
// coalesced), each summing its window directly, lowest channel first (size loads, served by the
// cache; no running sum, whose subtraction would lose small neighbours once a large value leaves the
// window). Fixed order everywhere: deterministic. The backward takes two kernels: lrn_backward_ratio
// writes grad_a_j = g_j / d_j^beta and r_j, then lrn_backward_finish subtracts each element's
// transposed-window sum of r (each thread updates only its own element). Launch geometry: elementwise()
// of alexnet_raw/runtime/launch.py, in alexnet_raw/ops/local_response_norm.py.
// Reference: alexnet_raw/checks/torch_reference.py; tests: tests/kernels/test_local_response_norm.py
// (torch.nn.functional.local_response_norm and its autograd backward).
#include "common.cuh"

__device__ __forceinline__ float lrn_pow(float a, float b) { return powf(a, b); }
__device__ __forceinline__ double lrn_pow(double a, double b) { return pow(a, b); }

// d = k + alpha * (S / size) at element i (channel c), S summed over W(c)
template <typename T>
__device__ __forceinline__ T lrn_denominator(const T* __restrict__ x, alx_index i, int c, int C, alx_index HW,
                                             int size, T alpha, T k) {
  const int lo = c - size / 2 > 0 ? c - size / 2 : 0;
  const int hi = c - size / 2 + size < C ? c - size / 2 + size : C;
  const T* column = x + (i - c * HW);
  T s = T(0);
  for (int cc = lo; cc < hi; ++cc) {
    const T v = column[cc * HW];
    s += v * v;
  }
  return s / T(size) * alpha + k;
}

template <typename T>
__global__ void lrn_forward(T* __restrict__ y, const T* __restrict__ x, alx_index total, int C, alx_index HW,
                            int size, T alpha, T beta, T k) {
  ALX_GRID_STRIDE_LOOP(i, total) {
    const int c = (int)((i / HW) % C);
    y[i] = x[i] / lrn_pow(lrn_denominator(x, i, c, C, HW, size, alpha, k), beta);
  }
}

template <typename T>
__global__ void lrn_backward_ratio(T* __restrict__ grad_x, T* __restrict__ ratio, const T* __restrict__ grad_y,
                                   const T* __restrict__ x, alx_index total, int C, alx_index HW, int size, T alpha,
                                   T beta, T k) {
  ALX_GRID_STRIDE_LOOP(i, total) {
    const int c = (int)((i / HW) % C);
    const T d = lrn_denominator(x, i, c, C, HW, size, alpha, k);
    const T scale = lrn_pow(d, beta);
    const T g = grad_y[i];
    grad_x[i] = g / scale;
    ratio[i] = g * x[i] / (scale * d);
  }
}

// coef = 2 * beta * alpha / size
template <typename T>
__global__ void lrn_backward_finish(T* __restrict__ grad_x, const T* __restrict__ ratio, const T* __restrict__ x,
                                    alx_index total, int C, alx_index HW, int size, T coef) {
  ALX_GRID_STRIDE_LOOP(i, total) {
    const int c = (int)((i / HW) % C);
    const int lo = c - (size - 1) / 2 > 0 ? c - (size - 1) / 2 : 0;
    const int hi = c + size / 2 + 1 < C ? c + size / 2 + 1 : C;
    const T* column = ratio + (i - c * HW);
    T s = T(0);
    for (int cc = lo; cc < hi; ++cc) s += column[cc * HW];
    grad_x[i] -= coef * x[i] * s;
  }
}

ALX_INSTANTIATE(lrn_forward<float>)
ALX_INSTANTIATE(lrn_forward<double>)
ALX_INSTANTIATE(lrn_backward_ratio<float>)
ALX_INSTANTIATE(lrn_backward_ratio<double>)
ALX_INSTANTIATE(lrn_backward_finish<float>)
ALX_INSTANTIATE(lrn_backward_finish<double>)
