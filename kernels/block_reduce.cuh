// block_reduce.cuh: a deterministic reduction of one value per thread over a block (a warp
// xor-butterfly, then the warps' results through 32 shared slots), shared by the kernels that reduce
// rows or channels (kernels/softmax_cross_entropy.cu, kernels/bias_grad.cu).
#pragma once

#include "common.cuh"

struct BlockSum {
  template <typename V>
  __device__ __forceinline__ V operator()(V a, V b) const { return a + b; }
  template <typename V>
  __device__ __forceinline__ V identity() const { return V(0); }
};

// Combine v over the block with op; every thread returns the same value. All threads of the block
// must call it (blockDim.x a multiple of 32, at most 1024); `slots` is 32 values of shared memory.
// Stage 1: xor butterfly within each warp; lane 0 of warp w stores slot w. Stage 2: every warp
// reads the slots (identity past the warp count) and runs the same butterfly. The tree depends on
// blockDim.x only, and each butterfly step combines the same two values on both lanes.
template <typename V, typename Op>
__device__ __forceinline__ V block_allreduce(V v, V* slots, Op op) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
#pragma unroll
  for (int d = 16; d > 0; d >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, d));
  if (lane == 0) slots[warp] = v;
  __syncthreads();
  v = lane < warps ? slots[lane] : op.template identity<V>();
#pragma unroll
  for (int d = 16; d > 0; d >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, d));
  __syncthreads();  // every thread has read the slots before a next call overwrites them
  return v;
}
