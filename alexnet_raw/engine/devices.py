"""Logical devices and the copies between them.

A network names logical devices (`gpu=0`, `gpu=1`, ...). On GPUs (CuPy arrays) logical device d
runs on physical GPU d % count, so two towers share one GPU when only one is present. On the CPU
runtime every logical device still gets its own buffers, and every edge between devices is an
explicit copy, counted, so a CPU run moves exactly the bytes a GPU run would.

Copies are synchronous by default. With overlap=True (GPUs only; on the CPU runtime copies stay
synchronous memory copies and the flag changes nothing) each logical device computes on its own
stream and copies are queued with events (streams.py), so transfers overlap with compute.
"""

from __future__ import annotations

import contextlib

import numpy as np

from .. import backends
from .streams import OverlappedStreams


class Devices:
    def __init__(self, logical, backend=None, overlap=False):
        self.logical = list(logical)
        self.overlap = bool(overlap)
        self.streams = None
        if backend is None:
            backend = _default_backend()
        if backend not in backends.ALL_BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose one of {backends.ALL_BACKENDS}")
        backends.set_backend(backend)  # raises BackendUnavailable saying what is missing
        self.backend = backend
        self.on_gpu = backend in backends.GPU_BACKENDS
        if self.on_gpu:
            import cupy

            self.xp = cupy
            count = cupy.cuda.runtime.getDeviceCount()
            self.physical = {d: d % count for d in self.logical}
            self._enable_peer_access(cupy)
            if self.overlap:
                self.streams = OverlappedStreams(cupy.cuda, self.physical)
        else:
            self.xp = np
            self.physical = {d: None for d in self.logical}

    def _enable_peer_access(self, cupy):
        used = sorted(set(self.physical.values()))
        for a in used:
            for b in used:
                if a != b and cupy.cuda.runtime.deviceCanAccessPeer(a, b):
                    with cupy.cuda.Device(a):
                        try:
                            cupy.cuda.runtime.deviceEnablePeerAccess(b)
                        except cupy.cuda.runtime.CUDARuntimeError:
                            pass  # already enabled

    def context(self, device):
        """Make `device` current for allocations and launches (a no-op on the CPU)."""
        if not self.on_gpu:
            return contextlib.nullcontext()
        if self.streams is not None:
            return self.streams.context(device)
        return self.xp.cuda.Device(self.physical[device])

    def zeros(self, device, shape, dtype):
        with self.context(device):
            return self.xp.zeros(shape, dtype)

    def empty(self, device, shape, dtype):
        with self.context(device):
            return self.xp.empty(shape, dtype)

    def from_host(self, device, array):
        """A copy of a host (NumPy) array on `device`."""
        with self.context(device):
            return self.xp.array(array, copy=True)

    def copy(self, src, device, src_device):
        """A copy of the array `src` (on logical device `src_device`) on `device`: peer-to-peer
        between GPUs where possible, queued on streams with overlap; on the CPU runtime a memory
        copy into that device's own buffer."""
        with self.context(device):
            dst = self.xp.empty(src.shape, src.dtype)
            if self.streams is not None:
                self.streams.copy(dst, src, src_device, device)
            elif self.on_gpu:
                dst.data.copy_from_device(src.data, src.nbytes)
            else:
                np.copyto(dst, src)
            return dst

    def synchronize(self):
        """Wait for queued work and copies (a no-op without overlap: copies were synchronous)."""
        if self.streams is not None:
            self.streams.synchronize()

    def to_host(self, array):
        self.synchronize()
        if self.on_gpu:
            return array.get()
        return np.array(array, copy=True)


def _default_backend():
    """A GPU backend when a GPU is present, else the CPU runtime (the current CPU choice)."""
    for name in backends.GPU_BACKENDS:
        try:
            backends.get_backend(name)
        except backends.BackendUnavailable:
            continue
        return name
    return backends.current_backends()[0]
