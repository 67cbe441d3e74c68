"""Evaluate a checkpoint: top-1 and top-5 accuracy from the centre crop and from the original's ten views.

    alexnet-raw evaluate --checkpoint FILE [--data PATH] [--split test] [--views 1|10|both]

Centre crop: the test-mode forward pass of the (crop x crop) centre of each resized, mean-subtracted
image. Ten views: the four corner crops, the centre crop and their horizontal mirror images, each
through its own forward pass; the ten softmax outputs are averaged and ranked (the 2012 paper's
multiview test). Top-k counts an image as correct when fewer than k classes score strictly higher
than its true class and none of its scores is NaN (k = min(5, classes) for top-5). --data defaults
to the checkpoint's dataset.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from .. import cli_types, functional as F


def _logits_device(model):
    return model.graph.nodes[model.graph.logits].device


def count_correct(model, scores, labels, k):
    """(top-1 hits, top-k hits) of scores (N, C) on the model's classifier device against host labels."""
    device = _logits_device(model)
    with model.devices.context(device):
        target = model.devices.from_host(device, np.ascontiguousarray(labels, dtype=np.int64))
        return F.topk_correct(scores, target, 1), F.topk_correct(scores, target, min(k, scores.shape[1]))


def _as_input(model, x):
    return x if x.dtype == model.dtype else x.astype(model.dtype)


def evaluate_centre(model, batches, k=5):
    """(top-1, top-k) fractions over test batches of centre crops (x, labels)."""
    hits1 = hitsk = seen = 0
    for x, labels in batches:
        logits = model.forward(_as_input(model, x), train=False)
        a, b = count_correct(model, logits, labels, k)
        hits1, hitsk, seen = hits1 + a, hitsk + b, seen + len(labels)
    if seen == 0:
        raise ValueError("no test images were evaluated")
    return hits1 / seen, hitsk / seen


def ten_view_proba(model, views):
    """Softmax probabilities averaged over the views (V, B, 3, c, c), one forward pass per view, on
    the classifier's device: (p_0 + p_1 + ... + p_{V-1}) / V, summed in view order."""
    total = None
    for v in range(views.shape[0]):
        p = model.predict_proba(_as_input(model, np.ascontiguousarray(views[v])))
        total = p.copy() if total is None else total + p
    return total / views.shape[0]


def evaluate_ten_views(model, view_batches, k=5):
    """(top-1, top-k) fractions over batches (views (10, B, 3, c, c), labels), softmax averaged."""
    hits1 = hitsk = seen = 0
    for views, labels in view_batches:
        a, b = count_correct(model, ten_view_proba(model, views), labels, k)
        hits1, hitsk, seen = hits1 + a, hitsk + b, seen + len(labels)
    if seen == 0:
        raise ValueError("no test images were evaluated")
    return hits1 / seen, hitsk / seen


def pipeline(saved):
    """(Preprocess, Statistics) a checkpoint was trained with."""
    from . import checkpoint as ck
    from .. import data

    ck.require_training(saved, ("image_size", "crop_size"))
    t = saved.training
    return data.Preprocess(int(t["image_size"]), int(t["crop_size"])), data.Statistics.from_dict(saved.statistics)


def build_parser():
    from .. import cli_types

    ap = cli_types.ArgumentParser(prog="alexnet-raw evaluate", description=__doc__.splitlines()[0],
                                  formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--checkpoint", required=True, help="a checkpoint written by alexnet-raw train")
    ap.add_argument("--data", default=None, help="dataset (default: the one the checkpoint was trained on)")
    ap.add_argument("--split", choices=("test", "train"), default="test")
    ap.add_argument("--views", choices=("1", "10", "both"), default="both",
                    help="centre crop (1), ten views (10) or both (default)")
    ap.add_argument("--batch-size", type=cli_types.positive_int, default=64)
    ap.add_argument("--workers", type=cli_types.workers, default=2,
                    help=f"background data workers, 0 to {cli_types.MAX_WORKERS} (default 2)")
    cli_types.backend_option(ap, "--backend", default=None)
    ap.add_argument("--json", metavar="FILE", type=cli_types.output_file, default=None,
                    help="also write the results as JSON")
    return ap


def main(argv=None) -> int:
    from . import checkpoint as ck
    from .. import data

    args = build_parser().parse_args(argv)
    try:
        saved = ck.load_checkpoint(args.checkpoint)
        source = args.data or saved.training.get("data")
        if not source:
            raise ValueError(f"{args.checkpoint} does not name its dataset: pass --data")
        ds = data.open_dataset(source, args.split)
        names = saved.training.get("class_names")
        if names is not None and list(ds.class_names) != list(names):
            raise ValueError(f"{source} ({len(ds.class_names)} classes) does not have the classes the checkpoint "
                             f"was trained on ({len(names)} classes)")
        model = saved.make_model(backend=args.backend)
        pre, stats = pipeline(saved)
    except (ck.CheckpointError, ValueError, FileNotFoundError) as e:
        return cli_types.fail("alexnet-raw evaluate", e, 2)
    k = min(5, model.num_classes)
    results = {"checkpoint": str(args.checkpoint), "data": source, "split": args.split, "images": len(ds), "k": k}
    print(f"{args.checkpoint}: {source} {args.split} split, {len(ds)} images, {model.num_classes} classes")
    if args.views in ("1", "both"):
        batches = data.Batches(ds, args.batch_size, pre, stats, train=False, workers=args.workers)
        top1, topk = evaluate_centre(model, batches, k=k)
        results["centre"] = {"top1": top1, f"top{k}": topk}
        print(f"  centre crop: top-1 {top1:.4f}  top-{k} {topk:.4f}")
    if args.views in ("10", "both"):
        batches = data.view_batches(ds, args.batch_size, pre, stats, workers=args.workers)
        top1, topk = evaluate_ten_views(model, batches, k=k)
        results["ten_views"] = {"top1": top1, f"top{k}": topk}
        print(f"  ten views:   top-1 {top1:.4f}  top-{k} {topk:.4f}")
    if args.json:
        try:
            with open(args.json, "w", encoding="utf-8") as f:  # not write_atomic: FILE may be /dev/stdout
                f.write(json.dumps(results, indent=2, allow_nan=False) + "\n")
        except OSError as e:
            return cli_types.fail("alexnet-raw evaluate", f"could not write --json {args.json}: {e.strerror or e}", 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
