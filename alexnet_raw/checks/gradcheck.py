"""Float64 gradient checks of a whole network: the engine's backward against central differences.

    alexnet-raw gradcheck [--network NAME | --cfg LAYERS PARAMS] [--layers a,b] [--samples N]

For each chosen layer (default: every layer with weights) it picks random entries of every weight
matrix and of the biases, and compares d(loss)/d(entry) from backward() with
(loss(entry + h) - loss(entry - h)) / 2h, in float64, with the dropout masks held fixed (the
same step). Prints a table and exits non-zero when a relative error passes the threshold.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from .. import cli_types
from .. import functional as F


def _loss(model, x, labels):
    logits = model.forward(x, train=True)
    model._last = None  # a probe, not a training step
    return float(F.cross_entropy(logits, labels))


def check_model(model, x, labels, layers=None, samples=3, h=1e-6, seed=0):
    """Rows {parameter, index, analytic, numeric, error} with error = |a - n| / max(|a|, |n|, 1e-8)."""
    if model.dtype != np.float64:
        raise TypeError(f"gradient checks need a float64 model (Model(..., dtype=numpy.float64)), got {model.dtype}")
    keys = model.parameter_keys()
    if layers:
        unknown = set(layers) - {k.split(".")[0] for k in keys}
        if unknown:
            raise ValueError(f"no layer with weights named {sorted(unknown)}; layers with weights: "
                             f"{sorted({k.split('.')[0] for k in keys})}")
        keys = [k for k in keys if k.split(".")[0] in layers]
    model.forward(x, train=True)
    model.backward(labels)
    analytic = model.gradient_dict()
    rng = np.random.default_rng(seed)
    rows = []
    for key in keys:
        block = model._block_of(key)
        param = block.params[key]
        flat = param.reshape(-1)
        for index in rng.choice(flat.size, size=min(samples, flat.size), replace=False):
            original = flat[index].item()
            flat[index] = original + h
            plus = _loss(model, x, labels)
            flat[index] = original - h
            minus = _loss(model, x, labels)
            flat[index] = original
            numeric = (plus - minus) / (2 * h)
            a = float(analytic[key].reshape(-1)[index])
            rows.append({"parameter": key, "index": int(index), "analytic": a, "numeric": numeric,
                         "error": abs(a - numeric) / max(abs(a), abs(numeric), 1e-8)})
    return rows


def format_rows(rows, threshold):
    lines = [f"{'parameter':24s} {'index':>8s} {'analytic':>14s} {'numeric':>14s} {'rel error':>10s}"]
    for r in rows:
        flag = "" if r["error"] <= threshold else "  FAIL"
        lines.append(f"{r['parameter']:24s} {r['index']:8d} {r['analytic']:14.6e} {r['numeric']:14.6e} "
                     f"{r['error']:10.2e}{flag}")
    bad = sum(r["error"] > threshold for r in rows)
    lines.append(f"\n{len(rows) - bad} of {len(rows)} entries within {threshold:g} relative error")
    return "\n".join(lines)


PROG = "alexnet-raw gradcheck"


def build_parser():
    from ..engine.model import NETWORKS

    ap = cli_types.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0],
                                  formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    which = ap.add_mutually_exclusive_group()
    which.add_argument("--network", choices=sorted(NETWORKS), default=None, help="shipped network (default mini)")
    which.add_argument("--cfg", nargs=2, metavar=("LAYERS", "PARAMS"), help="cuda-convnet layer and params files")
    ap.add_argument("--layers", default=None, help="comma-separated layer names (default: every layer with weights)")
    ap.add_argument("--samples", type=cli_types.positive_int, default=3,
                    help="entries checked per weight matrix and bias (default 3)")
    ap.add_argument("--image-size", type=cli_types.positive_int, default=None, metavar="N",
                    help="side of the input images, for a layer file that sets none (cuda-convnet's set none)")
    ap.add_argument("--batch-size", type=cli_types.positive_int, default=2)
    ap.add_argument("--seed", type=cli_types.seed, default=0)
    ap.add_argument("--threshold", type=cli_types.positive_real, default=1e-5,
                    help="largest relative error accepted (default 1e-5)")
    return ap


def main(argv=None) -> int:
    from ..engine.model import Model

    args = build_parser().parse_args(argv)
    layers = [name.strip() for name in args.layers.split(",")] if args.layers else None
    try:
        if args.cfg:
            model = Model.from_cfg(*args.cfg, seed=args.seed, dtype=np.float64, image_size=args.image_size)
        else:
            model = Model.named(args.network or "mini", seed=args.seed, dtype=np.float64, image_size=args.image_size)
        if not model.sized:
            return cli_types.fail(PROG, f"{model.source} sets no image size (no imgSize on its data layer): "
                                        "pass --image-size N")
        rng = np.random.default_rng(args.seed)
        x = rng.standard_normal((args.batch_size, model.input_channels, model.image_size, model.image_size))
        labels = rng.integers(0, model.num_classes, args.batch_size)
        rows = check_model(model, x, labels, layers, args.samples, seed=args.seed)
    except ValueError as e:  # a layer name that is not in the network (CfgError: a bad network file)
        return cli_types.fail(PROG, e)
    print(format_rows(rows, args.threshold))
    return 0 if all(r["error"] <= args.threshold for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
