"""`alexnet-raw bench --processes 1,2`: images/s of a data-parallel training step on 1, 2, ... MPI
processes of this machine, measured in one run, and the scaling efficiency.

Strong scaling: the same global batch for every process count, each process computing its shard
(process_worker.py). On the CPU runtime every process runs the kernels on the same number of
threads, cores // (the largest count) (ALEXNET_RAW_EMU_THREADS), so P processes have P times the
cores of one, as P GPUs have P times one GPU: efficiency of P processes = (images/s with P) /
(P x images/s with 1). Without a GPU these are CPU figures and are labelled so. On GPUs the steps
run on the GPU backend with NCCL's sums, and each layer's gradient all-reduce is timed on its own:
its bus bandwidth, next to what the message sizes predict (bus_bandwidth). Writes
DIR/processes.json and DIR/processes.md.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from .machine import cpu_info, gpu_info
from .stats import summarize


class ProcessBenchError(Exception):
    """The process benchmark cannot run here (no MPI launcher) or a run of it failed."""


def mpiexec():
    beside = Path(sys.executable).parent / "mpiexec"
    found = str(beside) if beside.exists() else shutil.which("mpiexec")
    if not found:
        raise ProcessBenchError("--processes needs an MPI launcher (mpiexec): pip install \".[distributed]\"")
    return found


def measure(processes, network, batch, warmup, repeats, threads, timeout=3600):
    """One process count's figures: {"processes", "step_seconds", "sent_bytes_per_step", "world"}."""
    isolated = ["-P"] if sys.version_info >= (3, 11) else []  # this installation's package, not the cwd's
    worker = [sys.executable, *isolated, "-m", "alexnet_raw.perf.bench.process_worker", network, str(batch),
              str(warmup), str(repeats)]
    command = worker if processes == 1 else [mpiexec(), "-n", str(processes), *worker]
    env = dict(os.environ)
    env["ALEXNET_RAW_EMU_THREADS"] = str(threads)
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    if done.returncode != 0:
        raise ProcessBenchError(f"{processes} process(es) failed (status {done.returncode}): "
                                f"{done.stderr.strip()[-1500:]}")
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if len(lines) != 1:
        raise ProcessBenchError(f"{processes} process(es): expected one JSON line from rank 0, got "
                                f"{done.stdout[-1500:]!r}")
    return json.loads(lines[0])


