"""One rank of `mpiexec -n N python standin_rank.py TRAIN-ARGS...` (or `--bench-worker ARGS`: the
worker of `alexnet-raw bench --processes`): `alexnet-raw train` with the CuPy stand-in installed
(tests/cupy_standin: GPUs simulated on the CPU runtime, and its NCCL, whose collectives cross the
MPI processes), ALEXNET_RAW_TEST_GPUS simulated GPUs per process (ALEXNET_RAW_TEST_SEED: the seed
of the order in which it runs queued work that nothing orders). Writes the NCCL collectives it
issued to $ALEXNET_RAW_TEST_NCCL_LOG/rank<r>.json when that is set."""

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/: cupy_standin, gpu_paths

from gpu_paths import strict_standin  # noqa: E402


def main():
    from cupy_standin import nccl

    gpus, seed = int(os.environ.get("ALEXNET_RAW_TEST_GPUS", "1")), int(os.environ.get("ALEXNET_RAW_TEST_SEED", "0"))
    with strict_standin(gpus, seed=seed):  # seed: the stand-in's order of work that nothing orders
        if sys.argv[1:2] == ["--bench-worker"]:  # alexnet-raw bench --processes's worker instead
            from alexnet_raw.perf.bench import process_worker

            status = process_worker.main(sys.argv[2:])
        else:
            from alexnet_raw.distributed.supervisor import CHILD_VARIABLE
            from alexnet_raw.training import train

            os.environ[CHILD_VARIABLE] = "1"  # this process is the rank (its supervisor would not have the stand-in)
            status = train.main(sys.argv[1:])
        log = os.environ.get("ALEXNET_RAW_TEST_NCCL_LOG")
        if log:
            rank = os.environ.get("PMI_RANK", "0")
            Path(log, f"rank{rank}.json").write_text(json.dumps(nccl.issued))
    return status


if __name__ == "__main__":
    sys.exit(main())
