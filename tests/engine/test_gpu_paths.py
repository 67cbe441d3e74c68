"""The engine's GPU code paths (engine/devices.py, engine/streams.py) on the CuPy stand-in: one and
two simulated GPUs, with and without overlapped transfers, against the CPU runtime; what a
training step waits for; and that the stand-in catches a missing synchronisation in our code.

The stand-in runs queued work only when it is waited for, in an order that respects streams and
events and is otherwise random, so a copy or read that is not ordered after its producer reads
unwritten memory (NaN) here, as it may on a GPU."""

import numpy as np
import pytest

import cupy_standin
from alexnet_raw import Model
from alexnet_raw.engine import streams as streams_mod
from alexnet_raw.engine.graph import MemoryLimitError
from gpu_paths import strict_standin


def batch(model, n, seed=0, dtype=None):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, model.input_channels, model.image_size, model.image_size))
    return x.astype(dtype or model.dtype), rng.integers(0, model.num_classes, n)


def train_two_steps(model, device_inputs=False, cp=None):
    results = []
    for step in range(2):
        x, labels = batch(model, 3, seed=step)
        if device_inputs:
            x, labels = cp.asarray(x), cp.asarray(labels)
        loss, logits = model.train_step(x, labels)
        results.append((float(loss), model.devices.to_host(logits)))
    return results, model.state_dict()


def assert_same_training(a, b):
    (steps_a, state_a), (steps_b, state_b) = a, b
    for (la, ga), (lb, gb) in zip(steps_a, steps_b):
        assert la == lb and ga.tobytes() == gb.tobytes()
    assert state_a.keys() == state_b.keys()
    assert all(state_a[k].tobytes() == state_b[k].tobytes() for k in state_a), "parameters differ"


@pytest.fixture(scope="module")
def cpu_reference():
    """Two float64 training steps of mini on the CPU runtime (float64: -ftz does not apply)."""
    return train_two_steps(Model.named("mini", seed=5, dtype=np.float64))


@pytest.mark.parametrize("gpus", [1, 2])
@pytest.mark.parametrize("overlap", [False, True])
@pytest.mark.parametrize("backend", ["cupy", "cuda"])
def test_training_on_simulated_gpus_is_bit_identical_to_the_cpu_runtime(cpu_reference, gpus, overlap, backend):
    with strict_standin(gpus, seed=gpus * 10 + overlap):
        model = Model.named("mini", seed=5, dtype=np.float64, backend=backend, overlap_transfers=overlap)
        assert model.devices.on_gpu and model.devices.physical == {0: 0, 1: 1 % gpus}
        assert_same_training(train_two_steps(model), cpu_reference)


def test_device_inputs_stay_on_the_device_and_give_the_same_training(cpu_reference):
    with strict_standin(2) as cp:
        model = Model.named("mini", seed=5, dtype=np.float64, backend="cupy")
        assert_same_training(train_two_steps(model, device_inputs=True, cp=cp), cpu_reference)


@pytest.mark.parametrize("backend", ["cupy", "cuda"])
def test_a_training_step_on_one_gpu_never_waits_for_it(backend):
    """Fault 4 of the GPU-paths issue: the batch went to the host and back, and the step synchronised
    for isfinite, for the labels' min and max and for float(loss). Like PyTorch's, a step with the
    data on the device now queues work and returns; the loss is read only when asked for."""
    with strict_standin(1) as cp:
        model = Model.named("mini", seed=1, backend=backend)
        x, labels = batch(model, 4)
        x, labels = cp.asarray(x), cp.asarray(labels)
        model.train_step(x, labels)  # warm-up: kernels compiled, pools filled
        before = cupy_standin.sync_counts()
        loss, logits = model.train_step(x, labels)
        assert cupy_standin.sync_counts() == before, "the training step waited for the GPU"
        assert cupy_standin.pending_work(), "nothing was left queued: the step ran synchronously"
        assert np.isfinite(float(loss))  # reading it is the wait
        assert cupy_standin.sync_counts()["get (device to host)"] == before.get("get (device to host)", 0) + 1


def test_host_batches_are_checked_on_the_host_and_uploaded():
    """Fault 1: Model._check_images called cupy.isfinite on the NumPy batch that train, evaluate and
    predict pass, a TypeError on every GPU backend."""
    with strict_standin(1):
        model = Model.named("mini", seed=1, backend="cupy")
        x, labels = batch(model, 2)
        loss, _ = model.train_step(x, labels)  # a NumPy batch on a GPU backend
        assert np.isfinite(float(loss))
        x[0, 0, 0, 0] = np.nan
        with pytest.raises(ValueError, match="non-finite"):
            model.forward(x)
        with pytest.raises(ValueError, match=r"labels must be in \[0, 9\]"):
            model.forward(batch(model, 2)[0], train=True)
            model.backward(np.array([0, 10]))


