#!/usr/bin/env bash
# GPU acceptance check. On a machine with one NVIDIA GPU, its driver, CUDA 13 and this repository,
# with or without a package registry:
#   bash scripts/gpu_check.sh OUTDIR
# uses the Python that is there (PYTHON, default python3) and what it has installed, installs only
# what is missing (when a registry answers), and, within about 10 minutes:
#   1. builds the package and the nvcc extension without build isolation (into OUTDIR/site);
#   2. runs `alexnet-raw verify` on the cupy and the cuda backends;
#   3. runs the test suite's GPU paths on the real GPU (kernel tests on cupy and cuda, the engine's
#      and the GPU backends' tests, the compile checks);
#   4. runs `alexnet-raw bench --quick`;
#   5. runs compute-sanitizer's memcheck, racecheck and synccheck over one launch of every kernel
#      (scripts/gpu_workloads.py every-kernel);
#   5b. queues every layer's gradient all-reduce through real NCCL as `mpirun` training does, on
#      communicators of one rank (scripts/gpu_workloads.py nccl-one-rank);
#   6. reads achieved occupancy and FP32 (FMA) pipe utilisation of the conv and GEMM kernels of one
#      AlexNet training step with ncu (scripts/gpu_workloads.py training-step);
# and writes OUTDIR/gpu_check.json and OUTDIR/gpu_check.md (each step's log in OUTDIR/logs/). A step
# that fails is recorded and the next one runs; the exit status is 1 if any step failed. The
# reference tests run against the installed PyTorch when the pin (torch==2.13.0) is not what is
# installed, and the report says which version ran. Without a GPU it says so in one line and exits 2.
set -uo pipefail

if [ $# -ne 1 ]; then
  echo "usage: bash scripts/gpu_check.sh OUTDIR" >&2
  exit 2
fi
if ! command -v nvidia-smi >/dev/null 2>&1; then
  echo "gpu_check: no NVIDIA GPU here (nvidia-smi is not installed); nothing was checked"
  exit 2
fi
GPU=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -n 1)
if [ -z "$GPU" ]; then
  echo "gpu_check: no NVIDIA GPU here (nvidia-smi lists none); nothing was checked"
  exit 2
fi

START=$(date +%s)
DEADLINE=$((START + ${GPU_CHECK_SECONDS:-570}))  # the whole check, builds included
mkdir -p "$1/logs"
OUT=$(cd "$1" && pwd)
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-python3}
SITE=$OUT/site
STEPS=$OUT/steps.jsonl
: >"$STEPS"
for dir in /usr/local/cuda/bin /usr/local/cuda-13.0/bin; do
  if ! command -v nvcc >/dev/null 2>&1 && [ -x "$dir/nvcc" ]; then PATH=$PATH:$dir; fi
done
export PATH
export PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH}
export ALEXNET_RAW_CACHE_DIR=$OUT/cache

# step NAME MAX_SECONDS COMMAND...: run with the smaller of MAX_SECONDS and what is left, log it,
# and record it in steps.jsonl
step() {
  local name=$1 max=$2
  shift 2
  local now left limit rc begun
  now=$(date +%s)
  left=$((DEADLINE - now))
  limit=$((max < left ? max : left))
  if [ "$limit" -lt 15 ]; then
    echo "gpu_check: $name skipped (out of time)"
    printf '{"step": "%s", "rc": null, "seconds": 0, "skipped": "out of time"}\n' "$name" >>"$STEPS"
    return 0
  fi
  echo "gpu_check: $name (at most ${limit} s)"
  begun=$(date +%s)
  timeout --kill-after=10 "$limit" "$@" >"$OUT/logs/$name.log" 2>&1
  rc=$?
  printf '{"step": "%s", "rc": %d, "seconds": %d, "limit": %d, "timed_out": %s}\n' "$name" "$rc" \
    "$(( $(date +%s) - begun ))" "$limit" "$([ "$rc" = 124 ] || [ "$rc" = 137 ] && echo true || echo false)" >>"$STEPS"
  echo "gpu_check: $name -> exit $rc"
  return 0
}

# -- what is installed, and what is missing ------------------------------------------------------
step environment 60 "$PYTHON" - "$OUT/environment.json" <<'EOF'
import importlib, json, platform, subprocess, sys
mods = {"numpy": "numpy", "torch": "torch", "cupy": "cupy-cuda13x", "pytest": "pytest", "hypothesis": "hypothesis",
        "safetensors": "safetensors", "tqdm": "tqdm", "matplotlib": "matplotlib", "PIL": "Pillow",
        "sklearn": "scikit-learn", "pybind11": "pybind11", "cmake": "cmake", "setuptools": "setuptools",
        "wheel": "wheel", "cuda.bindings": "cuda-bindings"}
