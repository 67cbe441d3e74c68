// bias_grad.cu: the gradient of a per-channel bias, shared by convolution and fully connected layers:
//
//   gb[c] = sum_{n < batch} sum_{p < P} g[(n*C + c)*P + p]
//
// Layout: g is (batch, C, P) C-contiguous: NCHW with P = H*W for a convolution, (batch, C) with
// P = 1 for a fully connected layer.
// Tiling: one block per channel (grid-stride over channels); its threads stride over the batch*P
// values of the channel in a fixed order and are combined by block_allreduce
// (kernels/block_reduce.cuh): the same tree on every run, so results are bit-identical.
// Launch geometry: per_row() of alexnet_raw/runtime/launch.py, in alexnet_raw/ops/bias_grad.py.
// Reference and tests: tests/kernels/test_conv2d.py and tests/kernels/test_linear.py (bias gradients).
#include "block_reduce.cuh"
#include "common.cuh"

template <typename T>
__global__ void bias_grad(T* __restrict__ gb, const T* __restrict__ g, alx_index batch, int C, alx_index P) {
  __shared__ T slots[32];
  const alx_index per_channel = batch * P;
  for (int c = blockIdx.x; c < C; c += gridDim.x) {
    T acc = T(0);
    for (alx_index i = threadIdx.x; i < per_channel; i += blockDim.x) {
      const alx_index n = i / P, p = i - n * P;
      acc += g[(n * C + c) * P + p];
    }
    acc = block_allreduce(acc, slots, BlockSum());
    if (threadIdx.x == 0) gb[c] = acc;
  }
}

ALX_INSTANTIATE(bias_grad<float>)
ALX_INSTANTIATE(bias_grad<double>)
