"""Classify image files with a trained checkpoint: the top-5 classes and their probabilities.

    alexnet-raw predict --checkpoint FILE [--labels FILE] IMAGE...

Each image is resized, mean-subtracted and centre-cropped exactly as the checkpoint's training run
prepared its test images, and run through the network's test-mode forward pass. Output, one block
per image:

    digit.png
      0.9731  7
      0.0112  1
      ...

Class names come from the checkpoint (the training data's) or from --labels (one name per line,
in class-index order).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from .. import cli_types


def read_labels(path, num_classes):
    """The class names of a labels file: UTF-8 text, one name per line (blank lines skipped)."""
    try:
        with open(path, encoding="utf-8") as f:
            names = [line.strip() for line in f if line.strip()]
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not a text file of class names (UTF-8, one per line): {e.reason} at byte "
                         f"{e.start}") from None
    if len(names) != num_classes:
        raise ValueError(f"{path} names {len(names)} classes, the network has {num_classes} (one name per line)")
    return names


def top_classes(probabilities, names, k=5):
    """[(probability, name)] of the k most probable classes, most probable first (ties: lower index)."""
    p = np.asarray(probabilities, dtype=np.float64).reshape(-1)
    order = np.argsort(-p, kind="stable")[:min(k, p.size)]
    return [(float(p[i]), names[i]) for i in order]


def format_prediction(image, top):
    return "\n".join([str(image)] + [f"  {prob:.4f}  {name}" for prob, name in top])


def build_parser():
    from .. import cli_types

    ap = cli_types.ArgumentParser(prog="alexnet-raw predict", description=__doc__.splitlines()[0],
                                  formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--checkpoint", required=True, help="a checkpoint written by alexnet-raw train")
    ap.add_argument("--labels", default=None, help="class names, one a line in class-index order")
    ap.add_argument("--top", type=cli_types.positive_int, default=5,
                    help="classes shown per image (default 5; more than the network has: all of them)")
    cli_types.backend_option(ap, "--backend", default=None)
    ap.add_argument("images", nargs="+", metavar="IMAGE", help="JPEG or PNG files")
    return ap


def main(argv=None) -> int:
    from . import checkpoint as ck
    from .. import data
    from .evaluate import pipeline

    args = build_parser().parse_args(argv)
    try:
        saved = ck.load_checkpoint(args.checkpoint)
        model = saved.make_model(backend=args.backend)
        if args.labels:
            names = read_labels(args.labels, model.num_classes)
        else:
            names = saved.training.get("class_names") or [str(i) for i in range(model.num_classes)]
        pre, stats = pipeline(saved)
    except (ck.CheckpointError, ValueError, OSError) as e:
        return cli_types.fail("alexnet-raw predict", e, 2)
    failed = 0
    for i, path in enumerate(args.images):
        try:
            x = data.load_image(path, pre, stats).astype(model.dtype)
        except (data.DataError, OSError) as e:
            cli_types.fail("alexnet-raw predict", e, 1)
            failed += 1
            continue
        proba = model.devices.to_host(model.predict_proba(x))[0]
        print(("\n" if i else "") + format_prediction(path, top_classes(proba, names, args.top)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
