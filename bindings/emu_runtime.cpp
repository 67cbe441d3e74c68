// emu_runtime.cpp: the CPU runtime's scheduler, compiled once into the `_emu_ext` extension (the
// bindings built against the CPU runtime instead of CUDA).
#include "cuda_emu_runtime.h"
