"""Our side of a layer: every kernel launch timed, then assigned to a phase by the arrays it touches."""

from __future__ import annotations

import contextlib

import numpy as np

from ...runtime import backends

PHASES = ("forward", "backward_data", "backward_weights", "backward_other")


def _span(a):
    """(first byte, end) of an array's memory (NumPy or CuPy), None for scalars."""
    if isinstance(a, np.ndarray):
        start = a.__array_interface__["data"][0]
        return (start, start + a.nbytes)
    data = getattr(a, "data", None)
    if data is not None and hasattr(data, "ptr"):
        return (data.ptr, data.ptr + a.nbytes)
    return None


def _overlaps(a, b):
    return a is not None and b is not None and a[0] < b[1] and b[0] < a[1] and a[1] > a[0] and b[1] > b[0]


@contextlib.contextmanager
def timed_launches(clock):
    """Run the ops as usual, timing each kernel launch; yields the list of (Launch, token). The
    clock brackets only the queueing of the kernel: the kernel is looked up and its arguments
    checked and packed (Backend.prepare) before the clock starts."""
    records = []

    class Timed:
        def __init__(self, real):
            self._real = real

        def launch(self, launch):
            run = self._real.prepare(launch)
            token = clock.start()
            run()
            records.append((launch, clock.stop(token)))

        def __getattr__(self, name):
            return getattr(self._real, name)

    with backends.wrapped(Timed):
        yield records


def assign_phases(launches, data_grads, weight_grads, inputs):
    """Phase of each backward launch: backward_weights if it touches a weight/bias gradient,
    backward_data if it touches an input gradient, else the phase of a later launch that reads an
    intermediate array it touches (inputs excluded), else backward_other."""
    weights = [_span(g) for g in weight_grads]
    data = [_span(g) for g in data_grads]
    fixed = [_span(x) for x in inputs]
    spans = [[s for s in (_span(a) for a in launch.args) if s and not any(_overlaps(s, f) for f in fixed)]
             for launch in launches]
    phases = []
    for ss in spans:
        if any(_overlaps(s, w) for s in ss for w in weights):
            phases.append("backward_weights")
        elif any(_overlaps(s, d) for s in ss for d in data):
            phases.append("backward_data")
        else:
            phases.append(None)
    changed = True
    while changed:
        changed = False
        for i in range(len(phases)):
            if phases[i] is not None:
                continue
            for j in range(i + 1, len(phases)):
                if phases[j] and any(_overlaps(a, b) for a in spans[i] for b in spans[j]):
                    phases[i], changed = phases[j], True
                    break
    return [p or "backward_other" for p in phases]


def measure_ours(run, clock, grad, warmup, repeats, flush=None):
    """{phase: [seconds per repeat]} of one LayerRun: the sum of its launches' times per phase."""
    has_weights = bool(run.case.weight_shapes)
    out = {}
    for r in range(warmup + repeats):
        if flush:
            flush()
        with timed_launches(clock) as fwd:
            run.forward()
        with timed_launches(clock) as bwd:
            data_grads = run.backward(grad)
        clock.synchronize()
        if r < warmup:
            continue
        times = {"forward": sum(clock.seconds(t) for _, t in fwd)}
        if has_weights:
            inputs = [grad, *run.xs, *run.layer.params.values()]
            phases = assign_phases([lch for lch, _ in bwd], [g for g in data_grads if g is not None],
                                   list(run.weight_grads.values()), inputs)
        else:
            phases = ["backward_data"] * len(bwd)
        for (_, token), phase in zip(bwd, phases):
            times[phase] = times.get(phase, 0.0) + clock.seconds(token)
        times.setdefault("backward_data", 0.0)
        for phase, t in times.items():
            out.setdefault(phase, []).append(t)
    return out
