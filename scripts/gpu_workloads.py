"""The GPU workloads of scripts/gpu_check.sh, run on one GPU backend (cupy or cuda):

    python scripts/gpu_workloads.py every-kernel --backend cuda [--batch 2]
        one launch of every kernel instantiation the ops use, at the geometry the ops choose for
        AlexNet's layers (layer_cases.representative_launches) at a small batch, on device
        arrays of random values (integers: zero, a valid index everywhere), then a device
        synchronisation: what compute-sanitizer's memcheck, racecheck and synccheck run over
    python scripts/gpu_workloads.py training-step --backend cuda [--network torchvision] [--batch 32] [--warmup 1]
        one training step of an AlexNet network after `warmup` steps: what ncu profiles

Both print one line per thing done and end with a summary line; exit 0, or 1 with the error.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def _device_copy(xp, value, rng):
    if not isinstance(value, np.ndarray):
        return value
    if value.dtype.kind == "f":
        return xp.asarray(rng.standard_normal(value.shape).astype(value.dtype))
    return xp.zeros(value.shape, value.dtype)


def every_kernel(backend_name: str, batch: int = 2, seed: int = 0, log=print):
    """Launch every recorded kernel once on `backend_name`; returns the kernel names in order."""
    import cupy

    from alexnet_raw.runtime import backends
    from alexnet_raw.perf import layer_cases
    from alexnet_raw.runtime.launch import Launch

    backend = backends.get_backend(backend_name)
    found = layer_cases.representative_launches(batch=batch)
    rng = np.random.default_rng(seed)
    done = []
    for name in sorted(found):
        launch, origin = found[name]
        args = tuple(_device_copy(cupy, a, rng) for a in launch.args)
        backend.launch(Launch(launch.source, launch.kernel, launch.grid, launch.block, args, launch.shared_bytes))
        cupy.cuda.Device().synchronize()
        log(f"launched {name} grid {launch.grid} block {launch.block} ({origin})")
        done.append(name)
    return done


def training_step(backend_name: str, network: str = "torchvision", batch: int = 32, warmup: int = 1, log=print):
    """`warmup` untimed steps, then one step (forward, backward, SGD) of `network`; returns its seconds."""
    from alexnet_raw.perf.bench.clocks import SyncedWallClock
    from alexnet_raw.perf.bench.runs import measure_train_ours

    (seconds,) = measure_train_ours(network, batch, backend_name, SyncedWallClock(), warmup=warmup, repeats=1)
    log(f"one training step of {network} at batch {batch} on {backend_name} after {warmup} warm-up step(s): done")
    return seconds


def nccl_one_rank(backend_name: str, network: str = "mini", batch: int = 4, log=print):
    """A backward with every layer's gradient all-reduced by NCCL as `mpirun` training queues it
    (alexnet_raw/distributed/nccl_reduce.py: a communicator per logical device, a communication
    stream per GPU, each bucket after its layer's backward), on communicators of one rank (what one
    GPU allows: NCCL refuses two ranks on one GPU): real NCCL's argument rules and stream order, and
    a sum over one rank is the gradient itself, compared bit for bit with a plain backward.
    Returns the number of all-reduces."""
    import numpy as np

    from alexnet_raw.distributed.nccl_reduce import NcclReducer
    from alexnet_raw.distributed.world import LocalWorld
    from alexnet_raw.engine.model import Model

    model = Model.named(network, backend=backend_name)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, model.input_channels, model.image_size, model.image_size)).astype(np.float32)
    labels = rng.integers(0, model.num_classes, batch)
    model.forward(x, train=True)
    model.backward(labels)
    plain = model.gradient_dict()
    reducer = NcclReducer(model, LocalWorld())
    calls = []
    model.forward(x, train=True)
    model.backward(labels, on_gradients=lambda layer: (calls.append(layer), reducer.layer_ready(layer)))
    reducer.finish()
    summed = model.gradient_dict()
    reducer.close()
    different = [k for k in plain if not np.array_equal(plain[k], summed[k])]
    if different or calls != model.gradient_order():
        raise AssertionError(f"NCCL over one rank changed the gradients of {different[:5]} or missed layers "
                             f"({len(calls)} all-reduces for {len(model.gradient_order())} layers)")
    log(f"nccl-one-rank: {len(calls)} all-reduces of {network}'s layers on {backend_name}, gradients unchanged")
    return len(calls)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="gpu_workloads.py", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    ek = sub.add_parser("every-kernel", help="one launch of every kernel")
    ek.add_argument("--backend", choices=("cupy", "cuda"), default="cuda")
    ek.add_argument("--batch", type=int, default=2)
    ts = sub.add_parser("training-step", help="one training step after a warm-up")
    ts.add_argument("--backend", choices=("cupy", "cuda"), default="cuda")
    ts.add_argument("--network", choices=("torchvision", "krizhevsky2012", "mini"), default="torchvision")
    ts.add_argument("--batch", type=int, default=32)
    ts.add_argument("--warmup", type=int, default=1, help="untimed steps first (0 under a profiler: nvcc's kernels "
                                                          "need no run-time compilation)")
    nc = sub.add_parser("nccl-one-rank", help="a backward with NCCL's all-reduce of every layer, one rank")
    nc.add_argument("--backend", choices=("cupy", "cuda"), default="cuda")
    nc.add_argument("--network", choices=("torchvision", "krizhevsky2012", "mini"), default="mini")
    nc.add_argument("--batch", type=int, default=4)
    args = ap.parse_args(argv)
    if args.batch < 1:
        ap.error(f"--batch must be positive, got {args.batch}")
    from alexnet_raw.runtime import backends

    try:
        backends.set_backend(args.backend)
    except backends.BackendUnavailable as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    started = time.perf_counter()
    if args.command == "every-kernel":
        names = every_kernel(args.backend, args.batch)
        print(f"every-kernel: {len(names)} kernels launched once on {args.backend} in "
              f"{time.perf_counter() - started:.1f} s")
    elif args.command == "nccl-one-rank":
        nccl_one_rank(args.backend, args.network, args.batch)
    else:
        training_step(args.backend, args.network, args.batch, max(0, args.warmup))
        print(f"training-step: done on {args.backend} in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
