"""A run's log: DIR/metrics.jsonl (one JSON object per epoch) and DIR/curves.png.

Each metrics line holds at least: epoch (1-based, completed), train_loss (mean over the epoch's
batches), train_top1, test_top1, test_top5 (fractions), images_per_second (training images over
training seconds), lr_scale (the schedule's factor during the epoch), seconds (the epoch's wall
time, evaluation included).

Every line is strict JSON (no bare NaN or Infinity): a non-finite number is written as null, and
the line gains "non_finite": {field: "nan" | "inf" | "-inf"} saying which and what it was.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from .checkpoint import write_atomic

FIELDS = ("epoch", "train_loss", "train_top1", "test_top1", "test_top5", "images_per_second", "lr_scale", "seconds")


def json_line(record):
    """One record as a line of strict JSON (see the module's docstring for non-finite numbers)."""
    clean, non_finite = {}, {}
    for key, value in record.items():
        if isinstance(value, float) and not math.isfinite(value):
            clean[key], non_finite[key] = None, repr(float(value))
        else:
            clean[key] = value
    if non_finite:
        clean["non_finite"] = non_finite
    return json.dumps(clean, allow_nan=False) + "\n"  # ValueError for a non-finite value nested deeper


def append_metrics(path, record):
    """Append one record as a JSON line, flushed to disk."""
    missing = [f for f in FIELDS if f not in record]
    if missing:
        raise ValueError(f"metrics record lacks {missing}")
    line = json_line(record)
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def write_metrics(path, records):
    """Replace the file with exactly these records (a resumed run rewrites what its checkpoint knows)."""
    write_atomic(Path(path), "".join(json_line(r) for r in records).encode("utf-8"))


def read_metrics(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def plot_curves(records, path, title=None):
    """Loss (left) and accuracy (right) against epoch, as a PNG; written atomically."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in records]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    ax_loss.plot(epochs, [r["train_loss"] for r in records], "o-", label="train loss")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("cross-entropy")
    losses = [r["train_loss"] for r in records if math.isfinite(r["train_loss"]) and r["train_loss"] > 0]
    if losses and max(losses) / min(losses) > 20:
        ax_loss.set_yscale("log")
    ax_loss.grid(True, alpha=0.3)
    ax_loss.legend()
    for key, label in (("train_top1", "train top-1"), ("test_top1", "test top-1"), ("test_top5", "test top-5")):
        ax_acc.plot(epochs, [r[key] for r in records], "o-", label=label)
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy")
    ax_acc.set_ylim(0, 1.0)
    ax_acc.grid(True, alpha=0.3)
    ax_acc.legend(loc="lower right")
    for ax in (ax_loss, ax_acc):
        ax.xaxis.get_major_locator().set_params(integer=True)
    if title:
        fig.suptitle(title)
    path = Path(path)
    tmp = path.with_name(path.name + ".part.png")
    try:
        fig.savefig(tmp, dpi=100)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if tmp.exists():
            tmp.unlink()
    return path
