"""`alexnet-raw bench`: arguments and the run."""

from __future__ import annotations

import argparse
import sys

from .. import backends, kernel_launches
from .report import format_markdown, machine_line, write_outputs
from .runs import Config, FULL_CPU_BATCHES, GPU_BATCHES, NEEDS_GPU, QUICK_BATCHES, new_result, run_cpu, run_gpu


def _ints(text):
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive ints, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive ints, got {text!r}")
    return values


def gpu_available() -> bool:
    return any(b in backends.available_backends() for b in backends.GPU_BACKENDS)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="alexnet-raw bench", description="Layer-by-layer benchmark of our kernels against PyTorch, and of a whole training step.")
    ap.add_argument("--out", default="bench-out", help="directory for bench.json, bench.md, bench.png (default bench-out)")
    size = ap.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true",
                      help="the default without a GPU: batch sizes 1,2,4, 3 repeats, training step at 1,2")
    size.add_argument("--full", action="store_true", help="more batch sizes (CPU: up to 16; GPU: 1 to 256) and repeats")
    ap.add_argument("--batch", type=_ints, help="batch sizes, e.g. 1,2,4")
    ap.add_argument("--network", action="append", choices=kernel_launches.NETWORKS, help="repeatable; default both")
    ap.add_argument("--layer", action="append", help="only these layers (e.g. conv1, pool1a); repeatable")
    ap.add_argument("--repeats", type=int, help="timed repeats per measurement")
    ap.add_argument("--warmup", type=int, default=1, help="untimed runs first (default 1)")
    ap.add_argument("--no-train-step", action="store_true", help="skip the whole training step")
    ap.add_argument("--cpu-backend", action="append", choices=backends.CPU_BACKENDS,
                    help="CPU runtime path(s) to time (default emu)")
    args = ap.parse_args(argv)
    on_gpu = gpu_available()
    if args.full:
        batches, repeats, train_batches = (GPU_BATCHES if on_gpu else FULL_CPU_BATCHES), 10 if on_gpu else 5, \
            ((32, 128) if on_gpu else (1, 2, 4))
    elif on_gpu and not args.quick:
        batches, repeats, train_batches = GPU_BATCHES, 10, (32, 128)
    else:
        batches, repeats, train_batches = QUICK_BATCHES, 3, (1, 2)
    config = Config(batches=args.batch or batches, networks=tuple(args.network or kernel_launches.NETWORKS),
                    layers=tuple(args.layer or ()), warmup=max(0, args.warmup),
                    repeats=max(1, args.repeats or repeats), train_step=not args.no_train_step,
                    train_batches=train_batches if not args.batch else tuple(args.batch[:2]),
                    cpu_backends=tuple(args.cpu_backend or ("emu",)))
    if config.layers:
        known = {c.name for n in config.networks for c in kernel_launches.network_layers(n)}
        unknown = sorted(set(config.layers) - known)
        if unknown:
            print(f"error: unknown layer(s) {unknown}; choose from {sorted(known)}", file=sys.stderr)
            return 2
    try:
        import torch  # noqa: F401
    except ImportError:
        print("error: the benchmark compares with PyTorch: pip install 'torch==2.13.0'", file=sys.stderr)
        return 2
    result = new_result("gpu" if on_gpu else "cpu", config)
    try:
        if on_gpu:
            print("GPU found: timing our cupy and cuda paths against cuDNN/cuBLAS through PyTorch")
            run_gpu(config, result=result)
        else:
            print("No GPU here: these are CPU figures (our kernels on the CPU runtime against PyTorch on the CPU).")
            print("Comparisons that need a GPU:")
            for n in NEEDS_GPU:
                print(f"  - {n}")
            run_cpu(config, result=result)
    except (Exception, KeyboardInterrupt) as e:  # write what was measured, then fail
        result["error"] = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        paths = write_outputs(result, args.out)
        print(f"error: the benchmark stopped: {result['error']}", file=sys.stderr)
        print(f"wrote what was measured before that to {paths['json']}, {paths['md']}", file=sys.stderr)
        return 130 if isinstance(e, KeyboardInterrupt) else 1
    paths = write_outputs(result, args.out)
    print(machine_line(result))
    print(format_markdown(result) if result["rows"] else "no rows measured")
    print(f"wrote {paths['json']}, {paths['md']}, {paths['png']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
