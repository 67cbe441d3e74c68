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
        from ..training.evaluate import count_correct

        model, plan = self.model, self.plan
        n = int(sum(counts))
        if n == 0:
            raise ValueError("a global batch with no rows")
        starts = np.concatenate([[0], np.cumsum(counts)]).astype(int)
        if self.nccl is not None:
            return self._nccl_step(shards[0], counts, starts, n, step_label, epoch, progress)
        grads, results = {}, {}
        for s, (x, labels) in zip(plan.mine, shards):
            if counts[s] != len(labels):
                raise ValueError(f"shard {s} has {len(labels)} rows, the step's exchange says {counts[s]}")
            if counts[s] == 0:  # the tail of an epoch or unreadable images: nothing to add
                grads[s] = np.zeros(self.elements, model.dtype)
                results[s] = (0.0, 0)
                continue
            if x.dtype != model.dtype:
                x = x.astype(model.dtype)
            logits = model.forward(x, train=True, row_start=int(starts[s]))
            loss = model.backward(labels, loss_scale=counts[s] / n)
            grads[s] = self._flat_gradient()
            results[s] = (float(loss), int(count_correct(model, logits, labels, 1)[0]))
        self._set_gradient(self.reducer.sum_shards(grads, f"the gradient sum of {step_label}"))
        model.step(epoch, progress)
        gathered = {}
        for part in self.world.allgather(results, f"the losses of {step_label}"):
            gathered.update(part)
        loss = 0.0
        for s in range(plan.shards):  # in shard order: the same float on every rank
            loss += gathered[s][0]
        return loss, sum(hits for _, hits in gathered.values())

    def _nccl_step(self, shard, counts, starts, n, step_label, epoch, progress):
        from ..training.evaluate import count_correct

        model, s = self.model, self.plan.rank  # one shard per process
        x, labels = shard
        if counts[s] == 0:  # no rows here this step: a zero gradient joins the sums
            for block in self.blocks:
                with model.devices.context(block.device):
                    block.flat_grads.fill(0)
            for layer in model.gradient_order():
                self.nccl.layer_ready(layer)
            result = (0.0, 0)
        else:
            if x.dtype != model.dtype:
                x = x.astype(model.dtype)
            logits = model.forward(x, train=True, row_start=int(starts[s]))
            loss = model.backward(labels, loss_scale=counts[s] / n, on_gradients=self.nccl.layer_ready)
            result = None
        self.nccl.finish()
        model.step(epoch, progress)
        if result is None:
            result = (float(loss), int(count_correct(model, logits, labels, 1)[0]))
        said = self.world.allgather(result, f"the losses of {step_label}")
        loss = 0.0
        for part_loss, _ in said:  # in rank order: the same float on every rank
            loss += part_loss
        return loss, sum(hits for _, hits in said)
