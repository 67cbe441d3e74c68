"""Non-finite training: find it cheaply every step, then name where it is.

What is checked when (alexnet-raw train):
  every step   the loss (the host float the progress bar reads anyway) and, per device, one
               reduction over that device's flat parameter block (isfinite(...).all(): one scalar
               read back, no copy of the parameters). Non-finite gradients show up here too: the
               step's update has already added them to the parameters.
  every save   checkpoint.encode refuses non-finite weights or momentum in the host copies it
               makes anyway, so a non-finite state never replaces a good checkpoint.
  on failure   only then, a host copy of every parameter and gradient, scanned in layer order to
               name the first layer whose weights, biases or gradients are non-finite.
"""

from __future__ import annotations

import math

import numpy as np


class NonFiniteError(Exception):
    """Training produced a non-finite loss or parameters; the message names epoch, step and layer."""


def parameters_finite(model):
    """True when every parameter on every device is finite: one reduction per device."""
    xp = model.devices.xp
    for device, block in model.blocks.items():
        with model.devices.context(device):
            if not bool(xp.isfinite(block.flat_params).all()):
                return False
    return True


def _count(values):
    values = np.asarray(values)
    nan, inf = int(np.isnan(values).sum()), int(np.isinf(values).sum())
    return f"{nan} NaN and {inf} infinite of its {values.size} values"


def first_non_finite(model):
    """'L (<key>: n NaN and m infinite of its k values)' for the first layer, in the network's
    order, whose weights, biases or gradients are non-finite, or None. Copies all to the host."""
    params, grads = model.state_dict(), model.gradient_dict()
    keys = model.parameter_keys()
    for layer in model.graph.order:
        own = [k for k in keys if k.rpartition(".weights.")[0] == layer or k == f"{layer}.biases"]
        for key in own:
            for what, values in ((key, params[key]), (f"the gradient of {key}", grads[key])):
                if not np.isfinite(values).all():
                    return f"{layer} ({what}: {_count(values)})"
    return None


def check_step(model, loss, epoch, step):
    """Raise NonFiniteError when `loss` (a host float) or the parameters are non-finite after the
    training step `step` (1-based, within 1-based `epoch`)."""
    loss_ok = math.isfinite(loss)
    if loss_ok and parameters_finite(model):
        return
    layer = first_non_finite(model)
    what = f"the loss is {loss}" if not loss_ok else "the loss is finite but the parameters are not"
    where = (f"the first layer with non-finite weights, biases or gradients is {layer}" if layer else
             "every layer's weights, biases and gradients are finite (the input or the loss itself is not)")
    raise NonFiniteError(f"training diverged at epoch {epoch}, step {step}: {what}; {where}")
