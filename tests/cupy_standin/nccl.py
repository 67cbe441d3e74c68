"""cupy.cuda.nccl for the stand-in: NCCL communicators between processes, whose collectives are
queued on a stream like kernels and complete only when that stream (or an event after them) is
waited for, as NCCL documents (../shared/notes/gpu-behaviour.md).

What it mirrors of cupy.cuda.nccl: get_unique_id() (a tuple of 128 ints), NcclCommunicator(ndev,
commId, rank) (blocking until every rank has joined; its device is the current device at creation),
allReduce/reduceScatter/allGather/broadcast(sendbuf, recvbuf, count, datatype, op, stream) with
device addresses (ints), an NCCL data type, an op and a stream address, groupStart/groupEnd,
destroy(). What it refuses, as NCCL does: buffers not on the communicator's device or too small
for `count`, a stream of another device, an unknown data type or op, a destroyed communicator, a
rank outside [0, ndev).

How data crosses (the stand-in's own machinery, not NCCL's): every rank is an MPI process (the
tests launch them with mpiexec) and a communicator is a duplicate of MPI_COMM_WORLD; a collective,
when its stream work runs, gathers every rank's buffer and reduces in rank order (deterministic, as
NCCL is for a fixed number of ranks). A process's collectives run in the order it issued them (an
extra dependency on the previous one), which every rank shares, so the blocking MPI exchanges
inside queued work always meet; NCCL asks the same of programs that use several communicators.
"""

from __future__ import annotations

import secrets

import numpy as np

from . import _memory, _runtime, _streams

NCCL_INT8, NCCL_UINT8, NCCL_INT32, NCCL_UINT32, NCCL_INT64, NCCL_UINT64, NCCL_FLOAT16, NCCL_FLOAT32, \
    NCCL_FLOAT64 = 0, 1, 2, 3, 4, 5, 6, 7, 8
NCCL_SUM, NCCL_PROD, NCCL_MAX, NCCL_MIN = 0, 1, 2, 3
_DTYPES = {NCCL_INT8: np.int8, NCCL_UINT8: np.uint8, NCCL_INT32: np.int32, NCCL_UINT32: np.uint32,
           NCCL_INT64: np.int64, NCCL_UINT64: np.uint64, NCCL_FLOAT16: np.float16, NCCL_FLOAT32: np.float32,
           NCCL_FLOAT64: np.float64}
_OPS = {NCCL_SUM: np.add, NCCL_PROD: np.multiply, NCCL_MAX: np.maximum, NCCL_MIN: np.minimum}


class NcclError(RuntimeError):
    def __init__(self, status, message):
        self.status = status
        super().__init__(f"NCCL_ERROR ({status}): {message}")


NCCL_INVALID_ARGUMENT, NCCL_INVALID_USAGE = 4, 5
_last_collective = [None]  # the work of this process's latest collective (they run in issue order)
_group_depth = [0]
issued = []  # (communicator device, op name, count, dtype) of every collective, for the tests


def get_version():
    return 22700


def get_unique_id():
    return tuple(secrets.randbits(8) - 128 for _ in range(128))


def groupStart():
    _group_depth[0] += 1


def groupEnd():
    if _group_depth[0] == 0:
        raise NcclError(NCCL_INVALID_USAGE, "groupEnd without groupStart")
    _group_depth[0] -= 1


def _world():
    from mpi4py import MPI

    return MPI.COMM_WORLD


