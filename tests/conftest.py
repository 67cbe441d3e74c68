"""Fixtures shared by every test directory: the CuPy stand-in (tests/cupy_standin), which runs
alexnet_raw's GPU code paths on the CPU runtime (tests/gpu_paths.py says when a real GPU is used
instead).

This directory is on sys.path (pytest imports this file rootdir-relative), so test modules import
`cupy_standin` and `gpu_paths` by name.
"""

import pytest

from gpu_paths import strict_standin


@pytest.fixture
def gpu_standin():
    """`import cupy` is the stand-in (one simulated GPU) for the test; yields its module."""
    with strict_standin(1) as cp:
        yield cp


@pytest.fixture
def gpu_standin_2():
    """The stand-in with two simulated GPUs."""
    with strict_standin(2) as cp:
        yield cp
