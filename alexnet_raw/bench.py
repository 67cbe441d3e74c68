"""Layer-by-layer benchmark of our kernels against PyTorch, and of a whole training step.

    alexnet-raw bench [--out DIR] [--quick | --full] [--batch 1,2,4] [--network NAME] [--layer NAME]
                      [--repeats N] [--warmup N] [--no-train-step]

Every conv, pool, norm and fc layer of the krizhevsky2012 and torchvision networks (each distinct
shape once; kernel_launches.network_layers) is run through exactly what the engine calls
(kernel_launches.make_layer_run -> alexnet_raw.functional), forward then backward. Each kernel
launch is timed on its own and assigned to a phase by the arrays it touches: forward,
backward-data (writes the input gradient), backward-weights (writes a weight or bias gradient, or
feeds a kernel that does). PyTorch does the same work: F.conv2d / torch.nn.grad.conv2d_input /
conv2d_weight, matrix products for fc, autograd for pool and norm layers.

On a GPU: our `cupy` and `cuda` paths against cuDNN through PyTorch (cudnn.benchmark on; TF32 off
for the FP32 comparison, and a TF32 column), CUDA events, warm-up, the L2 cache flushed before
every repeat, batch sizes 1 to 256. Without a GPU: the CPU runtime against PyTorch's CPU kernels,
labelled as CPU figures, with the list of comparisons that need a GPU. Each row: median and
spread (interquartile range) of the repeats, achieved GFLOP/s, and the percentage of the device's
nominal FP32 peak. Our per-layer times are the sums of our kernels' times (on the CPU each
includes its launch's Python overhead); PyTorch's are its calls' times. Writes DIR/bench.json,
DIR/bench.md and DIR/bench.png.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from . import backends, kernel_launches

PHASES = ("forward", "backward_data", "backward_weights", "backward_other")
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


# --------------------------------------------------------------------------------------------
# statistics
def summarize(seconds) -> dict:
    """Median, extremes, quartiles and relative spread ((q3 - q1) / median) of repeated timings."""
    t = np.asarray(list(seconds), dtype=np.float64)
    if t.size == 0 or not np.all(np.isfinite(t)) or np.any(t < 0):
        raise ValueError(f"timings must be a non-empty list of finite non-negative seconds, got {list(seconds)!r}")
    q1, median, q3 = np.percentile(t, [25, 50, 75])
    return {
        "median_ms": 1e3 * median, "min_ms": 1e3 * t.min(), "max_ms": 1e3 * t.max(),
        "q1_ms": 1e3 * q1, "q3_ms": 1e3 * q3,
        "spread_pct": 100.0 * (q3 - q1) / median if median > 0 else 0.0, "repeats": int(t.size),
    }


def throughput(flop, median_ms, peak_gflops):
    """(GFLOP/s, % of peak) of `flop` done in `median_ms`; (None, None) without flop or time."""
    if not flop or not median_ms:
        return None, None
    gflops = flop / (median_ms * 1e-3) / 1e9
    return gflops, (100.0 * gflops / peak_gflops if peak_gflops else None)


# --------------------------------------------------------------------------------------------
# machines
def cpu_info(cpuinfo_text=None) -> dict:
    """CPU model, core count and a nominal FP32 peak (cores x clock x FLOP per cycle of its SIMD)."""
    if cpuinfo_text is None:
        try:
            cpuinfo_text = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo_text = ""
    fields = {}
    for line in cpuinfo_text.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    flags = set(fields.get("flags", "").split())
    cores = os.cpu_count() or 1
    mhz = float(fields["cpu MHz"]) if fields.get("cpu MHz") else None
    per_cycle = 64 if "avx512f" in flags else 32 if {"avx2", "fma"} <= flags else 16 if "avx" in flags else 8
    info = {"kind": "cpu", "name": fields.get("model name") or platform.processor() or platform.machine(),
            "cores": cores, "mhz": mhz, "fp32_flop_per_cycle": per_cycle,
            "platform": f"{platform.system()} {platform.machine()}"}
    if mhz:
        info["peak_gflops"] = cores * mhz * 1e-3 * per_cycle
        info["peak_source"] = (f"nominal estimate: {cores} cores x {mhz:.0f} MHz x {per_cycle} FP32 FLOP/cycle "
                               "(two FMA pipes of its widest SIMD), from /proc/cpuinfo")
    else:
        info["peak_gflops"], info["peak_source"] = None, "unknown (no clock in /proc/cpuinfo)"
    return info


FP32_LANES_PER_SM = {(7, 0): 64, (7, 5): 64, (8, 0): 64, (8, 6): 128, (8, 7): 128, (8, 9): 128, (9, 0): 128,
                     (10, 0): 128, (12, 0): 128}


def gpu_info(device=0) -> dict:
    """Name, SMs, clock, L2 size and nominal FP32 peak (SMs x FP32 lanes x 2 x boost clock)."""
    import cupy

    rt = cupy.cuda.runtime
    props = rt.getDeviceProperties(device)
    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    sms, cc = props["multiProcessorCount"], (props["major"], props["minor"])
    clock_khz = props.get("clockRate") or rt.deviceGetAttribute(13, device)  # cudaDevAttrClockRate
    l2 = props.get("l2CacheSize") or rt.deviceGetAttribute(38, device)  # cudaDevAttrL2CacheSize
    lanes = FP32_LANES_PER_SM.get(cc)
    peak = sms * lanes * 2 * clock_khz * 1e-6 if lanes else None
    return {"kind": "gpu", "name": name, "compute_capability": f"{cc[0]}.{cc[1]}", "sms": sms,
            "clock_mhz": clock_khz / 1e3, "l2_bytes": l2, "peak_gflops": peak,
            "peak_source": (f"nominal: {sms} SMs x {lanes} FP32 lanes x 2 x {clock_khz / 1e3:.0f} MHz" if lanes
                            else f"unknown FP32 lanes per SM for compute capability {cc}")}


# --------------------------------------------------------------------------------------------
# clocks: start() before the work, stop(token) after it, seconds(token) once the device is idle
class CpuClock:
    name = "wall clock (time.perf_counter)"

    def start(self):
        return time.perf_counter()

    def stop(self, token):
        return time.perf_counter() - token

    def seconds(self, token):
        return token

    def synchronize(self):
        pass


class CudaEventClock:
    """CUDA events on the current stream, through CuPy or PyTorch."""

    name = "CUDA events"

    def __init__(self, library="cupy"):
        self.library = library
        if library == "cupy":
            import cupy

            self._event = lambda: cupy.cuda.Event()
            self._elapsed_ms = cupy.cuda.get_elapsed_time
            self._sync = cupy.cuda.Device().synchronize
        else:
            import torch

            self._event = lambda: torch.cuda.Event(enable_timing=True)
            self._elapsed_ms = lambda a, b: a.elapsed_time(b)
            self._sync = torch.cuda.synchronize

    def start(self):
        e = self._event()
        e.record()
        return e

    def stop(self, token):
        e = self._event()
        e.record()
        return token, e

    def seconds(self, token):
        return self._elapsed_ms(*token) * 1e-3

    def synchronize(self):
        self._sync()


class SyncedWallClock(CpuClock):
    """Wall clock between points where every GPU is idle: for a whole training step, whose towers
    may run on two devices and which includes host work."""

    name = "wall clock, all GPUs synchronized"

    def __init__(self):
        import cupy

        self._cupy = cupy
        self._count = cupy.cuda.runtime.getDeviceCount()

    def synchronize(self):
        for d in range(self._count):
            with self._cupy.cuda.Device(d):
                self._cupy.cuda.Device(d).synchronize()

    def start(self):
        self.synchronize()
        return time.perf_counter()

    def stop(self, token):
        self.synchronize()
        return time.perf_counter() - token


# --------------------------------------------------------------------------------------------
# our side: every launch timed, then assigned to a phase
def _span(a):
    """(first byte, end) of an array's memory (NumPy or CuPy), None for scalars."""
    if isinstance(a, np.ndarray):
        start = a.__array_interface__["data"][0]
        return (start, start + a.nbytes)
    data = getattr(a, "data", None)
    if data is not None and hasattr(data, "ptr"):
        return (data.ptr, data.ptr + a.nbytes)
    return None


