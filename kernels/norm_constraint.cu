// norm_constraint.cu: cuda-convnet2's wball, a bound on the L2 norm of each filter's weights applied
// after every update, in place on rows of a weight matrix (a row: one filter of a conv layer, one
// output of an fc layer, one filter at one position of a local layer):
//   hard (conv, fc: HardWeightConstraintOperator)  w[r, :] *= bound / ||w[r, :]||   (rows of norm 0 kept)
//   max  (local: kNormalizeLCWeights)               w[r, :] *= bound / ||w[r, :]|| where ||w[r, :]|| > bound
// The norm is a block's deterministic sum of squares (kernels/block_reduce.cuh: the same tree on every
// run and schedule), then one square root and one division per row.
//
// Layout: weights seen as (rows, columns), C-contiguous. Tiling: one block per row in a grid-stride
// loop over rows; the block's threads stride over the row's columns, twice (squares, then scaling).
// Launch geometry: per_row() of alexnet_raw/runtime/launch.py, in alexnet_raw/ops/norm_constraint.py.
// Reference: alexnet_raw/checks/torch_reference.py (norm_constraint); tests:
// tests/kernels/test_norm_constraint.py.
#include "block_reduce.cuh"
#include "common.cuh"

template <typename T>
__global__ void norm_constraint(T* __restrict__ w, alx_index rows, alx_index columns, T bound, int hard) {
  __shared__ T slots[32];
  for (alx_index r = blockIdx.x; r < rows; r += gridDim.x) {
    T* row = w + r * columns;
    T squares = T(0);
    for (alx_index j = threadIdx.x; j < columns; j += blockDim.x) squares += row[j] * row[j];
    squares = block_allreduce(squares, slots, BlockSum());
    const T norm = sqrt(squares);
    if (norm > T(0) && (hard || norm > bound)) {
      const T scale = bound / norm;
      for (alx_index j = threadIdx.x; j < columns; j += blockDim.x) row[j] *= scale;
    }
  }
}

ALX_INSTANTIATE(norm_constraint<float>)
ALX_INSTANTIATE(norm_constraint<double>)
