"""The original's layer files (with their licence), copied from ../shared/reference/cuda-convnet-2012.
A module of its own, not conftest: test modules of several directories import helpers by name."""

from pathlib import Path

REFERENCE = Path(__file__).resolve().parent / "cuda-convnet-2012"
RUNS = ("145", "145-half", "147", "148", "150")


def reference_files(run):
    return REFERENCE / f"layers-{run}.cfg", REFERENCE / f"layer-params-{run}.cfg"
