// common.cuh: definitions every kernel file shares. Device code only; compiles under nvcc, NVRTC
// (the cupy backend) and the host compiler (the CPU runtime), so it includes no system headers.
#pragma once

// Each kernel file lists the template instantiations it provides, one per line:
//     ALX_INSTANTIATE(relu_forward<float>)
// NVRTC and the CPU runtime read these lines as name expressions (alexnet_raw/runtime/kernel_sources.py);
// the pybind11 extension defines the macro to register each instantiation with its launcher
// (bindings/registry.h). Elsewhere it expands to nothing.
#ifndef ALX_INSTANTIATE
#define ALX_INSTANTIATE(...)
#endif

// Element counts and flat indices are 64-bit: N*C*H*W passes 2^31 for large batches.
typedef long long alx_index;

// Grid-stride loop over [0, n): any grid size covers any n.
#define ALX_GRID_STRIDE_LOOP(i, n)                                                          \
  for (alx_index i = (alx_index)blockIdx.x * blockDim.x + threadIdx.x; i < (alx_index)(n); \
       i += (alx_index)blockDim.x * gridDim.x)
