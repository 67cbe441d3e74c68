"""Batches: order, reproducibility (workers, resume, batch size), shapes, unreadable files."""

import warnings

import numpy as np
import pytest
from conftest_helpers import write_image
from hypothesis import given, settings
from hypothesis import strategies as st

from alexnet_raw import data
from alexnet_raw.data import ArrayDataset, DataError, Preprocess


@pytest.fixture(scope="module")
def small():
    """40 random 9 x 11 images in 3 classes, statistics, Preprocess(8 -> 6)."""
    rng = np.random.default_rng(11)
    ds = ArrayDataset("rand", "rand", "train", ["a", "b", "c"], rng.integers(0, 256, (40, 9, 11, 3), dtype=np.uint8),
                      rng.integers(0, 3, 40))
    pre = Preprocess(8, 6)
    return ds, pre, data.compute_statistics(ds, pre, workers=0)


def epoch(ds, pre, stats, **kw):
    kw.setdefault("workers", 0)
    return list(data.Batches(ds, kw.pop("batch_size", 7), pre, stats, **kw))


def same(a, b):
    assert len(a) == len(b)
    for (x, y), (u, v) in zip(a, b):
        np.testing.assert_array_equal(x, u)
        np.testing.assert_array_equal(y, v)


def test_shapes_dtypes_order_and_length(small):
    ds, pre, stats = small
    b = data.Batches(ds, 7, pre, stats, train=True, seed=2, epoch=0, workers=0)
    assert len(b) == 6 and len(data.Batches(ds, 7, pre, stats, drop_last=True)) == 5
    batches = list(b)
    assert [len(y) for _, y in batches] == [7] * 5 + [5]
    for x, y in batches:
        assert x.dtype == np.float32 and x.shape == (len(y), 3, 6, 6) and x.flags.c_contiguous
        assert y.dtype == np.int64
    assert sorted(b.order.tolist()) == list(range(40)) and b.order.tolist() != list(range(40))
    np.testing.assert_array_equal(np.concatenate([y for _, y in batches]), ds.labels[b.order])
    assert len(epoch(ds, pre, stats, train=True, drop_last=True)) == 5
    test = epoch(ds, pre, stats, train=False)
    np.testing.assert_array_equal(np.concatenate([y for _, y in test]), ds.labels)  # dataset order
    np.testing.assert_array_equal(test[0][0][3], pre.test_input(ds.image(3), stats))


def test_same_seed_and_epoch_same_batches_for_any_workers_and_resume(small):
    ds, pre, stats = small
    ref = epoch(ds, pre, stats, train=True, seed=5, epoch=3)
    same(ref, epoch(ds, pre, stats, train=True, seed=5, epoch=3, workers=2))
    same(ref[4:], epoch(ds, pre, stats, train=True, seed=5, epoch=3, start=4, workers=2))
    assert epoch(ds, pre, stats, train=True, seed=5, epoch=3, start=6) == []
    with pytest.raises(DataError, match="start=7"):
        data.Batches(ds, 7, pre, stats, train=True, start=7)
    for other in (dict(seed=5, epoch=4), dict(seed=6, epoch=3)):
        assert not np.array_equal(epoch(ds, pre, stats, train=True, **other)[0][0], ref[0][0])
        assert not np.array_equal(data.epoch_order(40, **other), data.epoch_order(40, 5, 3))
        draws = [(pre.draw(5, 3, i), pre.draw(other["seed"], other["epoch"], i)) for i in range(40)]
        assert all(not np.array_equal(a.alpha, b.alpha) for a, b in draws)


@settings(max_examples=6, deadline=None)
@given(batch_size=st.integers(1, 40), workers=st.integers(0, 3))
def test_an_images_input_depends_only_on_seed_epoch_and_index(small, batch_size, workers):
    ds, pre, stats = small
    b = data.Batches(ds, batch_size, pre, stats, train=True, seed=1, epoch=2, workers=workers)
    x = np.concatenate([x for x, _ in b])
    for pos in (0, 17, 39):
        i = int(b.order[pos])
        np.testing.assert_array_equal(x[pos], pre.train_input(ds.image(i), stats, pre.draw(1, 2, i)))


def test_stopping_early_does_not_hang(small):
    ds, pre, stats = small
    it = iter(data.Batches(ds, 2, pre, stats, train=True, workers=2, prefetch=3))
    next(it)
    it.close()


