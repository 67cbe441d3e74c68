// cuda_emu_launch.h: the CPU runtime's launch interface (implemented in cuda_emu_runtime.h), for
// code that launches kernels without containing the runtime itself (bindings/registry.h).
#pragma once

#include <cstddef>
#include <string>

#include "cuda_emu.h"
#include "kernel_signature.h"

namespace emu {

enum ScheduleKind { kForward = 0, kReverse = 1, kRandom = 2 };

// Mirrored by alexnet_raw/emu/_jit.py (LaunchOptions) and bindings/module.cpp (configure).
struct LaunchOptions {
  int schedule;             // ScheduleKind
  unsigned long long seed;  // for kRandom
  int num_threads;          // OS worker threads; <= 0: all cores
  int poison;               // fill shared memory with 0xFF at each block start
  size_t max_shared_bytes;  // shared memory per block a GPU would allow (default 48 KB)
  int flush_denormals;      // NVRTC's -ftz=true: subnormal inputs and results are zero while the kernel runs
  double timeout_seconds;   // the watchdog: a launch running longer fails (<= 0: no limit)
  int (*poll)(void*);       // called every kPollMilliseconds while a launch runs; nonzero stops it (the
  void* poll_context;       // Python glue runs Python's signal handlers in it, so Ctrl-C interrupts)
};

struct KernelEntry {
  const char* name;
  Thunk thunk;
  bool fibers;  // the kernel's source uses barriers or warp primitives
};

// Launch `kernel` and wait for it. Returns 0, or 1 with `*error` set.
int launch(const KernelEntry& kernel, dim3 grid, dim3 block, size_t dynamic_shared, void** args,
           const LaunchOptions& options, std::string* error);

}  // namespace emu
