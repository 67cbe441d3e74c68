"""SGD with momentum and weight decay, in place: kernels/sgd_update.cu. References: torch.optim.SGD
(convention "torch") and cuda-convnet's Weights::update (convention "cuda-convnet"); tests:
tests/kernels/test_sgd_update.py."""

from __future__ import annotations

import numpy as np

from ..runtime.launch import Launch, c_type, elementwise
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
    lr, momentum, weight_decay: finite, >= 0 and representable in the arrays' dtype; batch_size: int
    >= 1. param and momentum_buffer are written in place: C-contiguous and writable; grad may be
    strided.
    """
    param = _checks.output(param, "param", op="sgd_update")
    grad = _checks.array(grad, "grad", like=param)
    momentum_buffer = _checks.output(momentum_buffer, "momentum_buffer", like=param, op="sgd_update")
    _checks.same_shape(grad, "grad", param.shape, "param")
    _checks.same_shape(momentum_buffer, "momentum_buffer", param.shape, "param")
    backend = _checks.backend(param)
    xp = backend.array_module
    for (a, an), (b, bn) in (((param, "param"), (grad, "grad")), ((param, "param"), (momentum_buffer, "momentum_buffer")),
                             ((grad, "grad"), (momentum_buffer, "momentum_buffer"))):
        if a.size and b.size and xp.may_share_memory(a, b):
            raise ValueError(f"{an} and {bn} overlap in memory; sgd_update needs three separate arrays")
    values = {name: _checks.finite(v, name, minimum=0, dtype=param.dtype)
              for name, v in (("lr", lr), ("momentum", momentum), ("weight_decay", weight_decay))}
    batch_size = _checks.integer(batch_size, "batch_size", minimum=1)
    _checks.in_dtype(batch_size, "batch_size", param.dtype)
    _checks.choice(convention, "convention", CONVENTIONS)
    if convention == "cuda-convnet" and values["lr"] == 0.0:
        return None  # the original's Weights::update does nothing when epsW is 0
    if param.size:
        backend.launch(update_launch(param, momentum_buffer, _checks.contiguous(grad), convention, values["lr"],
                                     values["momentum"], values["weight_decay"], batch_size))
    return None
