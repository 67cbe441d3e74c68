"""CIFAR-10 python batches written by the tests (the format of cifar-10-batches-py: pickled dicts,
b"data" (N, 3072) uint8 R, G, B 32 x 32 planes, b"labels"; batches.meta with the class names)."""

import pickle

import numpy as np

CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def cifar_batch(rng, n, n_classes=10, str_keys=False):
    """(the batch dict, its images NHWC, its labels)."""
    planes = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, n_classes, n)]
    d = {b"batch_label": b"fixture", b"data": planes.reshape(n, 3072), b"labels": labels}
    if str_keys:
        d = {k.decode(): v for k, v in d.items()}
    return d, planes.transpose(0, 2, 3, 1), np.array(labels)


def write_cifar_directory(directory, rng, train_sizes=(4, 5, 6, 7, 8), test_size=4):
    """directory/data_batch_1..5, test_batch and batches.meta; returns {"train": (images NHWC,
    labels), "test": (...)}."""
    directory.mkdir(parents=True, exist_ok=True)
    images, labels = [], []
    for k, n in enumerate(train_sizes, start=1):
        d, im, lab = cifar_batch(rng, n)
        (directory / f"data_batch_{k}").write_bytes(pickle.dumps(d))
        images.append(im)
        labels.append(lab)
    d, test_images, test_labels = cifar_batch(rng, test_size)
    (directory / "test_batch").write_bytes(pickle.dumps(d))
    meta = {b"label_names": [n.encode() for n in CIFAR_NAMES], b"num_vis": 3072}
    (directory / "batches.meta").write_bytes(pickle.dumps(meta))
    return {"train": (np.concatenate(images), np.concatenate(labels)), "test": (test_images, test_labels)}
