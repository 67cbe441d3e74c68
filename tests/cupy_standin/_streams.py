"""Streams, events and the queue of device work: nothing runs until something waits for it.

Every kernel launch, copy and elementwise operation is a `Work` queued on a stream. A work runs
only when the host waits for it (stream, event or device synchronize, or a read to the host such
as `.get()` or `float(a)`), and then together with exactly what it depends on:

  * the work queued before it on the same stream;
  * an event waited for with `stream.wait_event(event)` (the work queued before that record);
  * CUDA's legacy default stream (`Stream.null`): its work waits for all work queued before it on
    the blocking streams of the same device, and work on a blocking stream waits for the null
    stream's earlier work; non-blocking streams wait for neither.

Among the works that are ready, the order is drawn at random (seeded): anything a program does not
order explicitly may run before or after, and a work that nobody waits for does not run at all.
A missing synchronisation therefore reads stale or unwritten memory (new allocations hold 0xFF
bytes: NaN for floats), as it can on a GPU. Host synchronisations are counted per reason
(`sync_counts`), so that a test can assert what a training step waits for.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter

from . import _runtime

_lock = threading.RLock()


class Work:
    __slots__ = ("fn", "deps", "label", "done", "time", "stream", "seq")
    _count = 0

    def __init__(self, fn, deps, label, stream):
        self.fn, self.deps, self.label, self.stream = fn, deps, label, stream
        Work._count += 1
        self.seq = Work._count  # submission order: ties are broken by the seeded draw over it
        self.done = False
        self.time = None  # perf_counter() when it ran (event markers: for get_elapsed_time)

    def __repr__(self):
        return f"<work {self.label} on {self.stream}{' done' if self.done else ''}>"


class _StreamQueue:
    """The queue behind one stream on one device (Stream.null has one per device)."""

    def __init__(self, device_id, blocking, null, name):
        self.device_id, self.blocking, self.null, self.name = device_id, blocking, null, name
        self.last = None

    def __repr__(self):
        return self.name


class _Scheduler:
    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.pending = set()
        self.queues = {}  # (device, stream ptr) -> _StreamQueue
        self.sync_counts = Counter()
        self.works_run = 0

    def null_queue(self, device_id):
        key = (device_id, 0)
        q = self.queues.get(key)
        if q is None:
            q = self.queues[key] = _StreamQueue(device_id, True, True, f"null stream of device {device_id}")
        return q

    def submit(self, queue, fn, label, extra=()):
        with _lock:
            deps = [w for w in ([queue.last] + list(extra)) if w is not None and not w.done]
            if queue.null:
                deps += [q.last for q in self.queues.values() if q.device_id == queue.device_id and q.blocking
                         and not q.null and q.last is not None and not q.last.done]
            elif queue.blocking:
                null = self.null_queue(queue.device_id)
                if null.last is not None and not null.last.done:
                    deps.append(null.last)
            w = Work(fn, deps, label, queue)
            queue.last = w
            self.pending.add(w)
            return w

    def run(self, targets, reason):
        """Run `targets` and everything they depend on; count one host synchronisation."""
        self.sync_counts[reason] += 1
        with _lock:
            closure, stack = set(), [w for w in targets if w is not None and not w.done]
            while stack:
                w = stack.pop()
                if w in closure or w.done:
                    continue
                closure.add(w)
                stack.extend(d for d in w.deps if not d.done)
            order = []
            while closure:
                ready = sorted((w for w in closure if all(d.done for d in w.deps)), key=lambda w: w.seq)
                w = ready[self.rng.randrange(len(ready))] if len(ready) > 1 else ready[0]
                closure.discard(w)
                self.pending.discard(w)
                w.done = True  # a failed work is not retried (a GPU context would be broken by then)
                w.time = time.perf_counter()
                self.works_run += 1
                order.append(w)
                fn, w.fn, w.deps = w.fn, None, ()  # a finished work holds on to nothing (its arrays may go)
                fn()
            return order


scheduler = _Scheduler(0)


def reset(seed):
    global scheduler
    scheduler = _Scheduler(seed)
    _streams_tls.stacks = {}
    Stream._next_ptr = 0x5000


# --------------------------------------------------------------------------------------------
class _StreamsTLS(threading.local):
    def __init__(self):
        self.stacks = {}  # device -> [Stream, ...] (the current stream of each device)


_streams_tls = _StreamsTLS()


def _stack(device_id):
    return _streams_tls.stacks.setdefault(device_id, [Stream.null])


class Stream:
    """cupy.cuda.Stream(null=False, non_blocking=False, ptds=False, priority=None)."""

    null = None  # set below: the legacy default stream (ptr 0, device_id -1: the current device's)
    _next_ptr = 0x5000

    def __init__(self, null=False, non_blocking=False, ptds=False, priority=None):
        if ptds:
            raise NotImplementedError("the stand-in does not model per-thread default streams")
        if null:
            self.ptr, self.device_id, self.non_blocking = 0, -1, False
            return
        self.device_id = _runtime.get_device()
        self.non_blocking = bool(non_blocking)
        Stream._next_ptr += 0x10
        self.ptr = Stream._next_ptr
        scheduler.queues[(self.device_id, self.ptr)] = _StreamQueue(
            self.device_id, not self.non_blocking, False, f"stream {self.ptr:#x} of device {self.device_id}")

    def _queue(self):
        """The queue work submitted to this stream goes to (Stream.null: the current device's)."""
        if self.ptr == 0:
            return scheduler.null_queue(_runtime.get_device())
        q = scheduler.queues.get((self.device_id, self.ptr))
        if q is None:
            raise _runtime.CUDARuntimeError(400, f"stream {self.ptr:#x} belongs to an earlier stand-in session")
        return q

    def _check_device(self):
        here = _runtime.get_device()
        if self.device_id not in (-1, here):
            raise RuntimeError(f"The device that the stream is created on ({self.device_id}) does not match with "
                               f"the current device ({here})")
        return here

    def __enter__(self):
        _stack(self._check_device()).append(self)
        self._entered_on = _runtime.get_device()
        return self

    def __exit__(self, *exc):
        _stack(self._entered_on).pop()

    def use(self):
        stack = _stack(self._check_device())
        stack[-1] = self
        return self

    @property
    def done(self):
        q = self._queue()
        return q.last is None or q.last.done

    def synchronize(self):
        scheduler.run([self._queue().last], "stream synchronize")

    def record(self, event=None):
        if event is None:
            event = Event()
        event.record(self)
        return event

    def wait_event(self, event):
        if event._work is None:
            return  # never recorded: cudaStreamWaitEvent returns at once
        q = self._queue()
        scheduler.submit(q, lambda: None, f"wait for {event._label}", extra=(event._work,))

    def __eq__(self, other):
        return isinstance(other, Stream) and (self.ptr, self.device_id) == (other.ptr, other.device_id)

    def __hash__(self):
        return hash((self.ptr, self.device_id))

    def __repr__(self):
        return f"<Stream {self.ptr:#x} (device: {self.device_id})>"


Stream.null = Stream(null=True)


def get_current_stream(device_id=-1):
    return _stack(_runtime.get_device() if device_id == -1 else _runtime.check_device(device_id))[-1]


def current_queue():
    return get_current_stream()._queue()


def queue_for_ptr(ptr):
    """The queue of a raw stream handle on the current device, as a launch through the driver sees it."""
    here = _runtime.get_device()
    if ptr == 0:
        return scheduler.null_queue(here)
    q = scheduler.queues.get((here, ptr))
    if q is None:
        other = [d for (d, p) in scheduler.queues if p == ptr]
        raise _runtime.CUDARuntimeError(
            400, f"stream {ptr:#x} " + (f"belongs to device {other[0]}, the current device is {here}" if other
                                       else "is not a stream of the stand-in"))
    return q


class Event:
    """cupy.cuda.Event(block=False, disable_timing=False, interprocess=False)."""

    _count = 0

    def __init__(self, block=False, disable_timing=False, interprocess=False):
        if interprocess and not disable_timing:
            raise ValueError("Timing must be disabled for interprocess events")
        self.device_id = _runtime.get_device()
        self.disable_timing = bool(disable_timing)
        self._work = None
        Event._count += 1
        self.ptr = 0x9000 + 0x10 * Event._count
        self._label = f"event {self.ptr:#x}"

    def record(self, stream=None):
        stream = get_current_stream() if stream is None else stream
        q = stream._queue()
        if q.device_id != self.device_id:
            raise _runtime.CUDARuntimeError(
                400, f"event created on device {self.device_id} recorded on a stream of device {q.device_id}")
        self._work = scheduler.submit(q, lambda: None, f"record {self._label}")

    @property
    def done(self):
        return self._work is None or self._work.done

    def synchronize(self):
        if self._work is not None:
            scheduler.run([self._work], "event synchronize")


def get_elapsed_time(start_event, end_event):
    """Milliseconds between two completed events. The stand-in runs work only when it is waited for
    and on the CPU, so this is no GPU time: alexnet-raw bench refuses to report it."""
    for e in (start_event, end_event):
        if e.disable_timing:
            raise _runtime.CUDARuntimeError(400, "an event created with disable_timing=True")
        if e._work is None or not e._work.done:
            raise _runtime.CUDARuntimeError(600, "get_elapsed_time needs both events recorded and completed")
    return (end_event._work.time - start_event._work.time) * 1e3


def synchronize_device(device_id, reason="device synchronize"):
    scheduler.run([q.last for q in list(scheduler.queues.values()) if q.device_id == device_id], reason)
