// split_sum.cu: the fixed-order sum of a split-K product's partial sums (kernels/gemm.cu's fully
// connected products, kernels/conv2d.cu's backward to the weights), plus a bias per column:
//
//   out[r, c] = partial[0, r, c] + partial[1, r, c] + ... + partial[splits - 1, r, c] (+ bias[c])
//
// in split order, so that the result does not depend on how the product's blocks were scheduled.
// Layout: partial (splits, rows, columns) and out (rows, columns) C-contiguous, bias (columns,).
// Tiling: none (memory-bound); grid-stride loops over columns (x: consecutive threads on
// consecutive columns, coalesced) and rows (y), no integer division.
// Launch geometry: alexnet_raw/ops/split_sum.py. Tests: through the split products,
// tests/kernels/test_conv2d.py (backward to the weights) and tests/kernels/test_linear.py.
#include "common.cuh"

template <typename T>
__global__ void split_sum(T* __restrict__ out, const T* __restrict__ partial, const T* __restrict__ bias, int has_bias,
                          alx_index rows, alx_index columns, int splits) {
  const alx_index plane = rows * columns;
  for (alx_index r = blockIdx.y; r < rows; r += gridDim.y) {
    for (alx_index c = (alx_index)blockIdx.x * blockDim.x + threadIdx.x; c < columns;
         c += (alx_index)blockDim.x * gridDim.x) {
      const alx_index i = r * columns + c;
      T acc = partial[i];
      for (int s = 1; s < splits; ++s) acc += partial[(alx_index)s * plane + i];
      out[i] = has_bias ? acc + bias[c] : acc;
    }
  }
}

ALX_INSTANTIATE(split_sum<float>)
ALX_INSTANTIATE(split_sum<double>)
