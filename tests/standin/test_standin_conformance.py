"""The CuPy stand-in (tests/cupy_standin) is as strict as CuPy where alexnet_raw depends on it:
each test states a documented behaviour of CuPy or CUDA (../shared/notes/gpu-behaviour.md, CuPy's
source) and checks that the stand-in has it, refusals included."""

import numpy as np
import pytest

import cupy_standin
from gpu_paths import strict_standin


@pytest.fixture
def cp():
    with strict_standin(2) as module:
        yield module


# -- arrays are not NumPy arrays ---------------------------------------------------------------------
def test_implicit_conversion_to_numpy_raises_as_cupy(cp):
    a = cp.asarray(np.arange(4.0))
    with pytest.raises(TypeError, match="Implicit conversion to a NumPy array is not allowed"):
        np.asarray(a)
    with pytest.raises(TypeError):
        np.arange(4.0) + a  # NumPy hands the ufunc to CuPy, which refuses the NumPy operand


def test_ufuncs_and_reductions_refuse_numpy_arrays_and_lists(cp):
    a = cp.asarray(np.ones(3, np.float32))
    with pytest.raises(TypeError, match="Unsupported type <class 'numpy.ndarray'>"):
        cp.isfinite(np.ones(3))
    with pytest.raises(TypeError, match="Unsupported type <class 'numpy.ndarray'>"):
        cp.add(a, np.ones(3, np.float32))
    with pytest.raises(TypeError, match="Unsupported type <class 'list'>"):
        cp.add(a, [1, 2, 3])
    with pytest.raises(TypeError, match="Unsupported type"):
        cp.sum(np.ones(3))
    assert float((a * np.float32(2) + 1).sum()) == 9.0  # NumPy and Python scalars are fine


def test_zero_d_arrays_are_no_index_and_reading_one_synchronises(cp):
    n = cp.asarray(np.int64(3))
    with pytest.raises(TypeError):
        range(n)
    before = cupy_standin.sync_counts().get("get (device to host)", 0)
    assert int(n) == 3 and float(n) == 3.0 and bool(n)
    assert cupy_standin.sync_counts()["get (device to host)"] == before + 3


def test_get_asnumpy_device_pointer_and_array_interface(cp):
    host = np.arange(6, dtype=np.float32).reshape(2, 3)
    a = cp.asarray(host)
    assert isinstance(a.get(), np.ndarray) and np.array_equal(cp.asnumpy(a), host)
    assert cp.asnumpy(host) is host or np.array_equal(cp.asnumpy(host), host)
    assert a.device.id == 0 and a.data.ptr % 512 == 0 and a.data.device_id == 0
    cai = a.__cuda_array_interface__
    assert cai["shape"] == (2, 3) and cai["data"][0] == a.data.ptr and cai["version"] == 3
    assert a[1].data.ptr == a.data.ptr + 12
    assert cp.empty(0).data.ptr == 0  # CuPy: a zero-byte allocation has the null pointer


def test_array_copy_false_refuses_a_copy_as_cupy_14(cp):
    with pytest.raises(ValueError, match="copy"):
        cp.array(np.ones(3), copy=False)
    a = cp.asarray(np.ones(3))
    assert cp.asarray(a) is a and cp.array(a, copy=False) is a


# -- devices -----------------------------------------------------------------------------------------
def test_device_contexts_allocation_and_invalid_ordinals(cp):
    assert cp.cuda.runtime.getDeviceCount() == 2
    with cp.cuda.Device(1):
        b = cp.zeros(3)
        assert cp.cuda.Device().id == 1
    assert b.device.id == 1 and cp.cuda.Device().id == 0
    with pytest.raises(cp.cuda.runtime.CUDARuntimeError, match="cudaErrorInvalidDevice"):
        cp.cuda.Device(2).use()


