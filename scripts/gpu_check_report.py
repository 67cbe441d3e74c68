"""The report of scripts/gpu_check.sh: reads OUTDIR (steps.jsonl, environment.json, logs/, bench/)
and writes OUTDIR/gpu_check.json and OUTDIR/gpu_check.md; prints the Markdown.

    python scripts/gpu_check_report.py OUTDIR "GPU name, driver, memory" TOTAL_SECONDS

Exit status: 0 if every step ran and passed, 1 otherwise.
"""

from __future__ import annotations

import csv
import io
import json
import re
import sys
from pathlib import Path

NCU_METRICS = {
    "sm__warps_active.avg.pct_of_peak_sustained_active": "achieved occupancy %",
    "sm__pipe_fma_cycles_active.avg.pct_of_peak_sustained_active": "FMA pipe active %",
    "sm__inst_executed_pipe_fma.avg.pct_of_peak_sustained_active": "FMA pipe issue %",
    "gpu__time_duration.sum": "duration",
}


def _tail(path: Path, lines=12) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _find(path: Path, pattern: str):
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    return re.findall(pattern, text, re.M)


def parse_ncu(text: str):
    """Rows of ncu's --csv --page raw output: [{kernel, metric label: value}], one per profiled launch."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith('"ID"')), None)
    if start is None:
        return []
    body = [line for line in lines[start:] if line.startswith('"')]
    rows = list(csv.DictReader(io.StringIO("\n".join(body))))
    out = []
    for row in rows:
        if not row.get("ID", "").strip().isdigit():
            continue  # the units row
        name = row.get("Kernel Name") or row.get("Function Name") or "?"
        entry = {"kernel": name}
        for metric, label in NCU_METRICS.items():
            value = row.get(metric)
            if value not in (None, ""):
                try:
                    entry[label] = float(value.replace(",", ""))
                except ValueError:
                    entry[label] = value
        out.append(entry)
    return out


def summarize_ncu(rows):
    """Per kernel: launches, mean of each metric."""
    by_kernel = {}
    for row in rows:
        by_kernel.setdefault(row["kernel"], []).append(row)
    summary = []
    for kernel, entries in sorted(by_kernel.items()):
        item = {"kernel": kernel, "launches": len(entries)}
        for label in NCU_METRICS.values():
            values = [e[label] for e in entries if isinstance(e.get(label), float)]
            if values:
                item[label] = sum(values) / len(values)
        summary.append(item)
    return summary


def model_next_to_measured(rows):
    """Each measured forward of one of our conv and fc layers (the automatic choice of kernel, not
    the bench's per-version rows) next to what the issue model of alexnet_raw/ops/gemm_tiles.py
    predicts for it (the kernel report's roofline rows at that batch), so that the model can be
    judged: [{layer, batch, impl, measured_ms, model_ms, tile}]."""
    from alexnet_raw.perf import kernel_report

    models, out = {}, []
    for r in rows:
        impl = str(r.get("impl", ""))
        if r.get("kind") not in ("conv", "fc") or r.get("phase") != "forward" or not impl.startswith("ours") \
                or ", v" in impl:
            continue
        batch = r["batch"]
        if batch not in models:
            models[batch] = {row["layer"].split(" (x")[0]: row for row in kernel_report.roofline(batch)}
        model = models[batch].get(f"{r['network']}/{r['layer']}")
        if model and model.get("model_seconds"):
            out.append({"layer": f"{r['network']}/{r['layer']}", "batch": batch, "impl": r["impl"],
                        "measured_ms": r["median_ms"], "model_ms": model["model_seconds"] * 1e3,
                        "tile": model["tile"]})
    return out


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out = Path(argv[0])
    gpu = argv[1] if len(argv) > 1 else "?"
    total = int(argv[2]) if len(argv) > 2 else None
    steps = [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines() if line.strip()]
    env = {}
    if (out / "environment.json").is_file():
        env = json.loads((out / "environment.json").read_text())
    logs = out / "logs"
    report = {"gpu": gpu, "total_seconds": total, "environment": env, "steps": steps}
    for s in steps:
        s["log_tail"] = _tail(logs / f"{s['step']}.log")
    report["verify"] = {b: _find(logs / f"verify-{b}.log", r"^\d+ passed, \d+ failed$") for b in ("cupy", "cuda")}
    report["tests"] = _find(logs / "tests.log", r"^=*\s*(\d+ (?:passed|failed).*?)\s*=*$")[-1:]
    report["sanitizers"] = {t: _find(logs / f"sanitizer-{t}.log", r"ERROR SUMMARY: .*$")
                            for t in ("memcheck", "racecheck", "synccheck")}
    ncu_rows = parse_ncu((logs / "ncu.log").read_text(errors="replace")) if (logs / "ncu.log").is_file() else []
    report["ncu"] = summarize_ncu(ncu_rows)
    bench_json = out / "bench" / "bench.json"
    if bench_json.is_file():
        bench = json.loads(bench_json.read_text())
        report["bench"] = {
            "machine": bench.get("machine"), "error": bench.get("error"), "complete": bench.get("complete"),
            "validated": len(bench.get("validation", [])),
            "train_steps": [{k: r[k] for k in ("network", "batch", "impl", "median_ms", "spread_pct")}
                            for r in bench.get("rows", []) if r["phase"] == "train_step"],
            "rows": len(bench.get("rows", [])), "markdown": str(out / "bench" / "bench.md"),
            "model": model_next_to_measured(bench.get("rows", [])),
        }
    ok = all(s.get("rc") == 0 for s in steps)
    report["passed"] = ok
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n")
    md = format_markdown(report)
    (out / "gpu_check.md").write_text(md)
    print(md)
    return 0 if ok else 1


def format_markdown(report) -> str:
    env = report["environment"]
    pkgs = env.get("packages", {})
    lines = ["# GPU check (scripts/gpu_check.sh)", "",
             f"- GPU: {report['gpu']}",
             f"- Python {env.get('python', '?')} ({env.get('executable', '?')}); PyTorch {pkgs.get('torch', '?')} "
             f"(CUDA {env.get('torch_cuda', '?')}; {'the pin 2.13.0' if env.get('torch_pin_met') else 'not the pinned 2.13.0: the reference tests ran against this one'}), "
             f"CuPy {pkgs.get('cupy-cuda13x', '?')}, NumPy {pkgs.get('numpy', '?')}",
             f"- nvcc: {' '.join(env.get('nvcc', ['?']))}; compute-sanitizer: {' '.join(env.get('compute-sanitizer', ['?']))}; "
             f"ncu: {' '.join(env.get('ncu', ['?']))}",
             f"- missing packages: {', '.join(env.get('missing', [])) or 'none'}",
             f"- total: {report['total_seconds']} s", "",
             "| step | exit | seconds | note |", "|---|---|---|---|"]
    for s in report["steps"]:
        note = s.get("skipped") or ("timed out" if s.get("timed_out") else "")
        lines.append(f"| {s['step']} | {s.get('rc')} | {s.get('seconds')} | {note} |")
    lines += ["", "## Results", ""]
    for backend, found in report["verify"].items():
        lines.append(f"- verify --backend {backend}: {found[-1] if found else 'no result line'}")
    lines.append(f"- tests (GPU paths on this GPU): {report['tests'][-1] if report['tests'] else 'no result line'}")
    for tool, found in report["sanitizers"].items():
        lines.append(f"- compute-sanitizer {tool}: {found[-1] if found else 'no summary line'}")
    bench = report.get("bench")
    if bench:
        lines.append(f"- bench --quick: {bench['rows']} rows, {bench['validated']} layer checks against PyTorch"
                     + (f"; stopped: {bench['error']}" if bench.get("error") else "") + f" ({bench['markdown']})")
        for r in bench["train_steps"]:
            lines.append(f"  - training step {r['network']} batch {r['batch']}, {r['impl']}: "
                         f"{r['median_ms']:.3g} ms ±{r['spread_pct']:.0f}%")
        if bench.get("model"):
            lines += ["", "## Conv and fc forward: measured next to the issue model (alexnet_raw/ops/gemm_tiles.py, a model "
                      "of an H100 SXM)", "", "| layer | batch | ours | tile | measured ms | model ms | measured / model |",
                      "|---|---|---|---|---|---|---|"]
            for m in bench["model"]:
                lines.append(f"| {m['layer']} | {m['batch']} | {m['impl']} | {m['tile'][0]} x {m['tile'][1]} "
                             f"v{m['tile'][2]} | "
                             f"{m['measured_ms']:.3g} | {m['model_ms']:.3g} | {m['measured_ms'] / m['model_ms']:.2f} |")
    if report["ncu"]:
        labels = list(NCU_METRICS.values())
        lines += ["", "## ncu: conv and GEMM kernels of one torchvision training step (batch 32, cuda backend)", "",
                  "| kernel | launches | " + " | ".join(labels) + " |", "|---|---|" + "---|" * len(labels)]
        for k in report["ncu"]:
            cells = [f"{k[label]:.1f}" if isinstance(k.get(label), float) else "–" for label in labels]
            lines.append(f"| `{k['kernel'][:90]}` | {k['launches']} | " + " | ".join(cells) + " |")
    failed = [s for s in report["steps"] if s.get("rc") != 0]
    if failed:
        lines += ["", "## Failed or skipped steps (last lines of their logs)", ""]
        for s in failed:
            lines += [f"### {s['step']}", "", "```", s.get("log_tail", ""), "```", ""]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