found, missing = {}, []
for mod, dist in mods.items():
    try:
        m = importlib.import_module(mod)
        found[dist] = getattr(m, "__version__", "?")
    except Exception as e:
        missing.append(dist)
def run(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
    except Exception as e:
        return f"unavailable ({e})"
info = {"python": sys.version.split()[0], "executable": sys.executable, "platform": platform.platform(),
        "packages": found, "missing": missing,
        "gpu": run("nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm", "--format=csv,noheader"),
        "nvcc": run("nvcc", "--version").splitlines()[-1:] or ["not found"],
        "compute-sanitizer": run("compute-sanitizer", "--version").splitlines()[-1:] or ["not found"],
        "ncu": run("ncu", "--version").splitlines()[-1:] or ["not found"]}
try:
    import torch
    info["torch_cuda"] = torch.version.cuda
    info["torch_pin_met"] = torch.__version__.split("+")[0] == "2.13.0"
    info["torch_sees_gpu"] = torch.cuda.is_available()
except Exception as e:
    info["torch_cuda"] = f"unavailable ({e})"
json.dump(info, open(sys.argv[1], "w"), indent=2)
print(json.dumps(info, indent=2))
EOF
MISSING=$("$PYTHON" -c "import json,sys; print(' '.join(json.load(open(sys.argv[1]))['missing']))" \
  "$OUT/environment.json" 2>/dev/null || true)
if [ -n "$MISSING" ]; then
  # only what is missing; without a registry this fails quickly and the steps needing it fail later
  step install-missing 90 "$PYTHON" -m pip install --quiet --target "$SITE" $MISSING
fi

# -- 1. build ------------------------------------------------------------------------------------
step build 240 env ALEXNET_RAW_CUDA_ARCHITECTURES="${ALEXNET_RAW_CUDA_ARCHITECTURES:-80;90}" \
  "$PYTHON" -m pip install --no-build-isolation --no-deps --upgrade --target "$SITE" "$ROOT"

# -- 2. verify on both GPU backends --------------------------------------------------------------
for backend in cupy cuda; do
  step "verify-$backend" 90 "$PYTHON" -P -m alexnet_raw.cli verify --backend "$backend"
done

# -- 3. the tests' GPU paths ---------------------------------------------------------------------
PARALLEL=()
if "$PYTHON" -c "import xdist" >/dev/null 2>&1; then PARALLEL=(-n 4); fi
step tests 180 env ALEXNET_RAW_TEST_BACKENDS=cupy,cuda "$PYTHON" -P -m pytest -q -p no:cacheprovider \
  "${PARALLEL[@]}" tests/kernels tests/runtime/test_gpu_backends.py tests/engine/test_gpu_paths.py tests/runtime/test_gpu_compile.py

# -- 4. the benchmark ----------------------------------------------------------------------------
step bench 150 "$PYTHON" -P -m alexnet_raw.cli bench --quick --out "$OUT/bench"

# -- 5. compute-sanitizer over one launch of every kernel ----------------------------------------
for tool in memcheck racecheck synccheck; do
  step "sanitizer-$tool" 60 compute-sanitizer --tool "$tool" --error-exitcode 3 --print-limit 20 \
    "$PYTHON" -P scripts/gpu_workloads.py every-kernel --backend cuda --batch 2
done

# -- 5b. NCCL: the all-reduce calls of training across processes, on a communicator of one rank -----
step nccl 60 "$PYTHON" -P scripts/gpu_workloads.py nccl-one-rank --backend cuda --network krizhevsky2012 --batch 4

# -- 6. ncu: the conv and GEMM kernels of one training step --------------------------------------
METRICS=sm__warps_active.avg.pct_of_peak_sustained_active,sm__pipe_fma_cycles_active.avg.pct_of_peak_sustained_active,sm__inst_executed_pipe_fma.avg.pct_of_peak_sustained_active,gpu__time_duration.sum
step ncu 120 ncu --clock-control none --target-processes all --kernel-name "regex:conv2d|gemm" \
  --metrics "$METRICS" --csv --page raw \
  "$PYTHON" -P scripts/gpu_workloads.py training-step --backend cuda --network torchvision --batch 32 --warmup 0

# -- the report ----------------------------------------------------------------------------------
"$PYTHON" "$ROOT/scripts/gpu_check_report.py" "$OUT" "$GPU" "$(( $(date +%s) - START ))"