def test_elementwise_work_on_another_devices_array_enables_peer_access_with_a_warning():
    with cupy_standin.installed(devices=2) as cp:
        with cp.cuda.Device(1):
            b = cp.ones(3)
            cp.cuda.Device().synchronize()  # else device 0's kernel is not ordered after the fill
        with pytest.warns(cp._util.PerformanceWarning, match="Peer access has been activated automatically"):
            c = b + 1  # on device 0, the current one: CuPy's behaviour (alexnet_raw's tests make it an error)
        assert c.device.id == 0 and c.get().tolist() == [2.0, 2.0, 2.0]
    with cupy_standin.installed(devices=2, peer_access=False) as cp:
        with cp.cuda.Device(1):
            b = cp.ones(3)
        with pytest.raises(ValueError, match=r"resides \(1\) is different from the current device \(0\)\. Peer "
                                              "access is unavailable"):
            b + 1


def test_a_full_device_raises_cupys_out_of_memory_error():
    with cupy_standin.installed(devices=1, memory_bytes=10 * 2**20) as cp:
        a = cp.empty(2 * 2**20, np.float32)  # 8 MiB
        with pytest.raises(cp.cuda.memory.OutOfMemoryError, match="Out of memory allocating 4,194,304 bytes"):
            cp.empty(2**20, np.float32)
        del a
        cp.empty(2**20, np.float32)  # freed memory is available again


# -- streams and events ------------------------------------------------------------------------------
def test_work_runs_only_when_waited_for(cp):
    a = cp.asarray(np.zeros(4))
    a += 1
    assert cupy_standin.pending_work()
    cp.cuda.Device().synchronize()
    assert not cupy_standin.pending_work()
    assert a.get().tolist() == [1.0] * 4


def test_a_read_on_another_stream_without_an_event_sees_stale_data(cp):
    a = cp.asarray(np.zeros(4))
    cp.cuda.Device().synchronize()
    side = cp.cuda.Stream(non_blocking=True)
    with side:
        a.fill(7)  # queued on `side`
    assert a.get().tolist() == [0.0] * 4  # .get() waits for the current (null) stream only
    done = side.record()
    cp.cuda.Stream.null.wait_event(done)
    assert a.get().tolist() == [7.0] * 4


def test_the_legacy_default_stream_orders_blocking_streams_but_not_non_blocking_ones(cp):
    for non_blocking, expected in ((False, 5.0), (True, 0.0)):
        a = cp.asarray(np.zeros(2))
        cp.cuda.Device().synchronize()
        s = cp.cuda.Stream(non_blocking=non_blocking)
        with s:
            a.fill(5)
        assert a.get()[0] == expected


def test_streams_belong_to_a_device_and_events_must_be_recorded_on_its_streams(cp):
    with cp.cuda.Device(1):
        s1 = cp.cuda.Stream()
    with pytest.raises(RuntimeError, match=r"created on \(1\) does not match with the current device \(0\)"):
        with s1:
            pass
    e = cp.cuda.Event()  # device 0
    with cp.cuda.Device(1):
        with pytest.raises(cp.cuda.runtime.CUDARuntimeError, match="cudaErrorInvalidResourceHandle"):
            e.record(s1)


def test_elapsed_time_needs_completed_events(cp):
    start, end = cp.cuda.Event(), cp.cuda.Event()
    start.record()
    cp.ones(10).sum()
    end.record()
    with pytest.raises(cp.cuda.runtime.CUDARuntimeError, match="cudaErrorNotReady"):
        cp.cuda.get_elapsed_time(start, end)
    end.synchronize()
    assert cp.cuda.get_elapsed_time(start, end) >= 0
    assert cp.IS_ALEXNET_RAW_STAND_IN  # what alexnet-raw bench checks before it writes a time


