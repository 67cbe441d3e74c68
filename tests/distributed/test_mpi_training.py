"""`mpiexec -n N alexnet-raw train`: the shipped mini network (two towers on two logical devices in
every process) data-parallel over 1, 2 and 3 MPI processes on this machine, on a CIFAR-format
directory of 36 training images (3 steps per epoch, batches of 12 as 6 shards of 2 rows).

What must hold (alexnet_raw/distributed): N processes train bit-identically to one process with the
same shards, also when a run resumes on another number of processes or after Ctrl-C on the
launcher; metrics.jsonl counts the gradient bytes each rank sent, as split_report predicts; a hung
rank makes every other rank stop with an error naming it within the peer timeout; a killed rank
ends the job at once (the launcher) with the checkpoint intact; ranks given different network files
are refused at start-up."""

import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from alexnet_raw import Model
from cifar_files import write_cifar_directory
from mpi_runs import (BATCH, SHARDS, assert_same_state, learning_columns, marked_env, metrics, mpi_command,
                      pid_of_rank, rank_pids, run, start, state, stop_group, train_args, wait_for_file)

EPOCHS = 2
# the peer timeout of the fault tests: above what a rank may take between two exchanges on a loaded
# machine (rank 0 plotting curves.png at an epoch's end, a step while the other test worker runs)
TIMEOUT = 10


@pytest.fixture(scope="module")
def one_process(cifar, tmp_path_factory):
    """The reference: one process (no launcher, no MPI) computing the 6 shards of every batch."""
    out = tmp_path_factory.mktemp("one") / "run"
    done = run(1, train_args(cifar, out, "--epochs", EPOCHS, "--shards", SHARDS))
    assert done.returncode == 0, done.stderr
    return out


def _ok(done):
    assert done.returncode == 0, f"status {done.returncode}: {done.stderr[-3000:]}"
    return done


@pytest.mark.parametrize("processes", [2, 3])
def test_processes_train_bit_identically_to_one_and_count_the_bytes_split_report_gives(processes, cifar, one_process,
                                                                                      tmp_path):
    out = tmp_path / "run"
    done = _ok(run(processes, train_args(cifar, out, "--epochs", EPOCHS, "--shards", SHARDS)))
    assert_same_state(out, one_process)
    assert learning_columns(metrics(out)) == learning_columns(metrics(one_process))
    # one writer: rank 0's lines only, one per epoch
    assert done.stdout.count("epoch 1/") == 1 and f"{processes} MPI processes" in done.stdout
    model = Model.named("mini", num_classes=10)
    predicted = model.split_report(BATCH, processes=processes, shards=SHARDS)["distributed"]
    for record in metrics(out):
        assert record["processes"] == processes and record["shards"] == SHARDS
        assert record["allreduce_bytes_per_step"] == predicted["allreduce_bytes_per_step"] == \
            model.parameter_count() * 4
        assert record["sent_bytes_per_step"] == predicted["sent_bytes_per_step"]
    # the reference itself sent nothing: one process folds its shards in memory
    assert metrics(one_process)[0]["sent_bytes_per_step"] == [0]


def test_a_run_resumes_bit_identically_on_another_number_of_processes(cifar, one_process, tmp_path):
    out = tmp_path / "run"
    _ok(run(2, train_args(cifar, out, "--epochs", 1, "--shards", SHARDS)))
    _, saved = state(out)
    assert saved.training["shards"] == SHARDS and saved.training["processes"] == 2
    done = _ok(run(3, train_args(cifar, out, "--epochs", EPOCHS, "--resume")))  # the checkpoint's 6 shards
    assert "resuming" in done.stdout
    assert_same_state(out, one_process)


def test_fewer_shards_than_processes_are_refused_naming_both(cifar, tmp_path):
    out = tmp_path / "run"
    _ok(run(1, train_args(cifar, out, "--epochs", 1)))  # one process: 1 shard, recorded
    done = run(2, train_args(cifar, out, "--epochs", 2, "--resume"))
    assert done.returncode != 0
    assert "1 shard (the checkpoint's; pass --shards to change it) cannot be spread over 2 processes" in done.stderr


def test_ctrl_c_on_the_launcher_saves_at_a_step_boundary_and_the_run_resumes_bit_identically(cifar, tmp_path):
    out = tmp_path / "run"
    proc = start(2, train_args(cifar, out, "--epochs", 1000, "--shards", SHARDS))
    try:
        wait_for_file(out / "metrics.jsonl", proc)
        proc.send_signal(signal.SIGINT)  # mpiexec passes it on to every rank
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        stop_group(proc)
    assert proc.returncode == 130, stderr
    assert stdout.count("interrupted: saved") == 1, stdout  # rank 0 saved; the others stopped with it
    _, saved = state(out)
    epochs = saved.training["epoch"] + 1
    _ok(run(1, train_args(cifar, out, "--epochs", epochs, "--resume")))  # on one process, the same shards
    reference = tmp_path / "reference"
    _ok(run(1, train_args(cifar, reference, "--epochs", epochs, "--shards", SHARDS)))
    assert_same_state(out, reference)


