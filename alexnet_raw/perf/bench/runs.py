"""What a benchmark run measures: the configuration, our training step, and the CPU and GPU runs.

Every layer is validated against PyTorch (validate.py) before it is timed, and nothing is caught:
a failure ends the run with an error. The run fills a result dict as it goes (`new_result`), so the
caller can write what was measured before the failure (bench/cli.py does)."""

from __future__ import annotations

import dataclasses

import numpy as np

from ...runtime import backends
from .. import layer_cases
from ...ops import gemm_tiles
from .clocks import CpuClock, CudaEventClock, SyncedWallClock
from .machine import cpu_info, gpu_info
from .phases import measure_ours
from .stats import summarize, throughput
from .torch_side import TorchLayer, measure_torch, measure_train_torch
from .validate import validate_layer

QUICK_BATCHES = (1, 2, 4)
FULL_CPU_BATCHES = (1, 2, 4, 8, 16)
GPU_BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256)
NEEDS_GPU = [
    "our cupy and cuda paths (NVRTC / nvcc builds of the same kernels) on a GPU",
    "cuDNN through PyTorch, FP32 (TF32 off) and TF32, cudnn.benchmark on",
    "CUDA-event timings with the L2 cache flushed between repeats, batch sizes up to 256",
    "GFLOP/s against a GPU's FP32 peak (e.g. H100 SXM ~67 TFLOP/s)",
    "the two-tower split over two GPUs against one device, with and without overlapped transfers",
]
VERSIONS = (1, 2, 3, 4)  # of kernels/gemm_tile.cuh's progression: a row each for conv and fc layers on a GPU
STAND_IN_NOTE = ("the CuPy stand-in (the tests' CPU double of CuPy) is not a GPU: the GPU branch ran, every layer was "
                 "validated, and no timing of it is written")


def is_stand_in(cupy) -> bool:
    """True for the tests' CuPy stand-in, whose event times are CPU times of queued work."""
    return bool(getattr(cupy, "IS_ALEXNET_RAW_STAND_IN", False))


def measure_train_ours(network, batch, backend, clock, warmup, repeats, flush=None, single_device=False,
                       overlap_transfers=False):
    """Seconds per training step (forward, backward, SGD) of ours; the batch and labels stay where
    the model computes (on a GPU: device arrays, as PyTorch's side keeps them), nothing is read back."""
    from ...engine.model import Model

    model = Model.named(network, backend=backend, single_device=single_device, overlap_transfers=overlap_transfers)
    xp = model.devices.xp
    rng = np.random.default_rng(0)
    x = xp.asarray(rng.standard_normal((batch, model.input_channels, model.image_size, model.image_size),
                                       dtype=np.float32))
    labels = xp.asarray(rng.integers(0, model.num_classes, batch))
    times = []
    for r in range(warmup + repeats):
        if flush:
            flush()
        t = clock.start()
        model.train_step(x, labels)
        token = clock.stop(t)
        clock.synchronize()
        if r >= warmup:
            times.append(clock.seconds(token))
    return times


def train_step_flop(network, batch):
    """FLOP of a training step's conv and fc layers: forward, backward-data, backward-weights."""
    total = 0
    for case in layer_cases.network_layers(network):
        f = layer_cases.layer_flops(case, batch)
        total += case.count * sum(v for v in f.values() if v)
    return total


# --------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Config:
    batches: tuple = QUICK_BATCHES
    networks: tuple = layer_cases.NETWORKS
    layers: tuple = ()  # layer names to keep (all if empty)
    warmup: int = 1
    repeats: int = 3
    train_step: bool = True
    train_batches: tuple = (1, 2)
    cpu_backends: tuple = ("emu",)


def new_result(mode, config) -> dict:
    return {"mode": mode, "machine": {}, "clock": "", "rows": [], "validation": [], "notes": [],
            "needs_gpu": NEEDS_GPU if mode == "cpu" else [], "config": dataclasses.asdict(config),
            "complete": False}


def _row(network, case, batch, phase, impl, seconds, flop, peak):
    stats = summarize(seconds)
    gflops, pct = throughput(flop, stats["median_ms"], peak)
    return {"network": network, "layer": case.name if case else "train_step",
            "kind": case.kind if case else "train_step", "shape": case.describe() if case else "whole network",
            "count": case.count if case else 1, "batch": batch, "phase": phase, "impl": impl, **stats,
            "flop": flop, "gflops": gflops, "pct_peak": pct}


