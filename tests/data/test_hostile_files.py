"""Hostile and careless data files (the hostile-input issue): nothing a file holds is run, and an
image that would take gigabytes to decode is refused before it is decoded; each refusal names the
file."""

import os
import pickle

import numpy as np
import pytest

from alexnet_raw import data
from alexnet_raw.data import datasets, safe_pickle
from conftest_helpers import cifar_batch, write_image
from crafted_files import png_of_zeros


class Payload:
    """Unpickling this calls os.system (or eval): what a crafted CIFAR batch or .pth would do."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class EvalPayload(Payload):
    def __reduce__(self):
        return (eval, (f"__import__('os').system({self.command!r})",))


@pytest.mark.parametrize("payload", [Payload, EvalPayload])
@pytest.mark.parametrize("where", ["data_batch_1", "batches.meta", "inside"])
def test_a_crafted_cifar_batch_runs_nothing_and_is_refused(cifar, tmp_path, payload, where):
    directory, _ = cifar
    marker = tmp_path / "payload-ran"
    evil = payload(f"touch {marker}")
    if where == "inside":  # a valid-looking batch with the payload as one of its labels
        d, _, _ = cifar_batch(np.random.default_rng(0), 4)
        d[b"labels"][2] = evil
        (directory / "data_batch_1").write_bytes(pickle.dumps(d))
        where = "data_batch_1"
    else:
        (directory / where).write_bytes(pickle.dumps(evil))
    with pytest.raises(data.DataError, match=rf"{where}: not a CIFAR-10 python batch: it names "
                                             r"(posix\.system|builtins\.eval), which a CIFAR-10 batch never holds"):
        data.open_dataset(str(directory), "train")
    assert not marker.exists(), "the pickle's payload ran"


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_real_batches_of_every_pickle_protocol_still_load(cifar, protocol):
    directory, expected = cifar
    for name in ["test_batch"]:
        d = pickle.loads((directory / name).read_bytes())
        (directory / name).write_bytes(pickle.dumps(d, protocol=protocol))
    ds = data.open_dataset(str(directory), "test")
    images, labels = expected["test"]
    assert np.array_equal(ds.labels, labels) and np.array_equal(ds.images, images)


def test_numpy_1_spellings_are_read_as_numpy_2_ones():
    """The published CIFAR-10 batches were written by NumPy 1 (numpy.core.multiarray)."""
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    text = pickle.dumps(array, protocol=2).replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    import io

    assert np.array_equal(safe_pickle.load(io.BytesIO(text)), array)


def test_a_crafted_pth_runs_nothing_and_is_refused(tmp_path):
    torch = pytest.importorskip("torch")
    from alexnet_raw.training import torchvision_weights

    marker = tmp_path / "payload-ran"
    path = tmp_path / "alexnet.pth"
    torch.save({"features.0.weight": torch.zeros(2), "evil": Payload(f"touch {marker}")}, path)
    with pytest.raises(ValueError, match=f"{path} is not a readable PyTorch state_dict file"):
        torchvision_weights.read_pth(path)
    assert not marker.exists(), "the .pth payload ran"


def test_a_decompression_bomb_is_refused_before_it_is_decoded(tmp_path):
    bomb = png_of_zeros(tmp_path / "bomb.png", 12000, 12000)
    assert bomb.stat().st_size < 400_000
    with pytest.raises(data.DataError, match=r"^\S*bomb\.png: 12000 x 12000 pixels \(144 megapixels\) is more than "
                                             r"the 64 megapixels .*; not decoded$"):
        data.decode_image(bomb)
    ok = png_of_zeros(tmp_path / "fine.png", 300, 200)
    assert data.decode_image(ok).shape == (200, 300, 3)


def test_large_jpegs_are_decoded_at_the_scale_the_pipeline_needs(tmp_path):
    rng = np.random.default_rng(0)
    smooth = np.clip(128 + 60 * np.sin(np.arange(1600)[None, :, None] / 90.0)
                     + rng.normal(0, 3, (1200, 1600, 3)), 0, 255).astype(np.uint8)
    path = write_image(tmp_path / "big.jpg", smooth, "JPEG")
    full = data.decode_image(path)
    small = data.decode_image(path, min_side=256)
    assert full.shape == (1200, 1600, 3) and small.shape == (300, 400, 3)  # 1/4: the smallest scale >= 256
    assert data.decode_image(path, min_side=700).shape == (1200, 1600, 3)  # 1/2 would give 600 < 700
    pre = data.Preprocess(image_size=256, crop_size=224)
    difference = np.abs(pre.resize(small).astype(int) - pre.resize(full).astype(int))
    assert difference.mean() < 3  # the same picture at the stored size
    png = write_image(tmp_path / "big.png", smooth[:600, :800], "PNG")
    assert data.decode_image(png, min_side=256).shape == (600, 800, 3)  # only JPEG has scaled decoding
