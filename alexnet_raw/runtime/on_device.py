"""The functional ops called with NumPy arrays, run on a GPU backend: each NumPy argument is copied
to the current device, each array result copied back, and arguments the op writes in place
(sgd_update's parameters, accumulate's sum, dropout's out) are copied back into the caller's
arrays. `alexnet-raw verify --backend cupy|cuda` and the kernel tests use it to run the same
checks against PyTorch on the GPU paths as on the CPU runtime.

    F = OnDevice(alexnet_raw.functional, cupy)
    y = F.conv2d(x, w, stride=4)   # x, w, y: NumPy; the kernels ran on the GPU backend

A non-contiguous NumPy argument becomes a non-contiguous device array with the same values, so
that the ops' layout checks see what they would see on the GPU.
"""

from __future__ import annotations

import functools

import numpy as np


class OnDevice:
    def __init__(self, namespace, xp):
        self._namespace, self.xp = namespace, xp

    def __getattr__(self, name):
        value = getattr(self._namespace, name)
        if not callable(value) or isinstance(value, type):
            return value

        @functools.wraps(value)
        def call(*args, **kwargs):
            copies = {}  # id of a NumPy argument -> (it, its device copy): one copy per array passed
            args = [self._put(a, copies) for a in args]
            kwargs = {k: self._put(v, copies) for k, v in kwargs.items()}
            result = value(*args, **kwargs)
            for host, device in copies.values():
                if host.flags.writeable:
                    host[...] = device.get()
            originals = {id(device): host for host, device in copies.values()}
            return self.take(result, originals)

        return call

    def _put(self, value, copies):
        if isinstance(value, np.ndarray):
            if id(value) not in copies:
                copies[id(value)] = (value, self.to_device(value))
            return copies[id(value)][1]
        if isinstance(value, (list, tuple)):  # the joins' lists of inputs (concat, eltwise_sum, ...)
            return type(value)(self._put(v, copies) for v in value)
        return value

    def to_device(self, array):
        """A device copy of a NumPy array, non-contiguous where the original is."""
        if array.flags.c_contiguous:
            return self.xp.asarray(array)
        doubled = np.ascontiguousarray(np.stack([array, array], axis=-1))
        return self.xp.asarray(doubled)[..., 0]

    def take(self, value, originals=None):
        """Device arrays in a result (nested in tuples and lists) as NumPy arrays; an argument
        returned as the result (an in-place op's `out`) is the caller's own array again."""
        originals = originals or {}
        if isinstance(value, self.xp.ndarray):
            return originals[id(value)] if id(value) in originals else value.get()
        if isinstance(value, (tuple, list)):
            return type(value)(self.take(v, originals) for v in value)
        return value
