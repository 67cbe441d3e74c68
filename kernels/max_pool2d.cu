// max_pool2d.cu: 2-D max pooling, forward and backward, with torch.nn.functional.max_pool2d's
// semantics (dilation 1).
//
//   window of output (oy, ox): rows [oy*sh - ph, oy*sh - ph + kh) and columns [ox*sw - pw, ox*sw - pw + kw),
//                              clipped to the image (padding never wins: it is not read)
//   y[oy, ox] = max over the window, scanned row by row, left to right: a value replaces the
//               running maximum if it is larger or NaN (so NaN propagates, and the argmax is the
//               last NaN, else the first maximum; a window of -inf keeps its first element), as PyTorch
//   grad_x[p] = sum of grad_y[o] over the windows o containing p whose argmax is p
// Tie rule: PyTorch's: only the first maximum in scan order takes the gradient. (cuda-convnet's
// kLocalMaxUndo gives it to every input equal to the maximum instead.)
// Output sizes (floor and ceil_mode rules, PyTorch's) are computed in alexnet_raw/ops/pool_geometry.py.
//
// Layout: NCHW, contiguous; each (n, c) plane is pooled independently; plane offsets are ints
// (H*W < 2^31, checked by the host), flat indices 64-bit.
// Tiling: one thread per output in a grid-stride loop (max_pool2d_forward, max_pool2d_argmax);
// the backward is a gather without atomics: max_pool2d_argmax stores each window's argmax (its
// in-plane offset), then max_pool2d_backward runs one thread per input element, summing grad_y over
// the windows containing it (at most ceil(kh/sh) * ceil(kw/sw) of them) whose argmax it is, in
// increasing (oy, ox) order: deterministic, and PyTorch's accumulation order. Launch geometry:
// elementwise() of alexnet_raw/runtime/launch.py, in alexnet_raw/ops/max_pool2d.py.
// Reference: alexnet_raw/checks/torch_reference.py.
// Tests: tests/kernels/test_max_pool2d.py (torch.nn.functional.max_pool2d and its
// autograd backward, ties and NaN included).
#include "common.cuh"

__device__ __forceinline__ float pool_neg_inf(float) { return __int_as_float((int)0xff800000u); }
__device__ __forceinline__ double pool_neg_inf(double) { return __longlong_as_double((long long)0xfff0000000000000ULL); }

// Scan the window of output (oy, ox) in `plane`; returns the argmax offset, stores the maximum.
template <typename T>
__device__ __forceinline__ int pool_window_max(const T* __restrict__ plane, int oy, int ox, int H, int W, int kh,
                                               int kw, int sh, int sw, int ph, int pw, T& best) {
  int y0 = oy * sh - ph, x0 = ox * sw - pw;
  const int y1 = y0 + kh < H ? y0 + kh : H, x1 = x0 + kw < W ? x0 + kw : W;
  y0 = y0 > 0 ? y0 : 0;
  x0 = x0 > 0 ? x0 : 0;
  T m = pool_neg_inf(T(0));
  int arg = y0 * W + x0;
  for (int y = y0; y < y1; ++y) {
    for (int x = x0; x < x1; ++x) {
      const T v = plane[y * W + x];
      if (v > m || v != v) {
        m = v;
        arg = y * W + x;
      }
    }
  }
  best = m;
  return arg;
}

template <typename T>
__global__ void max_pool2d_forward(T* __restrict__ y, const T* __restrict__ x, alx_index total, int H, int W, int OH,
                                   int OW, int kh, int kw, int sh, int sw, int ph, int pw) {
  ALX_GRID_STRIDE_LOOP(i, total) {
    const int ox = (int)(i % OW);
    const alx_index t = i / OW;
    const int oy = (int)(t % OH);
    const alx_index plane = t / OH;
    T m;
    pool_window_max(x + plane * H * W, oy, ox, H, W, kh, kw, sh, sw, ph, pw, m);
    y[i] = m;
  }
}

template <typename T>
__global__ void max_pool2d_argmax(int* __restrict__ arg, const T* __restrict__ x, alx_index total, int H, int W,
                                  int OH, int OW, int kh, int kw, int sh, int sw, int ph, int pw) {
  ALX_GRID_STRIDE_LOOP(i, total) {
    const int ox = (int)(i % OW);
    const alx_index t = i / OW;
    const int oy = (int)(t % OH);
    const alx_index plane = t / OH;
    T m;
    arg[i] = pool_window_max(x + plane * H * W, oy, ox, H, W, kh, kw, sh, sw, ph, pw, m);
  }
}

// total = N*C*H*W input elements; arg from max_pool2d_argmax on the same geometry.
template <typename T>
__global__ void max_pool2d_backward(T* __restrict__ grad_x, const T* __restrict__ grad_y, const int* __restrict__ arg,
                                    alx_index total, int H, int W, int OH, int OW, int kh, int kw, int sh, int sw,
                                    int ph, int pw) {
  ALX_GRID_STRIDE_LOOP(i, total) {
    const int x = (int)(i % W);
    const alx_index t = i / W;
    const int y = (int)(t % H);
    const alx_index out_plane = (t / H) * OH * OW;
    // windows containing (y, x): oy*sh - ph <= y < oy*sh - ph + kh, i.e. yp - kh < oy*sh <= yp
    const int yp = y + ph, xp = x + pw;
    const int oy0 = yp < kh ? 0 : (yp - kh) / sh + 1, ox0 = xp < kw ? 0 : (xp - kw) / sw + 1;
    const int oy1 = yp / sh < OH - 1 ? yp / sh : OH - 1, ox1 = xp / sw < OW - 1 ? xp / sw : OW - 1;
    const int self = y * W + x;
    T acc = T(0);
    for (int oy = oy0; oy <= oy1; ++oy) {
      for (int ox = ox0; ox <= ox1; ++ox) {
        const alx_index o = out_plane + oy * OW + ox;
        if (arg[o] == self) acc += grad_y[o];
      }
    }
    grad_x[i] = acc;
  }
}

ALX_INSTANTIATE(max_pool2d_forward<float>)
ALX_INSTANTIATE(max_pool2d_forward<double>)
ALX_INSTANTIATE(max_pool2d_argmax<float>)
ALX_INSTANTIATE(max_pool2d_argmax<double>)
ALX_INSTANTIATE(max_pool2d_backward<float>)
ALX_INSTANTIATE(max_pool2d_backward<double>)
