"""`alexnet-raw bench --processes 1,2`: images/s of a data-parallel training step on 1, 2, ... MPI
processes of this machine, measured in one run, and the scaling efficiency.

Strong scaling: the same global batch for every process count, each process computing its shard
(process_worker.py). On the CPU runtime every process runs the kernels on the same number of
threads, cores // (the largest count) (ALEXNET_RAW_EMU_THREADS), so P processes have P times the
cores of one, as P GPUs have P times one GPU: efficiency of P processes = (images/s with P) /
(P x images/s with 1). Without a GPU these are CPU figures and are labelled so. Writes
DIR/processes.json and DIR/processes.md.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from .machine import cpu_info
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
        raise ProcessBenchError(f"{processes} process(es): expected one JSON line from rank 0, got {done.stdout[-1500:]!r}")
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
        stats = summarize(figures["step_seconds"])
        rows.append({"processes": p, "step_ms": stats, "images_per_second": batch / (stats["median_ms"] / 1e3),
                     "sent_bytes_per_step": figures["sent_bytes_per_step"], "world": figures["world"],
                     "threads_per_process": threads})
    base = next((r for r in rows if r["processes"] == 1), None)
    for r in rows:
        r["efficiency"] = (r["images_per_second"] / (r["processes"] * base["images_per_second"])) if base else None
    return {"kind": "cpu", "label": "CPU figures: the CPU runtime, each MPI process on its own share of this machine's cores",
            "machine": machine, "network": network, "batch": batch, "warmup": warmup, "repeats": repeats,
            "rows": rows}


def format_markdown(result):
    m = result["machine"]
    lines = [f"{result['label']}; {m['name']}, {m['cores']} cores; {result['network']}, global batch "
             f"{result['batch']}, median of {result['repeats']} steps", "",
             "| processes | threads each | step ms (median, IQR) | images/s | efficiency | gradient MiB sent per rank per step |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in result["rows"]:
        eff = f"{100 * r['efficiency']:.0f}%" if r["efficiency"] is not None else "n/a"
        sent = ", ".join(f"{b / 2**20:.2f}" for b in r["sent_bytes_per_step"])
        iqr = r["step_ms"]["q3_ms"] - r["step_ms"]["q1_ms"]
        lines.append(f"| {r['processes']} | {r['threads_per_process']} | {r['step_ms']['median_ms']:.1f} "
                     f"({iqr:.1f}) | {r['images_per_second']:.1f} | {eff} | {sent} |")
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
