"""ALEXNET_RAW_TEST_BACKENDS, read in one place: the comma-separated backend names a test run is
limited to (empty: no limit). scripts/test.sh's sanitizer pass sets it to emu_ext."""

import os

from alexnet_raw.runtime import backends


def wanted_backends():
    """The names ALEXNET_RAW_TEST_BACKENDS lists, in its order ([] when unset or empty)."""
    return [b.strip() for b in os.environ.get("ALEXNET_RAW_TEST_BACKENDS", "").split(",") if b.strip()]


def cpu_backends_under_test():
    """The CPU backends the run is limited to (both when the variable names none)."""
    wanted = wanted_backends()
    return [b for b in backends.CPU_BACKENDS if not wanted or b in wanted]
