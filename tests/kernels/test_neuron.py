"""cuda-convnet's neurons (kernels/neuron.cu) against their torch expressions and autograd backward,
on both CPU paths and under two schedules: every neuron, both dtypes, empty, odd and 4-D shapes,
inputs up to |x| = 100, NaN and infinities; a float64 central-difference check; parse_neuron; bad
input."""

import re

import numpy as np
import pytest
import torch

from alexnet_raw import functional as F
from alexnet_raw.checks import tolerances
from alexnet_raw.checks import torch_reference

SHAPES = [(0,), (1,), (7,), (2, 3, 17, 19), (3, 1, 5, 1), (100003,)]
# name -> (a, b) as a layer file might give them (None: the neuron has no such parameter)
PARAMETERS = {
    "logistic": (None, None),
    "tanh": (1.7159, 0.6666),
    "brelu": (6.0, None),
    "abs": (None, None),
    "square": (None, None),
    "sqrt": (None, None),
    "linear": (0.7, -1.3),  # not powers of two: torch rounds a * x, then + b; the kernel once (fma)
    "softrelu": (None, None),
}
NAMES = list(PARAMETERS)
SPECIALS = [np.nan, -0.0, 0.0, np.inf, -np.inf, -1.0]


def draw(name, shape, dtype, seed):
    """Inputs of order 1-10 (sqrt: non-negative), the special values first."""
    x = 3 * np.random.default_rng(seed).standard_normal(shape)
    if name == "sqrt":
        x = np.abs(x)
    x = x.astype(dtype)
    flat = x.reshape(-1)
    flat[: len(SPECIALS)] = np.array(SPECIALS, dtype)[: flat.size]
    return x


def torch_forward_backward(x, g, name, a, b):
    """torch's output and input gradient for upstream g."""
    y, (gx,) = torch_reference.forward_backward(lambda t: torch_reference.neuron(t, name, a, b), [x], g)
    return y, gx


def assert_close(ours, reference, dtype, what):
    assert ours.shape == reference.shape and ours.dtype == dtype, what
    assert tolerances.close(ours, reference, "neuron", dtype), (what, tolerances.max_errors(ours, reference))


def brelu_ends(y, a):
    """Where brelu's output is 0 or a: cuda-convnet's gradient is 0 there (0 < y < a), torch.clamp's
    passes the gradient (0 <= x <= a)."""
    return (y == 0) | (y == a)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", NAMES)
