"""`alexnet-raw bench`: arguments and the run."""

from __future__ import annotations

import sys

from ...runtime import backends
from ... import cli_types
from .. import layer_cases
from .report import format_markdown, machine_line, write_outputs
from .runs import Config, FULL_CPU_BATCHES, GPU_BATCHES, NEEDS_GPU, QUICK_BATCHES, new_result, run_cpu, run_gpu

PROG = "alexnet-raw bench"


def gpu_available() -> bool:
    return any(b in backends.available_backends() for b in backends.GPU_BACKENDS)


def build_parser():
    ap = cli_types.ArgumentParser(prog=PROG, description="Layer-by-layer benchmark of our kernels against PyTorch, "
                                                         "and of a whole training step.")
    ap.add_argument("--out", type=cli_types.output_dir, default="bench-out",
                    help="directory for bench.json, bench.md, bench.png (default bench-out)")
    size = ap.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true",
                      help="the default without a GPU: batch sizes 1,2,4, 3 repeats, training step at 1,2")
    size.add_argument("--full", action="store_true", help="more batch sizes (CPU: up to 16; GPU: 1 to 256) and repeats")
    ap.add_argument("--batch", type=cli_types.positive_int_list, help="batch sizes, e.g. 1,2,4")
    ap.add_argument("--network", action="append", choices=sorted(set(layer_cases.NETWORKS) | set(PROCESS_NETWORKS)),
                    help="repeatable; default both of the layer benchmark's (mini: with --processes only)")
    ap.add_argument("--layer", action="append", help="only these layers (e.g. conv1, pool1a); repeatable")
    ap.add_argument("--repeats", type=cli_types.positive_int,
                    help="timed repeats per measurement (default: 3 quick, 5 full on the CPU, 10 on a GPU)")
    ap.add_argument("--warmup", type=cli_types.non_negative_int, default=1, help="untimed runs first (default 1)")
    ap.add_argument("--no-train-step", action="store_true", help="skip the whole training step")
    cli_types.backend_option(ap, "--cpu-backend", names=backends.CPU_BACKENDS, action="append",
                             help="CPU runtime path(s) to time (default emu)")
    ap.add_argument("--processes", type=cli_types.positive_int_list, default=None, metavar="P1,P2",
                    help="instead of the layers: images/s of a data-parallel training step on these numbers of MPI "
                         f"processes and the scaling efficiency (--network: one of {', '.join(PROCESS_NETWORKS)}, "
                         f"default {PROCESS_DEFAULTS[0]}; --batch: the global batch, default {PROCESS_DEFAULTS[1]})")
    return ap


PROCESS_NETWORKS = ("mini", "krizhevsky2012", "torchvision")
PROCESS_DEFAULTS = ("mini", 32)  # network, global batch of `bench --processes`


def _main_processes(args) -> int:
    from .processes import ProcessBenchError, format_markdown as processes_markdown, run_processes, \
        write_outputs as write_processes

    networks = args.network or [PROCESS_DEFAULTS[0]]
    if len(networks) != 1 or networks[0] not in PROCESS_NETWORKS:
        return cli_types.fail(PROG, f"--processes times one network: expected one --network of "
                                    f"{', '.join(PROCESS_NETWORKS)}, got {networks}")
    if args.batch is not None and len(args.batch) != 1:
        return cli_types.fail(PROG, f"--processes takes one global --batch, got {','.join(map(str, args.batch))}")
    if gpu_available():
        print("GPU found: the steps run on the GPU backend with NCCL's sums; each layer's all-reduce is timed too")
    else:
        print("CPU figures: the CPU runtime, every process on as many threads (of this machine's cores).")
    try:
        result = run_processes(args.processes, networks[0], args.batch[0] if args.batch else PROCESS_DEFAULTS[1],
                               args.warmup, args.repeats or 3)
    except ProcessBenchError as e:
        return cli_types.fail(PROG, e, 1)
    paths = write_processes(result, args.out)
    print(processes_markdown(result))
    print(f"wrote {paths['json']}, {paths['md']}")
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.processes:
        return _main_processes(args)
    if set(args.network or ()) - set(layer_cases.NETWORKS):
        return cli_types.fail(PROG, f"the layer benchmark times {', '.join(layer_cases.NETWORKS)}; "
                                    "--network mini is for --processes")
    on_gpu = gpu_available()
    if args.full:
        batches, repeats, train_batches = (GPU_BATCHES if on_gpu else FULL_CPU_BATCHES), 10 if on_gpu else 5, \
            ((32, 128) if on_gpu else (1, 2, 4))
    elif on_gpu and not args.quick:
        batches, repeats, train_batches = GPU_BATCHES, 10, (32, 128)
    else:
        batches, repeats, train_batches = QUICK_BATCHES, 3, (1, 2)
    config = Config(batches=args.batch or batches, networks=tuple(args.network or layer_cases.NETWORKS),
                    layers=tuple(args.layer or ()), warmup=args.warmup,
                    repeats=repeats if args.repeats is None else args.repeats, train_step=not args.no_train_step,
                    train_batches=train_batches if not args.batch else tuple(args.batch[:2]),
                    cpu_backends=tuple(args.cpu_backend or ("emu",)))
    if config.layers:
        known = {c.name for n in config.networks for c in layer_cases.network_layers(n)} | {
            c.name for c in layer_cases.extra_layers()}
        unknown = sorted(set(config.layers) - known)
        if unknown:
            return cli_types.fail(PROG, f"unknown layer(s) {unknown}; choose from {sorted(known)}")
    try:
        import torch  # noqa: F401
    except ImportError:
        return cli_types.fail(PROG, "the benchmark compares with PyTorch: pip install 'torch==2.13.0'")
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
        status = 130 if isinstance(e, KeyboardInterrupt) else 1
        return cli_types.fail(PROG, f"the benchmark stopped: {result['error']}; wrote what was measured before that "
                                    f"to {paths['json']}, {paths['md']}", status)
    paths = write_outputs(result, args.out)
    print(machine_line(result))
    print(format_markdown(result) if result["rows"] else "no rows measured")
    print(f"wrote {paths['json']}, {paths['md']}, {paths['png']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
