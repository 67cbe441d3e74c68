"""Benchmark output: Markdown tables (figures and scaling), a PNG chart, and the three files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

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
    if result["mode"] == "gpu-standin":
        return "No timings: " + result["clock"].removeprefix("none: ")
    if not m:
        return "Nothing measured: the run stopped before it read the machine"
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
    lines = ["# alexnet-raw bench", "", f"**{machine_line(result)}.**", ""]
    if result.get("error"):
        lines += [f"**The run stopped: {result['error']}.** What follows was measured before that.", ""]
    if m:
        lines += [f"FP32 peak used for the % columns: {peak} ({m.get('peak_source', 'unknown')}).", ""]
    validated = result.get("validation", [])
    if validated:
        lines += [f"Every layer timed was first checked against PyTorch on the same inputs ({len(validated)} "
                  "layer/batch/path checks, all within alexnet_raw/checks/tolerances.py; largest errors in bench.json).", ""]
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
    if not rows:
        a.text(0.5, 0.5, "no timings", ha="center", va="center", transform=a.transAxes)
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
    if series:
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