def _cases(config):
    """The layers of config.networks, then the extra layers (layer_cases.extra_layers: cuda-convnet2's
    CIFAR local3) in a run of both networks; with config.layers, those named only."""
    for network in config.networks:
        for case in layer_cases.network_layers(network):
            if not config.layers or case.name in config.layers:
                yield network, case
    for case in layer_cases.extra_layers():
        if case.name in config.layers or (not config.layers and set(layer_cases.NETWORKS) <= set(config.networks)):
            yield case.network, case


def _validated(result, case, batch, impl, errors):
    result["validation"].append({"network": case.network, "layer": case.name, "batch": batch, "impl": impl,
                                 "max_errors": {k: list(v) for k, v in errors.items()}})


def run_cpu(config: Config, log=print, result=None) -> dict:
    """The CPU runtime against PyTorch on the CPU."""
    import torch

    result = new_result("cpu", config) if result is None else result
    machine = cpu_info()
    machine["torch_threads"] = torch.get_num_threads()
    result["machine"], peak = machine, machine["peak_gflops"]
    clock = CpuClock()
    result["clock"] = clock.name
    rows = result["rows"]
    for network, case in _cases(config):
        for batch in config.batches:
            flops = layer_cases.layer_flops(case, batch)
            layer = TorchLayer(case, batch)
            for backend in config.cpu_backends:
                backends.set_backend(backend)
                impl = f"ours ({backend}, CPU)"
                run = layer_cases.make_layer_run(case, batch)
                _validated(result, case, batch, impl, validate_layer(run, layer, np.array, np.asarray))
                grad = np.random.default_rng(1).standard_normal((batch, *case.output_shape)).astype(np.float32)
                for phase, secs in measure_ours(run, clock, grad, config.warmup, config.repeats).items():
                    rows.append(_row(network, case, batch, phase, impl, secs, flops.get(phase), peak))
            for phase, secs in measure_torch(layer, clock, config.warmup, config.repeats).items():
                rows.append(_row(network, case, batch, phase, "PyTorch (CPU)", secs, flops.get(phase), peak))
            log(f"  {network}/{case.name} batch {batch}: done")
    if config.train_step:
        for network in config.networks:
            for batch in config.train_batches:
                flop = train_step_flop(network, batch)
                backend = config.cpu_backends[0]
                secs = measure_train_ours(network, batch, backend, clock, config.warmup, config.repeats)
                rows.append(_row(network, None, batch, "train_step", f"ours ({backend}, CPU)", secs, flop, peak))
                if network == "torchvision":
                    secs = measure_train_torch(batch, "cpu", clock, config.warmup, config.repeats)
                    rows.append(_row(network, None, batch, "train_step", "PyTorch (CPU)", secs, flop, peak))
                log(f"  {network} training step batch {batch}: done")
        if "krizhevsky2012" in config.networks:
            result["notes"].append("krizhevsky2012 training step: no PyTorch column (its two towers, rnorm and "
                                   "cross-tower layers have no stock PyTorch model; the per-layer rows compare every layer)")
    result["complete"] = True
    return result


