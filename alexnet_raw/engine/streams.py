"""How arrays cross between logical devices on GPUs, ordered by CUDA events, never by waiting.

Logical device d runs on GPU d % (number of GPUs). Without overlap, each logical device works on
its GPU's legacy default stream; with overlap=True it computes on a stream of its own and receives
its cross-device copies on a second one. Either way a copy from device s to device d is queued as

    s's stream:       ... producer kernels ... [record E1]
    d's copy stream:  [wait E1] [copy] [record E2]      (without overlap: d's stream itself)
    d's stream:       ... its own work ... [wait E2] consumer kernels ...

so the copy runs after what produced its source and before what reads its destination, whatever
the GPUs are doing otherwise. Events, not host waits: CuPy's `copy_from_device` (cudaMemcpy on the
current device's legacy stream) is not ordered after work queued on the source device, and a host
wait would stall the step. When source and destination share a GPU without overlap, they share
its stream and the copy is simply queued on it.

A copy's source is kept alive until synchronize(): CuPy's memory pool may otherwise hand a freed
block to the source stream's next kernel while another stream still reads it. Only copies that
cross streams are kept, so a network on one GPU without overlap never waits (Model.backward calls
synchronize() at the end of a step, which then returns at once).

`xp` is `cupy` (or the tests' CuPy stand-in, which runs queued work in any order that the events
allow, so that a missing event shows as a wrong result).
"""

from __future__ import annotations

import contextlib


class Transfers:
    def __init__(self, xp, physical, overlap=False):
        """xp: the cupy module; physical: {logical device: GPU index}."""
        self.xp, self.cuda = xp, xp.cuda
        cuda = self.cuda
        self.physical = dict(physical)
        self.overlap = bool(overlap)
        self.compute, self.copy_in = {}, {}
        if self.overlap:
            for device, gpu in self.physical.items():
                with cuda.Device(gpu):
                    self.compute[device] = cuda.Stream()  # blocking: ordered with the legacy default stream
                    self.copy_in[device] = cuda.Stream()
        self.in_flight = []  # (done event, source, destination) of copies across streams since synchronize()

    def stream(self, device):
        """The stream logical `device` computes on (used inside `with Device(its GPU)`)."""
        return self.compute[device] if self.overlap else self.cuda.Stream.null

    def context(self, device):
        """`device`'s GPU current, and its stream the current stream."""
        stack = contextlib.ExitStack()
        stack.enter_context(self.cuda.Device(self.physical[device]))
        if self.overlap:
            stack.enter_context(self.compute[device])
        return stack

    def copy(self, dst, src, src_device, dst_device):
        """Queue dst <- src (arrays of the same size; dst on dst_device's GPU) after everything
        src_device has queued so far; dst_device's later work waits for it."""
        src_gpu, dst_gpu = self.physical[src_device], self.physical[dst_device]
        if not self.overlap and src_gpu == dst_gpu:
            with self.cuda.Device(dst_gpu):
                dst.data.copy_from_device_async(src.data, src.nbytes, self.cuda.Stream.null)
            return
        with self.cuda.Device(src_gpu):
            produced = self.stream(src_device).record()
        self._queue_copy(dst, src, produced, dst_device)

    def receive(self, array, dst_device):
        """`array` (a device array of the caller's, produced on its device's current stream) for
        logical `dst_device`: the array itself when it is on that GPU (dst_device's stream waits
        for what produced it), else a copy."""
        home = array.device.id
        with self.cuda.Device(home):
            produced = self.cuda.get_current_stream().record()
        if home == self.physical[dst_device]:
            with self.context(dst_device):
                self.cuda.get_current_stream().wait_event(produced)
            return array
        with self.cuda.Device(self.physical[dst_device]):
            dst = self.xp.empty(array.shape, array.dtype)
        self._queue_copy(dst, array, produced, dst_device)
        return dst

    def _queue_copy(self, dst, src, produced, dst_device):
        with self.cuda.Device(self.physical[dst_device]):
            stream = self.copy_in[dst_device] if self.overlap else self.stream(dst_device)
            stream.wait_event(produced)
            dst.data.copy_from_device_async(src.data, src.nbytes, stream)
            done = stream.record()
            if self.overlap:
                self.compute[dst_device].wait_event(done)
        self.in_flight.append((done, src, dst))

    def synchronize(self):
        """Wait for the copies queued across streams (with overlap: for every stream), then let go
        of their arrays. Returns at once when there are none."""
        if self.overlap:
            for device in self.physical:
                with self.cuda.Device(self.physical[device]):
                    self.compute[device].synchronize()
                    self.copy_in[device].synchronize()
        else:
            for done, _, _ in self.in_flight:
                done.synchronize()
        self.in_flight.clear()
