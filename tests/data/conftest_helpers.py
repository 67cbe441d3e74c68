"""Helpers of the data tests (writing images; CIFAR-10 batches are tests/cifar_files.py's); fixtures
are in conftest.py."""

import numpy as np
from PIL import Image

from cifar_files import CIFAR_NAMES, cifar_batch  # noqa: F401  (the data tests import them from here)



def write_image(path, array, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format=fmt)
    return path


def random_images(rng, n, h, w):
    return rng.integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)
