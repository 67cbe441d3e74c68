"""Parameters, gradients and momentum of one device: three flat allocations with views carved out.

Keys are the state_dict names: "<layer>.weights.<i>" (one per input i) and "<layer>.biases".
Views are laid out in layer order, weights before biases, so a device's parameters are one
contiguous block (one allocation to save, to update, or to send)."""

from __future__ import annotations

import math


class ParameterBlock:
    def __init__(self, devices, device, entries, dtype):
        """entries: [(key, shape)] in layer order."""
        self.device = device
        self.shapes = dict(entries)
        self.offsets = {}
        total = 0
        for key, shape in entries:
            self.offsets[key] = total
            total += math.prod(shape)
        self.size = total
        self.flat_params = devices.zeros(device, (total,), dtype)
        self.flat_grads = devices.zeros(device, (total,), dtype)
        self.flat_momentum = devices.zeros(device, (total,), dtype)
        self.params = self._views(self.flat_params)
        self.grads = self._views(self.flat_grads)
        self.momentum = self._views(self.flat_momentum)

    def _views(self, flat):
        return {
            key: flat[self.offsets[key]: self.offsets[key] + math.prod(shape)].reshape(shape)
            for key, shape in self.shapes.items()
        }

    def layer_gradients(self, layer):
        """The flat gradient of one layer's parameters (its keys are consecutive: one view), or None
        for a layer with none on this device."""
        keys = [k for k in self.shapes if k.startswith(f"{layer}.")]
        if not keys:
            return None
        start = min(self.offsets[k] for k in keys)
        end = max(self.offsets[k] + math.prod(self.shapes[k]) for k in keys)
        return self.flat_grads[start:end]
