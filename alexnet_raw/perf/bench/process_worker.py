"""One process of `alexnet-raw bench --processes`: timed data-parallel training steps.

    mpiexec -n P python -m alexnet_raw.perf.bench.process_worker NETWORK BATCH WARMUP REPEATS

Every rank builds the same global batch (random images and labels from a fixed seed), computes its
shard of it (P shards, one per process: alexnet_raw.distributed) and sums the gradients across the
processes, as `mpirun -n P alexnet-raw train` does; with P = 1, the plain Model.train_step (what
`alexnet-raw train` runs in one process). It runs on the default backend (a GPU's when there is
one: then the sums are NCCL's, and each layer's gradient all-reduce is also timed on its own,
time_buckets). A step's time is the slowest rank's, from a common start (an exchange with every
rank). Rank 0 prints one JSON line: the step seconds, the gradient bytes each rank sent per step
(null with NCCL), and the all-reduce times of the buckets (null without NCCL).
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np


def main(argv=None) -> int:
    from ...distributed import world as world_mod
    from ...distributed.shards import ShardPlan
    from ...distributed.step import ShardedStep
    from ...engine.model import Model

    network, batch, warmup, repeats = (argv if argv is not None else sys.argv[1:])[:4]
    batch, warmup, repeats = int(batch), int(warmup), int(repeats)
    world = world_mod.current()
    if world.size > 1:
        from ...engine.devices import set_process_slot

        set_process_slot(world.local_rank)  # on GPUs: GPUs of its own where the node has enough
    model = Model.named(network)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, model.input_channels, model.image_size, model.image_size)).astype(np.float32)
    labels = rng.integers(0, model.num_classes, batch)
    plan = ShardPlan(world.size, world.size, world.rank)
    step = ShardedStep(model, world, plan) if world.size > 1 else None
    counts = [b - a for a, b in (plan.shard_rows(batch, s) for s in range(plan.shards))]
    a, b = plan.my_rows(batch)
    mine = [(np.ascontiguousarray(x[a:b]), labels[a:b])]
    seconds = []
    for r in range(warmup + repeats):
        world.allgather(None, "the start of a timed step")
        started = time.perf_counter()
        if step is None:
            model.train_step(x, labels)
        else:
            step.train_step(mine, counts, f"timed step {r + 1}")
        took = max(world.allgather(time.perf_counter() - started, "the step times"))
        if r >= warmup:
            seconds.append(took)
    sent = step.counters()[1] if step is not None else 0  # None: NCCL's business
    sent = None if sent is None else world.allgather(sent // (warmup + repeats), "the traffic count")
    buckets = time_buckets(step, world, warmup, repeats) if step is not None and step.nccl is not None else None
    if world.rank == 0:
        print(json.dumps({"processes": world.size, "step_seconds": seconds, "sent_bytes_per_step": sent,
                          "world": world.describe(), "backend": model.devices.backend, "buckets": buckets,
                          "stand_in": bool(getattr(model.devices.xp, "IS_ALEXNET_RAW_STAND_IN", False))}))
    return 0


def time_buckets(step, world, warmup, repeats):
    """Each layer's gradient all-reduce on its own (NCCL, in place, its GPU's communication
    stream), timed with CUDA events on that stream: [{"layer", "bytes", "seconds": [...]}] in the
    order backward hands them over. The step's sums are done; these runs only time the transfers."""
    model, nccl = step.model, step.nccl
    cuda = model.devices.xp.cuda
    out = []
    for layer in model.gradient_order():
        device = model.graph.nodes[layer].device
        grads = model.blocks[device].layer_gradients(layer)
        stream = nccl.streams[model.devices.physical[device]]
        times = []
        for r in range(warmup + repeats):
            world.allgather(None, "the start of a timed all-reduce")
            with cuda.Device(model.devices.physical[device]):
                start, end = cuda.Event(), cuda.Event()
                start.record(stream)
                nccl.comms[device].allReduce(grads.data.ptr, grads.data.ptr, grads.size, nccl.dtype,
                                             nccl.nccl.NCCL_SUM, stream.ptr)
                end.record(stream)
                end.synchronize()
                if r >= warmup:
                    times.append(cuda.get_elapsed_time(start, end) * 1e-3)
        slowest = [max(ts) for ts in zip(*world.allgather(times, "the all-reduce times"))]
        out.append({"layer": layer, "bytes": int(grads.nbytes), "seconds": slowest})
    return out


if __name__ == "__main__":
    sys.exit(main())
