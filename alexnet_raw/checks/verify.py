"""Run every kernel against PyTorch and print a pass/fail table with the largest errors.

    alexnet-raw verify [--backend emu|emu_ext|cupy|cuda]

Each check draws inputs, runs our kernel through the chosen backend and the same computation in
PyTorch on the CPU (float32 and float64), and compares them under the tolerance policy
(tolerances.py). On a GPU backend the inputs are copied to the GPU and the results back
(alexnet_raw.runtime.on_device), so the same checks run on the kernels the GPU executes; GPU backends
flush float32 subnormals to zero (kernels/gpu_options.txt), which no check's inputs contain.
Exits 1 when a check fails, 2 when the backend cannot run here (saying why).
"""

from __future__ import annotations

import time

import numpy as np

from ..runtime import backends
from .. import cli_types
from . import tolerances
from . import torch_reference
from .. import functional as F

CHECKS = []  # (name, tolerance key, function(rng, dtype, torch) -> (ours, reference))


def check(name: str, op: str):
    """Register fn(rng, dtype, torch, F) -> (ours, reference): F is alexnet_raw.functional, or its
    OnDevice wrapper on a GPU backend."""
    def register(fn):
        CHECKS.append((name, op, fn))
        return fn

    return register


def _with_specials(x):
    flat = x.reshape(-1)
    flat[: min(4, flat.size)] = np.array([np.nan, 0.0, -0.0, np.inf], dtype=x.dtype)[: min(4, flat.size)]
    return x


@check("relu forward", "relu")
def _relu_forward(rng, dtype, torch, F):
    x = _with_specials(rng.standard_normal((2, 3, 17, 19)).astype(dtype))
    return F.relu(x), torch_reference.relu(torch.from_numpy(x)).numpy()


@check("relu backward", "relu")
def _relu_backward(rng, dtype, torch, F):
    x = torch.from_numpy(rng.standard_normal((2, 3, 17, 19)).astype(dtype)).requires_grad_()
    y = torch_reference.relu(x)
    g = torch.from_numpy(rng.standard_normal(y.shape).astype(dtype))
    y.backward(g)
    ours = F.relu_backward(g.numpy(), y.detach().numpy())
    return ours, x.grad.numpy()


# cuda-convnet's neurons as a layer file gives them (linear's a and b not powers of two, so that
# torch's two roundings and our fma's one can differ)
NEURONS = ("logistic", "tanh[1.7159,0.6666]", "brelu[6]", "abs", "square", "sqrt", "linear[0.7,-1.3]", "softrelu")


def _neuron_input(rng, dtype, name):
    x = 3 * rng.standard_normal((2, 3, 17, 19))
    return (np.abs(x) if name == "sqrt" else x).astype(dtype)


@check("neurons forward (all eight)", "neuron")
def _neurons_forward(rng, dtype, torch, F):
    ours, reference = [], []
    for text in NEURONS:
        name, a, b = F.parse_neuron(text)
        x = _with_specials(_neuron_input(rng, dtype, name))
        ours.append(F.neuron(x, name, a, b).ravel())
        reference.append(torch_reference.neuron(torch.from_numpy(x), name, a, b).numpy().ravel())
    return np.concatenate(ours), np.concatenate(reference)


@check("neurons backward (all eight)", "neuron")
def _neurons_backward(rng, dtype, torch, F):
    ours, reference = [], []
    for text in NEURONS:  # inputs away from brelu's ends 0 and a, where cuda-convnet's gradient is 0
        name, a, b = F.parse_neuron(text)
        x = torch.from_numpy(_neuron_input(rng, dtype, name)).requires_grad_()
        y = torch_reference.neuron(x, name, a, b)
        g = torch.from_numpy(rng.standard_normal(y.shape).astype(dtype))
        y.backward(g)
        ours.append(F.neuron_backward(g.numpy(), x.detach().numpy(), y.detach().numpy(), name, a, b).ravel())
        reference.append(x.grad.numpy().ravel())
    return np.concatenate(ours), np.concatenate(reference)


