"""Running a kernel: the backends (emu, emu_ext, cupy, cuda), launch geometry (launch), argument
packing (kernel_args), the kernel sources and their instantiations (kernel_sources), GPU
compilation for the report and the tests (gpu_compile), and NumPy-in/CuPy-out wrapping
(on_device)."""