def run_gpu(config: Config, log=print, result=None) -> dict:
    """Our cupy and cuda paths against cuDNN through PyTorch (FP32 and TF32), CUDA events. On the
    tests' CuPy stand-in everything runs (on the CPU) and is validated, and no timing is kept."""
    import cupy
    import torch

    result = new_result("gpu", config) if result is None else result
    stand_in = is_stand_in(cupy)
    torch_device = "cpu" if stand_in else "cuda"
    torch.backends.cudnn.benchmark = True
    machine = gpu_info()
    result["machine"], peak = machine, machine["peak_gflops"]
    flush_buffer = cupy.empty(2 * machine["l2_bytes"] // 4 + 1, np.float32)

    def flush():
        flush_buffer.fill(0)

    ours_clock = CudaEventClock("cupy")
    torch_clock = CpuClock() if stand_in else CudaEventClock("torch")
    step_clock = SyncedWallClock()
    result["clock"] = ("CUDA events per kernel or call (training step: wall clock with all GPUs synchronized), "
                       "L2 flushed before every repeat")
    if stand_in:
        result["mode"], result["stand_in"], result["clock"] = "gpu-standin", [], "none: " + STAND_IN_NOTE
        result["notes"].append(STAND_IN_NOTE)
    gpu_backends = [b for b in backends.GPU_BACKENDS if b in backends.available_backends()]

    def keep(network, case, batch, phase, impl, secs, flop):
        if stand_in:  # what would have been a row, without its times
            result["stand_in"].append({"network": network, "layer": case.name if case else "train_step",
                                       "batch": batch, "phase": phase, "impl": impl, "repeats": len(secs)})
        else:
            result["rows"].append(_row(network, case, batch, phase, impl, secs, flop, peak))

    for network, case in _cases(config):
        for batch in config.batches:
            flops = layer_cases.layer_flops(case, batch)
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
            reference = TorchLayer(case, batch, torch_device)
            for backend in gpu_backends:
                backends.set_backend(backend)
                impl = f"ours ({backend})"
                run = layer_cases.make_layer_run(case, batch, xp=cupy)
                _validated(result, case, batch, impl, validate_layer(run, reference, cupy.asarray, cupy.asnumpy))
                grad = cupy.asarray(np.random.default_rng(1).standard_normal((batch, *case.output_shape))
                                    .astype(np.float32))
                for phase, secs in measure_ours(run, ours_clock, grad, config.warmup, config.repeats, flush).items():
                    keep(network, case, batch, phase, impl, secs, flops.get(phase))
                if case.kind in ("conv", "fc") and backend == gpu_backends[0]:
                    # each version of kernels/gemm_tile.cuh's progression (the tile the model picks
                    # among that version's), next to the automatic choice above
                    for version in VERSIONS:
                        with gemm_tiles.version_only(version):
                            run = layer_cases.make_layer_run(case, batch, xp=cupy)
                            label = f"ours ({backend}, v{version})"
                            _validated(result, case, batch, label,
                                       validate_layer(run, reference, cupy.asarray, cupy.asnumpy))
                            for phase, secs in measure_ours(run, ours_clock, grad, config.warmup, config.repeats,
                                                            flush).items():
                                keep(network, case, batch, phase, label, secs, flops.get(phase))
            for tf32 in (False, True):
                torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
                layer = TorchLayer(case, batch, torch_device)
                impl = "cuDNN/cuBLAS (TF32)" if tf32 else "cuDNN/cuBLAS (FP32)"
                for phase, secs in measure_torch(layer, torch_clock, config.warmup, config.repeats,
                                                 None if stand_in else flush).items():
                    keep(network, case, batch, phase, impl, secs, flops.get(phase))
            log(f"  {network}/{case.name} batch {batch}: done")
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    count = cupy.cuda.runtime.getDeviceCount()
    result["notes"].append(
        f"{count} GPU(s): the two-tower network's towers run on GPUs {'0 and 1' if count > 1 else '0 (both)'}; "
        "'overlapped' rows queue the copies on streams (Model(overlap_transfers=True)), the others order them "
        "with events on each GPU's default stream")
    if config.train_step:
        for network in config.networks:
            for batch in config.train_batches:
                flop = train_step_flop(network, batch)
                for backend in gpu_backends:
                    secs = measure_train_ours(network, batch, backend, step_clock, config.warmup, config.repeats, flush)
                    keep(network, None, batch, "train_step", f"ours ({backend})", secs, flop)
                    if network == "krizhevsky2012":  # the split network (towers on GPUs d % count) vs one device
                        for label, options in (("one device", dict(single_device=True)),
                                               ("overlapped transfers", dict(overlap_transfers=True))):
                            secs = measure_train_ours(network, batch, backend, step_clock, config.warmup,
                                                      config.repeats, flush, **options)
                            keep(network, None, batch, "train_step", f"ours ({backend}, {label})", secs, flop)
                if network == "torchvision":
                    secs = measure_train_torch(batch, torch_device, CpuClock() if stand_in else step_clock,
                                               config.warmup, config.repeats, None if stand_in else flush)
                    keep(network, None, batch, "train_step", "cuDNN/cuBLAS (FP32)", secs, flop)
    result["complete"] = True
    return result
