"""Dataset loaders: image folders, CIFAR-10 batches, the built-in digits; detection and errors."""

import pickle

import numpy as np
import pytest

from alexnet_raw import data
from alexnet_raw.data import DataError

from conftest_helpers import write_image


def test_folder_classes_sorted_and_shared_by_both_splits(folder):
    root, written = folder
    train = data.open_dataset(root, "train")
    test = data.open_dataset(str(root), "test")
    assert train.class_names == test.class_names == ["Moth", "ant", "zebra"]  # sorted() order
    assert train.kind == "folder" and len(train) == 7 + 3 and len(test) == 4 + 3
    for ds, split in ((train, "train"), (test, "val")):
        assert ds.labels.dtype == np.int64 and ds.labels.shape == (len(ds),)
        by_path = {(root / rel).as_posix(): (name, array) for rel, name, array in written[split]}
        assert sorted(ds.paths) == sorted(by_path)
        for i, path in enumerate(ds.paths):
            name, array = by_path[path]
            assert ds.class_names[ds.labels[i]] == name
            image = ds.image(i)
            assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
            if array is not None:  # PNG: exact pixels
                np.testing.assert_array_equal(image, array)
            else:
                assert image.shape == (12, 16, 3)
            assert ds.describe(i) == path


def test_folder_test_split_falls_back_to_test_dir(folder):
    root, _ = folder
    (root / "val").rename(root / "test")
    assert len(data.open_dataset(root, "test")) == 7


def test_folder_grey_and_rgba_images_become_rgb(tmp_path):
    grey = np.arange(20, dtype=np.uint8).reshape(4, 5) * 10
    write_image(tmp_path / "train/a/g.png", grey)
    rgba = np.full((3, 3, 4), 77, np.uint8)
    write_image(tmp_path / "train/b/x.png", rgba)
    ds = data.open_dataset(tmp_path, "train")
    np.testing.assert_array_equal(ds.image(0), np.repeat(grey[..., None], 3, axis=2))
    np.testing.assert_array_equal(ds.image(1), rgba[..., :3])


def test_corrupt_and_missing_images_name_their_path(folder):
    root, _ = folder
    bad = root / "train/ant/img0.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    truncated = root / "train/zebra/photo.JPEG"
    truncated.write_bytes(truncated.read_bytes()[:200])
    ds = data.open_dataset(root, "train")
    for path in (bad, truncated):
        with pytest.raises(DataError, match=str(path)) as info:
            ds.image(ds.paths.index(path.as_posix()))
        assert isinstance(info.value, ValueError) and "expected" in str(info.value)
    with pytest.raises(DataError, match="not found"):
        data.decode_image(root / "nope.png")


@pytest.mark.parametrize("make, message", [
    (lambda r: (r / "train/a").mkdir(parents=True), "no images"),
    (lambda r: (r / "train").mkdir(parents=True), "no class subfolders"),
    (lambda r: write_image(r / "train/x.png", np.zeros((2, 2, 3), np.uint8)), "own subfolder"),
    (lambda r: r.mkdir(), "neither train/"),
])
def test_empty_or_misshapen_folders_are_clear_errors(tmp_path, make, message):
    root = tmp_path / "ds"
    make(root)
    with pytest.raises(DataError, match=message):
        data.open_dataset(root, "train")


def test_folder_errors_for_missing_split_and_unknown_class(folder):
    root, _ = folder
    write_image(root / "val/newt/a.png", np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(DataError, match="newt"):
        data.open_dataset(root, "test")
    import shutil

    shutil.rmtree(root / "val")
    with pytest.raises(DataError, match="val: missing"):
        data.open_dataset(root, "test")


def test_bad_source_and_split(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        data.open_dataset(tmp_path / "absent", "train")
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(DataError, match="is a file"):
        data.open_dataset(tmp_path / "f.txt", "train")
    with pytest.raises(DataError, match="split"):
        data.open_dataset("digits", "validation")


def test_cifar_loader(cifar):
    directory, expected = cifar
    for split in ("train", "test"):
        for source in (directory, directory.parent):  # the batches directory or the one holding it
            ds = data.open_dataset(source, split)
            images, labels = expected[split]
            assert ds.kind == "cifar10" and len(ds) == len(labels)
            assert ds.class_names[:2] == ["airplane", "automobile"] and len(ds.class_names) == 10
            np.testing.assert_array_equal(ds.labels, labels)
            assert ds.labels.dtype == np.int64
            for i in range(len(ds)):
                np.testing.assert_array_equal(ds.image(i), images[i])
    ds = data.open_dataset(directory, "train")
    assert ds.describe(3) == f"{directory / 'data_batch_1'} row 3"
    assert ds.describe(4) == f"{directory / 'data_batch_2'} row 0"
    # the red plane is the first 1024 bytes of a row, row-major
    raw = pickle.loads((directory / "data_batch_1").read_bytes())[b"data"]
    np.testing.assert_array_equal(ds.image(0)[:, :, 0].ravel(), raw[0, :1024])
    np.testing.assert_array_equal(ds.image(0)[0, 1], raw[0, [1, 1025, 2049]])


def test_cifar_str_keys_accepted(cifar):
    directory, expected = cifar
    d = pickle.loads((directory / "test_batch").read_bytes())
    (directory / "test_batch").write_bytes(pickle.dumps({k.decode(): v for k, v in d.items()}))
    np.testing.assert_array_equal(data.open_dataset(directory, "test").labels, expected["test"][1])


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "data_batch_3").unlink(), "data_batch_3: missing"),
    (lambda d: (d / "data_batch_2").write_bytes(b"garbage"), "data_batch_2: cannot unpickle"),
    (lambda d: (d / "data_batch_4").write_bytes(pickle.dumps([1, 2])), "data_batch_4: unpickled a list"),
    (lambda d: (d / "data_batch_5").write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8)})),
     "data_batch_5: no b'labels'"),
    (lambda d: (d / "data_batch_1").write_bytes(pickle.dumps({b"data": np.zeros((2, 100), np.uint8),
                                                              b"labels": [0, 1]})), "expected uint8 \\(N, 3072\\)"),
    (lambda d: (d / "data_batch_1").write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8),
                                                              b"labels": [0, 10]})), "expected 0..9"),
])
def test_cifar_damage_is_a_clear_error(cifar, damage, message):
    directory, _ = cifar
    damage(directory)
    with pytest.raises(DataError, match=message):
        data.open_dataset(directory, "train")


def test_digits_split_is_fixed_stratified_and_complete(digits_train, digits_test):
    from sklearn.datasets import load_digits

    bunch = load_digits()
    assert digits_train.class_names == [str(d) for d in range(10)]
    assert len(digits_train) + len(digits_test) == 1797 and len(digits_test) == 359
    train, test = data.digits_split_indices(bunch.target)
    assert not set(train) & set(test) and len(set(train) | set(test)) == 1797
    again = data.digits_split_indices(bunch.target)
    np.testing.assert_array_equal(train, again[0])
    for c in range(10):  # stratified: each class 80/20 to within rounding
        n_c = np.sum(bunch.target == c)
        assert np.sum(bunch.target[train] == c) == round(0.8 * n_c)
    np.testing.assert_array_equal(digits_train.labels, bunch.target[train])
    image = digits_train.image(3)
    assert image.shape == (8, 8, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image[..., 0], np.rint(bunch.images[train[3]] * 255 / 16))
    assert np.array_equal(image[..., 0], image[..., 2])
    assert data.open_dataset(None, "train").labels.tolist() == digits_train.labels.tolist()
