// module.cpp: the pybind11 extension. One source, two builds (see registry.h):
//   alexnet_raw._cuda     nvcc, launches on a GPU;
//   alexnet_raw._emu_ext  host compiler against the CPU runtime, so that everything in this file
//                         and in registry.h runs in the CPU tests.
// Python packs the arguments (alexnet_raw/runtime/kernel_args.py: a byte blob and one offset per
// parameter, exactly as cuLaunchKernel expects them) and computes the launch geometry.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#if defined(ALX_CPU_RUNTIME)
#include "cuda_emu.h"
#include "cuda_emu_launch.h"
#else
#include <cuda_runtime.h>
#endif
#include "registry.h"

namespace py = pybind11;

namespace alx {

std::vector<KernelRecord>& kernel_registry() {
  static std::vector<KernelRecord> registry;
  return registry;
}

#if defined(ALX_CPU_RUNTIME)
emu::LaunchOptions& emu_launch_options() {
  // per Python thread: configure() sets it right before that thread's launch
  static thread_local emu::LaunchOptions options{emu::kForward, 0, 0, 1, 48 * 1024, 0, 0.0, nullptr, nullptr};
  return options;
}
#endif

namespace {

#if defined(ALX_CPU_RUNTIME)
// Ctrl-C while a kernel runs on the CPU runtime: the launching thread calls this every 50 ms; it
// runs Python's signal handlers, and one that raises (KeyboardInterrupt) stops the launch; its
// exception is raised from launch() afterwards.
struct PendingPythonError {
  PyObject *type = nullptr, *value = nullptr, *traceback = nullptr;
};
int run_python_signal_handlers(void* context) {
  PyGILState_STATE gil = PyGILState_Ensure();
  const int raised = PyErr_CheckSignals();
  if (raised) {
    auto* pending = static_cast<PendingPythonError*>(context);
    PyErr_Fetch(&pending->type, &pending->value, &pending->traceback);
  }
  PyGILState_Release(gil);
  return raised != 0;
}
#endif

const KernelRecord& find_kernel(const std::string& name) {
  for (const KernelRecord& r : kernel_registry())
    if (name == r.name) return r;
  throw py::key_error("no kernel '" + name + "' in this extension (see alexnet_raw." ALX_MODULE_STRING
                      ".kernels() for the list)");
}

size_t parameter_count(const std::string& codes) {
  if (codes.empty()) return 0;
  size_t n = 1;
  for (char c : codes) n += c == ',';
  return n;
}

void launch_packed(const std::string& name, std::array<unsigned, 3> grid, std::array<unsigned, 3> block, size_t shared_bytes,
            std::uintptr_t stream, py::buffer blob, const std::vector<size_t>& offsets) {
  const KernelRecord& kernel = find_kernel(name);
  const size_t expected = parameter_count(kernel.params);
  if (offsets.size() != expected)
    throw py::type_error(name + " takes " + std::to_string(expected) + " arguments, got " +
                         std::to_string(offsets.size()));
  py::buffer_info info = blob.request();
  char* base = static_cast<char*>(info.ptr);
  const size_t size = size_t(info.size) * size_t(info.itemsize);
  std::vector<void*> args(offsets.size());
  for (size_t i = 0; i < offsets.size(); ++i) {
    if (offsets[i] + 1 > size) throw py::value_error("argument offset beyond the packed argument buffer");
    args[i] = base + offsets[i];
  }
  std::string error;
  int rc;
#if defined(ALX_CPU_RUNTIME)
  PendingPythonError pending;
  emu_launch_options().poll = &run_python_signal_handlers;
  emu_launch_options().poll_context = &pending;
#endif
  {
    py::gil_scoped_release release;
    rc = kernel.launch(kernel.name, dim3(grid[0], grid[1], grid[2]), dim3(block[0], block[1], block[2]),
                       shared_bytes, reinterpret_cast<void*>(stream), args.data(), &error);
  }
#if defined(ALX_CPU_RUNTIME)
  emu_launch_options().poll = nullptr;
  emu_launch_options().poll_context = nullptr;
  if (pending.type) {
    PyErr_Restore(pending.type, pending.value, pending.traceback);
    throw py::error_already_set();
  }
#endif
  if (rc) throw std::runtime_error(error);
}

}  // namespace
}  // namespace alx

PYBIND11_MODULE(ALX_MODULE_NAME, m) {
  m.doc() = "alexnet_raw kernels with their launchers (built by " ALX_BUILT_BY ")";
#if defined(ALX_CPU_RUNTIME)
  m.attr("platform") = "cpu-runtime";
#else
  m.attr("platform") = "cuda";
#endif
  m.def(
      "kernels",
      [] {
        py::dict d;
        for (const alx::KernelRecord& r : alx::kernel_registry()) d[py::str(r.name)] = py::str(r.params);
        return d;
      },
      "Name expression -> parameter type codes of every kernel in the extension.");
  m.def("launch", &alx::launch_packed, py::arg("name"), py::arg("grid"), py::arg("block"), py::arg("shared_bytes"),
        py::arg("stream"), py::arg("blob"), py::arg("offsets"),
        "Launch a kernel with packed arguments (alexnet_raw/runtime/kernel_args.py) and wait for it on the CPU runtime.");
#if defined(ALX_CPU_RUNTIME)
  m.def(
      "configure",
      [](int schedule, unsigned long long seed, int threads, int poison, size_t max_shared_bytes, int flush_denormals,
         double timeout_seconds) {
        if (schedule < 0 || schedule > 2) throw py::value_error("schedule must be 0 (forward), 1 (reverse) or 2 (random)");
        alx::emu_launch_options() =
            emu::LaunchOptions{schedule, seed, threads, poison, max_shared_bytes, flush_denormals ? 1 : 0,
                               timeout_seconds, nullptr, nullptr};
      },
      py::arg("schedule"), py::arg("seed"), py::arg("threads"), py::arg("poison"), py::arg("max_shared_bytes"),
      py::arg("flush_denormals") = 0, py::arg("timeout_seconds") = 0.0,
      "Launch options of the CPU runtime for the following launches.");
#else
  m.attr("gpu_options") = ALX_GPU_OPTIONS;  // kernels/gpu_options.txt, as CMake passed it to nvcc
  m.def(
      "device_count",
      [] {
        int n = 0;  // cudaGetDeviceCount leaves it untouched on error
        const cudaError_t e = cudaGetDeviceCount(&n);
        return py::make_tuple(e == cudaSuccess ? n : 0, std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e));
      },
      "(number of usable CUDA devices, the runtime's status message).");
#endif
}