def test_neuron_forward_matches_torch(backend, under_schedules, name, dtype, shape):
    a, b = PARAMETERS[name]
    x = draw(name, shape, dtype, seed=1)
    y = under_schedules(lambda: F.neuron(x, name, a, b))
    assert_close(y, torch_reference.neuron(torch.from_numpy(x), name, a, b).numpy(), dtype, name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", NAMES)
def test_neuron_backward_matches_torch_autograd(backend, under_schedules, name, dtype, shape):
    a, b = PARAMETERS[name]
    x = draw(name, shape, dtype, seed=2)
    g = np.random.default_rng(3).standard_normal(shape).astype(dtype)
    y, expected = torch_forward_backward(x, g, name, a, b)
    grad = under_schedules(lambda: F.neuron_backward(g, x, y, name, a, b))
    if name == "brelu":
        expected = np.where(brelu_ends(y, a), 0, expected)
    assert_close(grad, expected, dtype, name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", NAMES)
def test_forward_then_backward_on_our_own_output(backend, under_schedules, name, dtype):
    # the engine's chain: the backward reads our forward's output, not torch's
    a, b = PARAMETERS[name]
    x = draw(name, (4, 8, 9, 10), dtype, seed=4)
    g = np.random.default_rng(5).standard_normal(x.shape).astype(dtype)
    grad = under_schedules(lambda: F.neuron_backward(g, x, F.neuron(x, name, a, b), name, a, b))
    ref_y, expected = torch_forward_backward(x, g, name, a, b)
    if name == "brelu":
        expected = np.where(brelu_ends(ref_y, a), 0, expected)
    assert_close(grad, expected, dtype, name)


def test_grid_stride_loop_covers_more_elements_than_the_grid(backend, under_schedules):
    # 1.1 M elements: more than the largest grid (4224 blocks of 256), so threads take several
    x = np.random.default_rng(6).standard_normal(1_100_003).astype(np.float32)
    y, grad = under_schedules(lambda: (F.neuron(x, "square"), F.neuron_backward(x, x, x, "linear", 0.5, 3.0)))
    np.testing.assert_array_equal(y, x * x)
    np.testing.assert_array_equal(grad, x * np.float32(0.5))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["logistic", "tanh", "softrelu"])
def test_saturating_neurons_at_large_inputs(backend, under_schedules, name, dtype):
    # |x| up to 100: exp overflows float32 beyond 88; no NaN may come of it, forward or backward
    a, b = PARAMETERS[name]
    x = np.linspace(-100, 100, 2001).astype(dtype)
    g = np.ones_like(x)
    y, grad = under_schedules(lambda: (F.neuron(x, name, a, b), F.neuron_backward(g, x, F.neuron(x, name, a, b),
                                                                                  name, a, b)))
    assert np.isfinite(y).all() and np.isfinite(grad).all()
    ref_y, ref_grad = torch_forward_backward(x, g, name, a, b)
    assert_close(y, ref_y, dtype, name)
    assert_close(grad, ref_grad, dtype, name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softrelu_gradient_keeps_its_relative_accuracy_where_it_is_tiny(backend, under_schedules, dtype):
    # x in [-80, -20]: y = log1p(exp(x)) ~ exp(x) is tiny, and 1 - exp(-y) would round to 0 or to a
    # multiple of the ulp of 1; -expm1(-y) keeps the few-ulp accuracy of torch's z / (z + 1)
    x = np.linspace(-80, -20, 601).astype(dtype)
    g = np.ones_like(x)
    _, expected = torch_forward_backward(x, g, "softrelu", None, None)
    grad = under_schedules(lambda: F.neuron_backward(g, x, F.neuron(x, "softrelu"), "softrelu"))
    np.testing.assert_allclose(grad, expected, rtol=8 * np.finfo(dtype).eps, atol=0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", NAMES)
def test_nan_and_infinities_as_torch(backend, under_schedules, name, dtype):
    a, b = PARAMETERS[name]
    x = np.array(SPECIALS + [2.0, -2.0], dtype)
    g = np.array([1.0, 2.0, -3.0, 0.5, -0.5, 1.5, np.inf, np.nan], dtype)
    ref_y, ref_grad = torch_forward_backward(x, g, name, a, b)
    y, grad = under_schedules(lambda: (F.neuron(x, name, a, b), F.neuron_backward(g, x, ref_y, name, a, b)))
    if name == "brelu":
        ref_grad = np.where(brelu_ends(ref_y, a), 0, ref_grad)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref_y), err_msg=f"{name}: NaN where torch has none")
    np.testing.assert_array_equal(np.isnan(grad), np.isnan(ref_grad), err_msg=f"{name} backward: NaN")
    assert_close(y, ref_y, dtype, name)
    assert_close(grad, ref_grad, dtype, name)


def test_brelu_gradient_is_zero_at_both_ends(backend, under_schedules):
    # cuda-convnet passes the gradient where 0 < y < a only; torch.clamp where 0 <= x <= a
    x = np.array([-1.0, 0.0, 0.5, 6.0, 7.0])
    y, grad = under_schedules(lambda: (F.neuron(x, "brelu", 6),
                                       F.neuron_backward(np.full(5, 2.0), x, F.neuron(x, "brelu", 6), "brelu", 6)))
    np.testing.assert_array_equal(y, [0.0, 0.0, 0.5, 6.0, 6.0])
    np.testing.assert_array_equal(grad, [0, 0, 2.0, 0, 0])


@pytest.mark.parametrize("name", NAMES)
def test_gradient_check_float64(backend, under_schedules, name):
    # central differences, inputs away from kinks (0 for abs and brelu, brelu's a) and sqrt's 0
    a, b = PARAMETERS[name]
    rng = np.random.default_rng(7)
    x = rng.uniform(0.2, 5.5, 60) * rng.choice([-1.0, 1.0], 60)
    if name == "sqrt":
        x = np.abs(x)
    g = rng.standard_normal(60)
    eps = 1e-6
    numeric = (F.neuron(x + eps, name, a, b) - F.neuron(x - eps, name, a, b)) / (2 * eps) * g
    analytic = under_schedules(lambda: F.neuron_backward(g, x, F.neuron(x, name, a, b), name, a, b))
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


def test_tanh_parameters_default_to_one(backend, under_schedules):
    x = np.linspace(-3, 3, 13)
    defaults = under_schedules(lambda: (F.neuron(x, "tanh"), F.neuron(x, "tanh", a=2.0)))
    np.testing.assert_array_equal(defaults[0], F.neuron(x, "tanh", 1.0, 1.0))
    np.testing.assert_array_equal(defaults[1], F.neuron(x, "tanh", 2.0, 1.0))


def test_relu_and_ident_pass_through(backend, under_schedules):
    x = np.random.default_rng(8).standard_normal((3, 5)).astype(np.float32)
    g = np.random.default_rng(9).standard_normal((3, 5)).astype(np.float32)
    y, grad = under_schedules(lambda: (F.neuron(x, "relu"), F.neuron_backward(g, x, F.relu(x), "relu")))
    np.testing.assert_array_equal(y, F.relu(x))
    np.testing.assert_array_equal(grad, F.relu_backward(g, F.relu(x)))
    y = F.neuron(x, "ident")
    assert y is not x and y.dtype == x.dtype
    np.testing.assert_array_equal(y, x)
    np.testing.assert_array_equal(F.neuron_backward(g, x, y, "ident"), g)


@pytest.mark.parametrize("text, expected", [
    ("logistic", ("logistic", None, None)),
    ("tanh[1.7159,0.6666]", ("tanh", 1.7159, 0.6666)),
    ("brelu[6]", ("brelu", 6.0, None)),
    ("linear[2,-1]", ("linear", 2.0, -1.0)),
    ("linear[1e-3, -2.5e2]", ("linear", 1e-3, -250.0)),
    ("tanh [ -1 , 0.5 ] ", ("tanh", -1.0, 0.5)),
    ("relu", ("relu", None, None)),
    ("ident", ("ident", None, None)),
    ("abs", ("abs", None, None)),
    ("square", ("square", None, None)),
    ("sqrt", ("sqrt", None, None)),
    ("softrelu", ("softrelu", None, None)),
])
def test_parse_neuron(text, expected):
    assert F.parse_neuron(text) == expected
    assert F.parse_neuron(text) == F.parse_neuron(text.replace(" ", ""))


@pytest.mark.parametrize("text, says", [
    ("sigmoid", "expected one of"),
    ("", "expected one of"),
    ("tanh", r"expected tanh\[a,b\] with 2 number"),
    ("tanh[1]", r"expected tanh\[a,b\], 2 number\(s\), got 1"),
    ("tanh[1,2,3]", "got 3"),
    ("tanh[1,]", "with numbers, got ''"),
    ("tanh[0,1]", "a != 0"),
    ("brelu[0]", "a > 0, got a=0.0"),
    ("brelu[-1]", "a > 0"),
    ("brelu[a]", "with numbers, got 'a'"),
    ("brelu[nan]", "a must be finite"),
    ("linear[inf,0]", "a must be finite"),
    ("logistic[1]", "without brackets"),
    ("relu[]", "without brackets"),
    ("brelu[6", "expected one of"),
])
def test_parse_neuron_rejects(text, says):
    with pytest.raises(ValueError, match=re.escape(f"neuron {text!r}") + ".*" + says):
        F.parse_neuron(text)


def test_neuron_rejects_bad_input(backend):
    x = np.ones((4, 4), np.float32)
    with pytest.raises(ValueError, match="unknown neuron 'sigmoid': expected one of abs, brelu"):
        F.neuron(x, "sigmoid")
    with pytest.raises(TypeError, match="name must be a str"):
        F.neuron(x, None)
    with pytest.raises(TypeError, match="logistic takes no parameters, got a=2"):
        F.neuron(x, "logistic", 2)
    with pytest.raises(TypeError, match=r"brelu\[a\] takes only a, got b=1"):
        F.neuron(x, "brelu", 6, 1)
    with pytest.raises(TypeError, match=r"brelu\[a\] needs a, got a=None"):
        F.neuron(x, "brelu")
    with pytest.raises(TypeError, match=r"linear\[a,b\] needs b"):
        F.neuron(x, "linear", 2)
    with pytest.raises(ValueError, match="a != 0"):
        F.neuron(x, "tanh", 0.0, 1.0)
    with pytest.raises(ValueError, match="a > 0, got a=-1"):
        F.neuron(x, "brelu", -1)
    with pytest.raises(ValueError, match="b must be finite, got nan"):
        F.neuron(x, "tanh", 1.0, float("nan"))
    with pytest.raises(TypeError, match="a must be a real number, got 'x'"):
        F.neuron(x, "linear", "x", 0)
    with pytest.raises(TypeError, match="float32 or float64, got int32"):
        F.neuron(x.astype(np.int32), "abs")
    with pytest.raises(TypeError, match="numpy.ndarray or cupy.ndarray, got list"):
        F.neuron([1.0, 2.0], "abs")
    with pytest.raises(TypeError, match="same dtype"):
        F.neuron_backward(x.astype(np.float64), x, x, "abs")
    with pytest.raises(ValueError, match="shape of input"):
        F.neuron_backward(np.ones((4, 3), np.float32), x, x, "abs")
    with pytest.raises(ValueError, match="output must have the shape of input"):
        F.neuron_backward(x, x, np.ones(16, np.float32), "logistic")
    with pytest.raises(TypeError, match="sqrt takes no parameters"):
        F.neuron_backward(x, x, x, "sqrt", 1.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softrelu_reference_threshold_is_exact_in_each_dtype(dtype):
    """The reference's softplus threshold: past it torch returns x, which must be log(1 + exp(x))
    rounded to the dtype. float32 keeps PyTorch's own default (20); float64 needs more (the
    default would drop log1p(exp(-x)) ~ 2e-9, far above float64's rounding)."""
    t = torch_reference.softplus_threshold(dtype)
    assert t >= torch_reference.TORCH_SOFTPLUS_THRESHOLD
    x = np.linspace(t, 3 * t, 2001).astype(dtype)
    exact = (x.astype(np.longdouble) + np.log1p(np.exp(-x.astype(np.longdouble)))).astype(dtype)
    assert np.array_equal(x, exact)  # past the threshold, x is the rounded log(1 + exp(x))
    below = np.linspace(1, t, 200).astype(dtype)
    torch_below = torch.nn.functional.softplus(torch.from_numpy(below), threshold=1e9).numpy()
    assert np.array_equal(torch_reference.neuron(torch.from_numpy(below), "softrelu").numpy(), torch_below)
    default = torch.nn.functional.softplus(torch.from_numpy(np.array([25.0], dtype))).numpy()
    exact_25 = (np.longdouble(25) + np.log1p(np.exp(-np.longdouble(25)))).astype(dtype)
    assert (default[0] == exact_25) == (dtype == np.float32)  # torch's default is exact in float32 only
