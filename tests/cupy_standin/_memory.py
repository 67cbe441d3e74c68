"""Device memory: allocations owned by one simulated device, a per-device limit, raw pointers.

An allocation is host memory (so that the CPU runtime's kernels can run on it) registered under
its address, so that a raw pointer handed to a launch can be traced back to its device and kept
alive until the queued work that uses it has run. New memory holds 0xFF bytes (NaN for floats,
-1 for integers; beyond FILL_LIMIT bytes memory is left untouched, zeros): reading memory that
nothing wrote, or that is not written yet, shows.
As CuPy's pool, sizes are rounded up to 512 bytes and an allocation that would pass the device's
memory raises cupy.cuda.memory.OutOfMemoryError; a zero-byte allocation has the null pointer.
"""

from __future__ import annotations

import bisect
import threading
import weakref

import numpy as np

from . import _runtime, _streams

ALIGNMENT = 512
FILL_LIMIT = 2**28  # larger allocations are left untouched (zero pages), so that a test may make one
_lock = threading.Lock()
_starts = []  # sorted start addresses of live allocations
_by_start = {}  # start -> weakref to Allocation
_used = {}  # device -> bytes in live allocations


class OutOfMemoryError(MemoryError):
    """cupy.cuda.memory.OutOfMemoryError(size, total, limit=0)."""

    def __init__(self, size, total, limit=0):
        self.size, self.total, self.limit = size, total, limit
        super().__init__(f"Out of memory allocating {size:,} bytes (allocated so far: {total:,} bytes"
                         + (f", limit set to: {limit:,} bytes" if limit else "") + ").")


def reset():
    with _lock:
        _starts.clear()
        _by_start.clear()
        _used.clear()


class Allocation:
    """`nbytes` of memory on `device_id`; `host` is the uint8 buffer kernels and copies use."""

    def __init__(self, nbytes, device_id):
        self.device_id = device_id
        self.nbytes = int(nbytes)
        rounded = -(-self.nbytes // ALIGNMENT) * ALIGNMENT
        limit = _runtime.config.memory_bytes
        with _lock:
            used = _used.get(device_id, 0)
            if used + rounded > limit:
                raise OutOfMemoryError(rounded, used, limit)
            _used[device_id] = used + rounded
        if self.nbytes == 0:
            self.ptr = 0
            self.host = np.empty(0, np.uint8)
        else:
            raw = np.empty(rounded + ALIGNMENT, np.uint8)
            skip = (-raw.ctypes.data) % ALIGNMENT
            self.host = raw[skip: skip + rounded]
            if rounded <= FILL_LIMIT:
                self.host.fill(0xFF)
            self.ptr = self.host.ctypes.data
            with _lock:
                bisect.insort(_starts, self.ptr)
                _by_start[self.ptr] = weakref.ref(self)
        weakref.finalize(self, _release, self.ptr, device_id, rounded)


def _release(ptr, device_id, rounded):
    with _lock:
        _used[device_id] = _used.get(device_id, 0) - rounded
        if ptr:
            i = bisect.bisect_left(_starts, ptr)
            if i < len(_starts) and _starts[i] == ptr:
                del _starts[i]
            _by_start.pop(ptr, None)


def used_bytes(device_id) -> int:
    with _lock:
        return _used.get(device_id, 0)


def find(ptr):
    """(Allocation, offset) holding the address `ptr`, or None."""
    with _lock:
        i = bisect.bisect_right(_starts, ptr) - 1
        if i < 0:
            return None
        ref = _by_start.get(_starts[i])
    alloc = ref() if ref else None
    if alloc is None or not alloc.ptr <= ptr < alloc.ptr + max(alloc.nbytes, 1):
        return None
    return alloc, ptr - alloc.ptr


class MemoryPointer:
    """cupy.cuda.MemoryPointer: an allocation and a byte offset in it."""

    def __init__(self, mem, offset):
        self.mem, self.offset = mem, int(offset)

    @property
    def ptr(self):
        return self.mem.ptr + self.offset if self.mem.ptr else 0

    @property
    def device_id(self):
        return self.mem.device_id

    @property
    def device(self):
        from ._device import Device

        return Device(self.mem.device_id)

    def __add__(self, offset):
        return MemoryPointer(self.mem, self.offset + int(offset))

    def _bytes(self, size, what):
        if self.offset < 0 or self.offset + size > self.mem.nbytes:
            raise _runtime.CUDARuntimeError(1, f"{what}: {size} bytes at offset {self.offset} of a "
                                               f"{self.mem.nbytes}-byte allocation")
        return self.mem.host[self.offset: self.offset + size]

    def _copy_work(self, src, size, queue, label):
        dst_bytes, src_bytes = self._bytes(size, "copy destination"), src._bytes(size, "copy source")
        keep = (self.mem, src.mem)
        _streams.scheduler.submit(queue, lambda: (np.copyto(dst_bytes, src_bytes), keep), label)

    def copy_from_device(self, src, size):
        """cudaMemcpy on the current device's legacy default stream (CuPy: 'always uses the legacy
        default stream and does not honor the current stream'). It is ordered after the current
        device's earlier work only: nothing orders it after work still queued on the source device."""
        if size > 0:
            _enable_peer(src.device_id, self.device_id)
            queue = _streams.scheduler.null_queue(_runtime.get_device())
            self._copy_work(src, size, queue, f"memcpy {size} B device {src.device_id} -> {self.device_id}")

    def copy_from_device_async(self, src, size, stream=None):
        if size > 0:
            _enable_peer(src.device_id, self.device_id)
            queue = (_streams.get_current_stream() if stream is None else stream)._queue()
            self._copy_work(src, size, queue, f"memcpyAsync {size} B device {src.device_id} -> {self.device_id}")

    def memset_async(self, value, size, stream=None):
        target = self._bytes(size, "memset")
        queue = (_streams.get_current_stream() if stream is None else stream)._queue()
        keep = self.mem
        _streams.scheduler.submit(queue, lambda: (target.fill(value & 0xFF), keep), f"memset {size} B")


def _enable_peer(a, b):
    """What CuPy's copies do before copying between devices (device._enable_peer_access)."""
    if a == b:
        return
    previous = _runtime.get_device()
    try:
        for x, y in ((a, b), (b, a)):
            _runtime.set_device(x)
            _runtime.enable_peer_access(y, strict=False)
    finally:
        _runtime.set_device(previous)