@check("dropout forward (inverted)", "dropout")
def _dropout_forward(rng, dtype, torch, F):
    x = rng.standard_normal((2, 4096)).astype(dtype)
    y = F.dropout(x, p=0.5, seed=7, offset=3)
    mask = torch.from_numpy((y != 0).astype(dtype))  # our mask, applied with torch's arithmetic
    return y, (torch.from_numpy(x) * mask.div_(1 - 0.5)).numpy()


@check("dropout backward (original)", "dropout")
def _dropout_backward(rng, dtype, torch, F):
    g = rng.standard_normal((2, 4096)).astype(dtype)
    y = F.dropout(np.ones_like(g), p=0.5, seed=7, offset=3, mode="original")
    return F.dropout_backward(g, p=0.5, seed=7, offset=3, mode="original"), (torch.from_numpy(g) * torch.from_numpy(y)).numpy()


@check("softmax cross-entropy loss", "cross_entropy")
def _cross_entropy(rng, dtype, torch, F):
    x = (4 * rng.standard_normal((2, 1000))).astype(dtype)
    t = rng.integers(0, 1000, 2)
    ref = torch_reference.cross_entropy(torch.from_numpy(x), torch.from_numpy(t))
    return F.cross_entropy(x, t), ref.numpy()


@check("softmax cross-entropy backward", "cross_entropy")
def _cross_entropy_backward(rng, dtype, torch, F):
    x = torch.from_numpy((4 * rng.standard_normal((2, 1000))).astype(dtype)).requires_grad_()
    t = torch.from_numpy(rng.integers(0, 1000, 2))
    torch_reference.cross_entropy(x, t).backward()
    return F.cross_entropy_backward(x.detach().numpy(), t.numpy()), x.grad.numpy()


@check("top-5 correct count", "topk_correct")
def _topk(rng, dtype, torch, F):
    x = rng.standard_normal((64, 1000)).astype(dtype)
    t = rng.integers(0, 1000, 64)
    t[:8] = np.argmax(x[:8], axis=1)  # some hits
    ref = (torch.topk(torch.from_numpy(x), 5).indices == torch.from_numpy(t)[:, None]).any(1).sum().item()
    return np.array(F.topk_correct(x, t, 5), dtype), np.array(ref, dtype)


@check("sgd step (torch convention)", "sgd")
def _sgd(rng, dtype, torch, F):
    w0 = (0.05 * rng.standard_normal(4096)).astype(dtype)
    grads = [rng.standard_normal(4096).astype(dtype) for _ in range(3)]
    w, buf = w0.copy(), np.zeros_like(w0)
    for g in grads:
        F.sgd_update(w, g, buf, lr=0.01, momentum=0.9, weight_decay=5e-4, convention="torch")
    p = torch.nn.Parameter(torch.from_numpy(w0.copy()))
    opt = torch.optim.SGD([p], lr=0.01, momentum=0.9, weight_decay=5e-4)
    for g in grads:
        p.grad = torch.from_numpy(g)
        opt.step()
    return w, p.detach().numpy()


@check("LRN forward (#145 LRN1)", "local_response_norm")
def _lrn_forward(rng, dtype, torch, F):
    x = (30 * rng.standard_normal((2, 48, 55, 55))).astype(dtype)
    ref = torch_reference.local_response_norm(torch.from_numpy(x), 5, 1e-4, 0.75, 2.0)
    return F.local_response_norm(x, 5, 1e-4, 0.75, 2.0), ref.numpy()


@check("LRN backward (#145 LRN2)", "local_response_norm")
def _lrn_backward(rng, dtype, torch, F):
    x = (30 * rng.standard_normal((2, 128, 27, 27))).astype(dtype)
    g = rng.standard_normal(x.shape).astype(dtype)
    xt = torch.from_numpy(x).requires_grad_()
    torch_reference.local_response_norm(xt, 5, 1e-4, 0.75, 2.0).backward(torch.from_numpy(g))
    return F.local_response_norm_backward(g, x, 5, 1e-4, 0.75, 2.0), xt.grad.numpy()


