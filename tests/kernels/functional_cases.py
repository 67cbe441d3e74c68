"""One small valid call of every functional op, what each argument is, and the reference result of
any valid call: shared by tests/kernels/test_functional_arguments.py and
tests/kernels/test_functional_properties.py. The references are the kernel tests' own (PyTorch,
NumPy, the Python Philox of test_dropout), imported from their modules, not copies.

    Case.op        the name in alexnet_raw.functional
    Case.kwargs    a valid call, by keyword (small arrays)
    Case.arrays    the array arguments the op reads (each may be strided, it must give the same result)
    Case.outputs   the array arguments the op writes in place (must be C-contiguous)
    Case.linked    arrays whose values must agree with each other (a forward's input and output)
    Case.finite    arrays whose NaN/inf entries the kernels treat otherwise than the reference (CONV_WEIGHT_NAN)
    Case.scalars   the other arguments: name -> kind ("real", "unit" (a probability in [0, 1)),
                   "optional_real" (None for the default), "int", "size" (an int >= 1), "pair" (an int
                   or a pair of ints), "bool", "str")
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from test_conv2d import torch_conv
from test_softmax_cross_entropy import torch_loss_and_grad, torch_topk_correct
from test_dropout import _torch_dropout_with_mask, expected_mask
from test_linear import torch_linear
from test_local import torch_local
from test_local_response_norm import torch_lrn
from test_neuron import torch_forward_backward
from test_same_map_norm import torch_forward_backward as torch_same_map_norm
from test_sgd_update import cuda_convnet_reference

import test_avg_pool2d
import test_max_pool2d
from alexnet_raw import functional as F
from alexnet_raw.checks import tolerances
from alexnet_raw.checks import torch_reference


@dataclasses.dataclass
class Case:
    op: str
    kwargs: dict
    arrays: tuple
    outputs: tuple = ()
    scalars: dict = dataclasses.field(default_factory=dict)
    linked: tuple = ()  # arrays whose values must agree (a forward's input and output): changed only in layout
    finite: tuple = ()  # arrays not given NaN/inf entries (see CONV_WEIGHT_NAN)

    def call(self, **changes):
        kwargs = dict(self.kwargs, **changes)
        return getattr(F, self.op)(**kwargs), kwargs


POOL = {"kernel_size": "pair", "stride": "pair", "padding": "pair", "ceil_mode": "bool"}
# A NaN or inf weight of conv2d (or grad_output entry, for the weight gradient): the kernels multiply
# the implicit zero padding by it (0 * NaN = NaN, the formula of zero padding), torch's CPU
# convolution skips the padded taps, so torch gives numbers at the border where the kernels give
# NaN. Not what these tests are about: those arrays stay finite here.
CONV_WEIGHT_NAN = ("weight",)
CONV = {"stride": "pair", "padding": "pair", "groups": "size", "ceil_mode": "bool"}
NORM = {"size": "size", "alpha": "real", "beta": "real", "k": "real"}


def cases(dtype=np.float32, seed=0):
    """One Case per functional op (every array op), fresh arrays of `dtype`."""
    rng = np.random.default_rng(seed)

    def a(*shape):
        return rng.standard_normal(shape).astype(dtype)

    x, w, b = a(2, 3, 5, 5), a(4, 3, 3, 3), a(4)
    pooled = a(2, 3, 2, 2)
    logits, target = a(3, 5), np.array([0, 4, 2], np.int64)
    fc_x, fc_w, fc_b = a(2, 6), a(4, 6), a(4)
    flat = a(3, 4)
    local_w, local_b = a(5, 5, 4, 3, 3, 3), a(4, 5, 5)  # one (4, 3, 3, 3) bank and 4 biases per output position
    return [
        Case("accumulate", {"out": a(3, 4), "x": a(3, 4)}, ("x",), ("out",)),
        Case("avg_pool2d", {"input": x, "kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": False,
                            "count_include_pad": True}, ("input",), scalars=dict(POOL, count_include_pad="bool")),
        Case("avg_pool2d_backward", {"grad_output": a(2, 3, 3, 3), "input": x, "kernel_size": 3, "stride": 2,
                                     "padding": 1, "ceil_mode": False, "count_include_pad": True},
             ("grad_output", "input"), scalars=dict(POOL, count_include_pad="bool")),
        Case("conv2d", {"input": x, "weight": w, "bias": b, "stride": 1, "padding": 1, "groups": 1,
                        "ceil_mode": False}, ("input", "weight", "bias"), scalars=CONV,
             finite=CONV_WEIGHT_NAN),
        Case("conv2d_backward", {"grad_output": a(2, 4, 5, 5), "input": x, "weight": w, "stride": 1, "padding": 1,
                                 "groups": 1, "ceil_mode": False, "bias": True, "input_grad": True},
             ("grad_output", "input", "weight"), scalars=dict(CONV, bias="bool", input_grad="bool"),
             finite=CONV_WEIGHT_NAN + ("grad_output",)),
        Case("cross_entropy", {"input": logits, "target": target}, ("input", "target")),
        Case("cross_entropy_backward", {"input": logits, "target": target}, ("input", "target")),
        Case("softmax", {"input": logits}, ("input",)),
        Case("topk_correct", {"input": logits, "target": target, "k": 2}, ("input", "target"), scalars={"k": "size"}),
        Case("dropout", {"input": flat, "p": 0.3, "training": True, "seed": 7, "offset": 1, "mode": "inverted"},
             ("input",), scalars={"p": "unit", "training": "bool", "seed": "int", "offset": "int", "mode": "str"}),
        Case("dropout_backward", {"grad_output": flat, "p": 0.3, "seed": 7, "offset": 1, "mode": "original"},
             ("grad_output",), scalars={"p": "unit", "seed": "int", "offset": "int", "mode": "str"}),
        Case("linear", {"input": fc_x, "weight": fc_w, "bias": fc_b}, ("input", "weight", "bias")),
        Case("linear_backward", {"grad_output": a(2, 4), "input": fc_x, "weight": fc_w, "bias": True},
             ("grad_output", "input", "weight"), scalars={"bias": "bool"}),
        Case("local", {"input": x, "weight": local_w, "bias": local_b, "stride": 1, "padding": 1, "groups": 1,
                       "ceil_mode": True}, ("input", "weight", "bias"), scalars=CONV),
        Case("local_backward", {"grad_output": a(2, 4, 5, 5), "input": x, "weight": local_w, "stride": 1,
                                "padding": 1, "groups": 1, "ceil_mode": True, "bias": True, "input_grad": True},
             ("grad_output", "input", "weight"), scalars=dict(CONV, bias="bool", input_grad="bool")),
        Case("local_response_norm", {"input": x, "size": 3, "alpha": 1e-2, "beta": 0.75, "k": 2.0}, ("input",),
             scalars=NORM),
        Case("local_response_norm_backward", {"grad_output": a(2, 3, 5, 5), "input": x, "size": 3, "alpha": 1e-2,
                                              "beta": 0.75, "k": 2.0}, ("grad_output", "input"), scalars=NORM),
        Case("max_pool2d", {"input": x, "kernel_size": 3, "stride": 2, "padding": 0, "ceil_mode": True}, ("input",),
             scalars=POOL),
        Case("max_pool2d_backward", {"grad_output": pooled, "input": x, "kernel_size": 3, "stride": 2, "padding": 0,
                                     "ceil_mode": True}, ("grad_output", "input"), scalars=POOL),
        Case("neuron", {"input": flat, "name": "tanh", "a": 1.5, "b": 0.5}, ("input",),
             scalars={"name": "str", "a": "optional_real", "b": "optional_real"}),
        Case("neuron_backward", {"grad_output": a(3, 4), "input": flat, "output": 1 / (1 + np.exp(-flat)),
                                 "name": "logistic"},
             ("grad_output", "input", "output"), scalars={"name": "str"}, linked=("input", "output")),
        Case("relu", {"input": flat}, ("input",)),
        Case("relu_backward", {"grad_output": a(3, 4), "output": np.maximum(flat, 0)}, ("grad_output", "output")),
        Case("same_map_norm", {"input": x, "size": 3, "alpha": 1e-2, "beta": 0.75, "k": 1.0}, ("input",),
             scalars=NORM),
        Case("same_map_norm_backward", {"grad_output": a(2, 3, 5, 5), "input": x, "size": 3, "alpha": 1e-2,
                                        "beta": 0.75, "k": 1.0}, ("grad_output", "input"), scalars=NORM),
        Case("sgd_update", {"param": a(3, 4), "grad": a(3, 4), "momentum_buffer": a(3, 4), "lr": 0.1,
                            "momentum": 0.9, "weight_decay": 1e-3, "batch_size": 2, "convention": "cuda-convnet"},
             ("grad",), ("param", "momentum_buffer"),
             scalars={"lr": "real", "momentum": "real", "weight_decay": "real", "batch_size": "size",
                      "convention": "str"}),
    ]


def by_name(dtype=np.float32, seed=0):
    return {c.op: c for c in cases(dtype, seed)}


def written(case, result, kwargs):
    """What a call produced: its result, and for an in-place op the arrays it wrote."""
    if case.outputs:
        return [np.array(kwargs[name]) for name in case.outputs]
    return result if isinstance(result, (tuple, list)) else [result]


# --------------------------------------------------------------------------------------------
# references: the expected outputs of a valid call (its keyword arguments), as `written` lists them
def _pool_kwargs(kw):
    return kw["kernel_size"], kw["stride"], kw["padding"], kw["ceil_mode"]


def _reference(op, kw):
    if op == "accumulate":
        return [kw["out"] + kw["x"]]
    if op in ("avg_pool2d", "avg_pool2d_backward"):
        y, gx = test_avg_pool2d.torch_pool(kw["input"], kw.get("grad_output"), *_pool_kwargs(kw),
                                           kw["count_include_pad"])
        return [y] if op == "avg_pool2d" else [gx]
    if op in ("max_pool2d", "max_pool2d_backward"):
        y, gx = test_max_pool2d.torch_pool(kw["input"], kw.get("grad_output"), *_pool_kwargs(kw))
        return [y] if op == "max_pool2d" else [gx]
    if op == "conv2d":
        return [torch_conv(kw["input"], kw["weight"], kw["bias"], None, kw["stride"], kw["padding"], kw["groups"],
                           kw["ceil_mode"])[0]]
    if op == "conv2d_backward":
        filters = kw["weight"].shape[0]
        bias = np.zeros(filters, kw["input"].dtype)
        _, (gx, gw, gb) = torch_conv(kw["input"], kw["weight"], bias, kw["grad_output"], kw["stride"], kw["padding"],
                                     kw["groups"], kw["ceil_mode"])
        return [gx if kw["input_grad"] else None, gw, gb if kw["bias"] else None]
    if op == "local":
        return [torch_local(kw["input"], kw["weight"], kw["bias"], None, kw["stride"], kw["padding"], kw["groups"],
                            kw["ceil_mode"])[0]]
    if op == "local_backward":
        oh, ow, filters = kw["weight"].shape[:3]
        bias = np.zeros((filters, oh, ow), kw["input"].dtype)
        _, (gx, gw, gb) = torch_local(kw["input"], kw["weight"], bias, kw["grad_output"], kw["stride"], kw["padding"],
                                      kw["groups"], kw["ceil_mode"])
        return [gx if kw["input_grad"] else None, gw, gb if kw["bias"] else None]
    if op == "cross_entropy":
        return [torch_loss_and_grad(kw["input"], kw["target"])[0]]
    if op == "cross_entropy_backward":
        return [torch_loss_and_grad(kw["input"], kw["target"])[1]]
    if op == "softmax":
        return [torch.softmax(torch.from_numpy(kw["input"]), dim=1).numpy()]
    if op == "topk_correct":
        clean = ~np.isnan(kw["input"]).any(axis=1)  # a row holding NaN is never correct; the others as torch.topk
        return [torch_topk_correct(np.ascontiguousarray(kw["input"][clean]), kw["target"][clean], kw["k"])]
    if op in ("dropout", "dropout_backward"):
        x = kw["input"] if op == "dropout" else kw["grad_output"]
        p, mode = kw["p"], kw["mode"]
        if op == "dropout" and not kw["training"]:
            return [x if mode == "inverted" else x * x.dtype.type(1 - p)]
        mask = expected_mask(x.size, p, kw["seed"], kw["offset"]).reshape(x.shape)
        return [_torch_dropout_with_mask(x, mask, p) if mode == "inverted" else x * mask.astype(x.dtype)]
    if op == "linear":
        out_features = kw["weight"].shape[0]
        g = np.zeros((kw["input"].shape[0], out_features), kw["input"].dtype)
        return [torch_linear(kw["input"], kw["weight"], kw["bias"], g)[0]]
    if op == "linear_backward":
        bias = np.zeros(kw["weight"].shape[0], kw["input"].dtype)
        _, (gx, gw, gb) = torch_linear(kw["input"], kw["weight"], bias, kw["grad_output"])
        return [gx, gw, gb if kw["bias"] else None]
    if op in ("local_response_norm", "local_response_norm_backward", "same_map_norm", "same_map_norm_backward"):
        fn = torch_lrn if op.startswith("local") else torch_same_map_norm
        g = kw.get("grad_output", np.ones_like(kw["input"]))
        y, gx = fn(kw["input"], g, kw["size"], kw["alpha"], kw["beta"], kw["k"])
        return [gx] if op.endswith("backward") else [y]
    if op in ("neuron", "neuron_backward"):
        name, a, b = kw["name"], kw.get("a"), kw.get("b")
        if name == "tanh":
            a, b = 1.0 if a is None else a, 1.0 if b is None else b
        g = kw.get("grad_output", np.ones_like(kw["input"]))
        if name in ("relu", "ident"):
            y = np.maximum(kw["input"], 0) if name == "relu" else kw["input"]
            gx = (np.where(kw["output"] > 0, g, g.dtype.type(0)) if name == "relu" else g) if op.endswith("backward") \
                else None
        else:
            y, gx = torch_forward_backward(kw["input"], g, name, a, b)
        return [gx] if op.endswith("backward") else [y]
    if op == "relu":
        return [torch_reference.relu(torch.from_numpy(kw["input"])).numpy()]
    if op == "relu_backward":
        return [np.where(kw["output"] > 0, kw["grad_output"], kw["output"].dtype.type(0))]  # torch's threshold_backward
    if op == "sgd_update":
        if kw["convention"] == "torch":  # torch.optim.SGD from the same momentum buffer
            param = torch.from_numpy(kw["param"].copy()).requires_grad_()
            opt = torch.optim.SGD([param], lr=kw["lr"], momentum=kw["momentum"], weight_decay=kw["weight_decay"])
            if kw["momentum"]:
                opt.state[param]["momentum_buffer"] = torch.from_numpy(kw["momentum_buffer"])
            param.grad = torch.from_numpy(kw["grad"]) / kw["batch_size"]
            opt.step()
            if not kw["momentum"]:  # torch keeps no buffer; ours holds d = grad / batch_size + weight_decay * param
                return [param.detach().numpy(), (torch.from_numpy(kw["grad"]) / kw["batch_size"]
                                                 + kw["weight_decay"] * torch.from_numpy(kw["param"])).numpy()]
            return [param.detach().numpy(), kw["momentum_buffer"]]
        if kw["lr"] == 0:
            return [kw["param"], kw["momentum_buffer"]]
        return list(cuda_convnet_reference(kw["param"], kw["momentum_buffer"], kw["grad"], kw["lr"], kw["momentum"],
                                           kw["weight_decay"], kw["batch_size"]))
    raise AssertionError(f"no reference for {op}")


TOLERANCE_OF = {"softmax": "cross_entropy", "sgd_update": "sgd"}


def reference(case, kwargs):
    """The expected outputs of a valid call of case.op with kwargs (C-contiguous plain arrays,
    Python or NumPy scalars): copies of the in-place arguments are used, the caller's stay as they are."""
    kw = {k: (np.array(v) if isinstance(v, np.ndarray) else v) for k, v in kwargs.items()}
    return _reference(case.op, kw)


