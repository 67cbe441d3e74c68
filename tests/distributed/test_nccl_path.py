"""The GPU path of training across processes (alexnet_raw/distributed/nccl_reduce.py) on the CuPy
stand-in: 2 MPI processes, each with the mini network's two towers on 2 simulated GPUs, summing
gradients with the stand-in's NCCL (collectives queued on a communication stream per GPU, run only
when waited for; tests/cupy_standin/nccl.py). What must hold: the run trains as the CPU runtime's
2 processes do, within float32 rounding (NCCL adds in its own order); another order of the queued
work gives the same bits (every wait is where it must be); one all-reduce per layer with weights
per step, on that layer's GPU, summing every parameter once, as metrics.jsonl and split_report
count; --shards other than the process count is refused on GPUs."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from alexnet_raw import Model
from mpi_runs import BATCH, MPIEXEC, metrics, run, state, train_args

RANK = Path(__file__).with_name("standin_rank.py")
EPOCHS, STEPS = 2, 6


@pytest.fixture(scope="module")
def cpu_two_processes(cifar, tmp_path_factory):
    out = tmp_path_factory.mktemp("cpu") / "run"
    done = run(2, train_args(cifar, out, "--epochs", EPOCHS, "--shards", 2))
    assert done.returncode == 0, done.stderr
    return out


def standin_run(cifar, out, backend, seed=0, extra=(), log=None):
    env = dict(os.environ, ALEXNET_RAW_TEST_GPUS="2", ALEXNET_RAW_TEST_SEED=str(seed))
    if log is not None:
        log.mkdir(parents=True, exist_ok=True)
        env["ALEXNET_RAW_TEST_NCCL_LOG"] = str(log)
    command = [str(MPIEXEC), "-n", "2", sys.executable, "-P", str(RANK),
               *train_args(cifar, out, "--epochs", EPOCHS, "--backend", backend, *extra)]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)


@pytest.mark.parametrize("backend", ["cupy", "cuda"])
def test_two_processes_on_simulated_gpus_train_as_the_cpu_runtime_with_one_all_reduce_per_layer(
        backend, cifar, cpu_two_processes, tmp_path):
    out, log = tmp_path / "run", tmp_path / "nccl"
    done = standin_run(cifar, out, backend, log=log)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"backend {backend}" in done.stdout and "2 MPI processes" in done.stdout
    ours, _ = state(out)
    cpu, _ = state(cpu_two_processes)
    for key in cpu:
        np.testing.assert_allclose(ours[key], cpu[key], rtol=2e-5, atol=2e-7, err_msg=key)
    model = Model.named("mini", num_classes=10)
    elements = model.parameter_count()
    for record in metrics(out):
        assert record["processes"] == 2 and record["shards"] == 2
        assert record["allreduce_bytes_per_step"] == 4 * elements == \
            model.split_report(BATCH, processes=2)["distributed"]["allreduce_bytes_per_step"]
        assert record["sent_bytes_per_step"] is None  # NCCL's own business
    layers = model.gradient_order()
    sizes = [model.blocks[model.graph.nodes[name].device].layer_gradients(name).size for name in layers]
    gpus = [model.graph.nodes[name].device % 2 for name in layers]  # logical device d on GPU d % 2
    for rank in (0, 1):
        issued = json.loads((log / f"rank{rank}.json").read_text())
        assert issued == [[gpu, "allReduce", size, "float32"] for _ in range(STEPS) for gpu, size in zip(gpus, sizes)]
        assert sum(size for _, _, size, _ in issued) == STEPS * elements


def test_another_order_of_the_queued_work_gives_the_same_bits(cifar, tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    for out, seed in ((first, 1), (second, 2)):
        done = standin_run(cifar, out, "cupy", seed=seed)
        assert done.returncode == 0, done.stderr[-3000:]
    a, _ = state(first)
    b, _ = state(second)
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_shards_other_than_the_process_count_are_refused_on_gpus(cifar, tmp_path):
    done = standin_run(cifar, tmp_path / "run", "cupy", extra=("--shards", 4))
    assert done.returncode != 0
    assert "on GPUs each of the 2 processes computes one shard of every batch" in done.stderr
    assert "pass --shards 2 (got 4)" in done.stderr


def test_one_process_on_simulated_gpus_sums_its_shards_on_the_host_as_the_cpu_runtime(cifar, tmp_path):
    """--shards 2 in one process on a GPU backend (no NCCL: the shards' gradients are read back and
    folded in shard order on the host) trains as the CPU runtime with the same shards."""
    from alexnet_raw.training import train
    from gpu_paths import strict_standin

    cpu, gpu = tmp_path / "cpu", tmp_path / "gpu"
    assert train.main(train_args(cifar, cpu, "--epochs", 1, "--shards", 2)) == 0
    with strict_standin(2):
        assert train.main(train_args(cifar, gpu, "--epochs", 1, "--shards", 2, "--backend", "cupy")) == 0
    ours, _ = state(gpu)
    theirs, _ = state(cpu)
    for key in theirs:
        np.testing.assert_allclose(ours[key], theirs[key], rtol=2e-5, atol=2e-7, err_msg=key)
    assert metrics(gpu)[0]["shards"] == 2 and metrics(gpu)[0]["sent_bytes_per_step"] == [0]
