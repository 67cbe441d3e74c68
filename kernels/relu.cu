// relu.cu: y = max(x, 0) (NaN propagates, as torch.relu) and its backward dx = dy * (y > 0).
//
// Layout: any contiguous tensor, seen as a flat array of n elements (n is 64-bit).
// Tiling: none; one element per thread in a grid-stride loop (launch geometry: elementwise() in
// alexnet_raw/runtime/launch.py, used by alexnet_raw/ops/relu.py).
// Reference: alexnet_raw/checks/torch_reference.py.
// Tests: tests/kernels/test_relu.py (torch.relu and its autograd backward).
#include "common.cuh"

template <typename T>
__global__ void relu_forward(T* __restrict__ y, const T* __restrict__ x, alx_index n) {
  ALX_GRID_STRIDE_LOOP(i, n) {
    const T v = x[i];
    y[i] = v < T(0) ? T(0) : v;  // NaN < 0 is false: NaN passes through
  }
}

template <typename T>
__global__ void relu_backward(T* __restrict__ grad_x, const T* __restrict__ grad_y, const T* __restrict__ y,
                              alx_index n) {
  ALX_GRID_STRIDE_LOOP(i, n) { grad_x[i] = y[i] > T(0) ? grad_y[i] : T(0); }
}

ALX_INSTANTIATE(relu_forward<float>)
ALX_INSTANTIATE(relu_forward<double>)
ALX_INSTANTIATE(relu_backward<float>)
ALX_INSTANTIATE(relu_backward<double>)
