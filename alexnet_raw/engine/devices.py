"""Logical devices and the copies between them.

A network names logical devices (`gpu=0`, `gpu=1`, ...). On GPUs (CuPy arrays) logical device d
runs on physical GPU d % count, so two towers share one GPU when only one is present, and the
copies between devices are queued and ordered by events (streams.py). On the CPU runtime every
logical device still gets its own buffers, and every edge between devices is an explicit memory
copy, counted, so a CPU run moves exactly the bytes a GPU run would.

overlap=True (GPUs only; on the CPU runtime the flag changes nothing) gives each logical device a
compute stream and a copy stream of its own, so transfers overlap with compute.
"""

from __future__ import annotations

import contextlib
import os

import numpy as np

from ..runtime import backends
from .streams import Transfers


_process_slot = 0  # this process's place among the processes sharing the node's GPUs (set_process_slot)


def set_process_slot(slot):
    """Models built from now on map logical device d to GPU (slot x D + d) % (number of GPUs), D the
    number of logical devices: a process that is one of several on a node (alexnet_raw.distributed
    sets its local rank) takes GPUs after those of the ranks before it there, so that with enough
    GPUs every rank's devices are its own. Slot 0, the default, is d % (number of GPUs)."""
    global _process_slot
    if isinstance(slot, bool) or not isinstance(slot, int) or slot < 0:
        raise ValueError(f"the process slot must be a non-negative int, got {slot!r}")
    _process_slot = slot


class Devices:
    def __init__(self, logical, backend=None, overlap=False):
        self.logical = list(logical)
        self.overlap = bool(overlap)
        self.transfers = None
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
            first = _process_slot * len(self.logical)
            self.physical = {d: (first + d) % count for d in self.logical}
            self._enable_peer_access(cupy)
            self.transfers = Transfers(cupy, self.physical, overlap=self.overlap)
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
        return self.transfers.context(device)

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

    def receive(self, device, array):
        """A caller's array (NumPy, or on a GPU a CuPy array on any GPU) for `device`: a host
        array is copied there; a device array is used where it is (on `device`'s GPU) or copied
        over, ordered after the caller's queued work, without waiting for it."""
        if isinstance(array, np.ndarray):
            return self.from_host(device, array) if self.on_gpu else np.array(array, copy=True)
        return self.transfers.receive(array, device)

    def copy(self, src, device, src_device):
        """A copy of the array `src` (on logical device `src_device`) on `device`: queued after
        src's producers on GPUs (peer-to-peer where possible); on the CPU runtime a memory copy into
        that device's own buffer."""
        with self.context(device):
            dst = self.xp.empty(src.shape, src.dtype)
        if self.on_gpu:
            self.transfers.copy(dst, src, src_device, device)
        else:
            np.copyto(dst, src)
        return dst

    def memory(self, device):
        """(key, name) of the memory logical `device` allocates from: its physical GPU, or the host's
        (every logical device of the CPU runtime shares it)."""
        if self.on_gpu:
            return self.physical[device], f"GPU {self.physical[device]}"
        return None, "the host"

    def available_bytes(self, device):
        """Bytes logical `device` can still allocate: on a GPU the free memory of its physical GPU
        plus what CuPy's pool holds unused; on the CPU runtime host_available_bytes(). None: unknown."""
        if not self.on_gpu:
            return host_available_bytes()
        with self.xp.cuda.Device(self.physical[device]):
            free, _ = self.xp.cuda.runtime.memGetInfo()
            return free + self.xp.get_default_memory_pool().free_bytes()

    def synchronize(self):
        """Wait for copies queued across streams (none on one GPU without overlap, nor on the CPU)."""
        if self.transfers is not None:
            self.transfers.synchronize()

    def to_host(self, array):
        """A NumPy copy of a device array, read on its own GPU after its producers."""
        self.synchronize()
        if self.on_gpu:
            with self.xp.cuda.Device(array.device.id):
                return array.get()
        return np.array(array, copy=True)


def host_available_bytes():
    """The host memory a process can still allocate without swapping: MemAvailable of /proc/meminfo
    (else the free pages of os.sysconf), capped by the cgroup's limit less its usage where one is
    set (containers, batch jobs). None when none of these can be read."""
    available = None
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    if available is None:
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            pass
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            with open(limit_file, encoding="ascii") as f:
                limit = f.read().strip()
            with open(usage_file, encoding="ascii") as f:
                usage = int(f.read().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 2**60:  # "max", or v1's huge number: no limit
            left = max(int(limit) - usage, 0)
            available = left if available is None else min(available, left)
        break
    return available


def _default_backend():
    """A GPU backend when a GPU is present (the same choice as the functional API's: `cuda` when
    the nvcc extension was built, else `cupy`), else the CPU runtime (the current CPU choice)."""
    gpu = backends.current_backends()[1]
    for name in ((gpu,) if gpu else ()) + ("cuda", "cupy"):
        try:
            backends.get_backend(name)
        except backends.BackendUnavailable:
            continue
        return name
    return backends.current_backends()[0]
