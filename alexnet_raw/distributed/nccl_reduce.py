"""The gradient sum across processes on GPUs: NCCL's all-reduce (through cupy.cuda.nccl), one
bucket per layer, overlapped with the rest of backward.

One communicator per logical device of the model (each process holds the whole placement, so
logical device d of every process holds the same parameters), created on d's GPU from a unique id
that rank 0 draws and the world passes to every rank. Each GPU has a communication stream of its
own (non-blocking). When backward has queued a layer's weight gradients (Model.backward's
on_gradients), an event recorded on the layer's compute stream orders that layer's all-reduce
(in place, on its flat gradient, NCCL_SUM) on the communication stream after them; the earlier
layers' backward goes on meanwhile. finish() makes each compute stream wait for its communication
stream, so the update that follows reads the sums; nothing waits on the host.

Guarantees (NCCL's): for a fixed number of processes, GPUs and NCCL version the sums are the same
from run to run; they are not bit-identical to one process's (another order of addition), but
within float32 rounding of it.
"""

from __future__ import annotations

import numpy as np

from .world import DistributedError


def _nccl():
    try:
        from cupy.cuda import nccl
    except ImportError as e:
        raise DistributedError(f"training on GPUs across processes sums gradients with NCCL, which this CuPy "
                               f"lacks ({e}): install a CuPy build with NCCL (cupy-cuda13x from PyPI has it)") from None
    return nccl


class NcclReducer:
    def __init__(self, model, world):
        self.model, self.world = model, world
        self.nccl = nccl = _nccl()
        cuda = model.devices.xp.cuda
        self.dtype = {np.dtype(np.float32): nccl.NCCL_FLOAT32, np.dtype(np.float64): nccl.NCCL_FLOAT64}[model.dtype]
        self.comms, self.streams = {}, {}
        physical = model.devices.physical
        for device in model.graph.devices:
            uid = nccl.get_unique_id() if world.rank == 0 else None
            uid = world.allgather(uid, f"the NCCL unique id of logical device {device}")[0]
            with cuda.Device(physical[device]):
                self.comms[device] = nccl.NcclCommunicator(world.size, uid, world.rank)
                if physical[device] not in self.streams:
                    self.streams[physical[device]] = cuda.Stream(non_blocking=True)
        self.reduced_bytes = 0  # bytes handed to the all-reduce (each parameter once a step)

    def layer_ready(self, layer):
        """Queue the all-reduce of `layer`'s weight gradients (on its device) after what wrote them."""
        model = self.model
        device = model.graph.nodes[layer].device
        grads = model.blocks[device].layer_gradients(layer)
        if grads is None:
            return
        cuda = model.devices.xp.cuda
        with model.devices.context(device):  # its GPU, its compute stream current
            written = cuda.get_current_stream().record()
            stream = self.streams[model.devices.physical[device]]
            stream.wait_event(written)
            self.comms[device].allReduce(grads.data.ptr, grads.data.ptr, grads.size, self.dtype,
                                         self.nccl.NCCL_SUM, stream.ptr)
        self.reduced_bytes += grads.nbytes

    def finish(self):
        """Every compute stream waits for its GPU's all-reduces (queued; no host wait)."""
        model, cuda = self.model, self.model.devices.xp.cuda
        done = {}
        for gpu, stream in self.streams.items():
            with cuda.Device(gpu):
                done[gpu] = stream.record()
        for device in model.graph.devices:
            with model.devices.context(device):
                cuda.get_current_stream().wait_event(done[model.devices.physical[device]])

    def close(self):
        for comm in self.comms.values():
            comm.destroy()
        self.comms.clear()
