"""Each rank of `mpirun -n N alexnet-raw train` is two processes: the one the launcher started (this
supervisor, which does no MPI and holds nothing) and the training process it runs as its child,
which is the MPI rank (it inherits the launcher's PMI connection, PMI_FD, and environment).

Why: a launcher ends the whole job at once when a process it started is killed by a signal (MPICH's
hydra: `BAD TERMINATION`, with no word of which rank), so the other ranks could not say what
happened. When the training process is killed (the kernel's OOM killer, `kill -9`, a segfault),
its supervisor stays: it says which rank died and how, and waits while the other ranks, whose
every wait has a deadline (world.py), stop within the peer timeout, each naming the rank that did
not answer, and end the job (MPI_Abort). Ctrl-C and SIGTERM reach the supervisor and are passed
on to the training process, which stops at a step boundary with the others. Any other end of the
training process is the supervisor's own exit status.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from .world import LAUNCHER_VARIABLES, peer_timeout

CHILD_VARIABLE = "ALEXNET_RAW_RANK_PROCESS"  # set in the training process of a supervised rank
FORWARDED = (signal.SIGINT, signal.SIGTERM)


def is_supervised_child():
    return os.environ.get(CHILD_VARIABLE) == "1"


def rank_label():
    for _size, rank in LAUNCHER_VARIABLES:
        if os.environ.get(rank) is not None:
            return f"rank {os.environ[rank]}"
    return "this rank"


def _die_with_parent():
    """In the child before it runs: SIGKILL when its parent dies (Linux's PR_SET_PDEATHSIG; a no-op
    elsewhere)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass


def supervise(argv, timeout=None, prog="alexnet-raw train"):
    """Run `alexnet-raw train ARGV` as this rank's training process; return the exit status."""
    isolated = ["-P"] if sys.version_info >= (3, 11) else []  # the same installation, not the cwd's
    command = [sys.executable, *isolated, "-m", "alexnet_raw.cli", "train", *argv]
    env = dict(os.environ, **{CHILD_VARIABLE: "1"})
    fds = tuple(int(v) for v in (os.environ.get("PMI_FD"),) if v and v.isdigit())
    # in this process's group, so that whatever ends the group ends it; and should this process be
    # killed (the launcher ends a job by killing what it started), the kernel kills the child too.
    # A Ctrl-C that reaches both (a terminal's) is harmless twice: a rank of several only notes it
    child = subprocess.Popen(command, env=env, pass_fds=fds, preexec_fn=_die_with_parent)
    previous = {s: signal.signal(s, lambda signum, frame: child.send_signal(signum)) for s in FORWARDED}
    try:
        status = child.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if status >= 0:
        return status
    signum = -status
    name = signal.Signals(signum).name if signum in signal.Signals._value2member_map_ else f"signal {signum}"
    seconds = peer_timeout(timeout)
    print(f"{prog}: error: {rank_label()}: its training process (pid {child.pid}) was killed by {name}; the other "
          f"ranks stop within the peer timeout ({seconds:g} s), each naming this rank", file=sys.stderr, flush=True)
    time.sleep(seconds + 30)  # the others end the job (MPI_Abort) before this
    return 128 + signum
