"""Preprocessing: resize, statistics, and the statistics of the training augmentation
(crop positions, flip rate, PCA lighting scale) measured through Batches on marker images."""

import json

import numpy as np
import pytest
from conftest_helpers import write_image
from hypothesis import given, settings
from hypothesis import strategies as st

from alexnet_raw import data
from alexnet_raw.data import ArrayDataset, DataError, Preprocess, Statistics


def test_default_image_size_is_the_originals_ratio():
    assert data.default_image_size(224) == 256 and data.default_image_size(32) == 37
    assert Preprocess(crop_size=32).image_size == 37 and Preprocess(None, 224).image_size == 256
    assert Preprocess(40, 32).image_size == 40


@pytest.mark.parametrize("kwargs", [dict(), dict(image_size=20, crop_size=24), dict(crop_size=0),
                                    dict(crop_size=2.5), dict(crop_size=8, mean=np.zeros(4))])
def test_bad_preprocess_arguments(kwargs):
    with pytest.raises(DataError):
        Preprocess(**kwargs)


@settings(max_examples=25, deadline=None)
@given(h=st.integers(1, 60), w=st.integers(1, 60), s=st.integers(1, 40))
def test_resize_gives_the_square_and_keeps_constant_images(h, w, s):
    pre = Preprocess(s, 1)
    rng = np.random.default_rng(h * 100 + w)
    out = pre.resize(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    assert out.shape == (s, s, 3) and out.dtype == np.uint8
    colour = np.array([10, 200, 77], np.uint8)
    np.testing.assert_array_equal(pre.resize(np.broadcast_to(colour, (h, w, 3)).copy()),
                                  np.broadcast_to(colour, (s, s, 3)))


def test_resize_takes_the_centre_of_the_longer_side():
    pre = Preprocess(4, 4)
    image = np.zeros((4, 12, 3), np.uint8)
    image[:, 4:8] = 255  # the middle third: after resizing to 4 x 4 the square is all 255
    np.testing.assert_array_equal(pre.resize(image), 255)
    grey = np.full((6, 6), 9, np.uint8)
    np.testing.assert_array_equal(pre.resize(grey), 9)


def test_statistics_match_numpy(digits_train):
    pre = Preprocess(crop_size=8)  # image_size 9
    images = np.random.default_rng(0).integers(0, 256, (30, 9, 9, 3), dtype=np.uint8)
    ds = ArrayDataset("t", "t", "train", ["a"], images, np.zeros(30))
    stats = data.compute_statistics(ds, pre, workers=0)
    np.testing.assert_allclose(stats.mean, ds.images.mean(0).transpose(2, 0, 1), rtol=1e-6)
    pixels = ds.images.reshape(-1, 3) / 255.0
    cov = np.cov(pixels, rowvar=False, bias=True)
    np.testing.assert_allclose(stats.eigenvectors @ np.diag(stats.eigenvalues) @ stats.eigenvectors.T, cov,
                               atol=1e-12)
    assert np.all(np.diff(stats.eigenvalues) <= 0) and stats.count == 30
    np.testing.assert_allclose(stats.eigenvectors.T @ stats.eigenvectors, np.eye(3), atol=1e-12)
    # deterministic, whatever the workers; a subset at evenly spaced indices
    assert data.compute_statistics(ds, pre, workers=2) == stats
    few = data.compute_statistics(ds, pre, max_images=4, workers=0)
    np.testing.assert_allclose(few.mean, ds.images[[0, 10, 19, 29]].mean(0).transpose(2, 0, 1), rtol=1e-6)
    # digits: grey, so one nonzero eigenvalue along (1, 1, 1)
    dstats = data.compute_statistics(digits_train, Preprocess(crop_size=32), max_images=200)
    assert dstats.mean.shape == (3, 37, 37) and dstats.eigenvalues[1] < 1e-9 * dstats.eigenvalues[0]
    np.testing.assert_allclose(dstats.eigenvectors[:, 0], np.full(3, 3 ** -0.5), atol=1e-9)


def test_statistics_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    stats = Statistics(rng.random((3, 5, 5)), [3, 2, 1], np.linalg.qr(rng.random((3, 3)))[0], count=7)
    assert Statistics.from_dict(stats.to_dict()) == stats
    text = json.dumps(stats.to_dict(lists=True))
    back = Statistics.from_dict(json.loads(text))
    assert back == stats and back.mean.dtype == np.float32
    with pytest.raises(DataError, match="eigenvectors"):
        Statistics.from_dict({"mean": stats.mean, "eigenvalues": [1, 2, 3]})
    with pytest.raises(DataError, match=r"\(3, S, S\)"):
        Statistics(np.zeros((3, 4, 5)), [1, 1, 1], np.eye(3))


def marker_dataset(n, s):
    """n identical s x s images whose red value is 8*row and green 8*col (blue constant 100)."""
    r, c = np.meshgrid(np.arange(s), np.arange(s), indexing="ij")
    image = np.stack([8 * r, 8 * c, np.full_like(r, 100)], axis=2).astype(np.uint8)
    return ArrayDataset("marker", "marker", "train", ["x"], np.broadcast_to(image, (n, s, s, 3)), np.zeros(n))


def test_crop_positions_uniform_and_flip_rate_half():
    s, crop, n = 12, 8, 3000  # 5 offsets per axis
    pre = Preprocess(s, crop, mean=False, pca=False)
    x = np.concatenate([b for b, _ in data.Batches(marker_dataset(n, s), 500, pre, train=True, seed=3, epoch=1,
                                                   workers=0)])
    top = x[:, 0, 0, 0] / 8
    # the mirrored crop's first column is the crop's last: left = green/8 - (crop-1) when flipped
    flipped = x[:, 1, 0, 0] > x[:, 1, 0, -1]
    left = np.where(flipped, x[:, 1, 0, 0] / 8 - (crop - 1), x[:, 1, 0, 0] / 8)
    for offsets in (top, left):
        assert offsets.min() == 0 and offsets.max() == s - crop
        counts = np.bincount(offsets.astype(int), minlength=s - crop + 1)
        expected = n / (s - crop + 1)
        chi2 = ((counts - expected) ** 2 / expected).sum()
        assert chi2 < 18.5, counts  # 4 degrees of freedom: p = 0.001
        assert abs(offsets.mean() - (s - crop) / 2) < 0.1
    assert abs(flipped.mean() - 0.5) < 3 * 0.5 / np.sqrt(n)
    # the crop is exactly the marked window, mirrored when flipped
    k = int(np.argmax(flipped))
    expect = np.broadcast_to(marker_dataset(1, s).images[0], (s, s, 3)).transpose(2, 0, 1)
    window = expect[:, int(top[k]):int(top[k]) + crop, int(left[k]):int(left[k]) + crop][:, :, ::-1]
    np.testing.assert_array_equal(x[k], window)


def test_pca_lighting_scale_matches_the_paper():
    s, n = 6, 4000
    rng = np.random.default_rng(5)
    vectors = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    values = np.array([0.2, 0.05, 0.01])
    stats = Statistics(np.full((3, s, s), 100.0), values, vectors)
    pre = Preprocess(s, 4)
    image = np.full((s, s, 3), 100, np.uint8)
    ds = ArrayDataset("flat", "flat", "train", ["x"], np.broadcast_to(image, (n, s, s, 3)), np.zeros(n))
    x = np.concatenate([b for b, _ in data.Batches(ds, 1000, pre, stats, train=True, seed=0, epoch=0, workers=0)])
    shift = x[:, :, 0, 0].astype(np.float64)  # image - mean is 0, so the pixel is the lighting
    assert np.all(x == shift[:, :, None, None].astype(np.float32))  # the same shift at every pixel
    coeff = shift @ vectors / 255.0  # = alpha * eigenvalue per eigenvector
    np.testing.assert_allclose(coeff.std(0), 0.1 * values, rtol=0.05)
    np.testing.assert_allclose(coeff.mean(0), 0, atol=4 * 0.1 * values.max() / np.sqrt(n))
    # switched off: no shift
    off = next(iter(data.Batches(ds, 10, Preprocess(s, 4, pca=False), stats, train=True, workers=0)))[0]
    np.testing.assert_array_equal(off, 0)


def test_mean_subtraction_and_centre_crop(tmp_path):
    s, crop = 7, 4
    rng = np.random.default_rng(6)
    image = rng.integers(0, 256, (s, s, 3), dtype=np.uint8)
    path = write_image(tmp_path / "a.png", image)
    mean = rng.random((3, s, s)) * 255
    stats = Statistics(mean, [1, 1, 1], np.eye(3))
    x = data.load_image(path, Preprocess(s, crop), stats)
    assert x.shape == (1, 3, crop, crop) and x.dtype == np.float32 and x.flags.c_contiguous
    expect = (image.transpose(2, 0, 1) - mean.astype(np.float32))[:, 1:5, 1:5]
    np.testing.assert_allclose(x[0], expect, rtol=1e-6)
    per_channel = data.load_image(path, Preprocess(s, crop, mean=[1.0, 2.0, 3.0]), stats)
    channel_means = np.array([1, 2, 3.0])[:, None, None]
    np.testing.assert_array_equal(per_channel[0], image.transpose(2, 0, 1)[:, 1:5, 1:5] - channel_means)
    with pytest.raises(DataError, match="Statistics are for 7 x 7"):
        data.load_image(path, Preprocess(8, crop), stats)
    (tmp_path / "b.jpg").write_bytes(b"nope")
    with pytest.raises(DataError, match="b.jpg"):
        data.load_image(tmp_path / "b.jpg", Preprocess(s, crop), stats)
