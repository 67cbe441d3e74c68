"""Fixture data the data tests write themselves: small image folders and CIFAR-10 batch files."""

import numpy as np
import pytest
from cifar_files import write_cifar_directory
from conftest_helpers import random_images, write_image

from alexnet_raw import data


@pytest.fixture
def folder(tmp_path):
    """root/train/<class>/ and root/val/<class>/ with PNGs (exact pixels) and one JPEG per class.

    Returns (root, {split: [(relative path, class name, array or None for JPEG)]})."""
    rng = np.random.default_rng(0)
    root = tmp_path / "imagenet"
    layout = {"train": {"zebra": 3, "ant": 2, "Moth": 2}, "val": {"ant": 1, "zebra": 2, "Moth": 1}}
    written = {}
    for split, classes in layout.items():
        written[split] = []
        for name, count in classes.items():
            for k in range(count):
                h, w = int(rng.integers(5, 20)), int(rng.integers(5, 20))
                array = random_images(rng, 1, h, w)[0]
                rel = f"{split}/{name}/img{k}.png"
                write_image(root / rel, array)
                written[split].append((rel, name, array))
            rel = f"{split}/{name}/photo.JPEG"
            write_image(root / rel, random_images(rng, 1, 12, 16)[0], fmt="JPEG")
            written[split].append((rel, name, None))
    return root, written


@pytest.fixture
def cifar(tmp_path):
    """A CIFAR-10 python directory of 5 small training batches and a test batch.

    Returns (directory, {"train": (images NHWC, labels), "test": (...)})."""
    directory = tmp_path / "cifar-10-batches-py"
    return directory, write_cifar_directory(directory, np.random.default_rng(1))


@pytest.fixture(scope="session")
def digits_train():
    return data.open_dataset("digits", "train")


@pytest.fixture(scope="session")
def digits_test():
    return data.open_dataset("digits", "test")
