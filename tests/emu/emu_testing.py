"""Plain helpers for the CPU runtime's conformance tests (imported by the test modules)."""

import numpy as np

from alexnet_raw import emu

# forward, reverse and two seeded random orders of a block's threads between barriers
ALL_SCHEDULES = (("forward", 0), ("reverse", 0), ("random", 1), ("random", 20261125))


def run_under(schedules, fn):
    """[fn() under each (kind, seed) schedule], each result copied."""
    results = []
    for kind, seed in schedules:
        with emu.schedule(kind, seed):
            results.append(np.copy(fn()))
    return results


def same_bits(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


def source_line(code: str, marker: str) -> int:
    """1-based line of the only line of ``code`` that contains ``marker``."""
    lines = [i + 1 for i, text in enumerate(code.splitlines()) if marker in text]
    assert len(lines) == 1, f"marker {marker!r} must occur on exactly one line"
    return lines[0]
