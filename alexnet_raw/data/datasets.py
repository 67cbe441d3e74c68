"""Datasets: labelled RGB images at their stored size, from three kinds of source.

    open_dataset("digits", "train")        # built in: scikit-learn's handwritten digits, nothing to download
    open_dataset("/data/imagenet", "test") # ImageNet's layout: train/<class>/*.JPEG, val/<class>/*.JPEG
    open_dataset("/data/cifar-10-batches-py", "train")   # CIFAR-10's python batches

Every dataset answers the same four questions: `class_names`, `len(ds)`, `labels` (int64) and
`image(i)`, an H x W x 3 uint8 RGB array as stored (grey images replicated to three channels).
Resizing and cropping are not done here (see preprocess.py): the original kept its training images
at 256 x 256 and cropped at training time, so the stored image is the unit the data pipeline starts
from.

Sources:
- "digits": sklearn.datasets.load_digits, 1797 8 x 8 grey images of 0-9, pixel values 0..16 scaled
  to 0..255 (round(v * 255 / 16)). Split: stratified 80/20 with a fixed seed (DIGITS_SPLIT_SEED): in
  each class, a permutation from numpy.random.Generator(Philox(SeedSequence([seed, class])))
  puts the first round(0.8 * n_class) images in "train" and the rest in "test"; each split keeps
  the dataset's own order. Our own code rather than sklearn's train_test_split, so the split
  cannot change with a scikit-learn release.
- an image folder: DIR/train/<class>/*.JPEG|*.jpg|*.png (any case); split "test" reads DIR/val/,
  or DIR/test/ when there is no val/. Class names are the sorted subfolder names of train/ (of the
  test folder when train/ is absent), so a class has the same index in both splits; files are
  sorted by name within a class. Images are decoded with Pillow on every call to image().
- a CIFAR-10 python directory: data_batch_1..5 ("train"), test_batch ("test") and batches.meta,
  pickled dicts with b"data" ((N, 3072) uint8, each row the R, G and B 32 x 32 planes, row-major)
  and b"labels"; class names from batches.meta's b"label_names". A directory holding
  cifar-10-batches-py/ is accepted too. The pickles are read by data/safe_pickle.py, which rebuilds
  plain data and NumPy arrays only: a crafted batch cannot run code.

The kind is detected from what the path holds; anything unusable raises DataError naming the path
and what was expected there."""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import numpy as np

from . import safe_pickle
from .errors import DataError

SPLITS = ("train", "test")
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png")
DIGITS_SPLIT_SEED = 2012
DIGITS_TRAIN_FRACTION = 0.8
CIFAR_TRAIN_FILES = tuple(f"data_batch_{k}" for k in range(1, 6))
CIFAR_TEST_FILE = "test_batch"
CIFAR_META_FILE = "batches.meta"

_EXPECTED = (
    "expected 'digits', an image folder in ImageNet's layout (DIR/train/<class>/*.JPEG|*.jpg|*.png and "
    "DIR/val/<class>/...), or a CIFAR-10 python directory (data_batch_1..5, test_batch, batches.meta)"
)


class Dataset:
    """Labelled images. Subclasses set kind, source, split, class_names, labels and define image()."""

    kind = "dataset"

    def __init__(self, source, split, class_names, labels):
        self.source = str(source)
        self.split = split
        self.class_names = list(class_names)
        self.labels = np.ascontiguousarray(labels, dtype=np.int64)

    def __len__(self):
        return int(self.labels.shape[0])

    @property
    def native_size(self):
        """The side every image of the dataset has (square images of one size, as CIFAR-10's 32),
        or None where sizes vary or are not known without decoding every file."""
        return None

    def image(self, i, min_side=None):
        """Image i as an H x W x 3 uint8 RGB array at its stored size, or, given `min_side` (the
        shorter side the caller resizes to), possibly smaller but never with a shorter side below
        it (a large JPEG is decoded at a reduced scale)."""
        raise NotImplementedError

    def describe(self, i):
        """Where image i comes from, for messages (a file path, or a batch file and row)."""
        return f"{self.source} [{self.split}] image {i}"

    def _check_index(self, i):
        n = len(self)
        if not isinstance(i, (int, np.integer)) or not -n <= i < n:
            raise IndexError(f"image index {i!r} out of range for a dataset of {n} images")
        return int(i) % n

    def __repr__(self):
        return (f"<{type(self).__name__} {self.kind} {self.source!r} split={self.split!r}: "
                f"{len(self)} images, {len(self.class_names)} classes>")


class ArrayDataset(Dataset):
    """Images held in memory as one (N, H, W, 3) uint8 array (digits, CIFAR-10)."""

    def __init__(self, kind, source, split, class_names, images, labels, origins=None):
        super().__init__(source, split, class_names, labels)
        self.kind = kind
        self.images = images
        self._origins = origins  # per image (file name, row), for messages

    def image(self, i, min_side=None):
        return self.images[self._check_index(i)]

    @property
    def native_size(self):
        h, w = self.images.shape[1:3]
        return int(h) if h == w else None

    def describe(self, i):
        if self._origins is None:
            return super().describe(i)
        name, row = self._origins(self._check_index(i))
        return f"{name} row {row}"


