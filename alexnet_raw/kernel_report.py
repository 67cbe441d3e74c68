"""Static report of every kernel for sm_80 and sm_90: registers, shared memory, stack, spills.

    alexnet-raw kernels [--compiler nvrtc|nvcc] [--json FILE]
    python -m alexnet_raw.kernel_report

The figures are ptxas's, for exactly the code each GPU backend builds (gpu_compile.py). No GPU is
needed: this is how the kernels' quality is visible on machines that have none.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from . import gpu_compile, kernel_sources


def collect(compiler: str = "nvrtc", archs=gpu_compile.ARCHITECTURES):
    compile_fn = {"nvrtc": gpu_compile.nvrtc_compile, "nvcc": gpu_compile.nvcc_compile}[compiler]
    rows = []
    for source in kernel_sources.kernel_files():
        for arch in archs:
            build = compile_fn(source, arch)
            for name in kernel_sources.instantiations(source):
                r = build.kernels[name]
                rows.append({"source": source, **dataclasses.asdict(r), "spills": r.spills})
    return rows


def format_table(rows) -> str:
    head = f"{'kernel':44s} {'arch':6s} {'regs':>5s} {'smem B':>7s} {'stack B':>8s} {'spill st/ld B':>14s}"
    lines = [head, "-" * len(head)]
    for r in rows:
        spill = f"{r['spill_store_bytes']}/{r['spill_load_bytes']}"
        flag = "  SPILLS" if r["spills"] else ""
        lines.append(
            f"{r['kernel']:44s} {r['arch']:6s} {r['registers']:5d} {r['shared_bytes']:7d} {r['stack_bytes']:8d} "
            f"{spill:>14s}{flag}"
        )
    spilling = sorted({f"{r['kernel']} ({r['arch']})" for r in rows if r["spills"]})
    lines.append("")
    lines.append("kernels that spill: " + (", ".join(spilling) if spilling else "none"))
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="alexnet-raw kernels", description=__doc__.splitlines()[0])
    ap.add_argument("--compiler", choices=("nvrtc", "nvcc"), default="nvrtc",
                    help="nvrtc: what the cupy backend builds; nvcc: what the cuda extension builds")
    ap.add_argument("--json", metavar="FILE", help="also write the rows as a JSON list")
    args = ap.parse_args(argv)
    try:
        rows = collect(args.compiler)
    except gpu_compile.GpuCompileError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"compiler: {args.compiler}; figures from ptxas -v; no GPU needed or used")
    print(format_table(rows))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
