// eltwise.cu: the element-wise joins of cuda-convnet2's layers, forward and backward:
//   eltsum  y = sum_i c_i * x_i (inputs summed in their order)   dx_i = c_i * dy
//   eltmax  y = max_i x_i (NaN propagates, as torch.maximum)     dx_i = dy where x_i == y, else 0
// eltmax gives the whole gradient to every input equal to the maximum (cuda-convnet2's
// EltwiseMaxGradientOperator), not a share of it as torch.maximum does at ties.
//
// Kernels: scale_into (out = c * x: the first term, and each dx_i), scale_accumulate (out += c * x:
// every further term, in input order), max_into (out = max(out, x): every input after the first)
// and max_backward. Layout: contiguous tensors seen as flat arrays of n elements (64-bit).
// Tiling: none, one element per thread in a grid-stride loop.
// Launch geometry: elementwise() of alexnet_raw/runtime/launch.py, in alexnet_raw/ops/eltwise.py.
// Reference: alexnet_raw/checks/torch_reference.py (eltwise_sum, eltwise_max); tests:
// tests/kernels/test_eltwise.py.
#include "common.cuh"

template <typename T>
__global__ void scale_into(T* __restrict__ out, const T* __restrict__ x, T c, alx_index n) {
  ALX_GRID_STRIDE_LOOP(i, n) { out[i] = c * x[i]; }
}

template <typename T>
__global__ void scale_accumulate(T* __restrict__ out, const T* __restrict__ x, T c, alx_index n) {
  ALX_GRID_STRIDE_LOOP(i, n) { out[i] += c * x[i]; }
}

template <typename T>
__global__ void max_into(T* __restrict__ out, const T* __restrict__ x, alx_index n) {
  ALX_GRID_STRIDE_LOOP(i, n) {
    const T v = x[i], m = out[i];
    out[i] = (v > m || v != v) ? v : m;  // a NaN input wins, and a NaN already in out stays
  }
}

template <typename T>
__global__ void max_backward(T* __restrict__ grad_x, const T* __restrict__ grad_y, const T* __restrict__ x,
                             const T* __restrict__ y, alx_index n) {
  ALX_GRID_STRIDE_LOOP(i, n) { grad_x[i] = x[i] == y[i] ? grad_y[i] : T(0); }
}

ALX_INSTANTIATE(scale_into<float>)
ALX_INSTANTIATE(scale_into<double>)
ALX_INSTANTIATE(scale_accumulate<float>)
ALX_INSTANTIATE(scale_accumulate<double>)
ALX_INSTANTIATE(max_into<float>)
ALX_INSTANTIATE(max_into<double>)
ALX_INSTANTIATE(max_backward<float>)
ALX_INSTANTIATE(max_backward<double>)
