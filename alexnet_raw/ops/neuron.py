"""cuda-convnet's neurons (a layer's `neuron=...`): kernels/neuron.cu. Reference: the torch
expressions of alexnet_raw/checks/torch_reference.py `neuron` (torch.sigmoid, a * torch.tanh(b * x),
torch.clamp, torch.abs, x * x, torch.sqrt, a * x + b, torch.nn.functional.softplus with a threshold
exact in each dtype) and their autograd backward; tests: tests/kernels/test_neuron.py.

    logistic 1/(1+exp(-x))   tanh[a,b] a*tanh(b*x)   brelu[a] min(max(x,0),a)   abs |x|
    square x*x   sqrt sqrt(x)   linear[a,b] a*x+b   softrelu log(1+exp(x))

relu (kernels/relu.cu) and ident (a copy) are accepted too, so that whatever parse_neuron reads
from a layer file can be handed to neuron() and neuron_backward().
"""

from __future__ import annotations

import re

import numpy as np

from ..runtime.launch import Launch, c_type, elementwise
from . import _checks
from .relu import relu, relu_backward

SOURCE = "neuron.cu"

# name -> (the kernel's neuron struct, its parameters in cuda-convnet's order)
KERNEL_NEURONS = {
    "abs": ("Abs", ()),
    "brelu": ("BRelu", ("a",)),
    "linear": ("Linear", ("a", "b")),
    "logistic": ("Logistic", ()),
    "softrelu": ("SoftRelu", ()),
    "sqrt": ("Sqrt", ()),
    "square": ("Square", ()),
    "tanh": ("Tanh", ("a", "b")),
}
OTHER_NEURONS = ("ident", "relu")  # no parameters, no kernel of this file
NAMES = tuple(sorted((*KERNEL_NEURONS, *OTHER_NEURONS)))
# the functional API's defaults (tanh alone); a layer file must give every parameter, as cuda-convnet
DEFAULTS = {"tanh": {"a": 1.0, "b": 1.0}}


def _parameters(name):
    return KERNEL_NEURONS[name][1] if name in KERNEL_NEURONS else ()


def _spelling(name):
    params = _parameters(name)
    return f"{name}[{','.join(params)}]" if params else name


def check_neuron(name, a=None, b=None, dtype=None):
    """Checks a neuron name and its parameters (representable in `dtype` where given: the kernels
    compute in the arrays' dtype); returns (name, a, b) with the defaults filled in and the
    parameters as floats (None where the neuron has none)."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, one of {', '.join(NAMES)}; got {name!r}")
    if name not in NAMES:
        raise ValueError(f"unknown neuron {name!r}: expected one of {', '.join(NAMES)} as name")
    params = _parameters(name)
    given = {"a": a, "b": b}
    values = {}
    for param in ("a", "b"):
        value = given[param]
        if param not in params:
            if value is not None:
                takes = f"only {', '.join(params)}" if params else "no parameters"
                raise TypeError(f"neuron {_spelling(name)} takes {takes}, got {param}={value!r} (name={name!r})")
            values[param] = None
            continue
        if value is None:
            value = DEFAULTS.get(name, {}).get(param)
            if value is None:
                raise TypeError(f"neuron {_spelling(name)} needs {param}, got {param}=None")
        values[param] = _checks.finite(value, param, dtype=dtype)
    if name == "tanh" and (values["a"] == 0 or (dtype is not None and np.dtype(dtype).type(values["a"]) == 0)):
        raise ValueError(f"neuron tanh[a,b] needs a != 0 (its backward divides by a), got a={a!r}"
                         f"{'' if values['a'] == 0 else f' (0 in {np.dtype(dtype).name})'}")
    if name == "brelu" and values["a"] <= 0:
        raise ValueError(f"neuron brelu[a] needs a > 0, got a={a!r}")
    return name, values["a"], values["b"]


_TEXT = re.compile(r"^\s*([A-Za-z_]\w*)\s*(?:\[([^\[\]]*)\])?\s*$")


def parse_neuron(text):
    """A layer file's neuron, as cuda-convnet writes it: "logistic", "tanh[1.7159,0.6666]",
    "brelu[6]", "linear[2,-1]", "relu", "ident", ... -> (name, a, b), a and b None where the neuron
    has no such parameter. Parameterised neurons need every parameter in brackets (cuda-convnet's
    parser has no defaults); anything else is a ValueError that quotes the text."""
    if not isinstance(text, str):
        raise TypeError(f"neuron must be a str such as 'tanh[1.7159,0.6666]', got {text!r}")
    match = _TEXT.match(text)
    if match is None or match.group(1) not in NAMES:
        raise ValueError(f"neuron {text!r}: expected one of {', '.join(_spelling(n) for n in NAMES)}")
    name, inside = match.group(1), match.group(2)
    params = _parameters(name)
    if inside is None and params:
        raise ValueError(f"neuron {text!r}: expected {_spelling(name)} with {len(params)} number(s) in brackets")
    if inside is not None and not params:
        raise ValueError(f"neuron {text!r}: expected {name} without brackets (it takes no parameters)")
    numbers = []
    for part in (inside.split(",") if params else []):
        try:
            numbers.append(float(part))
        except ValueError:
            raise ValueError(f"neuron {text!r}: expected {_spelling(name)} with numbers, got {part.strip()!r}") from None
    if len(numbers) != len(params):
        raise ValueError(f"neuron {text!r}: expected {_spelling(name)}, {len(params)} number(s), got {len(numbers)}")
    values = dict(zip(params, numbers))
    try:
        return check_neuron(name, values.get("a"), values.get("b"))
    except (TypeError, ValueError) as e:
        raise ValueError(f"neuron {text!r}: {e}") from None


def _scalars(a, b, dtype):
    """a and b in the kernel's type (0 where the neuron has none)."""
    t = np.dtype(dtype).type
    return t(0 if a is None else a), t(0 if b is None else b)