def _signal_rank_1_after_first_epoch(tmp_path, cifar, signum, timeout):
    """A 3-process run (the kernels already compiled by the one_process fixture: a short peer
    timeout must not meet a rank that is compiling): once its first epoch is written, rank 1 gets
    `signum`. Returns (run directory, rank 1's pid, status, stdout, stderr, seconds to the end)."""
    import os

    out, marker = tmp_path / "run", f"ALEXNET_RAW_TEST_SIGNAL_{signum}"
    args = train_args(cifar, out, "--epochs", 1000, "--shards", SHARDS, "--peer-timeout", timeout)
    proc = start(3, args, env=marked_env(marker))
    try:
        wait_for_file(out / "metrics.jsonl", proc)
        pids = rank_pids(3, marker)
        os.kill(pids[1], signum)
        sent = time.monotonic()
        stdout, stderr = proc.communicate(timeout=60)
        elapsed = time.monotonic() - sent
        # no training process outlives the job (the hung one included: it dies with its supervisor)
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in pids.values()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [p for p in pids.values() if _alive(p)], f"training processes left running: {pids}"
        return out, pids[1], proc.returncode, stdout, stderr, elapsed
    finally:
        stop_group(proc)
        for p in pids.values() if "pids" in locals() else ():
            if _alive(p):
                os.kill(p, signal.SIGKILL)


def _alive(pid):
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_hung_rank_stops_every_other_rank_naming_it_within_the_timeout(cifar, one_process, tmp_path):
    out, _, status, _, stderr, elapsed = _signal_rank_1_after_first_epoch(tmp_path, cifar, signal.SIGSTOP, TIMEOUT)
    assert status != 0
    assert elapsed < 30, f"the other ranks took {elapsed:.0f} s to stop"
    for rank in (0, 2):
        assert f"rank {rank}: rank 1 did not answer within {TIMEOUT} s" in stderr, stderr[-3000:]
    state(out)  # the checkpoint on disk is whole (rank 0 writes atomically)


def test_a_killed_rank_is_named_by_every_other_rank_within_the_timeout(cifar, one_process, tmp_path):
    out, pid, status, stdout, stderr, elapsed = _signal_rank_1_after_first_epoch(tmp_path, cifar, signal.SIGKILL,
                                                                                TIMEOUT)
    assert status != 0
    assert elapsed < 30, f"the job took {elapsed:.0f} s to end"
    # its supervisor says what happened to it; the others stop naming it
    assert f"rank 1: its training process (pid {pid}) was killed by SIGKILL" in stderr, stderr[-3000:]
    for rank in (0, 2):
        assert f"rank {rank}: rank 1 did not answer within {TIMEOUT} s" in stderr, stderr[-3000:]
    assert pid_of_rank(stdout, 1) == pid  # rank 0's first line maps ranks to hosts and pids
    state(out)


def test_ranks_given_different_network_files_are_refused_at_start_up(cifar, tmp_path):
    from alexnet_raw.engine.model import network_files

    layers, params = network_files("mini")
    changed = tmp_path / "mini-params-changed.cfg"  # one learning rate changed
    text = Path(params).read_text()
    first = text.index("epsW=") + len("epsW=")
    end = text.index("\n", first)
    changed.write_text(text[:first] + "0.0123" + text[end:])
    out = tmp_path / "run"
    common = ["--data", str(cifar), "--batch-size", str(BATCH), "--epochs", "1", "--out", str(out), "--no-progress"]
    rank0 = mpi_command(1, ["--cfg", str(layers), str(params), *common])
    rank1 = mpi_command(1, ["--cfg", str(layers), str(changed), *common])[3:]  # MPMD: ... : -n 1 <command>
    done = subprocess.run([*rank0, ":", "-n", "1", *rank1], capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "rank 1's network files differ from rank 0's" in done.stderr, done.stderr[-3000:]
    assert not (out / "checkpoint.safetensors").exists()


def test_a_launch_without_mpi4py_is_refused_saying_what_to_install(cifar, tmp_path):
    import os

    blocker = tmp_path / "no-mpi4py" / "mpi4py"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('mpi4py is not installed here')\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(blocker.parent), env.get("PYTHONPATH")) if p)
    done = run(2, train_args(cifar, tmp_path / "run", "--epochs", 1), env=env, timeout=120)
    assert done.returncode == 2
    assert done.stderr.count("started as one of 2 MPI processes, but mpi4py is not installed: "
                             "pip install \".[distributed]\"") == 2, done.stderr
    assert not (tmp_path / "run").exists()


def test_ranks_given_different_data_are_refused_at_start_up(cifar, tmp_path):
    other = tmp_path / "other"  # the same layout and labels' count, other pixels
    write_cifar_directory(other, np.random.default_rng(6), train_sizes=(8, 8, 8, 8, 4), test_size=8)
    out = tmp_path / "run"
    common = ["--batch-size", str(BATCH), "--epochs", "1", "--out", str(out), "--no-progress"]
    rank0 = mpi_command(1, ["--data", str(cifar), *common])
    rank1 = mpi_command(1, ["--data", str(other), *common])[3:]
    done = subprocess.run([*rank0, ":", "-n", "1", *rank1], capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "rank 1's training data differ from rank 0's" in done.stderr, done.stderr[-3000:]
    assert not (out / "checkpoint.safetensors").exists()