def _overlaps(a, b):
    return a is not None and b is not None and a[0] < b[1] and b[0] < a[1] and a[1] > a[0] and b[1] > b[0]


@contextlib.contextmanager
def timed_launches(clock):
    """Run the ops as usual, timing each kernel launch; yields the list of (Launch, token)."""
    original = backends.backend_for
    records = []

    class Timed:
        def __init__(self, real):
            self._real = real

        def launch(self, launch):
            token = clock.start()
            self._real.launch(launch)
            records.append((launch, clock.stop(token)))

        def __getattr__(self, name):
            return getattr(self._real, name)

    backends.backend_for = lambda array: Timed(original(array))
    try:
        yield records
    finally:
        backends.backend_for = original


def assign_phases(launches, data_grads, weight_grads, inputs):
    """Phase of each backward launch: backward_weights if it touches a weight/bias gradient,
    backward_data if it touches an input gradient, else the phase of a later launch that reads an
    intermediate array it touches (inputs excluded), else backward_other."""
    weights = [_span(g) for g in weight_grads]
    data = [_span(g) for g in data_grads]
    fixed = [_span(x) for x in inputs]
    spans = [[s for s in (_span(a) for a in launch.args) if s and not any(_overlaps(s, f) for f in fixed)]
             for launch in launches]
    phases = []
    for ss in spans:
        if any(_overlaps(s, w) for s in ss for w in weights):
            phases.append("backward_weights")
        elif any(_overlaps(s, d) for s in ss for d in data):
            phases.append("backward_data")
        else:
            phases.append(None)
    changed = True
    while changed:
        changed = False
        for i in range(len(phases)):
            if phases[i] is not None:
                continue
            for j in range(i + 1, len(phases)):
                if phases[j] and any(_overlaps(a, b) for a in spans[i] for b in spans[j]):
                    phases[i], changed = phases[j], True
                    break
    return [p or "backward_other" for p in phases]


