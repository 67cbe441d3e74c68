// registry.h: how the pybind11 extension learns its kernels.
//
// The extension's build force-includes this header (-include registry.h) into every kernel file,
// so each `ALX_INSTANTIATE(kernel<T>)` line of kernels/*.cu registers that instantiation: its name,
// its parameter type codes (kernel_signature.h) and its launcher. The launcher is the only code
// that differs between the two builds of the extension:
//   * `_cuda`, built by nvcc:                 cudaLaunchKernel on the caller's stream;
//   * `_emu_ext`, built against the CPU runtime: emu::launch (the same path the `emu` backend takes).
// Launch geometry is not here: it is computed once, in Python (alexnet_raw/runtime/launch.py and
// alexnet_raw/ops/), for every backend.
#pragma once

#include <string>
#include <utility>
#include <vector>

#if defined(ALX_CPU_RUNTIME)
#include "cuda_emu_launch.h"
#else
#include <cuda_runtime.h>
#endif

#include "kernel_signature.h"

namespace alx {

using Launcher = int (*)(const char* name, dim3 grid, dim3 block, size_t shared_bytes, void* stream, void** args,
                         std::string* error);

struct KernelRecord {
  const char* name;    // the name expression, e.g. "relu_forward<float>"
  std::string params;  // type codes, e.g. "p:f32,pc:f32,i64"
  Launcher launch;
};

std::vector<KernelRecord>& kernel_registry();  // bindings/module.cpp

#if defined(ALX_CPU_RUNTIME)
emu::LaunchOptions& emu_launch_options();  // bindings/module.cpp, set from Python before each launch
#endif

// Fibers: whether the kernel's file uses barriers (the CPU runtime's translator defines
// ALX_EMU_USES_BARRIERS at the top of each translated file; it is unused by nvcc).
template <auto F, bool Fibers>
int launch(const char* name, dim3 grid, dim3 block, size_t shared_bytes, void* stream, void** args,
           std::string* error) {
#if defined(ALX_CPU_RUNTIME)
  (void)stream;
  const emu::KernelEntry entry{name, &emu::thunk<F>, Fibers};
  return emu::launch(entry, grid, block, shared_bytes, args, emu_launch_options(), error);
#else
  (void)Fibers;
  const cudaError_t e = cudaLaunchKernel(reinterpret_cast<const void*>(F), grid, block, args, shared_bytes,
                                         static_cast<cudaStream_t>(stream));
  if (e != cudaSuccess) {
    *error = std::string("launching ") + name + " failed: " + cudaGetErrorString(e);
    return 1;
  }
  return 0;
#endif
}

struct Registration {
  Registration(const char* name, std::string params, Launcher launcher) {
    kernel_registry().push_back(KernelRecord{name, std::move(params), launcher});
  }
};

}  // namespace alx

#if !defined(ALX_CPU_RUNTIME) && !defined(ALX_EMU_USES_BARRIERS)
#define ALX_EMU_USES_BARRIERS 1  // unused by nvcc
#endif
#define ALX_CAT_(a, b) a##b
#define ALX_CAT(a, b) ALX_CAT_(a, b)
#define ALX_INSTANTIATE(...)                                                                          \
  static ::alx::Registration ALX_CAT(alx_registration_, __COUNTER__)(#__VA_ARGS__,                     \
                                                                      ::emu::param_codes(&__VA_ARGS__), \
                                                                      &::alx::launch<&__VA_ARGS__, (ALX_EMU_USES_BARRIERS != 0)>);
