// channel_gather.cu: a gather of channels and its adjoint, cuda-convnet's random sparse connectivity
// (randSparse: filter group g of a conv or local layer reads channels conns[g*Fc .. g*Fc + Fc - 1]
// of its input, a list of cuda-convnet's drawing; the layer then runs as a grouped layer on the
// gathered channels):
//   forward   y[n, k, p] = x[n, index[k], p]                       k < K
//   backward  gx[n, c, p] = sum_{t < count(c)} gy[n, k_t(c), p]     c < C, k_t(c) the k with index[k] == c,
//                                                                  in increasing order (a fixed sum)
// The backward reads the inverse of `index` in CSR form (first[c] .. first[c + 1] - 1 into `which`,
// computed on the host: alexnet_raw/ops/channel_gather.py), so each output element is one thread's
// sum: no atomics, the same result under any schedule.
//
// Layout: x, gx (N, C, P) and y, gy (N, K, P), C-contiguous, P = H * W; index (K,), first (C + 1,)
// and which (K,) int64. Tiling: none, one output element per thread in a grid-stride loop (64-bit
// flat indices); consecutive threads handle consecutive pixels of one channel.
// Launch geometry: elementwise() of alexnet_raw/runtime/launch.py, in alexnet_raw/ops/channel_gather.py.
// Reference: alexnet_raw/checks/torch_reference.py (channel_gather: index_select); tests:
// tests/kernels/test_channel_gather.py.
#include "common.cuh"

template <typename T>
__global__ void channel_gather_forward(T* __restrict__ y, const T* __restrict__ x, const long long* __restrict__ index,
                                       alx_index n, alx_index C, alx_index K, alx_index P) {
  ALX_GRID_STRIDE_LOOP(i, n * K * P) {
    const alx_index p = i % P, k = (i / P) % K, image = i / (P * K);
    y[i] = x[(image * C + index[k]) * P + p];
  }
}

template <typename T>
__global__ void channel_gather_backward(T* __restrict__ grad_x, const T* __restrict__ grad_y,
                                        const long long* __restrict__ first, const long long* __restrict__ which,
                                        alx_index n, alx_index C, alx_index K, alx_index P) {
  ALX_GRID_STRIDE_LOOP(i, n * C * P) {
    const alx_index p = i % P, c = (i / P) % C, image = i / (P * C);
    T sum = T(0);
    for (long long t = first[c]; t < first[c + 1]; ++t) sum += grad_y[(image * K + which[t]) * P + p];
    grad_x[i] = sum;
  }
}

ALX_INSTANTIATE(channel_gather_forward<float>)
ALX_INSTANTIATE(channel_gather_forward<double>)
ALX_INSTANTIATE(channel_gather_backward<float>)
ALX_INSTANTIATE(channel_gather_backward<double>)
