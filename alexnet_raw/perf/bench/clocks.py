"""Clocks: start() before the work, stop(token) after it, seconds(token) once the device is idle."""

from __future__ import annotations

import time


class CpuClock:
    name = "wall clock (time.perf_counter)"

    def start(self):
        return time.perf_counter()

    def stop(self, token):
        return time.perf_counter() - token

    def seconds(self, token):
        return token

    def synchronize(self):
        pass


class CudaEventClock:
    """CUDA events on the current stream, through CuPy or PyTorch."""

    name = "CUDA events"

    def __init__(self, library="cupy"):
        self.library = library
        if library == "cupy":
            import cupy

            self._event = lambda: cupy.cuda.Event()
            self._elapsed_ms = cupy.cuda.get_elapsed_time
            self._sync = cupy.cuda.Device().synchronize
        else:
            import torch

            self._event = lambda: torch.cuda.Event(enable_timing=True)
            self._elapsed_ms = lambda a, b: a.elapsed_time(b)
            self._sync = torch.cuda.synchronize

    def start(self):
        e = self._event()
        e.record()
        return e

    def stop(self, token):
        e = self._event()
        e.record()
        return token, e

    def seconds(self, token):
        return self._elapsed_ms(*token) * 1e-3

    def synchronize(self):
        self._sync()


class SyncedWallClock(CpuClock):
    """Wall clock between points where every GPU is idle: for a whole training step, whose towers
    may run on two devices and which includes host work."""

    name = "wall clock, all GPUs synchronized"

    def __init__(self):
        import cupy

        self._cupy = cupy
        self._count = cupy.cuda.runtime.getDeviceCount()

    def synchronize(self):
        for d in range(self._count):
            with self._cupy.cuda.Device(d):
                self._cupy.cuda.Device(d).synchronize()

    def start(self):
        self.synchronize()
        return time.perf_counter()

    def stop(self, token):
        self.synchronize()
        return time.perf_counter() - token
