"""The stand-in's NCCL (tests/cupy_standin/nccl.py) in one process (a communicator of one rank):
collectives are queued on a stream like kernels and complete only when that stream is waited for,
as NCCL documents; what NCCL refuses is refused. Across processes it runs in
tests/distributed/test_nccl_path.py."""

import numpy as np
import pytest

from gpu_paths import strict_standin


@pytest.fixture
def cp():
    with strict_standin(2) as module:
        yield module


def _comm(cp, device=0):
    from cupy.cuda import nccl

    with cp.cuda.Device(device):
        return nccl, nccl.NcclCommunicator(1, nccl.get_unique_id(), 0)


def test_an_all_reduce_is_queued_and_done_only_when_its_stream_is_waited_for(cp):
    nccl, comm = _comm(cp)
    with cp.cuda.Device(0):
        a = cp.asarray(np.arange(6, dtype=np.float32))
        out = cp.zeros(6, cp.float32)
        stream = cp.cuda.Stream(non_blocking=True)
        stream.wait_event(cp.cuda.get_current_stream().record())  # after the arrays are written
        comm.allReduce(a.data.ptr, out.data.ptr, 6, nccl.NCCL_FLOAT32, nccl.NCCL_SUM, stream.ptr)
        assert not stream.done  # queued, not run
        stream.synchronize()
        np.testing.assert_array_equal(out.get(), np.arange(6, dtype=np.float32))
    assert comm.size() == 1 and comm.rank_id() == 0


def test_buffers_streams_and_arguments_nccl_refuses_are_refused(cp):
    nccl, comm = _comm(cp, device=0)
    with cp.cuda.Device(1):
        elsewhere = cp.zeros(4, cp.float32)
    with cp.cuda.Device(0):
        a = cp.zeros(4, cp.float32)
        with pytest.raises(nccl.NcclError, match="sendbuf is on device 1, the communicator's is device 0"):
            comm.allReduce(elsewhere.data.ptr, a.data.ptr, 4, nccl.NCCL_FLOAT32, nccl.NCCL_SUM, 0)
        with pytest.raises(nccl.NcclError, match="do not fit the allocation"):
            comm.allReduce(a.data.ptr, a.data.ptr, 1000, nccl.NCCL_FLOAT32, nccl.NCCL_SUM, 0)
        with pytest.raises(nccl.NcclError, match="unknown data type"):
            comm.allReduce(a.data.ptr, a.data.ptr, 4, 99, nccl.NCCL_SUM, 0)
        with pytest.raises(nccl.NcclError, match="not device memory"):
            comm.allReduce(12345, a.data.ptr, 4, nccl.NCCL_FLOAT32, nccl.NCCL_SUM, 0)
    with cp.cuda.Device(1):
        with pytest.raises(nccl.NcclError, match=r"current device \(1\) is not the communicator's \(0\)"):
            comm.allReduce(a.data.ptr, a.data.ptr, 4, nccl.NCCL_FLOAT32, nccl.NCCL_SUM, 0)
    comm.destroy()
    with cp.cuda.Device(0), pytest.raises(nccl.NcclError, match="destroyed"):
        comm.allReduce(a.data.ptr, a.data.ptr, 4, nccl.NCCL_FLOAT32, nccl.NCCL_SUM, 0)
    with pytest.raises(nccl.NcclError, match="rank 3 outside"):
        nccl.NcclCommunicator(2, nccl.get_unique_id(), 3)


def test_a_process_collectives_run_in_the_order_it_issued_them(cp):
    """Queued on two streams that nothing orders, the second collective still runs after the first
    (the stand-in's rule that keeps its blocking exchanges between processes in step)."""
    nccl, comm = _comm(cp)
    with cp.cuda.Device(0):
        a, b = cp.ones(3, cp.float32), cp.zeros(3, cp.float32)
        s1, s2 = cp.cuda.Stream(non_blocking=True), cp.cuda.Stream(non_blocking=True)
        for s in (s1, s2):
            s.wait_event(cp.cuda.get_current_stream().record())
        comm.allReduce(a.data.ptr, b.data.ptr, 3, nccl.NCCL_FLOAT32, nccl.NCCL_SUM, s1.ptr)  # b = a
        comm.allReduce(b.data.ptr, a.data.ptr, 3, nccl.NCCL_FLOAT32, nccl.NCCL_SUM, s2.ptr)  # a = b
        s2.synchronize()  # runs the first one too
        assert s1.done
        np.testing.assert_array_equal(a.get(), np.ones(3, np.float32))