class FolderDataset(Dataset):
    """An ImageNet-style folder: one file per image, decoded with Pillow when asked for."""

    kind = "folder"

    def __init__(self, source, split, class_names, paths, labels, directory):
        super().__init__(source, split, class_names, labels)
        self.paths = [str(p) for p in paths]
        self.directory = str(directory)

    def image(self, i, min_side=None):
        return decode_image(self.paths[self._check_index(i)], min_side)

    def describe(self, i):
        return self.paths[self._check_index(i)]


MAX_IMAGE_PIXELS = 64 * 1000 * 1000  # larger images are refused before decoding (decompression bombs)


def decode_image(path, min_side=None):
    """Decode an image file with Pillow to an H x W x 3 uint8 RGB array (grey, palette, RGBA and
    CMYK converted by Pillow). A missing, truncated or non-image file, or one of more than
    MAX_IMAGE_PIXELS pixels (read from its header, before anything is decoded: a small file can
    claim a huge image), raises DataError naming it. min_side: the shorter side the caller will
    resize to; a JPEG is then decoded at the smallest of its 1/1, 1/2, 1/4, 1/8 scales that keeps
    its shorter side at least that (Pillow's draft mode: less memory and time)."""
    from PIL import Image

    try:
        with warnings.catch_warnings():  # Pillow's bomb warning: the stricter cap below refuses such images
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
        with img:
            w, h = img.size
            if w * h > MAX_IMAGE_PIXELS:
                raise DataError(f"{path}: {w} x {h} pixels ({w * h / 1e6:.0f} megapixels) is more than the "
                                f"{MAX_IMAGE_PIXELS / 1e6:.0f} megapixels an image may have here (a decompression "
                                "bomb, or an image to shrink before training on it); not decoded")
            if min_side and img.format == "JPEG" and min(w, h) > min_side:
                scale = min_side / min(w, h)
                img.draft("RGB", (max(1, math.ceil(w * scale)), max(1, math.ceil(h * scale))))
            img.load()
            rgb = img.convert("RGB")
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"{path}: cannot decode this file ({type(e).__name__}: {e}); expected a readable "
                        f"JPEG or PNG image") from e
    out = np.asarray(rgb, dtype=np.uint8)
    if out.ndim != 3 or out.shape[2] != 3 or out.shape[0] == 0 or out.shape[1] == 0:
        raise DataError(f"{path}: decoded to shape {out.shape}; expected an H x W x 3 RGB image")
    return out


def open_dataset(source="digits", split="train"):
    """Open `source` ("digits", an image folder or a CIFAR-10 directory) at `split` ("train"/"test")."""
    if split not in SPLITS:
        raise DataError(f"split {split!r}: expected one of {SPLITS}")
    if source is None or str(source) == "digits":
        return digits(split)
    path = Path(os.path.expanduser(str(source)))
    kind = detect(path)
    if kind == "cifar10":
        return cifar10(path, split)
    return image_folder(path, split)