@check("max_pool2d forward (#145 pool1)", "max_pool2d")
def _max_pool2d_forward(rng, dtype, torch, F):
    x = _with_specials(rng.standard_normal((2, 48, 55, 55)).astype(dtype))
    ref = torch_reference.max_pool2d(torch.from_numpy(x), 3, 2, ceil_mode=True)
    return F.max_pool2d(x, 3, 2, ceil_mode=True), ref.numpy()


@check("max_pool2d backward (torchvision)", "max_pool2d")
def _max_pool2d_backward(rng, dtype, torch, F):
    x = rng.integers(0, 8, (2, 64, 55, 55)).astype(dtype)  # many ties: the first maximum takes the gradient
    xt = torch.from_numpy(x).requires_grad_()
    y = torch_reference.max_pool2d(xt, 3, 2)
    g = rng.standard_normal(tuple(y.shape)).astype(dtype)
    y.backward(torch.from_numpy(g))
    return F.max_pool2d_backward(g, x, 3, 2), xt.grad.numpy()


@check("avg_pool2d forward (CIFAR pool=avg)", "avg_pool2d")
def _avg_pool2d_forward(rng, dtype, torch, F):
    # cuda-convnet's pool=avg: in-image pixels only, its ceil rule (32 -> 16, the last window cut)
    x = _with_specials(rng.standard_normal((2, 32, 32, 32)).astype(dtype))
    ref = torch_reference.avg_pool2d(torch.from_numpy(x), 3, 2, ceil_mode=True, count_include_pad=False)
    return F.avg_pool2d(x, 3, 2, ceil_mode=True, count_include_pad=False), ref.numpy()


@check("avg_pool2d backward (55x55, pad 1)", "avg_pool2d")
def _avg_pool2d_backward(rng, dtype, torch, F):
    x = rng.standard_normal((2, 48, 55, 55)).astype(dtype)
    xt = torch.from_numpy(x).requires_grad_()
    y = torch_reference.avg_pool2d(xt, 3, 2, 1, ceil_mode=True, count_include_pad=True)
    g = rng.standard_normal(tuple(y.shape)).astype(dtype)
    y.backward(torch.from_numpy(g))
    return F.avg_pool2d_backward(g, x, 3, 2, 1, ceil_mode=True, count_include_pad=True), xt.grad.numpy()


@check("rnorm forward (#145 cnorm2)", "same_map_norm")
def _same_map_norm_forward(rng, dtype, torch, F):
    x = torch.from_numpy((20 * rng.standard_normal((2, 128, 27, 27))).astype(dtype))
    return F.same_map_norm(x.numpy(), 5, 1e-3, 0.75, 1.0), torch_reference.same_map_norm(x, 5, 1e-3, 0.75, 1.0).numpy()


@check("rnorm backward (#145 cnorm2)", "same_map_norm")
def _same_map_norm_backward(rng, dtype, torch, F):
    x = (20 * rng.standard_normal((2, 128, 27, 27))).astype(dtype)
    g = rng.standard_normal(x.shape).astype(dtype)
    xt = torch.from_numpy(x).requires_grad_()
    torch_reference.same_map_norm(xt, 5, 1e-3, 0.75, 1.0).backward(torch.from_numpy(g))
    return F.same_map_norm_backward(g, x, 5, 1e-3, 0.75, 1.0), xt.grad.numpy()


def _conv1_145(rng, dtype, torch):
    """#145's conv1 on one tower at batch 2 (224 x 224 to 55 x 55 by cuda-convnet's ceil rule), with
    an upstream gradient."""
    x = rng.standard_normal((2, 3, 224, 224)).astype(dtype)
    w = (0.1 * rng.standard_normal((48, 3, 11, 11))).astype(dtype)
    b = rng.standard_normal(48).astype(dtype)
    g = rng.standard_normal((2, 48, 55, 55)).astype(dtype)
    tensors = [torch.from_numpy(a).requires_grad_() for a in (x, w, b)]
    y = torch_reference.conv2d(*tensors, stride=4, ceil_mode=True)
    y.backward(torch.from_numpy(g))
    return (x, w, b, g), y.detach().numpy(), [t.grad.numpy() for t in tensors]


