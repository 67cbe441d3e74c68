// avg_pool2d.cu: 2-D average pooling, forward and backward, with torch.nn.functional.avg_pool2d's
// semantics (no divisor_override).
//
//   window of output (oy, ox): rows [y0, y0 + kh) and columns [x0, x0 + kw), y0 = oy*sh - ph, x0 = ox*sw - pw
//   divisor(oy, ox) = count_include_pad ? (min(y0 + kh, H + ph) - y0) * (min(x0 + kw, W + pw) - x0)
//                                        (the window cut at the end of the padding, PyTorch's pool_size)
//                                      : the number of in-image elements of the window
//   y[oy, ox]       = (sum of the in-image elements of the window, row by row, left to right) / divisor
//   grad_x[p]       = sum of grad_y[o] / divisor(o) over the windows o containing p
// Padding is at most half the kernel (checked by the host), so no window is empty and no divisor 0.
// cuda-convnet's `pool=avg` (divide by the in-image pixels of the window; its ceil output rule cuts
// windows at the right and bottom edge) is count_include_pad=0 with ceil_mode=True and padding 0.
// Output sizes (floor and ceil_mode rules, PyTorch's) are computed in alexnet_raw/ops/pool_geometry.py.
//
// Layout: NCHW, contiguous; each (n, c) plane is pooled independently; plane offsets are ints
// (H*W < 2^31, and kh*kw < 2^31 for the divisor, checked by the host), flat indices 64-bit.
// Tiling: the forward is one thread per output in a grid-stride loop; the backward is a gather
// without atomics: one thread per input element, summing grad_y[o] / divisor(o) over the windows
// containing it (at most ceil(kh/sh) * ceil(kw/sw) of them) in increasing (oy, ox) order:
// deterministic, and the order of PyTorch's CPU scatter. Launch geometry: elementwise() of
// alexnet_raw/runtime/launch.py, in alexnet_raw/ops/avg_pool2d.py.
// Reference: alexnet_raw/checks/torch_reference.py.
// Tests: tests/kernels/test_avg_pool2d.py (torch.nn.functional.avg_pool2d and its
// autograd backward, both count_include_pad values, ceil and floor, padding, NaN and inf).
#include "common.cuh"

// One dimension of a window: [lo, hi) clipped to the image; returns its extent before clipping,
// cut at the end of the padding (PyTorch's pool_size factor). A negative pad is cuda-convnet's
// positive start (ops/pool_geometry.convnet_geometry): windows from pixel -pad, the end of the image
// their limit.
__device__ __forceinline__ int avg_pool_span(int start, int kernel, int size, int pad, int& lo, int& hi) {
  const int limit = pad > 0 ? size + pad : size;
  const int padded_end = start + kernel < limit ? start + kernel : limit;
  lo = start > 0 ? start : 0;
  hi = padded_end < size ? padded_end : size;
  return padded_end - start;
}

// The divisor of output (oy, ox); sets the window's in-image rows [y0, y1) and columns [x0, x1).
__device__ __forceinline__ int avg_pool_window(int oy, int ox, int H, int W, int kh, int kw, int sh, int sw, int ph,
                                               int pw, int count_include_pad, int& y0, int& y1, int& x0, int& x1) {
  const int padded_rows = avg_pool_span(oy * sh - ph, kh, H, ph, y0, y1);
  const int padded_cols = avg_pool_span(ox * sw - pw, kw, W, pw, x0, x1);
  return count_include_pad ? padded_rows * padded_cols : (y1 - y0) * (x1 - x0);
}

template <typename T>
__global__ void avg_pool2d_forward(T* __restrict__ y, const T* __restrict__ x, alx_index total, int H, int W, int OH,
                                   int OW, int kh, int kw, int sh, int sw, int ph, int pw, int count_include_pad) {
  ALX_GRID_STRIDE_LOOP(i, total) {
    const int ox = (int)(i % OW);
    const alx_index t = i / OW;
    const int oy = (int)(t % OH);
    const T* __restrict__ plane = x + (t / OH) * H * W;
    int y0, y1, x0, x1;
    const int divisor = avg_pool_window(oy, ox, H, W, kh, kw, sh, sw, ph, pw, count_include_pad, y0, y1, x0, x1);
    T sum = T(0);
    for (int r = y0; r < y1; ++r) {
      for (int c = x0; c < x1; ++c) sum += plane[r * W + c];
    }
    y[i] = sum / T(divisor);
  }
}

// total = N*C*H*W input elements.
template <typename T>
__global__ void avg_pool2d_backward(T* __restrict__ grad_x, const T* __restrict__ grad_y, alx_index total, int H,
                                    int W, int OH, int OW, int kh, int kw, int sh, int sw, int ph, int pw,
                                    int count_include_pad) {
  ALX_GRID_STRIDE_LOOP(i, total) {
    const int x = (int)(i % W);
    const alx_index t = i / W;
    const int y = (int)(t % H);
    const T* __restrict__ grad_plane = grad_y + (t / H) * OH * OW;
    // windows containing (y, x): oy*sh - ph <= y < oy*sh - ph + kh, i.e. yp - kh < oy*sh <= yp
    const int yp = y + ph, xp = x + pw;
    if (yp < 0 || xp < 0) {  // before a positive start (negative pad): in no window
      grad_x[i] = T(0);
      continue;
    }
    const int oy0 = yp < kh ? 0 : (yp - kh) / sh + 1, ox0 = xp < kw ? 0 : (xp - kw) / sw + 1;
    const int oy1 = yp / sh < OH - 1 ? yp / sh : OH - 1, ox1 = xp / sw < OW - 1 ? xp / sw : OW - 1;
    T acc = T(0);
    for (int oy = oy0; oy <= oy1; ++oy) {
      for (int ox = ox0; ox <= ox1; ++ox) {
        int y0, y1, x0, x1;
        const int divisor = avg_pool_window(oy, ox, H, W, kh, kw, sh, sw, ph, pw, count_include_pad, y0, y1, x0, x1);
        acc += grad_plane[oy * OW + ox] / T(divisor);
      }
    }
    grad_x[i] = acc;
  }
}

ALX_INSTANTIATE(avg_pool2d_forward<float>)
ALX_INSTANTIATE(avg_pool2d_forward<double>)
ALX_INSTANTIATE(avg_pool2d_backward<float>)
ALX_INSTANTIATE(avg_pool2d_backward<double>)