def detect(path):
    """'cifar10' or 'folder' for a dataset directory; DataError for anything else."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or directory; {_EXPECTED}")
    if not path.is_dir():
        raise DataError(f"{path}: is a file, not a dataset directory; {_EXPECTED}")
    if _cifar_dir(path) is not None:
        return "cifar10"
    if any((path / name).is_dir() for name in ("train", "val", "test")):
        return "folder"
    raise DataError(f"{path}: holds neither train/, val/ or test/ folders nor CIFAR-10 batch files; {_EXPECTED}")


# ---- digits -------------------------------------------------------------------------------------

def digits_split_indices(labels, seed=DIGITS_SPLIT_SEED, train_fraction=DIGITS_TRAIN_FRACTION):
    """(train, test) index arrays: a stratified split, the same on every machine for a given seed."""
    labels = np.asarray(labels)
    train = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        rng = np.random.Generator(np.random.Philox(np.random.SeedSequence([seed, int(c)])))
        members = members[rng.permutation(members.size)]
        train.append(members[: int(round(train_fraction * members.size))])
    train = np.sort(np.concatenate(train))
    test = np.setdiff1d(np.arange(labels.size), train)
    return train, test


def digits(split):
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise DataError(f"the built-in 'digits' dataset needs scikit-learn ({e}); pip install scikit-learn") from e

    bunch = load_digits()
    grey = np.rint(np.asarray(bunch.images, dtype=np.float64) * (255.0 / 16.0)).astype(np.uint8)
    labels = np.asarray(bunch.target, dtype=np.int64)
    train, test = digits_split_indices(labels)
    keep = train if split == "train" else test
    images = np.ascontiguousarray(np.repeat(grey[keep][..., None], 3, axis=3))
    names = [str(c) for c in bunch.target_names]
    return ArrayDataset("digits", "digits", split, names, images, labels[keep])


# ---- image folder -------------------------------------------------------------------------------

def _split_dir(root, split):
    if split == "train":
        return root / "train"
    for name in ("val", "test"):
        if (root / name).is_dir():
            return root / name
    return root / "val"


def _class_dirs(directory):
    return sorted(e.name for e in os.scandir(directory) if e.is_dir() and not e.name.startswith("."))


def _image_files(directory):
    return sorted(e.name for e in os.scandir(directory)
                  if e.is_file() and not e.name.startswith(".") and e.name.lower().endswith(IMAGE_EXTENSIONS))


def image_folder(root, split):
    root = Path(root)
    directory = _split_dir(root, split)
    layout = f"{root}/train/<class>/*.JPEG|*.jpg|*.png and {root}/val/<class>/..."
    if not directory.is_dir():
        raise DataError(f"{directory}: missing; the {split!r} split of an image folder needs it ({layout})")
    classes_from = root / "train" if (root / "train").is_dir() else directory
    class_names = _class_dirs(classes_from)
    if not class_names:
        loose = _image_files(classes_from)
        hint = (f" (it holds {len(loose)} images directly: put each class's images in its own subfolder)"
                if loose else "")
        raise DataError(f"{classes_from}: no class subfolders{hint}; expected {layout}")
    index = {name: k for k, name in enumerate(class_names)}
    paths, labels = [], []
    for name in _class_dirs(directory):
        if name not in index:
            raise DataError(f"{directory / name}: class {name!r} is not among the {len(class_names)} classes "
                            f"of {classes_from}; both splits must use the same class folders")
        files = _image_files(directory / name)
        paths += [directory / name / f for f in files]
        labels += [index[name]] * len(files)
    if not paths:
        raise DataError(f"{directory}: no images (*.JPEG, *.jpg, *.png) in its class subfolders; expected {layout}")
    return FolderDataset(root, split, class_names, paths, labels, directory)


# ---- CIFAR-10 -----------------------------------------------------------------------------------

def _cifar_dir(path):
    for candidate in (path, path / "cifar-10-batches-py"):
        if any((candidate / name).is_file() for name in (CIFAR_META_FILE, CIFAR_TEST_FILE, CIFAR_TRAIN_FILES[0])):
            return candidate
    return None


def _unpickle(path):
    if not path.is_file():
        raise DataError(f"{path}: missing; a CIFAR-10 python directory holds "
                        f"{', '.join(CIFAR_TRAIN_FILES)}, {CIFAR_TEST_FILE} and {CIFAR_META_FILE}")
    try:
        with open(path, "rb") as f:
            obj = safe_pickle.load(f, encoding="bytes")  # never runs what a crafted file names
    except safe_pickle.RefusedGlobal as e:
        raise DataError(f"{path}: not a CIFAR-10 python batch: {e}") from None
    except Exception as e:  # a corrupt pickle can raise almost anything
        raise DataError(f"{path}: cannot unpickle ({type(e).__name__}: {e}); expected a CIFAR-10 python "
                        f"batch (a pickled dict)") from e
    if not isinstance(obj, dict):
        raise DataError(f"{path}: unpickled a {type(obj).__name__}; expected a dict")
    return obj


def _field(obj, key, path):
    for k in (key.encode(), key):
        if k in obj:
            return obj[k]
    raise DataError(f"{path}: no {key.encode()!r} entry; expected a CIFAR-10 python batch with "
                    f"b'data' and b'labels' (or batches.meta with b'label_names')")


def _cifar_batch(path, n_classes):
    obj = _unpickle(path)
    data = np.asarray(_field(obj, "data", path))
    labels = np.asarray(_field(obj, "labels", path))
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f"{path}: b'data' is {data.dtype} {data.shape}; expected uint8 (N, 3072), "
                        f"each row the R, G, B 32 x 32 planes")
    if labels.shape != (data.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{path}: b'labels' has shape {labels.shape} ({labels.dtype}); expected "
                        f"{data.shape[0]} integer labels, one per row of b'data'")
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise DataError(f"{path}: labels span {labels.min()}..{labels.max()}; expected 0..{n_classes - 1} "
                        f"({n_classes} names in {CIFAR_META_FILE})")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return images, labels.astype(np.int64)


def cifar10(path, split):
    directory = _cifar_dir(Path(path))
    meta_path = directory / CIFAR_META_FILE
    names = _field(_unpickle(meta_path), "label_names", meta_path)
    try:
        class_names = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    except (TypeError, UnicodeDecodeError) as e:
        raise DataError(f"{meta_path}: b'label_names' is not a list of names ({e})") from e
    if not class_names:
        raise DataError(f"{meta_path}: b'label_names' is empty; expected the class names")
    files = CIFAR_TRAIN_FILES if split == "train" else (CIFAR_TEST_FILE,)
    parts = [_cifar_batch(directory / f, len(class_names)) for f in files]
    images = np.ascontiguousarray(np.concatenate([p[0] for p in parts]))
    labels = np.concatenate([p[1] for p in parts])
    if not len(labels):
        raise DataError(f"{directory}: the {split!r} batches ({', '.join(files)}) hold no images")
    starts = np.cumsum([0] + [len(p[1]) for p in parts])

    def origin(i):
        k = int(np.searchsorted(starts, i, side="right")) - 1
        return str(directory / files[k]), i - int(starts[k])

    return ArrayDataset("cifar10", directory, split, class_names, images, labels, origins=origin)