@check("conv2d forward (#145 conv1)", "conv2d")
def _conv2d_forward(rng, dtype, torch, F):
    (x, w, b, _), y, _ = _conv1_145(rng, dtype, torch)
    return F.conv2d(x, w, b, 4, 0, 1, True), y


@check("conv2d backward input (#145 conv1)", "conv2d")
def _conv2d_backward_input(rng, dtype, torch, F):
    (x, w, _, g), _, grads = _conv1_145(rng, dtype, torch)
    return F.conv2d_backward(g, x, w, 4, 0, 1, True)[0], grads[0]


@check("conv2d backward weights (#145 conv1)", "conv2d")
def _conv2d_backward_weight(rng, dtype, torch, F):
    (x, w, _, g), _, grads = _conv1_145(rng, dtype, torch)
    return F.conv2d_backward(g, x, w, 4, 0, 1, True)[1], grads[1]


@check("conv2d backward input (torchvision conv2)", "conv2d")
def _conv2d_backward_torchvision(rng, dtype, torch, F):
    x = rng.standard_normal((2, 64, 27, 27)).astype(dtype)
    w = (0.1 * rng.standard_normal((192, 64, 5, 5))).astype(dtype)
    g = rng.standard_normal((2, 192, 27, 27)).astype(dtype)
    xt, wt = torch.from_numpy(x).requires_grad_(), torch.from_numpy(w).requires_grad_()
    torch_reference.conv2d(xt, wt, None, 1, 2).backward(torch.from_numpy(g))
    return F.conv2d_backward(g, x, w, 1, 2, bias=False)[0], xt.grad.numpy()


def _local3_11pct(rng, dtype, torch):
    """cuda-convnet2's cifar10-11pct local3 at batch 2 (64 x 8 x 8, 64 filters 3 x 3, padding 1: a
    (64, 64, 3, 3) bank and 64 biases per output position), with an upstream gradient."""
    x = rng.standard_normal((2, 64, 8, 8)).astype(dtype)
    w = (0.04 * rng.standard_normal((8, 8, 64, 64, 3, 3))).astype(dtype)
    b = rng.standard_normal((64, 8, 8)).astype(dtype)
    g = rng.standard_normal((2, 64, 8, 8)).astype(dtype)
    tensors = [torch.from_numpy(a).requires_grad_() for a in (x, w, b)]
    y = torch_reference.local(*tensors, stride=1, padding=1)
    y.backward(torch.from_numpy(g))
    return (x, w, b, g), y.detach().numpy(), [t.grad.numpy() for t in tensors]


@check("local forward (cifar10-11pct local3)", "local")
def _local_forward(rng, dtype, torch, F):
    (x, w, b, _), y, _ = _local3_11pct(rng, dtype, torch)
    return F.local(x, w, b, 1, 1), y


@check("local backward input (cifar10-11pct local3)", "local")
def _local_backward_input(rng, dtype, torch, F):
    (x, w, _, g), _, grads = _local3_11pct(rng, dtype, torch)
    return F.local_backward(g, x, w, 1, 1, bias=False)[0], grads[0]


@check("local backward weights and biases (cifar10-11pct local3)", "local")
def _local_backward_weight(rng, dtype, torch, F):
    (x, w, _, g), _, grads = _local3_11pct(rng, dtype, torch)
    _, grad_w, grad_b = F.local_backward(g, x, w, 1, 1, input_grad=False)
    return np.concatenate([grad_w.ravel(), grad_b.ravel()]), np.concatenate([grads[1].ravel(), grads[2].ravel()])


@check("linear forward (#145 fc6)", "linear")
def _linear_forward(rng, dtype, torch, F):
    x = rng.standard_normal((2, 4608)).astype(dtype)
    w = (0.01 * rng.standard_normal((2048, 4608))).astype(dtype)
    b = rng.standard_normal(2048).astype(dtype)
    return F.linear(x, w, b), torch_reference.linear(*(torch.from_numpy(a) for a in (x, w, b))).numpy()


