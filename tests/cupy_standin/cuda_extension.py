"""A stand-in for alexnet_raw._cuda (the nvcc extension) on the stand-in's devices.

It has the real extension's interface (kernels(), launch(...), device_count(), gpu_options) and
runs the kernels of `_emu_ext`, the same bindings built against the CPU runtime. As on a GPU, a
launch is queued on the stream whose handle it is given (0: the current device's legacy default
stream) and runs when that stream is waited for; every pointer argument must be memory of the
stand-in on the stream's device or on one it has peer access to (else cudaErrorIllegalAddress),
and the allocations stay alive until the launch has run. The kernels flush float32 subnormals, as
the real extension, which is built with kernels/gpu_options.txt (-ftz=true), does.
"""

from __future__ import annotations

from alexnet_raw.runtime import backends, kernel_sources
from alexnet_raw import emu

from . import _memory, _runtime, _streams


class CudaExtensionStandIn:
    platform = "cuda"

    def __init__(self):
        self._ext = backends._import_extension("_emu_ext")
        self._codes = {k: tuple(c for c in v.split(",") if c) for k, v in self._ext.kernels().items()}
        options = kernel_sources.gpu_options()
        self.gpu_options = " ".join(options)
        self._flush = emu.flushes_denormals(options)
        self.__name__ = "alexnet_raw._cuda (CuPy stand-in)"

    def kernels(self):
        return self._ext.kernels()

    def device_count(self):
        return _runtime.config.devices, "cudaSuccess: no error"

    def launch(self, name, grid, block, shared_bytes, stream, blob, offsets):
        if name not in self._codes:
            raise KeyError(f"no kernel '{name}' in this extension (see alexnet_raw._cuda.kernels() for the list)")
        codes = self._codes[name]
        if len(offsets) != len(codes):
            raise TypeError(f"{name} takes {len(codes)} arguments, got {len(offsets)}")
        queue = _streams.queue_for_ptr(int(stream))
        data = bytes(blob)  # the caller may reuse its buffer once launch returns
        keep = []
        for i, (code, offset) in enumerate(zip(codes, offsets)):
            if not code.startswith(("p:", "pc:")):
                continue
            ptr = int.from_bytes(data[offset: offset + 8], "little")
            if ptr == 0:
                continue
            found = _memory.find(ptr)
            if found is None:
                raise _runtime.CUDARuntimeError(700, f"{name}: argument {i} ({ptr:#x}) is not device memory")
            alloc = found[0]
            if not _runtime.peer_enabled(queue.device_id, alloc.device_id):
                raise _runtime.CUDARuntimeError(
                    700, f"{name} on device {queue.device_id}: argument {i} is memory of device {alloc.device_id}, "
                         "with no peer access")
            keep.append(alloc)
        flush = self._flush and emu.flush_applies(codes)
        ext, grid, block, offsets = self._ext, tuple(grid), tuple(block), list(offsets)

        def run():
            o = emu.launch_options()
            ext.configure(o.schedule, o.seed, o.num_threads, o.poison, o.max_shared_bytes, int(flush))
            try:
                ext.launch(name, grid, block, shared_bytes, 0, bytearray(data), offsets)
            except RuntimeError as e:
                emu.raise_launch_error(str(e))
            finally:
                ext.configure(o.schedule, o.seed, o.num_threads, o.poison, o.max_shared_bytes, 0)
                del keep[:]

        _streams.scheduler.submit(queue, run, f"launch {name} (extension)")
