"""SGD (kernels/sgd_update.cu) on both CPU paths: convention "torch" against torch.optim.SGD, and
convention "cuda-convnet" against a NumPy transcription of the original's Weights::update."""

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alexnet_raw.runtime import backends
from alexnet_raw import functional as F
from alexnet_raw.checks import tolerances

SHAPES = [(96, 3, 11, 11), (96,), (1000,), (1,)]  # conv1 weights, conv1 bias, fc8 bias, a scalar
HYPER = [  # (lr, momentum, weight_decay, batch_size)
    (0.01, 0.9, 0.0005, 128),  # AlexNet's weights
    (0.02, 0.9, 0.0, 128),     # AlexNet's biases: no weight decay
    (0.01, 0.0, 0.0, 1),       # plain SGD
    (0.1, 0.5, 0.01, 3),
]
STEPS = 4


def step_fn(under_schedules, param, grad, buf, *args, **kwargs):
    """One sgd_update under both schedules, each on fresh copies; returns the new (param, buf)."""

    def run():
        p, b = param.copy(), buf.copy()
        assert F.sgd_update(p, grad, b, *args, **kwargs) is None
        return p, b

    return under_schedules(run)


def grads(rng, shape, dtype, batch_size):
    # the gradient of the loss summed over the minibatch: grows with the batch
    return (rng.standard_normal(shape) * 0.1 * batch_size).astype(dtype)


def assert_close(ours, reference, dtype, what):
    assert tolerances.close(ours, reference, "sgd", dtype), (what, tolerances.max_errors(ours, reference))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("hyper", HYPER)
@pytest.mark.parametrize("shape", SHAPES)
def test_torch_convention_matches_torch_optim_sgd(backend, under_schedules, dtype, hyper, shape):
    lr, momentum, weight_decay, batch_size = hyper
    rng = np.random.default_rng(1)
    param = (rng.standard_normal(shape) * 0.01).astype(dtype)
    buf = np.zeros_like(param)
    tparam = torch.from_numpy(param.copy()).requires_grad_()
    opt = torch.optim.SGD([tparam], lr=lr, momentum=momentum, weight_decay=weight_decay)
    for step in range(STEPS):
        g = grads(rng, shape, dtype, batch_size)
        param, buf = step_fn(under_schedules, param, g, buf, lr, momentum, weight_decay, batch_size,
                             convention="torch")
        tparam.grad = torch.from_numpy(g) / batch_size  # torch's SGD sees the mean gradient
        opt.step()
        assert_close(param, tparam.detach().numpy(), dtype, f"param after step {step + 1}")
        if momentum:
            assert_close(buf, opt.state[tparam]["momentum_buffer"].numpy(), dtype, f"buffer after step {step + 1}")


