"""The processes of a run: this one alone, or the ranks an MPI launcher started.

current() is a LocalWorld (rank 0 of 1, mpi4py never imported) unless an MPI launcher (mpiexec /
mpirun of MPICH or Open MPI, srun) started more than one process, in which case it is an MpiWorld
on MPI_COMM_WORLD. Every exchange of an MpiWorld is non-blocking sends and receives polled against
a deadline (`timeout` seconds, ALEXNET_RAW_PEER_TIMEOUT or --peer-timeout): a rank that does not
answer in time raises PeerTimeout naming it, and abort() then ends the job through the launcher,
so a dead or hung rank never hangs the others. Receives complete in the order they were posted per
peer and tag (MPI's non-overtaking rule), so no sequence numbers are needed.
"""

from __future__ import annotations

import os
import pickle
import socket
import sys
import time

import numpy as np

# environment variables MPI launchers set in every process they start: (size, rank)
LAUNCHER_VARIABLES = (("PMI_SIZE", "PMI_RANK"),  # MPICH's hydra (mpiexec, mpirun), srun --mpi=pmi2
                      ("OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK"),  # Open MPI's mpirun
                      ("PMIX_SIZE", "PMIX_RANK"))  # PMIx launchers (srun --mpi=pmix)
DEFAULT_TIMEOUT = 300.0  # seconds a rank waits for another before it stops the run
TIMEOUT_VARIABLE = "ALEXNET_RAW_PEER_TIMEOUT"
_TAG_SIZE, _TAG_OBJECT = 11, 12


class DistributedError(Exception):
    """The processes of a run cannot work together (a launch without mpi4py, mismatched ranks)."""


class PeerTimeout(DistributedError):
    """Ranks that did not answer within the deadline."""

    def __init__(self, rank, ranks, what, seconds):
        self.rank, self.ranks, self.what, self.seconds = rank, tuple(ranks), what, seconds
        names = ", ".join(str(r) for r in self.ranks)
        super().__init__(f"rank {rank}: rank{'s' if len(self.ranks) > 1 else ''} {names} did not answer within "
                         f"{seconds:g} s ({what}): dead or hung; stopping every rank")


def launched_size():
    """The number of processes the launcher started (1 without a launcher)."""
    for size, _rank in LAUNCHER_VARIABLES:
        value = os.environ.get(size)
        if value and value.isdigit():
            return int(value)
    return 1


def peer_timeout(value=None):
    """Seconds to wait for another rank: `value`, else ALEXNET_RAW_PEER_TIMEOUT, else 300."""
    if value is None:
        text = os.environ.get(TIMEOUT_VARIABLE)
        if not text:
            return DEFAULT_TIMEOUT
        try:
            value = float(text)
        except ValueError:
            raise DistributedError(f"{TIMEOUT_VARIABLE}={text!r}: expected seconds (a positive number)") from None
    if not np.isfinite(value) or value <= 0:
        raise DistributedError(f"peer timeout must be a positive number of seconds, got {value!r}")
    return float(value)


def current(timeout=None):
    """This process's world: an MpiWorld under a launcher that started several processes."""
    size = launched_size()
    if size <= 1:
        return LocalWorld()
    try:
        from mpi4py import MPI
    except ImportError:
        raise DistributedError(f"started as one of {size} MPI processes, but mpi4py is not installed: "
                               "pip install \".[distributed]\" (mpi4py and an MPI)") from None
    return MpiWorld(MPI, peer_timeout(timeout))


class LocalWorld:
    """One process: rank 0 of 1, nothing exchanged."""

    rank, size, timeout = 0, 1, None
    local_rank = 0

    def allgather(self, obj, what):
        return [obj]

    def exchange(self, sends, recvs, what):
        if sends or recvs:
            raise ValueError("one process has no peers to exchange with")

    def abort(self, status):
        sys.exit(status)

    def describe(self):
        return "1 process"


class MpiWorld:
    """The ranks of MPI_COMM_WORLD, every wait bounded by `timeout` seconds."""

    def __init__(self, MPI, timeout):
        self.MPI = MPI
        self.comm = MPI.COMM_WORLD
        self.comm.Set_errhandler(MPI.ERRORS_RETURN)  # an MPI failure is an exception, not an abort
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.timeout = timeout
        # where every rank runs: a launcher that reports a failed process by host and pid (MPICH's
        # "BAD TERMINATION ... PID n RUNNING AT host") is read against this line of rank 0's log
        self.places = self.allgather(host_and_pid(), "the start-up: every rank's host and pid")

    @property
    def local_rank(self):
        """This rank's place among the ranks on its host (0 for the first there)."""
        mine = self.places[self.rank].rsplit(" pid ", 1)[0]
        return sum(1 for place in self.places[:self.rank] if place.rsplit(" pid ", 1)[0] == mine)

    def describe(self):
        ranks = ", ".join(f"rank {r} on {place}" for r, place in enumerate(self.places))
        library = " ".join(self.MPI.Get_library_version().splitlines()[0].split())
        return f"{self.size} MPI processes ({library}; {ranks})"

    def _wait(self, requests, peers, what):
        """Wait for every request, polling until the deadline; PeerTimeout names the peers whose
        requests are still pending then (receives first: a receive pending means no data came)."""
        deadline = time.monotonic() + self.timeout
        pause = 0.0
        pending = list(range(len(requests)))
        while pending:
            pending = [i for i in pending if not requests[i].Test()]
            if not pending:
                return
            if time.monotonic() > deadline:  # the job is stopped next: nothing to cancel
                late = sorted({peers[i] for i in pending})
                raise PeerTimeout(self.rank, late, what, self.timeout)
            time.sleep(pause)
            pause = min(0.002, pause + 0.0001)

    def exchange(self, sends, recvs, what):
        """sends: [(peer, tag, contiguous array)], recvs: [(peer, tag, array to fill)]; all posted
        at once, then waited for with the deadline."""
        requests, peers = [], []
        for peer, tag, buffer in recvs:
            requests.append(self.comm.Irecv(buffer, source=peer, tag=tag))
            peers.append(peer)
        for peer, tag, buffer in sends:
            requests.append(self.comm.Isend(buffer, dest=peer, tag=tag))
            peers.append(peer)
        self._wait(requests, peers, what)

    def allgather(self, obj, what):
        """Every rank's `obj` (picklable), in rank order, on every rank."""
        data = np.frombuffer(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL), np.uint8)
        others = [p for p in range(self.size) if p != self.rank]
        sizes = {p: np.zeros(1, np.int64) for p in others}
        mine = np.array([data.size], np.int64)
        self.exchange([(p, _TAG_SIZE, mine) for p in others], [(p, _TAG_SIZE, sizes[p]) for p in others], what)
        bodies = {p: np.empty(int(sizes[p][0]), np.uint8) for p in others}
        self.exchange([(p, _TAG_OBJECT, data) for p in others], [(p, _TAG_OBJECT, bodies[p]) for p in others], what)
        return [obj if p == self.rank else pickle.loads(bodies[p].tobytes()) for p in range(self.size)]

    def abort(self, status):
        """End every rank now (MPI_Abort: the launcher kills the job)."""
        sys.stdout.flush()
        sys.stderr.flush()
        self.comm.Abort(status)


def host_and_pid():
    return f"{socket.gethostname()} pid {os.getpid()}"