def test_a_cross_device_copy_is_ordered_only_by_an_event(cp):
    src = cp.asarray(np.zeros(3))
    cp.cuda.Device().synchronize()
    src.fill(4)  # queued on device 0
    with cp.cuda.Device(1):
        dst = cp.empty(3)
        dst.data.copy_from_device_async(src.data, src.nbytes)  # device 1's stream: not after the fill
        assert dst.get().tolist() == [0.0] * 3
        produced = cp.cuda.Event()
    with cp.cuda.Device(0):
        ready = cp.cuda.Stream.null.record()
    with cp.cuda.Device(1):
        cp.cuda.Stream.null.wait_event(ready)
        dst.data.copy_from_device_async(src.data, src.nbytes)
        assert dst.get().tolist() == [4.0] * 3
    assert produced.done  # never recorded: done


# -- RawModule and RawKernel -------------------------------------------------------------------------
SOURCE = r"""
extern "C" __global__ void scale(float* y, const float* x, float a, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = a * x[i];
}
extern "C" __global__ void scale64(float* y, const float* x, float a, long long n) {
  long long i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = a * x[i];
}
"""


def test_raw_module_argument_rules(cp):
    mod = cp.RawModule(code=SOURCE)
    x, y = cp.asarray(np.arange(8, dtype=np.float32)), cp.empty(8, np.float32)
    mod.get_function("scale")((1,), (8,), (y, x, np.float32(2), np.int32(8)))
    assert y.get().tolist() == [2.0 * i for i in range(8)]
    mod.get_function("scale64")((1,), (8,), (y, x, np.float32(3), 8))  # a Python int is a long long
    assert y.get().tolist() == [3.0 * i for i in range(8)]
    with pytest.raises(TypeError, match="'int'"):  # CuPy would pack 8 bytes for the 4-byte int: refused
        mod.get_function("scale")((1,), (8,), (y, x, np.float32(2), 8))
    with pytest.raises(TypeError, match="tuples"):
        mod.get_function("scale")(1, 8, (y, x, np.float32(2), np.int32(8)))
    with pytest.raises(TypeError, match="Only numpy.ndarrays of size one"):
        mod.get_function("scale")((1,), (8,), (y, np.ones(8, np.float32), np.float32(2), np.int32(8)))
    with pytest.raises(TypeError, match="tuple"):
        cp.RawModule(code=SOURCE, options=["-std=c++17"])
    with pytest.raises(cp.cuda.CUDADriverError, match="named symbol not found"):
        mod.get_function("missing")


def test_a_kernel_given_another_devices_array_without_peer_access_is_an_illegal_address():
    with cupy_standin.installed(devices=2, peer_access=False) as cp:
        mod = cp.RawModule(code=SOURCE)
        with cp.cuda.Device(1):
            x = cp.asarray(np.ones(8, np.float32))
        y = cp.empty(8, np.float32)
        with pytest.raises(cp.cuda.runtime.CUDARuntimeError, match="cudaErrorIllegalAddress"):
            mod.get_function("scale")((1,), (8,), (y, x, np.float32(2), np.int32(8)))


def test_raw_modules_flush_float32_subnormals_as_cupys_forced_ftz(cp):
    """CuPy appends -ftz=true to every RawModule compilation (cupy issue 9576); the CPU runtime
    reproduces it with MXCSR FTZ/DAZ while the kernel runs, and does not flush without it."""
    from alexnet_raw import emu

    x = np.array([1e-40, -1e-40, 1e-30, 3e-39], np.float32)
    y = cp.empty(4, np.float32)
    cp.RawModule(code=SOURCE).get_function("scale")((1,), (4,), (y, cp.asarray(x), np.float32(1.5), np.int32(4)))
    assert y.get().tolist() == [0.0, 0.0, np.float32(1.5e-30), 0.0]
    host = np.empty(4, np.float32)
    emu.RawModule(code=SOURCE).get_function("scale")((1,), (4,), (host, x, np.float32(1.5), np.int32(4)))
    assert host[0] == np.float32(1.5) * np.float32(1e-40) != 0  # no flush on the CPU runtime itself