def test_views_batches_equal_ten_views_of_the_full_images(small):
    ds, pre, stats = small
    views = list(data.view_batches(ds, 16, pre, stats, workers=2))
    assert [v.shape for v, _ in views] == [(10, 16, 3, 6, 6)] * 2 + [(10, 8, 3, 6, 6)]
    full = np.stack([pre.full(ds.image(i), stats) for i in range(16, 32)])
    np.testing.assert_array_equal(views[1][0], data.ten_views(full, 6))
    np.testing.assert_array_equal(views[1][0][2], np.stack([pre.test_input(ds.image(i), stats) for i in range(16, 32)]))
    with pytest.raises(DataError, match="evaluation"):
        data.Batches(ds, 4, pre, stats, train=True, views=10)


@pytest.mark.parametrize("kw, message", [(dict(batch_size=0), "batch_size"), (dict(seed=-1), "seed"),
                                         (dict(views=5), "views"), (dict(workers=1.5), "workers")])
def test_bad_arguments(small, kw, message):
    ds, pre, stats = small
    kw = {"batch_size": 4, **kw}
    with pytest.raises(DataError, match=message):
        data.Batches(ds, kw.pop("batch_size"), pre, stats, **kw)


def test_unreadable_images_are_skipped_with_a_warning(tmp_path):
    rng = np.random.default_rng(3)
    for k in range(6):
        write_image(tmp_path / f"train/c{k % 2}/{k}.png", rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    bad = tmp_path / "train/c1/3.png"
    bad.write_bytes(b"broken")
    ds = data.open_dataset(tmp_path, "train")
    pre = Preprocess(8, 6)
    b = data.Batches(ds, 2, pre, train=False, workers=2)
    with pytest.warns(UserWarning, match="3.png"):
        batches = list(b)
    assert [len(y) for _, y in batches] == [2, 2, 1]
    assert len(b.skipped) == 1 and b.skipped[0][0] == ds.paths.index(bad.as_posix())
    # a batch of only unreadable files is left out
    b1 = data.Batches(ds, 1, pre, train=False, workers=0)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        assert len(list(b1)) == 5 and len(b1) == 6


def test_shard_rows_build_only_those_rows_of_each_batch_as_the_whole_batch_has_them(small):
    """What a process of a data-parallel run reads (alexnet_raw.distributed): its rows of every
    global batch, with the augmentation of the whole batch's (drawn per image), and the count of
    each of its shards' rows, the tail batch included."""
    ds, pre, stats = small
    whole = epoch(ds, pre, stats, batch_size=7, train=True, seed=4)
    ranges = lambda n: [(n // 3, n // 2), (n // 2, n)]  # noqa: E731  two shards: the rows from n/3 on
    part = epoch(ds, pre, stats, batch_size=7, train=True, seed=4, shard_rows=ranges)
    assert len(part) == len(whole) == 6
    for (x, y), (px, py, counts) in zip(whole, part):
        n = len(y)
        assert counts == [b - a for a, b in ranges(n)]
        np.testing.assert_array_equal(px, x[n // 3:])
        np.testing.assert_array_equal(py, y[n // 3:])


def test_shard_rows_count_unreadable_images_per_shard_and_yield_every_batch(tmp_path):
    rng = np.random.default_rng(3)
    for k in range(6):
        write_image(tmp_path / f"train/c{k % 2}/{k}.png", rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    ds = data.open_dataset(tmp_path, "train")
    bad = ds.paths.index((tmp_path / "train/c1/3.png").as_posix())
    (tmp_path / "train/c1/3.png").write_bytes(b"broken")
    pre = Preprocess(8, 6)
    halves = lambda n: [(0, n // 2), (n // 2, n)]  # noqa: E731
    b = data.Batches(ds, 2, pre, train=False, workers=0, shard_rows=halves)
    with pytest.warns(UserWarning, match="3.png"):
        batches = list(b)
    assert len(batches) == 3
    counts = [c for _, _, c in batches]
    broken_batch, broken_row = divmod(bad, 2)
    expected = [[1, 1] for _ in range(3)]
    expected[broken_batch][broken_row] = 0
    assert counts == expected
    assert [len(y) for _, y, _ in batches] == [sum(c) for c in expected]
    # a batch none of whose rows could be read is yielded too (the processes agree on every batch)
    single = data.Batches(ds, 1, pre, train=False, workers=0, shard_rows=lambda n: [(0, n)])
    with pytest.warns(UserWarning, match="3.png"):
        assert [c for _, _, c in single] == [[0] if k == bad else [1] for k in range(6)]
