#!/usr/bin/env bash
# Development: rebuild the extensions incrementally in build/dev and copy them into alexnet_raw/
# (what `pip install -e .` does, without rebuilding everything). Parallel callers take turns.
#   PYTHON=.venv/bin/python bash scripts/build_inplace.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
mkdir -p build
exec 9>build/.build_inplace.lock
flock 9
"$PYTHON" -m pybind11 --cmakedir >/dev/null
cmake -S . -B build/dev -DPython_EXECUTABLE="$(command -v "$PYTHON")" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/dev -j "$(nproc)"
for module in build/dev/_emu_ext.*.so build/dev/_cuda.*.so; do
  [ -e "$module" ] && cp "$module" alexnet_raw/
done
echo "extensions copied into alexnet_raw/"
