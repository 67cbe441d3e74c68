"""Batches: one epoch of network inputs, built in background threads, reproducible to the bit.

    for x, labels in Batches(ds, 128, preprocess, stats, train=True, seed=1, epoch=e):
        ...   # x: (B, 3, crop, crop) float32 C-contiguous; labels: (B,) int64

Order. train=True: a permutation of range(len(ds)) from
numpy.random.Generator(Philox(SeedSequence([ORDER_TAG, seed, epoch]))), a new one each epoch;
train=False: the dataset's own order. Batch k holds order[k*B : (k+1)*B]; the last batch is short
unless drop_last.

Augmentation (train=True) per image: crop, flip and lighting drawn from a generator keyed by
(seed, epoch, dataset index) only (see preprocess.py), so the inputs are the same whatever
`workers` and `batch_size`, and `start=k` (skip the first k batches, to resume mid-epoch) gives
exactly the batches k, k+1, ... of an uninterrupted epoch. train=False: the centre crop; with
views=10, the original's ten views (views.py) as (10, B, 3, crop, crop).

Background loading: whole batches are built by `workers` threads (ThreadPoolExecutor), at most
`prefetch` batches ahead of the consumer; workers=0 builds them inline. Output is identical for
any number of workers.

Unreadable images (a corrupt JPEG in a big folder) do not stop a run: the image is left out of its
batch with a warning naming the file, and recorded in `skipped` as (dataset index, message) for the latest pass; a
batch in which every image fails is not yielded at all.

Shards (data-parallel training across processes, alexnet_raw.distributed): with
shard_rows=f, where f(n) gives the row ranges [(a, b), ...] (contiguous, in order) of a batch of n
rows that this process computes, only those rows of every batch are read and built, and every
batch is yielded as (x, labels, counts), counts the rows of each range that were readable (so
the processes can agree on the global batch), even when none was."""

from __future__ import annotations

import math
import warnings

import numpy as np

from .background import ordered_map
from .errors import DataError
from .views import ten_views

ORDER_TAG = 0x0DE5  # first word of the epoch-order key (per-image keys use preprocess.IMAGE_TAG)


def epoch_order(n, seed, epoch):
    """The training order of epoch `epoch`: a permutation of range(n) keyed by (seed, epoch)."""
    rng = np.random.Generator(np.random.Philox(np.random.SeedSequence([ORDER_TAG, seed, epoch])))
    return rng.permutation(n).astype(np.int64)


def _nonnegative_int(name, v):
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 0:
        raise DataError(f"Batches {name}={v!r}; expected a non-negative integer")
    return int(v)


class Batches:
    """An iterable over one epoch's batches; len() is the number of batches (all of them, not
    counting `start`)."""

    def __init__(self, ds, batch_size, preprocess, stats=None, train=False, seed=0, epoch=0, start=0,
                 workers=2, drop_last=False, views=1, prefetch=2, shard_rows=None):
        self.ds = ds
        self.shard_rows = shard_rows
        self.batch_size = _nonnegative_int("batch_size", batch_size)
        if self.batch_size == 0:
            raise DataError("Batches batch_size=0; expected at least 1")
        self.preprocess = preprocess
        self.stats = stats
        self.train = bool(train)
        self.seed = _nonnegative_int("seed", seed)
        self.epoch = _nonnegative_int("epoch", epoch)
        self.workers = _nonnegative_int("workers", workers)
        self.prefetch = max(1, _nonnegative_int("prefetch", prefetch))
        self.drop_last = bool(drop_last)
        if views not in (1, 10):
            raise DataError(f"Batches views={views!r}; expected 1 (one crop) or 10 (the original's ten views)")
        if views == 10 and self.train:
            raise DataError("Batches views=10 is for evaluation; expected train=False")
        self.views = views
        n = len(ds)
        if n == 0:
            raise DataError(f"{ds!r}: no images")
        self.order = epoch_order(n, self.seed, self.epoch) if self.train else np.arange(n, dtype=np.int64)
        self.start = _nonnegative_int("start", start)
        if self.start > len(self):
            raise DataError(f"Batches start={start}; this epoch has only {len(self)} batches")
        self.skipped = []

    def __len__(self):
        n, b = len(self.ds), self.batch_size
        return n // b if self.drop_last else math.ceil(n / b)

    def indices(self, k):
        """Dataset indices of batch k."""
        return self.order[k * self.batch_size:(k + 1) * self.batch_size]

    def _one(self, i):
        p = self.preprocess
        image = self.ds.image(int(i), p.image_size)
        if self.views == 10:
            return p.full(image, self.stats)
        if self.train:
            return p.train_input(image, self.stats, p.draw(self.seed, self.epoch, int(i)))
        return p.test_input(image, self.stats)

    def build(self, k):
        """Batch k as (x, labels, failures), synchronously; failures: [(index, message)]; with
        shard_rows, (x, labels, failures, counts) of this process's rows."""
        idx = self.indices(k)
        ranges = None
        if self.shard_rows is not None:
            ranges = list(self.shard_rows(len(idx)))
            idx = idx[ranges[0][0]:ranges[-1][1]]
        c = self.preprocess.crop_size
        s = self.preprocess.image_size if self.views == 10 else c
        x = np.empty((len(idx), 3, s, s), np.float32)
        keep, failures = [], []
        for j, i in enumerate(idx):
            try:
                x[len(keep)] = self._one(i)
                keep.append(j)
            except DataError as e:
                failures.append((int(i), str(e)))
        x = x[:len(keep)]
        labels = np.ascontiguousarray(self.ds.labels[idx[keep]], dtype=np.int64)
        if self.views == 10:
            x = ten_views(x, c)
        if ranges is None:
            return x, labels, failures
        kept = np.asarray(keep, dtype=np.int64) + ranges[0][0]  # the batch rows that were read
        counts = [int(np.count_nonzero((kept >= a) & (kept < b))) for a, b in ranges]
        return x, labels, failures, counts

    def __iter__(self):
        self.skipped = []
        for built in ordered_map(self.build, range(self.start, len(self)), workers=self.workers, ahead=self.prefetch):
            x, labels, failures = built[:3]
            for i, message in failures:
                warnings.warn(f"skipped an unreadable image: {message}", stacklevel=2)
                self.skipped.append((i, message))
            if self.shard_rows is not None:
                yield x, labels, built[3]
            elif len(labels):
                yield x, labels


def view_batches(ds, batch_size, preprocess, stats=None, workers=2, start=0):
    """Evaluation batches of the original's ten views: (views (10, B, 3, c, c), labels (B,))."""
    return Batches(ds, batch_size, preprocess, stats, train=False, workers=workers, start=start, views=10)
