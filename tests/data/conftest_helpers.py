"""Helpers of the data tests (writing images and CIFAR-10 batches); fixtures are in conftest.py."""

import numpy as np
from PIL import Image



def write_image(path, array, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format=fmt)
    return path


def random_images(rng, n, h, w):
    return rng.integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)


def cifar_batch(rng, n, n_classes=10, str_keys=False):
    planes = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, n_classes, n)]
    d = {b"batch_label": b"fixture", b"data": planes.reshape(n, 3072), b"labels": labels}
    if str_keys:
        d = {k.decode(): v for k, v in d.items()}
    return d, planes.transpose(0, 2, 3, 1), np.array(labels)


CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
