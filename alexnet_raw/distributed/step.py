"""A data-parallel training step of a Model: this rank's shards of the global batch, the gradients
of every shard summed in shard order across the ranks (shards.py), then the same update on every
rank (every rank holds the whole model and applies the same summed gradient, so weights stay
identical without being sent).

Shard s of a global batch of n rows is computed as its own forward and backward, its rows placed
at their global start (dropout masks drawn for those rows of the step's, as Model.forward's
row_start) and its loss weighted by its share of the batch (loss_scale = rows / n), so the sum of
the shard gradients is the gradient of the batch's mean loss.
"""

from __future__ import annotations

import numpy as np

from .shards import ShardReducer
from .world import DistributedError


class ShardedStep:
    """On the CPU runtime (and on GPUs within one process) the shards' gradients are summed on the
    host in shard order (shards.py); on GPUs across processes each process computes one shard and
    NCCL sums the processes' gradients (nccl_reduce.py), overlapped with backward."""

    def __init__(self, model, world, plan):
        self.model, self.world, self.plan = model, world, plan
        self.blocks = [model.blocks[d] for d in model.graph.devices]
        self.elements = sum(b.size for b in self.blocks)
        self.reducer = ShardReducer(world, plan, self.elements, model.dtype)
        self.nccl = None
        if model.devices.on_gpu and world.size > 1:
            if plan.shards != world.size:
                raise DistributedError(f"on GPUs each of the {world.size} processes computes one shard of every batch "
                                       f"(NCCL sums one gradient per process): pass --shards {world.size} (got "
                                       f"{plan.shards}), or train on the CPU runtime for bit-identity across "
                                       "process counts")
            from .nccl_reduce import NcclReducer

            self.nccl = NcclReducer(model, world)
        self.reset_counters()

    def reset_counters(self):
        self.reducer.bytes_sent = self.reducer.reduced_bytes = 0
        if self.nccl is not None:
            self.nccl.reduced_bytes = 0

    def counters(self):
        """(bytes of gradient all-reduced, gradient bytes this rank sent or None where NCCL sends
        them) since reset_counters()."""
        if self.nccl is not None:
            return self.nccl.reduced_bytes, None
        return self.reducer.reduced_bytes, self.reducer.bytes_sent

    def _flat_gradient(self):
        devices = self.model.devices
        return np.concatenate([np.asarray(devices.to_host(b.flat_grads)).ravel() for b in self.blocks])

    def _set_gradient(self, flat):
        devices, offset = self.model.devices, 0
        for block in self.blocks:
            part = flat[offset:offset + block.size]
            with devices.context(block.device):
                block.flat_grads[...] = devices.xp.asarray(part)
            offset += block.size

    def train_step(self, shards, counts, step_label, epoch=0, progress=0.0):
        """shards: [(x, labels)] of this rank's shards in order; counts: every shard's rows (all
        ranks', from the step's exchange). Returns (loss, top-1 hits) of the global batch, the
        same on every rank: the loss the sum of the shards' weighted losses in shard order."""
        n = int(sum(counts))
        if n == 0:
            raise ValueError("a global batch with no rows")
        for s, (_, labels) in zip(self.plan.mine, shards):
            if counts[s] != len(labels):
                raise ValueError(f"shard {s} has {len(labels)} rows, the step's exchange says {counts[s]}")
        starts = np.concatenate([[0], np.cumsum(counts)]).astype(int)
        step = self._nccl_shard if self.nccl is not None else self._host_shards
        results = step(shards, counts, starts, n, step_label)  # {shard: (its weighted loss, its hits)}
        self.model.step(epoch, progress)
        gathered = {}
        for part in self.world.allgather(results, f"the losses of {step_label}"):
            gathered.update(part)
        loss = 0.0
        for s in range(self.plan.shards):  # in shard order: the same float on every rank
            loss += gathered[s][0]
        return loss, sum(hits for _, hits in gathered.values())

    def _forward_backward(self, x, labels, start, share, on_gradients=None):
        """One shard's forward and backward: (its weighted loss, its logits), on the device."""
        model = self.model
        if x.dtype != model.dtype:
            x = x.astype(model.dtype)
        logits = model.forward(x, train=True, row_start=int(start))
        loss = model.backward(labels, loss_scale=share, on_gradients=on_gradients)
        return loss, logits

    def _host_shards(self, shards, counts, starts, n, step_label):
        """Every shard's gradient read back and summed in shard order on the host (shards.py)."""
        from ..training.evaluate import count_correct

        grads, results = {}, {}
        for s, (x, labels) in zip(self.plan.mine, shards):
            if counts[s] == 0:  # the tail of an epoch or unreadable images: nothing to add
                grads[s] = np.zeros(self.elements, self.model.dtype)
                results[s] = (0.0, 0)
                continue
            loss, logits = self._forward_backward(x, labels, starts[s], counts[s] / n)
            grads[s] = self._flat_gradient()
            results[s] = (float(loss), int(count_correct(self.model, logits, labels, 1)[0]))
        self._set_gradient(self.reducer.sum_shards(grads, f"the gradient sum of {step_label}"))
        return results

    def _nccl_shard(self, shards, counts, starts, n, step_label):
        """This process's one shard, each layer's gradient all-reduced by NCCL as backward goes."""
        from ..training.evaluate import count_correct

        model, s = self.model, self.plan.rank  # one shard per process
        (x, labels), = shards
        if counts[s] == 0:  # no rows here this step: a zero gradient joins the sums
            for block in self.blocks:
                with model.devices.context(block.device):
                    block.flat_grads.fill(0)
            for layer in model.gradient_order():
                self.nccl.layer_ready(layer)
            self.nccl.finish()
            return {s: (0.0, 0)}
        loss, logits = self._forward_backward(x, labels, starts[s], counts[s] / n, self.nccl.layer_ready)
        self.nccl.finish()  # queued: the update that follows waits for the sums on the GPU
        return {s: (float(loss), int(count_correct(model, logits, labels, 1)[0]))}
