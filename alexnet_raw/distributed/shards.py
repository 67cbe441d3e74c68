"""A global batch as S shards over N processes, and the fixed-order sum of their gradients.

Shard s of a batch of n rows is rows graph.replica_rows(n, S, s) (the split data-parallel replicas
use); process p computes shards graph.replica_rows(S, N, p), contiguous, so it reads one run of
rows of every global batch. The gradient of the batch is the sum of the S shard gradients, added
element by element in shard order, g = ((g_0 + g_1) + g_2) + ...: every element is summed in
that order whatever N is, so 1, 2 or 3 processes computing the same S shards give bit-identical
sums (and, from the same state, bit-identical training).

How the sum crosses processes (sum_shards): the flat gradient (every parameter block of the model,
in device order) is cut into N segments; rank j owns segment j. Reduce-scatter: each rank sends
segment j of each of its shards' gradients to rank j, which folds all S pieces of its segment in
shard order. All-gather: each rank sends its folded segment to every other rank. With S = N (the
default) this is the usual 2 (N - 1) / N of the gradient per rank; with S > N a rank sends each
of its shards' pieces, S / N times the reduce-scatter's bytes: the price of bit-identity with
another process count. sent_bytes() is the count; split_report uses it.
"""

from __future__ import annotations

import numpy as np

from ..engine.graph import replica_rows

_TAG_SHARD, _TAG_SEGMENT = 1000, 999


class ShardPlan:
    """S shards of every global batch over N processes; which are this rank's."""

    def __init__(self, shards, processes, rank):
        for name, value in (("shards", shards), ("processes", processes)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if shards < processes:
            raise ValueError(f"{shards} shard{'s' if shards > 1 else ''} cannot be spread over {processes} "
                             f"processes: every process computes at least one shard (shards >= processes)")
        if not 0 <= rank < processes:
            raise ValueError(f"rank must be in [0, {processes}), got {rank!r}")
        self.shards, self.processes, self.rank = int(shards), int(processes), int(rank)
        self.mine = range(*replica_rows(self.shards, self.processes, self.rank))

    def owner(self, shard):
        return next(p for p in range(self.processes) if shard in range(*replica_rows(self.shards, self.processes, p)))

    def shard_rows(self, n, shard):
        """Rows [a, b) of a batch of n rows in `shard`."""
        return replica_rows(n, self.shards, shard)

    def my_rows(self, n):
        """Rows [a, b) of a batch of n rows that this rank's shards cover."""
        return self.shard_rows(n, self.mine[0])[0], self.shard_rows(n, self.mine[-1])[1]


def segments(elements, processes):
    return [replica_rows(elements, processes, j) for j in range(processes)]


def sent_bytes(elements, itemsize, shards, processes):
    """Gradient bytes each rank sends per step in sum_shards: [rank 0's, rank 1's, ...]."""
    plan = [ShardPlan(shards, processes, p) for p in range(processes)]
    seg = [b - a for a, b in segments(elements, processes)]
    return [itemsize * (len(plan[p].mine) * (elements - seg[p]) + (processes - 1) * seg[p])
            for p in range(processes)]


def fold(pieces):
    """The element-wise sum of `pieces` in their order, ((p0 + p1) + p2) + ..., in their dtype."""
    total = np.array(pieces[0], copy=True)
    for piece in pieces[1:]:
        total += piece
    return total


class ShardReducer:
    """sum_shards over a world; counts the gradient bytes it sends."""

    def __init__(self, world, plan, elements, dtype):
        if plan.processes != world.size or plan.rank != world.rank:
            raise ValueError(f"plan for rank {plan.rank} of {plan.processes} in a world of {world.size} "
                             f"(rank {world.rank})")
        self.world, self.plan, self.elements, self.dtype = world, plan, int(elements), np.dtype(dtype)
        self.segments = segments(self.elements, plan.processes)
        self.bytes_sent = 0
        self.reduced_bytes = 0  # bytes of gradient summed (each parameter once per call)

    def sum_shards(self, grads, what="the gradient sum"):
        """grads: {shard: flat array (elements,)} for this rank's shards; returns the sum of every
        shard's gradient, in shard order, on every rank."""
        plan, me = self.plan, self.plan.rank
        if sorted(grads) != list(plan.mine):
            raise ValueError(f"rank {me} computes shards {list(plan.mine)}, got gradients of {sorted(grads)}")
        for s, g in grads.items():
            if g.shape != (self.elements,) or g.dtype != self.dtype or not g.flags.c_contiguous:
                raise ValueError(f"shard {s}'s gradient must be a contiguous ({self.elements},) {self.dtype} array, "
                                 f"got {g.shape} {g.dtype}")
        self.reduced_bytes += self.elements * self.dtype.itemsize
        if plan.processes == 1:
            return fold([grads[s] for s in range(plan.shards)])
        a, b = self.segments[me]
        received = {s: np.empty(b - a, self.dtype) for s in range(plan.shards) if s not in plan.mine}
        sends = [(j, _TAG_SHARD + s, grads[s][lo:hi]) for s in plan.mine
                 for j, (lo, hi) in enumerate(self.segments) if j != me]
        recvs = [(plan.owner(s), _TAG_SHARD + s, buffer) for s, buffer in received.items()]
        self._exchange(sends, recvs, f"{what}: reduce-scatter")
        mine = fold([grads[s][a:b] if s in plan.mine else received[s] for s in range(plan.shards)])
        total = np.empty(self.elements, self.dtype)
        total[a:b] = mine
        sends = [(j, _TAG_SEGMENT, mine) for j in range(plan.processes) if j != me]
        recvs = [(j, _TAG_SEGMENT, total[lo:hi]) for j, (lo, hi) in enumerate(self.segments) if j != me]
        self._exchange(sends, recvs, f"{what}: all-gather")
        return total

    def _exchange(self, sends, recvs, what):
        self.world.exchange(sends, recvs, what)
        self.bytes_sent += sum(buffer.nbytes for _, _, buffer in sends)