def test_out_of_range_device_labels_give_a_nan_loss_not_a_wrong_one():
    with strict_standin(1) as cp:
        model = Model.named("mini", seed=1, backend="cupy")
        x, _ = batch(model, 2)
        model.forward(cp.asarray(x), train=True)
        assert np.isnan(float(model.backward(cp.asarray(np.array([0, 10])))))
        assert any(np.isnan(g).any() for g in model.gradient_dict().values())  # no silent wrong update


def test_without_peer_access_two_gpus_still_train_the_same(cpu_reference):
    with strict_standin(2, peer_access=False):
        model = Model.named("mini", seed=5, dtype=np.float64, backend="cuda")
        assert_same_training(train_two_steps(model), cpu_reference)


def test_the_stand_in_catches_a_copy_that_does_not_wait_for_its_producer(monkeypatch, cpu_reference):
    """Remove one synchronisation from our engine (the wait for the producer's event before a copy
    between GPUs): the copy then reads the destination's garbage, and the training is wrong."""
    original = streams_mod.Transfers._queue_copy

    def queue_without_waiting(self, dst, src, produced, dst_device):
        with self.cuda.Device(self.physical[dst_device]):
            never_recorded = self.cuda.Event()  # waiting for it waits for nothing
        return original(self, dst, src, never_recorded, dst_device)

    monkeypatch.setattr(streams_mod.Transfers, "_queue_copy", queue_without_waiting)
    with strict_standin(2):
        model = Model.named("mini", seed=5, dtype=np.float64, backend="cupy")
        (steps, _) = train_two_steps(model)
    assert not all(np.isfinite(loss) for loss, _ in steps) or steps[0][0] != cpu_reference[0][0][0]


def test_the_stand_in_catches_a_read_on_the_wrong_gpu(monkeypatch):
    """Remove another: read a device array with .get() while another GPU is current (its stream is
    not ordered after the array's producer)."""
    from alexnet_raw.engine import devices as devices_mod

    ordered_read = devices_mod.Devices.to_host
    monkeypatch.setattr(devices_mod.Devices, "to_host", lambda self, array: array.get())
    with strict_standin(2):
        model = Model.named("mini", seed=5, dtype=np.float64, backend="cupy")
        x, labels = batch(model, 3)
        model.forward(x, train=True)
        model.backward(labels)
        unordered = model.gradient_dict()  # device 1's gradients read on device 0's stream
        keys = [k for k in unordered if model._block_of(k).device == 1]
        ordered = {k: ordered_read(model.devices, model._block_of(k).grads[k]) for k in keys}
    assert any(not np.array_equal(unordered[k], ordered[k]) for k in keys), "the unordered read saw finished results"


def test_parameters_take_the_split_reports_memory_and_a_full_gpu_refuses():
    """Run #145 on two 3 GB GTX 580s: the split report's memory per device fits, the parameters,
    gradients and momentum take exactly what it counts, and a GPU too small is refused before
    anything is allocated, naming the largest layers and the bytes (from the stand-in's memGetInfo)."""
    three_gb = 3 * 2**30
    with strict_standin(2, memory_bytes=three_gb) as cp:
        model = Model.named("krizhevsky2012", seed=0, backend="cupy")
        cupy_standin.synchronize_all()  # the initial values' uploads done: their host copies freed
        report = model.split_report(batch_size=128)
        for d in report["devices"]:
            need = d["parameter_bytes"] + d["gradient_bytes"] + d["momentum_bytes"] + d["activation_bytes"]
            assert need < three_gb, f"device {d['device']}: {need} bytes do not fit a GTX 580"
            used = cupy_standin._memory.used_bytes(d["device"])
            params = d["parameter_bytes"] + d["gradient_bytes"] + d["momentum_bytes"]
            assert params <= used < params + 2**20  # the three blocks, rounded, and small transfers
    with strict_standin(1, memory_bytes=200 * 2**20):
        with pytest.raises(MemoryLimitError, match=r"209,715,200 bytes .* available; largest: \[fc2048a\]"):
            Model.named("krizhevsky2012", seed=0, backend="cupy", single_device=True)
        assert cupy_standin._memory.used_bytes(0) == 0
