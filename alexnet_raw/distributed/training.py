"""`alexnet-raw train` over shards and processes: the epoch loop and the evaluation of a run whose
global batch is computed as shards (alexnet_raw.training.train uses these when a run has more
than one shard or process; with one of each it keeps its own loop).

Each step begins with one exchange in which every rank says how many rows of each of its shards
it read and whether it was asked to stop (Ctrl-C, SIGTERM): the ranks agree on the global batch
and stop together, at the same step boundary, where rank 0 saves. Evaluation: each rank
evaluates its rows of every test batch and the hit counts are summed (integers: exact).
"""

from __future__ import annotations

import numpy as np

from ..engine import param_schedules
from ..training import divergence


def _shard_ranges(plan):
    return lambda n: [plan.shard_rows(n, s) for s in plan.mine]


def agree(world, what, local_counts, stop):
    """(every shard's row count in shard order, whether any rank asked to stop)."""
    said = world.allgather({"counts": list(local_counts), "stop": stop.requested, "signum": stop.signum}, what)
    counts = [c for part in said for c in part["counts"]]
    _agree_stop(stop, [(part["stop"], part["signum"]) for part in said])
    return counts, stop.agreed


def _agree_stop(stop, said):
    """Stop when any rank was asked to (the same answer on every rank: it comes from the exchange)."""
    for requested, signum in said:
        if requested:
            stop.agreed = True
            if stop.signum is None:
                stop.signum = signum


def train_epoch(run, stop, progress=True):
    """The rest of epoch run.epoch from batch run.step, this rank's shards of every batch."""
    from ..training.train import EpochTally

    model, epoch, plan, world = run.model, run.epoch, run.plan, run.world
    batches = run.data_module.Batches(run.train_set, run.batch_size, run.pre, run.statistics, train=True,
                                      seed=run.seed, epoch=epoch, start=run.step, workers=run.args.workers,
                                      shard_rows=_shard_ranges(plan))
    tally = EpochTally(run, len(batches), show=progress and world.rank == 0)
    run.sharded.reset_counters()  # this epoch's, for its metrics record
    run.sharded_steps = 0
    try:
        for x, labels, local_counts in batches:
            label = f"epoch {epoch + 1}, batch {run.step + 1}"
            counts, stopping = agree(world, f"the start of {label}", local_counts, stop)
            if stopping:
                raise stop.interrupt()
            with stop.critical():
                done = epoch * len(batches) + run.step
                pieces, offset = [], 0
                for c in local_counts:
                    pieces.append((np.ascontiguousarray(x[offset:offset + c]), labels[offset:offset + c]))
                    offset += c
                progress_done = param_schedules.progress(done, run.epochs * len(batches))
                loss, correct = run.sharded.train_step(pieces, counts, label, epoch=epoch, progress=progress_done)
                divergence.check_step(model, loss, epoch + 1, run.step + 1)
                tally.add(loss, correct, int(sum(counts)))
                run.sharded_steps += 1
            tally.shown()
    finally:
        tally.close(batches)


def evaluate(run, stop, k=5):
    """(top-1, top-k) over the test set, each rank evaluating its rows of every test batch."""
    from ..training.evaluate import count_correct

    model, plan, world = run.model, run.plan, run.world
    rows = lambda n: [plan.my_rows(n)]  # noqa: E731  one piece per rank: no gradients to sum here
    batches = run.data_module.Batches(run.test_set, run.batch_size, run.pre, run.statistics, train=False,
                                      seed=run.seed, epoch=0, start=0, workers=run.args.workers, shard_rows=rows)
    hits1 = hitsk = seen = 0
    for x, labels, _ in batches:
        if len(labels):
            x = x if x.dtype == model.dtype else x.astype(model.dtype)
            a, b = count_correct(model, model.forward(x, train=False), labels, k)
            hits1, hitsk, seen = hits1 + int(a), hitsk + int(b), seen + len(labels)
    said = world.allgather((hits1, hitsk, seen, stop.requested, stop.signum), "the test-set evaluation")
    seen = sum(s[2] for s in said)
    if seen == 0:
        raise ValueError("no test images were evaluated")
    _agree_stop(stop, [(part[3], part[4]) for part in said])
    return sum(s[0] for s in said) / seen, sum(s[1] for s in said) / seen