def measure_ours(run, clock, grad, warmup, repeats, flush=None):
    """{phase: [seconds per repeat]} of one LayerRun: the sum of its launches' times per phase."""
    has_weights = bool(run.case.weight_shapes)
    out = {}
    for r in range(warmup + repeats):
        if flush:
            flush()
        with timed_launches(clock) as fwd:
            run.forward()
        with timed_launches(clock) as bwd:
            data_grads = run.backward(grad)
        clock.synchronize()
        if r < warmup:
            continue
        times = {"forward": sum(clock.seconds(t) for _, t in fwd)}
        if has_weights:
            inputs = [grad, *run.xs, *run.layer.params.values()]
            phases = assign_phases([lch for lch, _ in bwd], [g for g in data_grads if g is not None],
                                   list(run.weight_grads.values()), inputs)
        else:
            phases = ["backward_data"] * len(bwd)
        for (_, token), phase in zip(bwd, phases):
            times[phase] = times.get(phase, 0.0) + clock.seconds(token)
        times.setdefault("backward_data", 0.0)
        for phase, t in times.items():
            out.setdefault(phase, []).append(t)
    return out


# --------------------------------------------------------------------------------------------
# PyTorch's side of each layer
class TorchLayer:
    """The same layer in PyTorch: forward(), backward_data(), backward_weights() (each one
    timed phase), on `device` ("cpu" or "cuda"), float32."""

    def __init__(self, case, batch, device="cpu", seed=0):
        import torch

        self.torch, self.case = torch, case
        gen = torch.Generator().manual_seed(seed)

        def rand(*shape):
            return torch.randn(*shape, generator=gen).to(device)

        s = case.spec
        self.xs = [rand(batch, *shape) for shape in case.input_shapes]
        self.grad = rand(batch, *case.output_shape)
        self.ws = [rand(*w) * 0.01 for w in case.weight_shapes]
        self.b = rand(*case.bias_shape) * 0.01 if case.bias_shape else None
        if case.kind == "conv":
            # cuda-convnet's ceil rule: the missing right/bottom pixels read as zeros (padded once, untimed)
            self.conv = []
            for i, x in enumerate(self.xs):
                f, st, p = s.filter_size[i], s.stride[i], s.padding[i]
                extra = [max(0, (o - 1) * st + f - (n + 2 * p)) for o, n in zip(case.output_shape[1:], x.shape[2:])]
                xp = torch.nn.functional.pad(x, (0, extra[1], 0, extra[0])) if any(extra) else x
                self.conv.append((xp, dict(stride=st, padding=p, groups=s.groups[i])))
        elif case.kind in ("pool", "lrn", "rnorm"):
            self.x_leaf = self.xs[0].clone().requires_grad_()
            self.y = self._pointwise(self.x_leaf)

    def _pointwise(self, x):
        F, s = self.torch.nn.functional, self.case.spec
        if self.case.kind == "pool":
            return F.max_pool2d(x, s.size, s.stride, 0, ceil_mode=s.size_rule == "ceil")
        if self.case.kind == "lrn":
            return F.local_response_norm(x, s.size, s.scale, s.pow, s.min_div)
        lo, hi = s.size // 2, s.size - 1 - s.size // 2  # same-map window, zero outside
        mean = F.avg_pool2d(F.pad(x * x, (lo, hi, lo, hi)), s.size, stride=1)
        return x / (s.min_div + s.scale * mean) ** s.pow

    def forward(self):
        F = self.torch.nn.functional
        if self.case.kind == "conv":
            out = None
            for i, (xp, kw) in enumerate(self.conv):
                y = F.conv2d(xp, self.ws[i], self.b if i == 0 else None, **kw)
                out = y if out is None else out + y
            return out
        if self.case.kind == "fc":
            out = None
            for i, x in enumerate(self.xs):
                y = F.linear(x.reshape(x.shape[0], -1), self.ws[i], self.b if i == 0 else None)
                out = y if out is None else out + y
            return out
        return self._pointwise(self.xs[0])

    def backward_data(self):
        torch = self.torch
        if self.case.kind == "conv":
            return [torch.nn.grad.conv2d_input(xp.shape, self.ws[i], self.grad, **kw)
                    for i, (xp, kw) in enumerate(self.conv)]
        if self.case.kind == "fc":
            return [self.grad @ w for w in self.ws]
        return torch.autograd.grad(self.y, self.x_leaf, self.grad, retain_graph=True)

    def backward_weights(self):
        torch = self.torch
        if self.case.kind == "conv":
            gws = [torch.nn.grad.conv2d_weight(xp, self.ws[i].shape, self.grad, **kw)
                   for i, (xp, kw) in enumerate(self.conv)]
            return gws, self.grad.sum(dim=(0, 2, 3))
        if self.case.kind == "fc":
            return [self.grad.t() @ x.reshape(x.shape[0], -1) for x in self.xs], self.grad.sum(0)
        return None


