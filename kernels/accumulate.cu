// accumulate.cu: out[i] += x[i] for i in [0, n): the engine's sums of contributions (a layer with
// several inputs adds one convolution or product per input; a layer feeding several consumers adds
// the gradients they send back), always in the same order, so results are bit-identical however
// the layers are placed on devices.
//
// Layout: any contiguous tensor seen as a flat array of n elements (64-bit); out and x have the
// same shape and do not overlap. Tiling: none, one element per thread in a grid-stride loop.
// Launch geometry: elementwise() of alexnet_raw/runtime/launch.py, in alexnet_raw/ops/accumulate.py.
// Reference and tests: tests/kernels/test_accumulate.py (NumPy's out += x, exact).
#include "common.cuh"

template <typename T>
__global__ void accumulate(T* __restrict__ out, const T* __restrict__ x, alx_index n) {
  ALX_GRID_STRIDE_LOOP(i, n) { out[i] += x[i]; }
}

ALX_INSTANTIATE(accumulate<float>)
ALX_INSTANTIATE(accumulate<double>)
