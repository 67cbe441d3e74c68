"""How fast the CPU runtime runs CUDA C: two GEMM-shaped kernels against the same loops in plain C++.

    python benchmarks/emu_gemm.py [--repeats 7] [--json out.json]

* register-tiled: 512x512x512, 64x64 tile per block of 64 threads, 8x8 outputs per thread,
  8-deep k-slices, two barriers per slice (benchmarks/emu_gemm_kernels.cu);
* barrier-heavy: 256x256x256, 16x16 threads, one output each, two barriers per 16 multiply-adds.

Each is checked against NumPy first, then timed on one OS thread and on all cores; the figure is
the best of the repeats (the median is printed too). The reference column holds HIP-CPU's figures
for the same two kernels on a 2-core machine of this project's kind, as given in issue #2.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from alexnet_raw import emu

HERE = Path(__file__).resolve().parent
HIP_CPU_GFLOPS = {"register-tiled": 15.6, "barrier-heavy": 0.64}

CASES = [
    # name, size, kernel, plain kernel, grid, block
    ("register-tiled", 512, "sgemm_register_tiled", "sgemm_register_tiled_plain", (8, 8), (64,)),
    ("barrier-heavy", 256, "sgemm_shared_16x16", "sgemm_shared_16x16_plain", (16, 16), (16, 16)),
]


def _time(kernel, grid, block, args, repeats):
    kernel(grid, block, args)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        kernel(grid, block, args)
        times.append(time.perf_counter() - t0)
    return min(times), float(np.median(times))


def run(repeats: int = 7):
    emulated = emu.RawModule(path=HERE / "emu_gemm_kernels.cu")
    plain = emu.RawModule(path=HERE / "emu_gemm_plain.cu")
    cores = os.cpu_count() or 1
    rows = []
    rng = np.random.default_rng(0)
    for name, n, kname, pname, grid, block in CASES:
        a = rng.standard_normal((n, n), dtype=np.float32)
        b = rng.standard_normal((n, n), dtype=np.float32)
        c = np.zeros((n, n), np.float32)
        args = (a, b, c, np.int32(n), np.int32(n), np.int32(n))
        flops = 2.0 * n**3
        expected = a.astype(np.float64) @ b.astype(np.float64)
        for label, module, kernel_name, blk in (("CUDA C on the CPU runtime", emulated, kname, block),
                                                ("same loops, plain C++", plain, pname, (1,))):
            kernel = module.get_function(kernel_name)
            for threads in (1, cores):
                emu.set_num_threads(threads)
                c.fill(0)
                kernel(grid, blk, args)
                err = float(np.abs(c - expected).max())
                if err > 1e-3 * n:
                    raise SystemExit(f"{kernel_name} gives wrong results (max error {err})")
                best, median = _time(kernel, grid, blk, args, repeats)
                rows.append({
                    "kernel": name,
                    "variant": label,
                    "threads": threads,
                    "gflops": flops / best / 1e9,
                    "gflops_median": flops / median / 1e9,
                    "hip_cpu_gflops": HIP_CPU_GFLOPS[name] if (label.startswith("CUDA") and threads == 2) else None,
                })
    emu.set_num_threads(0)
    return rows


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, {platform.system()}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    rows = run(args.repeats)
    print(f"machine: {machine()}")
    print(f"{'kernel':15s} {'variant':27s} {'threads':>7s} {'GFLOP/s':>8s} {'median':>8s} {'HIP-CPU':>8s}")
    for r in rows:
        ref = f"{r['hip_cpu_gflops']:8.2f}" if r["hip_cpu_gflops"] else f"{'':8s}"
        print(f"{r['kernel']:15s} {r['variant']:27s} {r['threads']:7d} {r['gflops']:8.2f} {r['gflops_median']:8.2f} {ref}")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
