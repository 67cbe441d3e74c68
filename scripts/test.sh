#!/usr/bin/env bash
# Sets up .venv with the package (built from this checkout, installed like a user's) and its test
# dependencies, runs the whole test suite (the GPU code paths on the CuPy stand-in of
# tests/cupy_standin, or on a real GPU when CuPy sees one), then runs the kernel and CPU-runtime
# tests again with the CPU runtime and the extension built with AddressSanitizer and UBSan (the
# extension's path, all but the full-size AlexNet conv and fc layers, which run in the first pass:
# the sanitizers look for out-of-bounds accesses, and the random and small shapes reach every ragged
# edge, padding and stride case).
#   bash scripts/test.sh [pytest arguments for the first run]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet ".[test]"
# -P: import the installed package, not the checkout in the current directory. Two worker processes
# (pytest-xdist; ALEXNET_RAW_TEST_WORKERS to change): while one compiles a kernel file (the CPU
# runtime's JIT, NVRTC, nvcc: one compiler process each), the other runs tests; a kernel file is
# compiled once, the other worker waits for it (a lock per cache entry)
# --dist worksteal: a worker that runs out of tests takes queued ones from the other (the slow tests
# do not pile up at the end of one). --durations: the slowest tests, for the CI log.
# ALEXNET_RAW_TEST_EXT_SANITIZED=1: the extension's CPU path (emu_ext) takes the general kernel tests
# in the sanitizer pass below, not here (tests/kernels/conftest.py); here it takes the full-size layers
WORKERS=${ALEXNET_RAW_TEST_WORKERS:-2}
ALEXNET_RAW_TEST_EXT_SANITIZED=1 .venv/bin/python -P -m pytest -n "$WORKERS" --dist worksteal --durations=15 "$@"
# the sanitizer pass looks for overruns: in the kernels and the extension's launch code through the
# sanitized extension (emu_ext: the same kernel sources as the JIT and the GPU paths), in the CPU
# runtime through tests/emu; one thread schedule (overruns do not depend on it; the first pass
# checks the schedules). ALEXNET_RAW_BACKEND=emu_ext: the kernel tests that take the default backend
# run on the sanitized extension too (else the JIT would compile every kernel file again under ASan);
# ALEXNET_RAW_PROPERTY_EXAMPLES: the argument-check property test, 500 examples in the first pass, 100 here
ALEXNET_RAW_BACKEND=emu_ext ALEXNET_RAW_TEST_BACKENDS=emu_ext ALEXNET_RAW_TEST_SCHEDULES=1 ALEXNET_RAW_PROPERTY_EXAMPLES=100 \
  .venv/bin/python -P -m alexnet_raw.emu.sanitized --build-ext build/asan -- \
  .venv/bin/python -P -m pytest -n "$WORKERS" --dist worksteal --durations=10 -q -m "not fullsize" tests/kernels tests/emu
