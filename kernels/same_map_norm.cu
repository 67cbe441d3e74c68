// same_map_norm.cu: response normalisation within each channel over a size x size spatial window
// (cuda-convnet's `rnorm`, run #145's cnorm2 after LRN2), forward and backward.
//
//   window of (y, x):  rows [y - size/2, y - size/2 + size) and columns [x - size/2, x - size/2 + size)
//                      (size/2 floored), clipped to the image: zero outside
//   d = k + alpha * (S / size^2),  S = sum over the window of a^2  (alpha/size^2: cuda-convnet's
//       `scale`, divided by size^2 by its parser; the divisor is size^2 even where the window is clipped)
//   b = a / d^beta
//   backward: grad_a_p = g_p / d_p^beta - (2*beta*alpha/size^2) * a_p * sum_{q : p in window(q)} r_q,
//             r_q = g_q * a_q / (d_q^beta * d_q); the windows holding p = (y, x) are centred on rows
//             [y - (size-1)/2, y + size/2] and columns [x - (size-1)/2, x + size/2], clipped
//
// Layout: NCHW, contiguous; each (n, c) plane is normalised independently; plane offsets are ints
// (H*W < 2^31, checked by the host), flat indices 64-bit.
// Tiling: one thread per element in a grid-stride loop (consecutive threads on consecutive x:
// coalesced), each summing its window directly, row by row, left to right (size^2 loads, served by
// the cache: 25 for run #145's size 5). Fixed order: deterministic. The backward takes two kernels:
// smn_backward_ratio writes grad_a_p = g_p / d_p^beta and r_p, then smn_backward_finish subtracts each
// element's transposed-window sum of r (each thread updates only its own element). Launch geometry:
// elementwise() of alexnet_raw/runtime/launch.py, in alexnet_raw/ops/same_map_norm.py.
// Reference: alexnet_raw/checks/torch_reference.py.
// Tests: tests/kernels/test_same_map_norm.py (a PyTorch expression: avg_pool2d of the
// zero-padded squares, and its autograd backward).
#include "common.cuh"

__device__ __forceinline__ float smn_pow(float a, float b) { return powf(a, b); }
__device__ __forceinline__ double smn_pow(double a, double b) { return pow(a, b); }

// Sum of v over rows [y0, y0 + rows) and columns [x0, x0 + cols) of an H x W plane, clipped.
template <typename T, bool Square>
__device__ __forceinline__ T smn_window_sum(const T* __restrict__ plane, int H, int W, int y0, int x0, int rows,
                                            int cols) {
  const int y1 = y0 + rows < H ? y0 + rows : H, x1 = x0 + cols < W ? x0 + cols : W;
  y0 = y0 > 0 ? y0 : 0;
  x0 = x0 > 0 ? x0 : 0;
  T s = T(0);
  for (int y = y0; y < y1; ++y) {
    for (int x = x0; x < x1; ++x) {
      const T v = plane[y * W + x];
      s += Square ? v * v : v;
    }
  }
  return s;
}

// d = k + alpha * (S / size^2) at (y, x); area = size^2 as T
template <typename T>
__device__ __forceinline__ T smn_denominator(const T* __restrict__ plane, int H, int W, int y, int x, int size,
                                             T area, T alpha, T k) {
  return smn_window_sum<T, true>(plane, H, W, y - size / 2, x - size / 2, size, size) / area * alpha + k;
}

template <typename T>
__global__ void smn_forward(T* __restrict__ out, const T* __restrict__ in, alx_index total, int H, int W, int size,
                            T alpha, T beta, T k) {
  const T area = T(size) * T(size);
  ALX_GRID_STRIDE_LOOP(i, total) {
    const int x = (int)(i % W);
    const alx_index t = i / W;
    const int y = (int)(t % H);
    const T* plane = in + (t / H) * H * W;
    out[i] = in[i] / smn_pow(smn_denominator(plane, H, W, y, x, size, area, alpha, k), beta);
  }
}

template <typename T>
__global__ void smn_backward_ratio(T* __restrict__ grad_in, T* __restrict__ ratio, const T* __restrict__ grad_out,
                                   const T* __restrict__ in, alx_index total, int H, int W, int size, T alpha,
                                   T beta, T k) {
  const T area = T(size) * T(size);
  ALX_GRID_STRIDE_LOOP(i, total) {
    const int x = (int)(i % W);
    const alx_index t = i / W;
    const int y = (int)(t % H);
    const T d = smn_denominator(in + (t / H) * H * W, H, W, y, x, size, area, alpha, k);
    const T scale = smn_pow(d, beta);
    const T g = grad_out[i];
    grad_in[i] = g / scale;
    ratio[i] = g * in[i] / (scale * d);
  }
}

// coef = 2 * beta * alpha / size^2
template <typename T>
__global__ void smn_backward_finish(T* __restrict__ grad_in, const T* __restrict__ ratio, const T* __restrict__ in,
                                    alx_index total, int H, int W, int size, T coef) {
  ALX_GRID_STRIDE_LOOP(i, total) {
    const int x = (int)(i % W);
    const alx_index t = i / W;
    const int y = (int)(t % H);
    const T s = smn_window_sum<T, false>(ratio + (t / H) * H * W, H, W, y - (size - 1) / 2, x - (size - 1) / 2,
                                         size, size);
    grad_in[i] -= coef * in[i] * s;
  }
}

ALX_INSTANTIATE(smn_forward<float>)
ALX_INSTANTIATE(smn_forward<double>)
ALX_INSTANTIATE(smn_backward_ratio<float>)
ALX_INSTANTIATE(smn_backward_ratio<double>)
ALX_INSTANTIATE(smn_backward_finish<float>)
ALX_INSTANTIATE(smn_backward_finish<double>)