@check("linear backward (torchvision fc8)", "linear")
def _linear_backward(rng, dtype, torch, F):
    x = rng.standard_normal((2, 4096)).astype(dtype)
    w = (0.01 * rng.standard_normal((1000, 4096))).astype(dtype)
    g = rng.standard_normal((2, 1000)).astype(dtype)
    xt, wt = torch.from_numpy(x).requires_grad_(), torch.from_numpy(w).requires_grad_()
    torch_reference.linear(xt, wt).backward(torch.from_numpy(g))
    grad_x, grad_w, _ = F.linear_backward(g, x, w, bias=False)
    return np.concatenate([grad_x.ravel(), grad_w.ravel()]), np.concatenate([xt.grad.numpy().ravel(),
                                                                            wt.grad.numpy().ravel()])


def run(dtypes=(np.float32, np.float64), seed=0, functional=F):
    """Every check at every dtype through `functional` (default: alexnet_raw.functional on the
    current CPU backend)."""
    import torch

    rows = []
    for name, op, fn in CHECKS:
        for dtype in dtypes:
            rng = np.random.default_rng(seed)
            t0 = time.perf_counter()
            ours, reference = fn(rng, dtype, torch, functional)
            seconds = time.perf_counter() - t0
            abs_err, rel_err = tolerances.max_errors(ours, reference)
            scale = tolerances.atol_scale(reference, op)
            abs_err = abs_err / scale if scale else abs_err
            atol, rtol = tolerances.tolerance(op, dtype)
            rows.append({
                "check": name,
                "dtype": np.dtype(dtype).name,
                "max_abs_error": abs_err,
                "max_rel_error": rel_err,
                "atol": atol,
                "rtol": rtol,
                "passed": tolerances.close(ours, reference, op, dtype),
                "seconds": seconds,
            })
    return rows


def format_table(rows) -> str:
    width = max([len("check")] + [len(r["check"]) for r in rows])  # the longest check name sets the column
    head = (f"{'check':{width}s} {'dtype':8s} {'max abs err':>12s} {'max rel err':>12s} {'atol':>8s} {'rtol':>8s} "
            f"{'result':>7s}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['check']:{width}s} {r['dtype']:8s} {r['max_abs_error']:12.3e} {r['max_rel_error']:12.3e} "
            f"{r['atol']:8.1e} {r['rtol']:8.1e} {'pass' if r['passed'] else 'FAIL':>7s}"
        )
    failed = sum(not r["passed"] for r in rows)
    normwise = ", ".join(sorted(tolerances.NORMWISE))
    lines.append(f"({normwise}: abs err and atol relative to the largest |reference| entry, a normwise bound)")
    lines.append("")
    lines.append(f"{len(rows) - failed} passed, {failed} failed")
    return "\n".join(lines)


PROG = "alexnet-raw verify"


def build_parser():
    ap = cli_types.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    cli_types.backend_option(ap, "--backend", default=None,
                             help="backend to run the kernels on (default: emu, the CPU runtime's JIT; "
                                  "cupy and cuda need a GPU)")
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        import torch  # noqa: F401
    except ImportError:
        return cli_types.fail(PROG, "verify compares with PyTorch: pip install 'torch==2.13.0'")
    if args.backend:
        backends.set_backend(args.backend)  # available: the parser checked
    functional = F
    if args.backend in backends.GPU_BACKENDS:
        import cupy

        from ..runtime.on_device import OnDevice

        functional = OnDevice(F, cupy)
        props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.runtime.getDevice())
        name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        print(f"kernels run on the '{args.backend}' backend (GPU {cupy.cuda.runtime.getDevice()}: {name}); "
              f"reference: PyTorch {torch.__version__} on the CPU")
    else:
        cpu, _ = backends.current_backends()
        print(f"kernels run on the '{cpu}' backend (CPU); reference: PyTorch {torch.__version__} on the CPU")
    rows = run(functional=functional)
    print(format_table(rows))
    return 0 if all(r["passed"] for r in rows) else 1