def run_processes(counts, network, batch, warmup, repeats, log=print):
    if batch < max(counts):
        raise ProcessBenchError(f"--batch {batch} cannot be shared by {max(counts)} processes: expected at least "
                                f"{max(counts)} images")
    machine = cpu_info()
    threads = max(1, (machine["cores"] or 1) // max(counts))
    rows = []
    for p in counts:
        log(f"{p} process(es) of {threads} thread(s), {network}, global batch {batch}: {warmup} warm-up and "
            f"{repeats} timed steps ...")
        figures = measure(p, network, batch, warmup, repeats, threads)
        stand_in = bool(figures.get("stand_in"))
        row = {"processes": p, "backend": figures.get("backend"), "stand_in": stand_in,
               "sent_bytes_per_step": figures["sent_bytes_per_step"], "world": figures["world"],
               "threads_per_process": threads, "step_ms": None, "images_per_second": None}
        if not stand_in:  # the stand-in's times are CPU times of simulated GPUs: none is kept
            row["step_ms"] = summarize(figures["step_seconds"])
            row["images_per_second"] = batch / (row["step_ms"]["median_ms"] / 1e3)
        if figures.get("buckets") is not None:
            row["buckets"] = bus_bandwidth(figures["buckets"], p, stand_in)
        rows.append(row)
    base = next((r for r in rows if r["processes"] == 1 and r["images_per_second"]), None)
    for r in rows:
        r["efficiency"] = (r["images_per_second"] / (r["processes"] * base["images_per_second"])) \
            if base and r["images_per_second"] else None
    on_gpu = any(r["backend"] in ("cupy", "cuda") for r in rows)
    if any(r["stand_in"] for r in rows):
        kind, label = "gpu-standin", ("the CuPy stand-in (the tests' CPU double of CuPy and NCCL) is not a GPU: every "
                                      "step and all-reduce ran, no timing of it is written")
    elif on_gpu:
        kind, label = "gpu", "GPU figures: the GPU backend, NCCL's all-reduce between the processes"
        machine = gpu_info()
    else:
        kind, label = "cpu", "CPU figures: the CPU runtime, each MPI process on its own share of this machine's cores"
    return {"kind": kind, "label": label, "machine": machine, "network": network, "batch": batch, "warmup": warmup,
            "repeats": repeats, "rows": rows}


def bus_bandwidth(buckets, processes, stand_in=False):
    """NCCL's bus bandwidth of each bucket's all-reduce (algorithm bandwidth bytes / time, times
    2 (P - 1) / P, the share of the data each rank's link carries in a ring: NCCL's nccl-tests
    definition), and what the message sizes predict: each bucket at the best bus bandwidth
    measured, their sum the all-reduce time of a step. On the CuPy stand-in no time is kept."""
    factor = 2 * (processes - 1) / processes
    out = {"factor": factor, "rows": []}
    for b in buckets:
        row = {"layer": b["layer"], "bytes": b["bytes"]}
        if not stand_in:
            median = summarize(b["seconds"])["median_ms"] * 1e-3
            row.update(seconds=median, bus_gbps=factor * b["bytes"] / median / 1e9 if median > 0 else None)
        out["rows"].append(row)
    if stand_in:
        out["note"] = ("the CuPy stand-in (the tests' CPU double of CuPy and NCCL) is not a GPU: every all-reduce ran, "
                       "no timing of it is written")
        return out
    best = max((r["bus_gbps"] for r in out["rows"] if r["bus_gbps"]), default=None)
    out["best_bus_gbps"] = best
    out["measured_seconds"] = sum(r["seconds"] for r in out["rows"])
    out["predicted_seconds"] = sum(factor * r["bytes"] / (best * 1e9) for r in out["rows"]) if best else None
    return out


def format_markdown(result):
    m = result["machine"]
    where = f"{m['name']}, {m['cores']} cores" if m.get("kind") == "cpu" else m.get("name", "GPU")
    lines = [f"{result['label']}; {where}; {result['network']}, global batch "
             f"{result['batch']}, median of {result['repeats']} steps", "",
             "| processes | threads each | step ms (median, IQR) | images/s | efficiency "
             "| gradient MiB sent per rank per step |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in result["rows"]:
        eff = f"{100 * r['efficiency']:.0f}%" if r["efficiency"] is not None else "n/a"
        sent = ", ".join(f"{b / 2**20:.2f}" for b in r["sent_bytes_per_step"]) \
            if r["sent_bytes_per_step"] is not None else "NCCL's"
        if r["step_ms"] is None:
            lines.append(f"| {r['processes']} | {r['threads_per_process']} | not timed | n/a | {eff} | {sent} |")
            continue
        iqr = r["step_ms"]["q3_ms"] - r["step_ms"]["q1_ms"]
        lines.append(f"| {r['processes']} | {r['threads_per_process']} | {r['step_ms']['median_ms']:.1f} "
                     f"({iqr:.1f}) | {r['images_per_second']:.1f} | {eff} | {sent} |")
    for r in result["rows"]:
        b = r.get("buckets")
        if not b:
            continue
        lines += ["", f"NCCL all-reduce of each layer's gradient, {r['processes']} processes "
                      f"(bus bandwidth = bytes / time x {b['factor']:.2f}):"]
        if "note" in b:
            lines.append(f"{len(b['rows'])} buckets, {sum(x['bytes'] for x in b['rows']) / 2**20:.2f} MiB; {b['note']}")
            continue
        lines += ["", "| layer | MiB | ms | bus GB/s |", "| --- | --- | --- | --- |"]
        lines += [f"| {x['layer']} | {x['bytes'] / 2**20:.2f} | {1e3 * x['seconds']:.3f} | {x['bus_gbps']:.1f} |"
                  for x in b["rows"]]
        lines.append(f"per step: {1e3 * b['measured_seconds']:.2f} ms measured, {1e3 * b['predicted_seconds']:.2f} ms "
                     f"predicted by the message sizes at the best bus bandwidth ({b['best_bus_gbps']:.1f} GB/s)")
    return "\n".join(lines)


def write_outputs(result, out_dir):
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "processes.json", "md": out / "processes.md"}
    for key, text in (("json", json.dumps(result, indent=2)), ("md", format_markdown(result) + "\n")):
        tmp = paths[key].with_name(paths[key].name + ".tmp")
        tmp.write_text(text)
        tmp.replace(paths[key])
    return paths
