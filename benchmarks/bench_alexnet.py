"""Every AlexNet layer and a whole training step, our kernels against PyTorch (cuDNN on a GPU).

    python benchmarks/bench_alexnet.py [--out DIR] [--quick | --full] [--batch 1,2,4] ...

The same as `alexnet-raw bench` (alexnet_raw/perf/bench/, where the timing, statistics and output
code lives, tested by tests/perf/test_bench.py); see `--help` for the options.
"""

import sys

from alexnet_raw.perf import bench

if __name__ == "__main__":
    sys.exit(bench.main())
