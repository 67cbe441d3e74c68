"""Fixtures of the CPU runtime's conformance tests (alexnet_raw/emu): hang watchdog, two OS threads.

Every test here compiles small CUDA C modules with ``emu.RawModule`` and checks what the runtime
promises (README, "The CPU runtime"): barrier and warp semantics, shared memory, atomics, the
CuPy-shaped API, the argument checks and the math functions. A runtime bug could make a launch
hang instead of fail, so every test runs under a watchdog that dumps the stacks and ends the
process after HANG_SECONDS, turning a hang into a visible failure.
"""

import faulthandler
import sys

import pytest

from alexnet_raw import emu

HANG_SECONDS = 240  # per test; generous for the slower sanitizer build and a cold compile cache


@pytest.fixture(autouse=True)
def hang_guard():
    faulthandler.dump_traceback_later(HANG_SECONDS, exit=True, file=sys.stderr)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture
def two_os_threads():
    """Run blocks on two OS threads, so that blocks really execute at the same time."""
    emu.set_num_threads(2)
    yield
    emu.set_num_threads(0)
