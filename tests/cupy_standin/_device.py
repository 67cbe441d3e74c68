"""cupy.cuda.Device: `with Device(i):` makes device i current (allocations, launches, the current
stream) and restores the previous device on exit; Device() is the current device."""

from __future__ import annotations

import threading

from . import _runtime, _streams


class _Stack(threading.local):
    def __init__(self):
        self.saved = []


_stack = _Stack()


class Device:
    def __init__(self, device=None):
        if device is None:
            device = _runtime.get_device()
        elif hasattr(device, "id") and isinstance(device, Device):
            device = device.id
        self.id = _runtime.check_device(device)

    def __enter__(self):
        _stack.saved.append(_runtime.get_device())
        _runtime.set_device(self.id)
        return self

    def __exit__(self, *exc):
        _runtime.set_device(_stack.saved.pop())

    def use(self):
        _runtime.set_device(self.id)

    def synchronize(self):
        _streams.synchronize_device(self.id)

    @property
    def compute_capability(self):
        major, minor = _runtime.config.compute_capability
        return f"{major}{minor}"

    @property
    def mem_info(self):
        from . import _memory

        total = _runtime.config.memory_bytes
        return total - _memory.used_bytes(self.id), total

    def __int__(self):
        return self.id

    def __index__(self):
        return self.id

    def __eq__(self, other):
        return isinstance(other, Device) and other.id == self.id

    def __hash__(self):
        return hash(self.id)

    def __repr__(self):
        return f"<CUDA Device {self.id}>"
