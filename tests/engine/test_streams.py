"""Overlapped transfers (alexnet_raw/engine/streams.py): no GPU runs here, so the stream and event
calls go to a recording stand-in for cupy.cuda, and the tests check their order: a copy waits for
what its producer queued, its consumer waits for the copy, sources stay alive until synchronize().
The engine's results with the flag are checked on the CPU runtime, where copies stay synchronous."""

import numpy as np

from alexnet_raw import Model
from alexnet_raw.engine.streams import OverlappedStreams


class Recorder:
    """A stand-in for cupy.cuda: Device and Stream objects that log what is done with them."""

    def __init__(self):
        self.log, self.current_device, self.current_stream, self.events = [], None, {}, 0
        recorder = self

        class Device:
            def __init__(self, index):
                self.index = index

            def __enter__(self):
                self.previous = recorder.current_device
                recorder.current_device = self.index
                return self

            def __exit__(self, *exc):
                recorder.current_device = self.previous

        class Stream:
            count = 0

            def __init__(self):
                Stream.count += 1
                self.name, self.device = f"s{Stream.count}", recorder.current_device

            def __enter__(self):
                recorder.log.append(("use", self.name, recorder.current_device))
                return self

            def __exit__(self, *exc):
                recorder.log.append(("leave", self.name))

            def record(self):
                assert recorder.current_device == self.device, "an event is recorded on its stream's device"
                recorder.events += 1
                event = f"e{recorder.events}"
                recorder.log.append(("record", self.name, event))
                return event

            def wait_event(self, event):
                recorder.log.append(("wait", self.name, event))

            def synchronize(self):
                recorder.log.append(("sync", self.name))

        self.Device, self.Stream = Device, Stream


class FakeArray:
    def __init__(self, name, nbytes=64):
        self.name, self.nbytes, self.data = name, nbytes, self

    def copy_from_device_async(self, src, size, stream):
        self.recorder.log.append(("copy", src.name, self.name, size, stream.name))


def make(physical):
    rec = Recorder()
    FakeArray.recorder = rec
    return rec, OverlappedStreams(rec, physical)


def test_each_logical_device_gets_a_compute_and_a_copy_stream_on_its_gpu():
    rec, streams = make({0: 0, 1: 1, 2: 0})  # three logical devices on two GPUs
    assert {d: s.device for d, s in streams.compute.items()} == {0: 0, 1: 1, 2: 0}
    assert {d: s.device for d, s in streams.copy_in.items()} == {0: 0, 1: 1, 2: 0}
    names = [s.name for s in list(streams.compute.values()) + list(streams.copy_in.values())]
    assert len(set(names)) == 6  # no stream shared: towers on one GPU run concurrently too
    with streams.context(2):
        assert rec.current_device == 0
    assert rec.log[-2:] == [("use", streams.compute[2].name, 0), ("leave", streams.compute[2].name)]


def test_a_copy_waits_for_its_producer_and_its_consumer_waits_for_the_copy():
    rec, streams = make({0: 0, 1: 1})
    src, dst = FakeArray("pool2a"), FakeArray("pool2a@1")
    streams.copy(dst, src, src_device=0, dst_device=1)
    producer, copier, consumer = streams.compute[0].name, streams.copy_in[1].name, streams.compute[1].name
    assert rec.log == [
        ("record", producer, "e1"),              # after everything device 0 queued so far
        ("wait", copier, "e1"),
        ("copy", "pool2a", "pool2a@1", 64, copier),  # on the destination's copy stream
        ("record", copier, "e2"),
        ("wait", consumer, "e2"),                # device 1's later kernels wait for the data
    ]
    assert streams.in_flight == [("e2", src, dst)]  # the source stays alive


def test_synchronize_waits_for_every_stream_and_releases_the_sources():
    rec, streams = make({0: 0, 1: 1})
    streams.copy(FakeArray("a"), FakeArray("b"), 1, 0)
    streams.synchronize()
    synced = {entry[1] for entry in rec.log if entry[0] == "sync"}
    assert synced == {s.name for s in list(streams.compute.values()) + list(streams.copy_in.values())}
    assert streams.in_flight == []


def test_the_flag_changes_nothing_on_the_cpu_runtime():
    rng = np.random.default_rng(0)
    x, labels = rng.standard_normal((3, 3, 32, 32)).astype(np.float32), rng.integers(0, 10, 3)
    results = []
    for overlap in (False, True):
        model = Model.named("mini", seed=5, overlap_transfers=overlap)
        assert model.devices.overlap is overlap and model.devices.streams is None  # no streams without a GPU
        loss, logits = model.train_step(x, labels)
        results.append((loss, logits, model.state_dict(), model.traffic))
    (loss_a, logits_a, state_a, traffic_a), (loss_b, logits_b, state_b, traffic_b) = results
    assert loss_a == loss_b and np.array_equal(logits_a, logits_b) and traffic_a == traffic_b
    assert all(np.array_equal(state_a[k], state_b[k]) for k in state_a)