def measure_torch(layer, clock, warmup, repeats, flush=None):
    phases = ["forward", "backward_data"] + (["backward_weights"] if layer.case.weight_shapes else [])
    out = {p: [] for p in phases}
    for r in range(warmup + repeats):
        if flush:
            flush()
        tokens = {}
        for p in phases:
            t = clock.start()
            getattr(layer, p)()
            tokens[p] = clock.stop(t)
        clock.synchronize()
        if r >= warmup:
            for p in phases:
                out[p].append(clock.seconds(tokens[p]))
    return out


# --------------------------------------------------------------------------------------------
# whole training step
def torch_alexnet(device="cpu"):
    """torchvision's AlexNet topology (the `torchvision` network) in plain torch.nn, for timing."""
    import torch.nn as nn

    return nn.Sequential(
        nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(), nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2), nn.Flatten(),
        nn.Dropout(), nn.Linear(9216, 4096), nn.ReLU(), nn.Dropout(), nn.Linear(4096, 4096), nn.ReLU(),
        nn.Linear(4096, 1000),
    ).to(device)


def measure_train_ours(network, batch, backend, clock, warmup, repeats, flush=None, single_device=False,
                       overlap_transfers=False):
    from .engine.model import Model

    model = Model.named(network, backend=backend, single_device=single_device, overlap_transfers=overlap_transfers)
    xp = model.devices.xp
    rng = np.random.default_rng(0)
    x = xp.asarray(rng.standard_normal((batch, model.input_channels, model.image_size, model.image_size),
                                       dtype=np.float32))
    labels = rng.integers(0, model.num_classes, batch)
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


