"""Data for training and evaluation: datasets, preprocessing as the original did it, batches.

    from alexnet_raw import data
    ds = data.open_dataset("digits", "train")           # or an image folder, or CIFAR-10
    pre = data.Preprocess(crop_size=32)                  # image_size round(32 * 256 / 224) = 37
    stats = data.compute_statistics(ds, pre)             # mean image, RGB PCA
    for x, y in data.Batches(ds, 64, pre, stats, train=True, seed=0, epoch=0):
        ...                                              # x (64, 3, 32, 32) float32, y int64

datasets.py reads the sources, preprocess.py turns an image into an input (resize, mean, crop,
flip, PCA lighting) and holds Statistics, batches.py orders and builds batches in background
threads, views.py makes the ten test views. Decoding is Pillow's; everything else is NumPy."""

from .batches import Batches, epoch_order, view_batches
from .datasets import (ArrayDataset, Dataset, FolderDataset, decode_image, detect, digits_split_indices,
                       open_dataset)
from .errors import DataError
from .preprocess import (Augment, Preprocess, Statistics, compute_statistics, default_image_size, image_rng,
                         load_image)
from .views import VIEW_NAMES, ten_views, view_offsets

__all__ = [
    "ArrayDataset", "Augment", "Batches", "DataError", "Dataset", "FolderDataset", "Preprocess", "Statistics",
    "VIEW_NAMES", "compute_statistics", "decode_image", "default_image_size", "detect", "digits_split_indices",
    "epoch_order", "image_rng", "load_image", "open_dataset", "ten_views", "view_batches", "view_offsets",
]
