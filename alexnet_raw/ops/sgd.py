"""SGD with momentum and weight decay, in place: kernels/sgd_update.cu. References: torch.optim.SGD
(convention "torch") and cuda-convnet's Weights::update (convention "cuda-convnet"); tests:
tests/kernels/test_sgd.py."""

from __future__ import annotations

import numpy as np

from ..launch import Launch, c_type, elementwise
from . import _checks

SOURCE = "sgd_update.cu"
CONVENTIONS = {"cuda-convnet": "sgd_update_cuda_convnet", "torch": "sgd_update_torch"}


def update_launch(param, buf, grad, convention, lr, momentum, weight_decay, batch_size) -> Launch:
    t = param.dtype.type
    grid, block = elementwise(param.size)
    return Launch(
        SOURCE,
        f"{CONVENTIONS[convention]}<{c_type(param.dtype)}>",
        grid,
        block,
        (param, buf, grad, np.int64(param.size), t(lr), t(momentum), t(weight_decay), t(batch_size)),
    )


def _writable(x, name):
    flags = getattr(x, "flags", None)
    if isinstance(x, np.ndarray) and not flags.writeable:
        raise ValueError(f"{name} is read-only; sgd_update writes it in place (pass a writable array)")


def sgd_update(param, grad, momentum_buffer, lr, momentum=0.9, weight_decay=0.0, batch_size=1,
               convention="cuda-convnet"):
    """One SGD step, in place on `param` and `momentum_buffer`; returns None.

    `grad` is the gradient of the loss (not of the log-likelihood) summed over a minibatch of
    `batch_size` examples, as our backward functions return it; all three arrays have one shape
    and dtype and must not overlap.

    convention "cuda-convnet" (the original AlexNet's Weights::update; the buffer holds `inc`):
        inc = momentum * inc - lr * (grad / batch_size + weight_decay * param);  param += inc
    The original writes `inc = mom*inc + eps*grad/N - eps*wc*W` with grad the gradient of the
    log-likelihood, which is minus ours: same update, lr = eps, weight_decay = wc.
    convention "torch" (torch.optim.SGD, dampening 0, nesterov False):
        d = grad / batch_size + weight_decay * param;  buf = momentum * buf + d;  param -= lr * buf
    A zero-initialised buffer reproduces torch's first step (torch sets buf = d). With momentum 0
    the buffer is still written (it holds d, or -lr*d).
    lr = 0: "cuda-convnet" changes nothing, neither param nor inc (the original skips a layer whose
    epsW is 0: `if (_srcWeights == NULL && _epsW > 0)`; run #145 freezes conv1 this way);
    "torch" updates the buffer and leaves param unchanged, as torch.optim.SGD does.
    lr, momentum, weight_decay: finite and >= 0; batch_size: int >= 1.
    """
    backend = _checks.tensor(param, "param")
    _checks.tensor(grad, "grad", like=param)
    _checks.tensor(momentum_buffer, "momentum_buffer", like=param)
    _checks.same_shape(grad, "grad", param.shape, "param")
    _checks.same_shape(momentum_buffer, "momentum_buffer", param.shape, "param")
    _writable(param, "param")
    _writable(momentum_buffer, "momentum_buffer")
    xp = backend.array_module
    for (a, an), (b, bn) in (((param, "param"), (grad, "grad")), ((param, "param"), (momentum_buffer, "momentum_buffer")),
                             ((grad, "grad"), (momentum_buffer, "momentum_buffer"))):
        if a.size and b.size and xp.may_share_memory(a, b):
            raise ValueError(f"{an} and {bn} overlap in memory; sgd_update needs three separate arrays")
    values = {}
    for name, v in (("lr", lr), ("momentum", momentum), ("weight_decay", weight_decay)):
        values[name] = _checks.finite(v, name)
        if values[name] < 0:
            raise ValueError(f"{name} must be >= 0, got {v!r}")
    batch_size = _checks.integer(batch_size, "batch_size", minimum=1)
    if not isinstance(convention, str) or convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {tuple(CONVENTIONS)}, got {convention!r}")
    if convention == "cuda-convnet" and values["lr"] == 0.0:
        return None  # the original's Weights::update does nothing when epsW is 0
    if param.size:
        backend.launch(update_launch(param, momentum_buffer, grad, convention, values["lr"], values["momentum"],
                                     values["weight_decay"], batch_size))
    return None