def measure_train_torch(batch, device, clock, warmup, repeats, flush=None):
    import torch

    torch.manual_seed(0)
    net = torch_alexnet(device)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(batch, 3, 224, 224, device=device)
    labels = torch.randint(0, 1000, (batch,), device=device)
    times = []
    for r in range(warmup + repeats):
        if flush:
            flush()
        t = clock.start()
        opt.zero_grad(set_to_none=False)
        torch.nn.functional.cross_entropy(net(x), labels).backward()
        opt.step()
        token = clock.stop(t)
        clock.synchronize()
        if r >= warmup:
            times.append(clock.seconds(token))
    return times


def train_step_flop(network, batch):
    """FLOP of a training step's conv and fc layers: forward, backward-data, backward-weights."""
    total = 0
    for case in kernel_launches.network_layers(network):
        f = kernel_launches.layer_flops(case, batch)
        total += case.count * sum(v for v in f.values() if v)
    return total


# --------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Config:
    batches: tuple = QUICK_BATCHES
    networks: tuple = kernel_launches.NETWORKS
    layers: tuple = ()  # layer names to keep (all if empty)
    warmup: int = 1
    repeats: int = 3
    train_step: bool = True
    train_batches: tuple = (1, 2)
    cpu_backends: tuple = ("emu",)


def _row(network, case, batch, phase, impl, seconds, flop, peak):
    stats = summarize(seconds)
    gflops, pct = throughput(flop, stats["median_ms"], peak)
    return {"network": network, "layer": case.name if case else "train_step",
            "kind": case.kind if case else "train_step", "shape": case.describe() if case else "whole network",
            "count": case.count if case else 1, "batch": batch, "phase": phase, "impl": impl, **stats,
            "flop": flop, "gflops": gflops, "pct_peak": pct}


def _cases(config):
    for network in config.networks:
        for case in kernel_launches.network_layers(network):
            if not config.layers or case.name in config.layers:
                yield network, case


def run_cpu(config: Config, log=print) -> dict:
    """The CPU runtime against PyTorch on the CPU."""
    import torch

    machine = cpu_info()
    machine["torch_threads"] = torch.get_num_threads()
    peak = machine["peak_gflops"]
    clock = CpuClock()
    rows, notes = [], []
    for network, case in _cases(config):
        for batch in config.batches:
            flops = kernel_launches.layer_flops(case, batch)
            for backend in config.cpu_backends:
                backends.set_backend(backend)
                try:
                    run = kernel_launches.make_layer_run(case, batch)
                    out = run.forward()
                    grad = np.random.default_rng(1).standard_normal(out.shape).astype(np.float32)
                    measured = measure_ours(run, clock, grad, config.warmup, config.repeats)
                except Exception as e:  # an op not written yet
                    notes.append(f"{network}/{case.name}: ours not measured ({type(e).__name__}: {e})")
                    continue
                for phase, secs in measured.items():
                    rows.append(_row(network, case, batch, phase, f"ours ({backend}, CPU)", secs, flops.get(phase), peak))
            layer = TorchLayer(case, batch)
            for phase, secs in measure_torch(layer, clock, config.warmup, config.repeats).items():
                rows.append(_row(network, case, batch, phase, "PyTorch (CPU)", secs, flops.get(phase), peak))
            log(f"  {network}/{case.name} batch {batch}: done")
    if config.train_step:
        for network in config.networks:
            for batch in config.train_batches:
                flop = train_step_flop(network, batch)
                try:
                    secs = measure_train_ours(network, batch, config.cpu_backends[0], clock, config.warmup, config.repeats)
                    rows.append(_row(network, None, batch, "train_step", f"ours ({config.cpu_backends[0]}, CPU)",
                                     secs, flop, peak))
                except Exception as e:
                    notes.append(f"{network} training step: ours not measured ({type(e).__name__}: {e})")
                if network == "torchvision":
                    secs = measure_train_torch(batch, "cpu", clock, config.warmup, config.repeats)
                    rows.append(_row(network, None, batch, "train_step", "PyTorch (CPU)", secs, flop, peak))
                log(f"  {network} training step batch {batch}: done")
        if "krizhevsky2012" in config.networks:
            notes.append("krizhevsky2012 training step: no PyTorch column (its two towers, rnorm and cross-tower "
                         "layers have no stock PyTorch model; the per-layer rows compare every layer)")
    return {"mode": "cpu", "machine": machine, "clock": clock.name, "rows": rows, "notes": sorted(set(notes)),
            "needs_gpu": NEEDS_GPU, "config": dataclasses.asdict(config)}


