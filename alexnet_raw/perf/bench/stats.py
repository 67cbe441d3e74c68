"""Statistics of repeated timings and achieved rates."""

from __future__ import annotations


import numpy as np

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
