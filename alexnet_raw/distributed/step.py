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


class ShardedStep:
    def __init__(self, model, world, plan):
        self.model, self.world, self.plan = model, world, plan
        self.blocks = [model.blocks[d] for d in model.graph.devices]
        self.elements = sum(b.size for b in self.blocks)
        self.reducer = ShardReducer(world, plan, self.elements, model.dtype)

    @property
    def allreduce_bytes(self):
        """Bytes of the gradient summed across the shards every step (every parameter once)."""
        return self.elements * self.model.dtype.itemsize

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
