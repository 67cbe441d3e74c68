"""Overlapped transfers between GPUs: each logical device computes on its own stream and receives
its cross-device copies on a second one, ordered by events instead of by waiting.

Without overlap (the default) every copy is a synchronous cudaMemcpy: the GPUs stop while data
crosses. With overlap, a copy from device s to device d is queued as

    s's compute stream:  ... producer kernels ... [record E1]
    d's copy stream:     [wait E1] [peer copy] [record E2]
    d's compute stream:  ... its own work ... [wait E2] consumer kernels ...

so the copy runs while both devices go on with work that does not need it (the other tower's
layers, or the next layer of the same tower), and two logical devices sharing one GPU run their
towers concurrently. The streams are blocking ones: anything issued on the legacy default stream
(a `.get()` outside a device context, say) still waits for them, so overlap can only lose speed,
never order. A copy's source array is kept alive until synchronize(), because CuPy's memory pool
may hand a freed block to the next kernel of the source stream while the copy stream still reads it.

`cuda` is `cupy.cuda` (Device, Stream); tests pass a recording stand-in, since no GPU runs here.
"""

from __future__ import annotations

import contextlib


class OverlappedStreams:
    def __init__(self, cuda, physical):
        """physical: {logical device: GPU index}."""
        self.cuda = cuda
        self.physical = dict(physical)
        self.compute, self.copy_in = {}, {}
        for device, gpu in self.physical.items():
            with cuda.Device(gpu):
                self.compute[device] = cuda.Stream()  # blocking: ordered with the legacy default stream
                self.copy_in[device] = cuda.Stream()
        self.in_flight = []  # (done event, source, destination) of copies queued since synchronize()

    def context(self, device):
        """`device`'s GPU current, and its compute stream the current stream."""
        stack = contextlib.ExitStack()
        stack.enter_context(self.cuda.Device(self.physical[device]))
        stack.enter_context(self.compute[device])
        return stack

    def copy(self, dst, src, src_device, dst_device):
        """Queue dst <- src (CuPy arrays of the same size; dst on dst_device's GPU) after everything
        src_device has queued so far; dst_device's later work waits for it."""
        with self.cuda.Device(self.physical[src_device]):
            produced = self.compute[src_device].record()
        with self.cuda.Device(self.physical[dst_device]):
            stream = self.copy_in[dst_device]
            stream.wait_event(produced)
            dst.data.copy_from_device_async(src.data, src.nbytes, stream)
            done = stream.record()
            self.compute[dst_device].wait_event(done)
        self.in_flight.append((done, src, dst))

    def synchronize(self):
        """Wait for every stream, then let go of the copies' arrays."""
        for device in self.physical:
            with self.cuda.Device(self.physical[device]):
                self.compute[device].synchronize()
                self.copy_in[device].synchronize()
        self.in_flight.clear()
