"""`alexnet-raw train` under MPICH's mpiexec (the mpich wheel of the test extra, beside this Python),
on a small CIFAR-format directory, and what the tests read back from its runs."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

MPIEXEC = Path(sys.executable).parent / "mpiexec"
TRAIN = [sys.executable, "-P", "-m", "alexnet_raw.cli", "train"]
BATCH, SHARDS = 12, 6  # 36 training images: 3 steps per epoch, 2 rows per shard


def train_args(data, out, *extra):
    return ["--data", str(data), "--batch-size", str(BATCH), "--out", str(out), "--no-progress", "--workers", "0",
            *map(str, extra)]


def mpi_command(processes, args):
    if not MPIEXEC.exists():
        raise AssertionError(f"{MPIEXEC} is missing: the test extra installs mpich (pip install '.[test]')")
    return [str(MPIEXEC), "-n", str(processes), *TRAIN, *args]


def run(processes, args, timeout=300, env=None):
    """mpiexec -n `processes` alexnet-raw train ARGS (or, for 1, the plain command: no launcher)."""
    command = mpi_command(processes, args) if processes > 1 else [*TRAIN, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)


def start(processes, args, env=None):
    return subprocess.Popen(mpi_command(processes, args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, start_new_session=True)


def wait_for_file(path, proc, seconds=120):
    deadline = time.monotonic() + seconds
    while not Path(path).exists():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended (status {proc.returncode}) before {path} appeared: "
                                 f"{proc.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not appear within {seconds} s")
        time.sleep(0.1)


def rank_pids(processes, marker):
    """{rank: pid} of the ranks' training processes (each is the child of the process the launcher
    started: alexnet_raw/distributed/supervisor.py): those whose environment has PMI_RANK, the
    supervisor's child marker and `marker`=1."""
    from alexnet_raw.distributed.supervisor import CHILD_VARIABLE

    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = dict(v.split("=", 1) for v in (entry / "environ").read_bytes().decode(errors="replace").split("\0")
                       if "=" in v)
            command = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:  # a process that ended meanwhile
            continue
        if env.get(marker) == "1" and env.get(CHILD_VARIABLE) == "1" and "PMI_RANK" in env and "alexnet_raw.cli" in command:
            found[int(env["PMI_RANK"])] = int(entry.name)
    if sorted(found) != list(range(processes)):
        raise AssertionError(f"expected ranks 0..{processes - 1} of the run, found {found}")
    return found


def marked_env(marker):
    env = dict(os.environ)
    env[marker] = "1"
    return env


def stop_group(proc):
    """Whatever is left of a run (the test failed half way): its whole process group."""
    if proc.poll() is None:
        for sig in (signal.SIGCONT, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass
        proc.wait(timeout=30)


def state(out):
    """Every tensor of a run's checkpoint (weights, momentum, statistics) and its training JSON."""
    from alexnet_raw.training import checkpoint as ck

    saved = ck.load_checkpoint(Path(out) / ck.FILENAME)
    tensors = {f"weights/{k}": v for k, v in saved.weights.items()}
    tensors.update({f"momentum/{k}": v for k, v in saved.momentum.items()})
    return tensors, saved


def assert_same_state(out, reference):
    mine, saved = state(out)
    theirs, reference_saved = state(reference)
    assert sorted(mine) == sorted(theirs)
    different = [k for k in mine if not np.array_equal(mine[k], theirs[k])]
    assert not different, f"{out} differs from {reference} in {different[:5]}"
    assert saved.steps == reference_saved.steps


def metrics(out):
    import json

    return [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]


def learning_columns(records):
    """The columns of metrics.jsonl that do not depend on timing or on the processes."""
    return [{k: r[k] for k in ("epoch", "train_loss", "train_top1", "test_top1", "test_top5", "lr_scale")}
            for r in records]


def pid_of_rank(log, rank):
    m = re.search(rf"rank {rank} on \S+ pid (\d+)", log)
    assert m, f"rank {rank}'s pid is not in the log: {log[-1500:]}"
    return int(m.group(1))