def assert_matches(case, ours, expected, dtype, what, reference_nan_is_undefined=False, loose=1.0):
    """ours equals expected within the op's tolerance (alexnet_raw/checks/tolerances.py), NaN where it has
    NaN. reference_nan_is_undefined: entries where the reference alone is NaN are not compared (for
    hyperparameters far out of range, where torch's autograd overflows to 0 * inf and the kernels'
    analytic formula gives the limit, e.g. local_response_norm_backward with beta = 2**31). loose:
    a factor on the tolerances (hyperparameters outside those they were measured at, k = 0 for
    local_response_norm: a sum of a few squares raised to -beta, ill-conditioned)."""
    name = TOLERANCE_OF.get(case.op, case.op.removesuffix("_backward"))
    assert len(ours) == len(expected), f"{what}: {len(ours)} outputs, expected {len(expected)}"
    for i, (o, e) in enumerate(zip(ours, expected)):
        if e is None:
            assert o is None, f"{what}: output {i} should be None, got {type(o).__name__}"
            continue
        o, e = np.asarray(o), np.asarray(e)
        assert o.shape == e.shape, f"{what}: output {i} has shape {o.shape}, expected {e.shape}"
        if reference_nan_is_undefined and e.dtype.kind == "f":
            keep = ~(np.isnan(e) & ~np.isnan(o))
            o, e = o[keep], e[keep]
        at = o.dtype if o.dtype.kind == "f" else dtype  # the dtype it was computed in
        atol, rtol = tolerances.tolerance(name, at)
        atol *= loose * tolerances.atol_scale(e, name)
        assert np.allclose(o, e, atol=atol, rtol=loose * rtol, equal_nan=True), \
            f"{what}: output {i}: {tolerances.max_errors(o, e)}"
