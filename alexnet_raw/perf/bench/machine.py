"""The machine a benchmark ran on: CPU model and nominal peak, or the GPU's."""

from __future__ import annotations

import os
import platform
from pathlib import Path


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