def cuda_convnet_reference(w, inc, grad, lr, momentum, weight_decay, batch_size):
    """Weights::update of the original, literally: inc = mom*inc + eps*grad/N - eps*wc*W; W += inc,
    where the original's grad is the gradient of the log-likelihood, minus the loss gradient."""
    t = w.dtype.type
    eps, mom, wc, n = t(lr), t(momentum), t(weight_decay), t(batch_size)
    loglik_grad = -grad
    inc = mom * inc + eps * loglik_grad / n - eps * wc * w
    return w + inc, inc


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("hyper", HYPER)
@pytest.mark.parametrize("shape", SHAPES)
def test_cuda_convnet_convention_matches_the_original_formula(backend, under_schedules, dtype, hyper, shape):
    lr, momentum, weight_decay, batch_size = hyper
    rng = np.random.default_rng(2)
    param = (rng.standard_normal(shape) * 0.01).astype(dtype)
    inc = np.zeros_like(param)
    ref_param, ref_inc = param.copy(), inc.copy()
    for step in range(STEPS):
        g = grads(rng, shape, dtype, batch_size)
        param, inc = step_fn(under_schedules, param, g, inc, lr, momentum, weight_decay, batch_size)
        ref_param, ref_inc = cuda_convnet_reference(ref_param, ref_inc, g, lr, momentum, weight_decay, batch_size)
        assert param.dtype == dtype
        assert_close(param, ref_param, dtype, f"param after step {step + 1}")
        assert_close(inc, ref_inc, dtype, f"inc after step {step + 1}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_two_conventions_agree_for_a_constant_lr(backend, under_schedules, dtype):
    # inc = -lr * buf at every step, so the parameters follow the same path
    rng = np.random.default_rng(3)
    p1 = (rng.standard_normal((96, 3, 11, 11)) * 0.01).astype(dtype)
    p2, inc, buf = p1.copy(), np.zeros_like(p1), np.zeros_like(p1)
    for _ in range(STEPS):
        g = grads(rng, p1.shape, dtype, 128)
        p1, inc = step_fn(under_schedules, p1, g, inc, 0.01, 0.9, 0.0005, 128, convention="cuda-convnet")
        p2, buf = step_fn(under_schedules, p2, g, buf, 0.01, 0.9, 0.0005, 128, convention="torch")
    assert_close(p1, p2, dtype, "param")
    assert_close(inc, -dtype(0.01) * buf, dtype, "inc = -lr * buf")


def test_zero_lr_freezes_the_layer_in_the_cuda_convnet_convention(backend, under_schedules):
    # the original skips Weights::update when epsW is 0 (run #145 freezes conv1 so): param and inc
    # stay as they are, although inc is not zero
    rng = np.random.default_rng(4)
    param = rng.standard_normal((96, 3, 11, 11)).astype(np.float32)
    inc = rng.standard_normal(param.shape).astype(np.float32)
    g = rng.standard_normal(param.shape).astype(np.float32)
    new, new_inc = step_fn(under_schedules, param, g, inc, 0.0, 0.9, 0.0005, 128)
    np.testing.assert_array_equal(new, param)
    np.testing.assert_array_equal(new_inc, inc)


def test_zero_lr_in_the_torch_convention_updates_only_the_buffer(backend, under_schedules):
    rng = np.random.default_rng(5)
    param = rng.standard_normal((96,)).astype(np.float64)
    buf = rng.standard_normal(param.shape)
    g = rng.standard_normal(param.shape)
    new, new_buf = step_fn(under_schedules, param, g, buf, 0.0, 0.9, 0.0005, 128, convention="torch")
    tparam = torch.from_numpy(param.copy()).requires_grad_()
    opt = torch.optim.SGD([tparam], lr=0.0, momentum=0.9, weight_decay=0.0005)
    opt.state[tparam]["momentum_buffer"] = torch.from_numpy(buf.copy())
    tparam.grad = torch.from_numpy(g) / 128
    opt.step()
    np.testing.assert_array_equal(new, param)
    assert_close(new_buf, opt.state[tparam]["momentum_buffer"].numpy(), np.float64, "buffer")


def test_empty_arrays_are_a_no_op(backend):
    e = np.zeros((0, 3), np.float32)
    assert F.sgd_update(e, e.copy(), e.copy(), 0.1) is None


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    shape=st.lists(st.integers(1, 12), min_size=1, max_size=4),
    lr=st.floats(0.0, 0.5),
    momentum=st.floats(0.0, 0.99),
    weight_decay=st.sampled_from([0.0, 0.0005, 0.1]),
    batch_size=st.integers(1, 256),
    double=st.booleans(),
)
def test_property_random_shapes_against_torch(backend, under_schedules, shape, lr, momentum, weight_decay,
                                              batch_size, double):
    # the fixtures hold no per-example state: the backend stays set, under_schedules is a runner
    dtype = np.float64 if double else np.float32
    rng = np.random.default_rng(batch_size)
    param = (rng.standard_normal(shape) * 0.05).astype(dtype)
    buf = np.zeros_like(param)
    tparam = torch.from_numpy(param.copy()).requires_grad_()
    opt = torch.optim.SGD([tparam], lr=lr, momentum=momentum, weight_decay=weight_decay)
    for _ in range(2):
        g = grads(rng, shape, dtype, batch_size)
        param, buf = step_fn(under_schedules, param, g, buf, lr, momentum, weight_decay, batch_size,
                             convention="torch")
        tparam.grad = torch.from_numpy(g) / batch_size
        opt.step()
    assert_close(param, tparam.detach().numpy(), dtype, "param")


def test_rejects_bad_input(backend):
    p = np.zeros((4, 4), np.float32)

    def call(param=None, grad=None, buf=None, **kwargs):
        args = dict(lr=0.1)
        args.update(kwargs)
        return F.sgd_update(p.copy() if param is None else param, p.copy() if grad is None else grad,
                            p.copy() if buf is None else buf, **args)

    with pytest.raises(ValueError, match=r"grad must have the shape of param \(4, 4\), got \(4, 3\)"):
        call(grad=np.zeros((4, 3), np.float32))
    with pytest.raises(ValueError, match=r"momentum_buffer must have the shape of param \(4, 4\), got \(16,\)"):
        call(buf=np.zeros(16, np.float32))
    with pytest.raises(TypeError, match=r"grad must have the same dtype as the other arrays \(float32\), got float64"):
        call(grad=np.zeros((4, 4)))
    with pytest.raises(TypeError, match=r"momentum_buffer must have the same dtype .* got float64"):
        call(buf=np.zeros((4, 4)))
    with pytest.raises(TypeError, match="param must be float32 or float64, got int32"):
        call(param=np.zeros((4, 4), np.int32))
    for name in ("lr", "momentum", "weight_decay"):
        for bad in (float("nan"), float("inf")):
            with pytest.raises(ValueError, match=f"{name} must be finite, got {bad}"):
                call(**{name: bad})
        with pytest.raises(ValueError, match=f"{name} must be >= 0, got -0.5"):
            call(**{name: -0.5})
    with pytest.raises(TypeError, match="lr must be a real number, got None"):
        call(lr=None)
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        call(batch_size=0)
    with pytest.raises(TypeError, match="batch_size must be an int, got 2.0"):
        call(batch_size=2.0)
    with pytest.raises(ValueError, match=r"convention must be one of \('cuda-convnet', 'torch'\), got 'caffe'"):
        call(convention="caffe")
    if backend in backends.CPU_BACKENDS:  # a NumPy array can be read-only; a device array cannot
        frozen = p.copy()
        frozen.flags.writeable = False
        with pytest.raises(ValueError, match="param is read-only"):
            call(param=frozen)
        with pytest.raises(ValueError, match="momentum_buffer is read-only"):
            call(buf=frozen)
        call(grad=frozen)  # grad is only read
    shared = p.copy()
    with pytest.raises(ValueError, match="param and momentum_buffer overlap in memory"):
        call(param=shared, buf=shared)
    with pytest.raises(ValueError, match="param and grad overlap in memory"):
        call(param=shared, grad=shared)
    with pytest.raises(ValueError, match="C-contiguous"):
        call(param=np.zeros((4, 8), np.float32)[:, ::2])