def forward_launch(y, x, name, a=None, b=None) -> Launch:
    grid, block = elementwise(x.size)
    kernel = f"neuron_forward<{c_type(x.dtype)}, {KERNEL_NEURONS[name][0]}>"
    return Launch(SOURCE, kernel, grid, block, (y, x, np.int64(x.size)) + _scalars(a, b, x.dtype))


def backward_launch(grad_x, grad_y, x, y, name, a=None, b=None) -> Launch:
    grid, block = elementwise(x.size)
    kernel = f"neuron_backward<{c_type(x.dtype)}, {KERNEL_NEURONS[name][0]}>"
    return Launch(SOURCE, kernel, grid, block,
                  (grad_x, grad_y, x, y, np.int64(x.size)) + _scalars(a, b, x.dtype))


def neuron(input, name, a=None, b=None):
    """cuda-convnet's neuron `name` (with parameters a, b where it has them) applied elementwise."""
    input = _checks.array(input, "input")
    name, a, b = check_neuron(name, a, b, input.dtype)
    if name == "relu":
        return relu(input)
    if name == "ident":
        return input.copy()  # C-contiguous, strided input or not
    input = _checks.contiguous(input)
    backend = _checks.backend(input)
    out = backend.empty(input.shape, input.dtype)
    if input.size:
        backend.launch(forward_launch(out, input, name, a, b))
    return out


def neuron_backward(grad_output, input, output, name, a=None, b=None):
    """Gradient of neuron(input, name, a, b) with respect to its input, from the gradient of its
    output, its input and its output (each neuron's backward reads one of them)."""
    input = _checks.array(input, "input")
    output = _checks.array(output, "output", like=input)
    grad_output = _checks.array(grad_output, "grad_output", like=input)
    _checks.same_shape(output, "output", input.shape, "input")
    _checks.same_shape(grad_output, "grad_output", input.shape, "input")
    name, a, b = check_neuron(name, a, b, input.dtype)
    if name == "relu":
        return relu_backward(grad_output, output)
    if name == "ident":
        return grad_output.copy()  # C-contiguous, strided or not
    input, output, grad_output = (_checks.contiguous(v) for v in (input, output, grad_output))
    backend = _checks.backend(input)
    grad_input = backend.empty(input.shape, input.dtype)
    if input.size:
        backend.launch(backward_launch(grad_input, grad_output, input, output, name, a, b))
    return grad_input
