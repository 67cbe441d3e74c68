"""Before a layer is timed, its results are checked against PyTorch on the same inputs, as llm.c
validates before it benchmarks: the forward output, every input gradient and the weight and bias
gradients, within alexnet_raw/checks/tolerances.py. A layer that fails stops the benchmark.

The reference runs where the timing runs (PyTorch on the CPU, or on the GPU with TF32 off). For
conv, local and fc layers it is PyTorch in float64 from the same float32 inputs (tolerances.py's bounds
for them were measured against a float64 reference; on a GPU this also keeps cuDNN's choice of
algorithm, whose float32 rounding differs from one algorithm to another, out of the comparison);
pooling and normalisation layers compare with PyTorch in float32, as the kernel tests do.
"""

from __future__ import annotations

import numpy as np

from ...checks import tolerances

TOLERANCE_KEYS = {"conv": "conv2d", "fc": "linear", "pool": "max_pool2d", "lrn": "local_response_norm",
                  "rnorm": "same_map_norm", "local": "local"}
FLOAT64_REFERENCE = frozenset({"conv", "fc", "local"})


class ValidationError(AssertionError):
    """Our result for a layer is not within tolerances.py of PyTorch's: nothing of it is timed."""


def validate_layer(run, torch_layer, to_device, to_host):
    """Load torch_layer's inputs, weights and output gradient into `run` (a LayerRun of the same
    case and batch), run our forward and backward once, and compare with PyTorch. Returns
    {what: (max abs error, max rel error)}; raises ValidationError naming the first mismatch.
    to_device: NumPy -> our arrays (NumPy on the CPU runtime, CuPy on a GPU); to_host: back."""
    case = run.case
    key = TOLERANCE_KEYS[case.kind]
    reference = torch_layer.float64() if case.kind in FLOAT64_REFERENCE else torch_layer

    def host(t):
        return t.detach().to("cpu", dtype=torch_layer.xs[0].dtype).numpy()

    run.xs = [to_device(host(x)) for x in torch_layer.xs]
    for i, w in enumerate(torch_layer.ws):
        run.layer.params[f"{case.name}.weights.{i}"] = to_device(host(w))
    if torch_layer.b is not None:
        run.layer.params[f"{case.name}.biases"] = to_device(host(torch_layer.b))
    checks = [("forward output", to_host(run.forward()), host(reference.forward()))]
    ours_in = run.backward(to_device(host(torch_layer.grad)))
    for i, (ours, theirs) in enumerate(zip(ours_in, reference.backward_data())):
        ours = to_host(ours)
        theirs = host(theirs)[tuple(slice(0, n) for n in ours.shape)] if theirs.ndim == ours.ndim else \
            host(theirs).reshape(ours.shape)  # conv: drop the ceil rule's padding; fc: (N, in) -> (N, C, H, W)
        checks.append((f"input {i} gradient", ours, theirs))
    weights = reference.backward_weights()
    if weights is not None:
        gws, gb = weights
        for i, gw in enumerate(gws):
            checks.append((f"weight {i} gradient", to_host(run.weight_grads[f"{case.name}.weights.{i}"]), host(gw)))
        checks.append(("bias gradient", to_host(run.weight_grads[f"{case.name}.biases"]), host(gb)))
    errors = {}
    for what, ours, theirs in checks:
        errors[what] = tolerances.max_errors(ours, theirs)
        if not tolerances.close(ours, theirs, key, np.float32):
            atol, rtol = tolerances.tolerance(key, np.float32)
            raise ValidationError(
                f"{case.network}/{case.name} batch {ours.shape[0] if ours.ndim else '?'}: our {what} differs from "
                f"PyTorch's by {errors[what][0]:.3g} absolute, {errors[what][1]:.3g} relative (tolerances.py "
                f"'{key}' float32: atol {atol:g}{' x max|ref|' if key in tolerances.NORMWISE else ''}, rtol {rtol:g})")
    return errors