def run_gpu(config: Config, log=print) -> dict:
    """Our cupy and cuda paths against cuDNN through PyTorch (FP32 and TF32), CUDA events."""
    import cupy
    import torch

    torch.backends.cudnn.benchmark = True
    machine = gpu_info()
    peak = machine["peak_gflops"]
    flush_buffer = cupy.empty(2 * machine["l2_bytes"] // 4 + 1, np.float32)

    def flush():
        flush_buffer.fill(0)

    ours_clock, torch_clock = CudaEventClock("cupy"), CudaEventClock("torch")
    gpu_backends = [b for b in backends.GPU_BACKENDS if b in backends.available_backends()]
    rows, notes = [], []
    for network, case in _cases(config):
        for batch in config.batches:
            flops = kernel_launches.layer_flops(case, batch)
            for backend in gpu_backends:
                backends.set_backend(backend)
                try:
                    run = kernel_launches.make_layer_run(case, batch, xp=cupy)
                    out = run.forward()
                    grad = cupy.asarray(np.random.default_rng(1).standard_normal(out.shape).astype(np.float32))
                    measured = measure_ours(run, ours_clock, grad, config.warmup, config.repeats, flush)
                except Exception as e:
                    notes.append(f"{network}/{case.name}: ours ({backend}) not measured ({type(e).__name__}: {e})")
                    continue
                for phase, secs in measured.items():
                    rows.append(_row(network, case, batch, phase, f"ours ({backend})", secs, flops.get(phase), peak))
            for tf32 in (False, True):
                torch.backends.cuda.matmul.allow_tf32 = tf32
                torch.backends.cudnn.allow_tf32 = tf32
                layer = TorchLayer(case, batch, "cuda")
                impl = "cuDNN/cuBLAS (TF32)" if tf32 else "cuDNN/cuBLAS (FP32)"
                for phase, secs in measure_torch(layer, torch_clock, config.warmup, config.repeats, flush).items():
                    rows.append(_row(network, case, batch, phase, impl, secs, flops.get(phase), peak))
            log(f"  {network}/{case.name} batch {batch}: done")
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    count = cupy.cuda.runtime.getDeviceCount()
    notes.append(f"{count} GPU(s): the two-tower network's towers run on GPUs {'0 and 1' if count > 1 else '0 (both)'}; "
                 "'overlapped' rows queue the copies on streams (Model(overlap_transfers=True)), the others copy "
                 "synchronously")
    step_clock = SyncedWallClock()
    if config.train_step:
        for network in config.networks:
            for batch in config.train_batches:
                flop = train_step_flop(network, batch)
                for backend in gpu_backends:
                    secs = measure_train_ours(network, batch, backend, step_clock, config.warmup, config.repeats, flush)
                    rows.append(_row(network, None, batch, "train_step", f"ours ({backend})", secs, flop, peak))
                    if network == "krizhevsky2012":  # the split network (towers on GPUs d % count) vs one device
                        for label, options in (("one device", dict(single_device=True)),
                                               ("overlapped transfers", dict(overlap_transfers=True))):
                            secs = measure_train_ours(network, batch, backend, step_clock, config.warmup,
                                                      config.repeats, flush, **options)
                            rows.append(_row(network, None, batch, "train_step", f"ours ({backend}, {label})", secs,
                                             flop, peak))
                if network == "torchvision":
                    secs = measure_train_torch(batch, "cuda", step_clock, config.warmup, config.repeats, flush)
                    rows.append(_row(network, None, batch, "train_step", "cuDNN/cuBLAS (FP32)", secs, flop, peak))
    return {"mode": "gpu", "machine": machine, "rows": rows,
            "clock": "CUDA events per kernel or call (training step: wall clock with all GPUs synchronized), "
                     "L2 flushed before every repeat",
            "notes": sorted(set(notes)), "needs_gpu": [], "config": dataclasses.asdict(config)}


# --------------------------------------------------------------------------------------------
# output
def _num(v):
    """Three significant digits, without exponents."""
    return f"{v:.0f}" if abs(v) >= 100 else f"{v:.3g}"


def _fmt_ms(row):
    return f"{_num(row['median_ms'])} ±{row['spread_pct']:.0f}%" if row else "–"


def _fmt_rate(row):
    if not row or row["gflops"] is None:
        return "–"
    pct = f" ({row['pct_peak']:.1f}%)" if row["pct_peak"] is not None else ""
    return f"{_num(row['gflops'])}{pct}"


def machine_line(result) -> str:
    m = result["machine"]
    if m["kind"] == "cpu":
        return (f"CPU figures, measured on {m['name']}, {m['cores']} cores ({m['platform']}); "
                f"PyTorch with {m.get('torch_threads', '?')} threads; {result['clock']}")
    return f"GPU figures, measured on {m['name']} (compute capability {m['compute_capability']}); {result['clock']}"


def _impls(rows):
    """Implementations in order of appearance, ours first."""
    names = list(dict.fromkeys(r["impl"] for r in rows))
    return [n for n in names if n.startswith("ours")] + [n for n in names if not n.startswith("ours")]


def format_markdown(result) -> str:
    rows, m = result["rows"], result["machine"]
    impls = _impls(rows)
    peak = f"{m['peak_gflops']:.0f} GFLOP/s" if m.get("peak_gflops") else "unknown"
    lines = ["# alexnet-raw bench", "", f"**{machine_line(result)}.**", "",
             f"FP32 peak used for the % columns: {peak} ({m['peak_source']}).", ""]
    if result["mode"] == "cpu":
        lines += ["These are CPU figures: our CUDA kernels on the project's CPU runtime against PyTorch's CPU "
                  "kernels. They say nothing about GPU speed. Comparisons that need a GPU:", ""]
        lines += [f"- {n}" for n in result["needs_gpu"]] + [""]
    lines += ["Times are medians of the repeats in ms, ± the interquartile range as a % of the median; "
              "rates are achieved GFLOP/s (% of the FP32 peak), for conv and fc layers.", ""]
    key = {}
    for r in rows:
        key.setdefault((r["network"], r["layer"], r["batch"], r["phase"]), {})[r["impl"]] = r
    head = "| layer | shape | batch | phase | " + " | ".join(f"{i} ms" for i in impls) + " | " + \
        " | ".join(f"{i} GFLOP/s" for i in impls) + " |"
    sep = "|" + "---|" * (4 + 2 * len(impls))
    for network in dict.fromkeys(r["network"] for r in rows):
        lines += [f"## {network}", "", head, sep]
        for (net, layer, batch, phase), by_impl in key.items():
            if net != network:
                continue
            any_row = next(iter(by_impl.values()))
            cells = [layer + (f" (x{any_row['count']})" if any_row["count"] > 1 else ""), any_row["shape"], str(batch),
                     phase.replace("_", " ")]
            cells += [_fmt_ms(by_impl.get(i)) for i in impls] + [_fmt_rate(by_impl.get(i)) for i in impls]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    scaling = format_scaling(result)
    if scaling:
        lines += ["## How time grows with batch size", "",
                  "Median ms per phase at each batch size, and the ratio of the largest batch's time per image "
                  "to the smallest's (below 1: larger batches use the machine better).", ""] + scaling + [""]
    if result["notes"]:
        lines += ["## Notes", ""] + [f"- {n}" for n in result["notes"]] + [""]
    return "\n".join(lines)


def format_scaling(result):
    batches = sorted({r["batch"] for r in result["rows"]})
    if len(batches) < 2:
        return []
    series = {}
    for r in result["rows"]:
        series.setdefault((r["network"], r["layer"], r["phase"], r["impl"]), {})[r["batch"]] = r["median_ms"]
    lines = ["| network | layer | phase | impl | " + " | ".join(f"N={b}" for b in batches) + " | per image, largest/smallest |",
             "|" + "---|" * (5 + len(batches))]
    for (network, layer, phase, impl), by_batch in series.items():
        have = sorted(by_batch)
        if len(have) < 2:
            continue
        ratio = (by_batch[have[-1]] / have[-1]) / (by_batch[have[0]] / have[0]) if by_batch[have[0]] else float("nan")
        lines.append(f"| {network} | {layer} | {phase.replace('_', ' ')} | {impl} | "
                     + " | ".join(_num(by_batch[b]) if b in by_batch else "–" for b in batches) + f" | {ratio:.2f} |")
    return lines


_SHORT = {"krizhevsky2012": "k2012", "torchvision": "tv"}


def _short(row):
    return f"{_SHORT.get(row['network'], row['network'])}/{row['layer']}"


def write_chart(result, path):
    """Two panels: forward+backward time per layer at the largest batch (one bar per impl), and
    time against batch size (training step, or the layers' sum if there is none)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    impls = _impls(rows)
    fig, (a, b) = plt.subplots(1, 2, figsize=(14, 5.5), gridspec_kw={"width_ratios": [3, 2]})
    layer_rows = [r for r in rows if r["phase"] != "train_step"]
    if layer_rows:
        top = max(r["batch"] for r in layer_rows)
        labels = list(dict.fromkeys(_short(r) for r in layer_rows if r["batch"] == top))
        width = 0.8 / max(1, len(impls))
        for k, impl in enumerate(impls):
            totals = []
            for label in labels:
                t = sum(r["median_ms"] for r in layer_rows if r["batch"] == top and r["impl"] == impl
                        and _short(r) == label)
                totals.append(t if t > 0 else np.nan)
            a.bar(np.arange(len(labels)) + k * width, totals, width, label=impl)
        a.set_xticks(np.arange(len(labels)) + 0.4 - width / 2, labels, rotation=60, ha="right", fontsize=8)
        a.set_yscale("log")
        a.set_ylabel("forward + backward, median ms")
        a.set_title(f"per layer, batch {top}")
        a.legend(fontsize=8)
    steps = [r for r in rows if r["phase"] == "train_step"]
    series = {}
    for r in steps or layer_rows:
        key = (r["network"], r["impl"])
        series.setdefault(key, {}).setdefault(r["batch"], 0.0)
        series[key][r["batch"]] += r["median_ms"]
    for (network, impl), by_batch in series.items():
        bs = sorted(by_batch)
        b.plot(bs, [by_batch[x] for x in bs], marker="o", label=f"{network}: {impl}")
    b.set_xscale("log", base=2)
    b.set_yscale("log")
    b.set_xlabel("batch size")
    b.set_ylabel("median ms")
    b.set_title("training step" if steps else "all layers, forward + backward")
    b.legend(fontsize=8)
    fig.suptitle(machine_line(result), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_outputs(result, out_dir) -> dict:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "bench.json", "md": out / "bench.md", "png": out / "bench.png"}
    paths["json"].write_text(json.dumps(result, indent=2, default=float) + "\n", encoding="utf-8")
    paths["md"].write_text(format_markdown(result), encoding="utf-8")
    write_chart(result, paths["png"])
    return paths


# --------------------------------------------------------------------------------------------
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
    ap = argparse.ArgumentParser(prog="alexnet-raw bench", description=__doc__.splitlines()[0])
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
    if on_gpu:
        print("GPU found: timing our cupy and cuda paths against cuDNN/cuBLAS through PyTorch")
        result = run_gpu(config)
    else:
        print("No GPU here: these are CPU figures (our kernels on the CPU runtime against PyTorch on the CPU).")
        print("Comparisons that need a GPU:")
        for n in NEEDS_GPU:
            print(f"  - {n}")
        result = run_cpu(config)
    paths = write_outputs(result, args.out)
    print(machine_line(result))
    print(format_markdown(result) if result["rows"] else "no rows measured")
    print(f"wrote {paths['json']}, {paths['md']}, {paths['png']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