class NcclCommunicator:
    def __init__(self, ndev, commId, rank):
        if not isinstance(commId, tuple) or len(commId) != 128:
            raise NcclError(NCCL_INVALID_ARGUMENT, "commId must be the tuple get_unique_id() returns")
        if not 0 <= rank < ndev:
            raise NcclError(NCCL_INVALID_ARGUMENT, f"rank {rank} outside [0, {ndev})")
        self.device_id = _runtime.get_device()
        self._ndev, self._rank = int(ndev), int(rank)
        if ndev == 1:
            self._mpi = None
        else:
            world = _world()
            if world.Get_size() != ndev or world.Get_rank() != rank:
                raise NcclError(NCCL_INVALID_USAGE, f"the stand-in runs one NCCL rank per MPI process: ndev {ndev}, "
                                                    f"rank {rank} in an MPI world of {world.Get_size()} (rank "
                                                    f"{world.Get_rank()})")
            self._mpi = world.Dup()  # collective: every rank joins, as ncclCommInitRank blocks for all
            ids = self._mpi.allgather(commId)
            if any(i != commId for i in ids):
                raise NcclError(NCCL_INVALID_ARGUMENT, "the ranks passed different unique ids")
        self._destroyed = False

    def rank_id(self):
        return self._rank

    def size(self):
        return self._ndev

    def device_id_(self):
        return self.device_id

    def destroy(self):
        if self._mpi is not None and not self._destroyed:
            self._mpi.Free()
        self._destroyed = True

    # -- collectives ---------------------------------------------------------------------------
    def _buffer(self, ptr, count, dtype, what):
        found = _memory.find(int(ptr))
        if found is None:
            raise NcclError(NCCL_INVALID_ARGUMENT, f"{what} {int(ptr):#x} is not device memory")
        alloc, offset = found
        if alloc.device_id != self.device_id:
            raise NcclError(NCCL_INVALID_ARGUMENT, f"{what} is on device {alloc.device_id}, the communicator's is "
                                                   f"device {self.device_id}")
        nbytes = count * np.dtype(dtype).itemsize
        if offset + nbytes > alloc.nbytes:
            raise NcclError(NCCL_INVALID_ARGUMENT, f"{what}: {count} elements do not fit the allocation")
        return alloc, alloc.host[offset:offset + nbytes].view(dtype)

    def _queue(self, stream):
        here = _runtime.get_device()
        if here != self.device_id:
            raise NcclError(NCCL_INVALID_USAGE, f"the current device ({here}) is not the communicator's "
                                                f"({self.device_id})")
        ptr = int(stream)
        queue = _streams.scheduler.null_queue(here) if ptr == 0 else _streams.scheduler.queues.get((here, ptr))
        if queue is None:
            raise NcclError(NCCL_INVALID_ARGUMENT, f"stream {ptr:#x} is not a stream of device {here}")
        return queue

    def _submit(self, name, stream, count, datatype, op, fn_of):
        if self._destroyed:
            raise NcclError(NCCL_INVALID_USAGE, "the communicator was destroyed")
        if datatype not in _DTYPES:
            raise NcclError(NCCL_INVALID_ARGUMENT, f"unknown data type {datatype}")
        if op is not None and op not in _OPS:
            raise NcclError(NCCL_INVALID_ARGUMENT, f"unknown reduction op {op}")
        queue = self._queue(stream)
        fn = fn_of(_DTYPES[datatype])
        previous = _last_collective[0]
        work = _streams.scheduler.submit(queue, fn, f"nccl {name} {count} x {np.dtype(_DTYPES[datatype]).name}",
                                         extra=[previous] if previous is not None else [])
        _last_collective[0] = work
        issued.append((self.device_id, name, int(count), np.dtype(_DTYPES[datatype]).name))

    def _gather(self, send):
        if self._mpi is None:
            return np.array(send[None], copy=True)
        everyone = np.empty((self._ndev,) + send.shape, send.dtype)
        self._mpi.Allgather(np.ascontiguousarray(send), everyone)
        return everyone

    def allReduce(self, sendbuf, recvbuf, count, datatype, op, stream):
        def fn_of(dtype):
            send_alloc, send = self._buffer(sendbuf, count, dtype, "sendbuf")
            recv_alloc, recv = self._buffer(recvbuf, count, dtype, "recvbuf")

            def run(keep=(send_alloc, recv_alloc)):
                everyone = self._gather(send.copy())
                total = everyone[0].copy()
                for part in everyone[1:]:  # in rank order
                    total = _OPS[op](total, part)
                recv[...] = total
            return run

        self._submit("allReduce", stream, count, datatype, op, fn_of)

    def broadcast(self, sendbuf, recvbuf, count, datatype, root, stream):
        def fn_of(dtype):
            send_alloc, send = self._buffer(sendbuf, count, dtype, "sendbuf")
            recv_alloc, recv = self._buffer(recvbuf, count, dtype, "recvbuf")

            def run(keep=(send_alloc, recv_alloc)):
                recv[...] = self._gather(send.copy())[root]
            return run

        self._submit("broadcast", stream, count, datatype, None, fn_of)
