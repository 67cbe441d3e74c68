"""How a stored image becomes a network input, as the original did it.

1. Resize (Preprocess.resize): the shorter side to `image_size` with Pillow's bilinear filter (which
   antialiases when shrinking), then the centred image_size x image_size square. The original stored
   ImageNet this way at 256 x 256. Grey images are replicated to three channels.
2. Mean subtraction: the mean image (3, S, S) of the training set (Statistics.mean, 0..255 units),
   subtracted from the full S x S image before cropping, so a crop loses the mean at its own
   position. (cuda-convnet's providers subtract the centre crop of the mean from every crop; the
   two differ only by the mean's variation over a few pixels of offset.) Inputs stay in 0..255
   units, as the original fed them.
3. Crop: `crop_size` x `crop_size` (the network's input; 224 of 256 for the paper). Training: top and
   left offsets uniform over 0..S-crop (the original's randint(0, 2*border + 1)); test: the centre,
   offset (S-crop)//2.
4. Horizontal flip with probability 1/2 (training only).
5. PCA lighting (training only), the paper's form: to every pixel add
   eigenvectors @ (alpha * eigenvalues), alpha ~ N(0, 0.1) per eigenvector, where eigenvalues and
   eigenvectors are those of the 3 x 3 covariance of RGB pixel values **scaled to [0, 1]** over the
   training set; the shift, computed in [0, 1] units, is multiplied by 255 to match the inputs.
   (The 2012 code instead adds 0.1 * (randn(3) * sqrt(eigenvalues)) @ eigenvectors in 0..255 units
   and divides the image by 1.1; not done here.)

Each training image's random draws (crop offsets, flip, alpha, in that order) come from
numpy.random.Generator(Philox(SeedSequence([IMAGE_TAG, seed, epoch, index]))), keyed only by the
run's seed, the epoch and the image's dataset index: the result does not depend on the batch size,
the number of workers or where a run resumed. (Crop and flip are drawn per image, as cuda-convnet's
CIFAR provider does; the 2012 ImageNet code drew them once per chunk of 32 images.)

Statistics (compute_statistics) are deterministic: up to max_images images at evenly spaced indices,
accumulated in index order in float64."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from .background import ordered_map
from .errors import DataError

IMAGE_TAG = 0x1A6E  # first word of every per-image key (order keys use ORDER_TAG in batches.py)
LIGHTING_STD = 0.1  # the paper's standard deviation of alpha


def default_image_size(crop_size):
    """The original's ratio of stored size to crop: 224 -> 256, 32 -> 37."""
    return round(crop_size * 256 / 224)


def image_rng(seed, epoch, index):
    """The generator of one training image's augmentation draws."""
    return np.random.Generator(np.random.Philox(np.random.SeedSequence([IMAGE_TAG, seed, epoch, int(index)])))


@dataclass(frozen=True)
class Augment:
    """One image's training draws: crop offsets, mirror, lighting coefficients."""

    top: int
    left: int
    flip: bool
    alpha: np.ndarray  # (3,) ~ N(0, lighting_std)

    @classmethod
    def draw(cls, rng, image_size, crop_size, lighting_std=LIGHTING_STD):
        span = image_size - crop_size + 1
        top = int(rng.integers(0, span))
        left = int(rng.integers(0, span))
        flip = bool(rng.random() < 0.5)
        alpha = rng.normal(0.0, 1.0, 3) * lighting_std
        return cls(top, left, flip, alpha)


class Statistics:
    """Training-set statistics: the mean image and the RGB covariance's eigen-decomposition.

    mean: (3, S, S) float32, 0..255 units. eigenvalues: (3,) float64, descending, of the covariance
    of pixels scaled to [0, 1] (those below 1e-12 of the largest set to 0); eigenvectors: (3, 3)
    float64, column k for eigenvalue k, each column's largest-magnitude entry positive.
    count: images used."""

    def __init__(self, mean, eigenvalues, eigenvectors, count=0):
        self.mean = np.ascontiguousarray(mean, dtype=np.float32)
        self.eigenvalues = np.asarray(eigenvalues, dtype=np.float64).reshape(-1)
        self.eigenvectors = np.asarray(eigenvectors, dtype=np.float64)
        self.count = int(count)
        if self.mean.ndim != 3 or self.mean.shape[0] != 3 or self.mean.shape[1] != self.mean.shape[2]:
            raise DataError(f"Statistics mean has shape {self.mean.shape}; expected (3, S, S)")
        if self.eigenvalues.shape != (3,) or self.eigenvectors.shape != (3, 3):
            raise DataError(f"Statistics eigenvalues {self.eigenvalues.shape} / eigenvectors "
                            f"{self.eigenvectors.shape}; expected (3,) and (3, 3)")

    @property
    def image_size(self):
        return self.mean.shape[1]

    def lighting(self, alpha):
        """The RGB shift (3,) in 0..255 units for coefficients alpha (3,): 255 * V @ (alpha * lambda)."""
        return 255.0 * (self.eigenvectors @ (np.asarray(alpha) * self.eigenvalues))

    def to_dict(self, lists=False):
        """Plain data for checkpoints: arrays (lists=False) or nested lists (lists=True, for JSON)."""
        d = {"mean": self.mean, "eigenvalues": self.eigenvalues, "eigenvectors": self.eigenvectors,
             "count": self.count}
        if lists:
            d = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in d.items()}
        return d

    @classmethod
    def from_dict(cls, d):
        missing = {"mean", "eigenvalues", "eigenvectors"} - set(d)
        if missing:
            raise DataError(f"Statistics dict lacks {sorted(missing)}; expected mean, eigenvalues, eigenvectors")
        return cls(np.asarray(d["mean"]), np.asarray(d["eigenvalues"]), np.asarray(d["eigenvectors"]),
                   int(np.asarray(d.get("count", 0))))

    def __eq__(self, other):
        return (isinstance(other, Statistics) and self.count == other.count
                and all(np.array_equal(a, b) for a, b in zip(self._arrays(), other._arrays())))

    def _arrays(self):
        return self.mean, self.eigenvalues, self.eigenvectors

    def __repr__(self):
        return (f"Statistics(image_size={self.image_size}, count={self.count}, "
                f"eigenvalues={np.array2string(self.eigenvalues, precision=4)})")


class Preprocess:
    """Sizes and switches of the input pipeline.

    image_size: the stored square size S (None: round(crop_size * 256 / 224)); crop_size: the
    network's input. mean: None subtracts the Statistics' mean image, False nothing, an array
    ((3, S, S) or per channel (3,)) that instead. pca: None uses the Statistics' eigen-decomposition
    for training lighting, False turns lighting off, (eigenvalues, eigenvectors) uses those.
    lighting_std: the standard deviation of alpha (the paper's 0.1)."""

    def __init__(self, image_size=None, crop_size=None, mean=None, pca=None, lighting_std=LIGHTING_STD):
        if crop_size is None:
            raise DataError("Preprocess needs crop_size (the network's input size)")
        if image_size is None:
            image_size = default_image_size(crop_size)
        for name, v in (("image_size", image_size), ("crop_size", crop_size)):
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise DataError(f"Preprocess {name}={v!r}; expected a positive integer")
        if crop_size > image_size:
            raise DataError(f"Preprocess crop_size {crop_size} > image_size {image_size}; expected a crop "
                            f"no larger than the resized image")
        self.image_size = int(image_size)
        self.crop_size = int(crop_size)
        self.mean = mean if mean is None or mean is False else np.asarray(mean, dtype=np.float32)
        if isinstance(self.mean, np.ndarray) and self.mean.shape not in ((3,), (3, image_size, image_size)):
            raise DataError(f"Preprocess mean has shape {self.mean.shape}; expected (3,) or "
                            f"(3, {image_size}, {image_size})")
        if pca is None or pca is False:
            self.pca = pca
        else:
            values, vectors = pca
            self.pca = (np.asarray(values, dtype=np.float64).reshape(3),
                        np.asarray(vectors, dtype=np.float64).reshape(3, 3))
        self.lighting_std = float(lighting_std)

    def __repr__(self):
        return f"Preprocess(image_size={self.image_size}, crop_size={self.crop_size}, lighting_std={self.lighting_std})"

    @property
    def centre(self):
        return (self.image_size - self.crop_size) // 2

    # -- the pieces -------------------------------------------------------------------------------

    def resize(self, image):
        """H x W (x 3) uint8 -> S x S x 3 uint8: shorter side to S (Pillow bilinear), centre square."""
        from PIL import Image

        image = np.asarray(image)
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=2)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise DataError(f"image of dtype {image.dtype} and shape {image.shape}; expected uint8 H x W x 3 "
                            f"(or H x W)")
        s = self.image_size
        h, w = image.shape[:2]
        if (h, w) == (s, s):
            return image
        if h <= w:
            nh, nw = s, max(s, round(w * s / h))
        else:
            nh, nw = max(s, round(h * s / w)), s
        resized = Image.fromarray(np.ascontiguousarray(image)).resize((nw, nh), Image.BILINEAR)
        top, left = (nh - s) // 2, (nw - s) // 2
        return np.asarray(resized)[top:top + s, left:left + s]

    def mean_image(self, stats):
        """What to subtract from a (3, S, S) image, broadcastable, or None."""
        if self.mean is False:
            return None
        if self.mean is not None:
            return self.mean if self.mean.ndim == 3 else self.mean[:, None, None]
        if stats is None:
            return None
        if stats.image_size != self.image_size:
            raise DataError(f"Statistics are for {stats.image_size} x {stats.image_size} images; this Preprocess "
                            f"resizes to {self.image_size} x {self.image_size}")
        return stats.mean

    def pca_of(self, stats):
        """(eigenvalues, eigenvectors) for lighting, or None."""
        if self.pca is False or self.lighting_std == 0:
            return None
        if self.pca is not None:
            return self.pca
        return None if stats is None else (stats.eigenvalues, stats.eigenvectors)

    def full(self, image, stats=None):
        """The mean-subtracted S x S image, (3, S, S) float32: what ten_views() crops."""
        return self._window(image, stats, 0, 0, self.image_size)

    def _window(self, image, stats, top, left, size):
        """(image - mean)[:, top:top+size, left:left+size] as float32, cropping before converting."""
        x = self.resize(image)[top:top + size, left:left + size].transpose(2, 0, 1).astype(np.float32, order="C")
        mean = self.mean_image(stats)
        if mean is not None:
            x -= mean[:, top:top + size, left:left + size] if mean.shape[1] > 1 else mean
        return x

    def test_input(self, image, stats=None):
        """Centre crop, (3, crop, crop) float32."""
        return self._window(image, stats, self.centre, self.centre, self.crop_size)

    def train_input(self, image, stats, augment):
        """The crop, flip and lighting of `augment`, (3, crop, crop) float32."""
        x = self._window(image, stats, augment.top, augment.left, self.crop_size)
        if augment.flip:
            x = np.ascontiguousarray(x[:, :, ::-1])
        pca = self.pca_of(stats)
        if pca is not None:
            values, vectors = pca
            x += (255.0 * (vectors @ (augment.alpha * values))).astype(np.float32)[:, None, None]
        return x

    def draw(self, seed, epoch, index):
        """The Augment of dataset image `index` in `epoch` of the run with `seed`."""
        return Augment.draw(image_rng(seed, epoch, index), self.image_size, self.crop_size, self.lighting_std)


def compute_statistics(ds, preprocess, max_images=10000, workers=2):
    """Mean image and RGB covariance eigen-decomposition over up to max_images images of ds.

    The images are taken at evenly spaced indices (all of them when len(ds) <= max_images), so a
    folder sorted by class contributes every class; they are resized by `preprocess` and summed in
    index order in float64, so the result does not depend on `workers`."""
    n = len(ds)
    if n == 0:
        raise DataError(f"{ds!r}: no images to compute statistics from")
    m = n if max_images is None else max(1, min(int(max_images), n))
    indices = np.unique(np.rint(np.linspace(0, n - 1, m)).astype(np.int64))
    s = preprocess.image_size
    total = np.zeros((s, s, 3), np.float64)
    pixel_sum = np.zeros(3, np.float64)
    outer_sum = np.zeros((3, 3), np.float64)
    used = 0

    def load(i):
        try:
            return preprocess.resize(ds.image(int(i), preprocess.image_size))
        except DataError as e:
            return e

    for img in ordered_map(load, indices, workers=workers, ahead=4 * max(workers, 1)):
        if isinstance(img, DataError):
            warnings.warn(f"skipped in statistics: {img}", stacklevel=2)
            continue
        total += img
        p = img.reshape(-1, 3).astype(np.float64) / 255.0
        pixel_sum += p.sum(0)
        outer_sum += p.T @ p
        used += 1
    if used == 0:
        raise DataError(f"{ds!r}: none of the {len(indices)} images chosen for statistics could be read")
    pixels = used * s * s
    mu = pixel_sum / pixels
    cov = outer_sum / pixels - np.outer(mu, mu)
    values, vectors = np.linalg.eigh((cov + cov.T) / 2)
    order = np.argsort(values)[::-1]
    values = values[order]
    values = np.where(values > 1e-12 * max(values[0], 0.0), values, 0.0)  # grey data: exactly 0, not rounding noise
    vectors = vectors[:, order]
    signs = np.sign(vectors[np.argmax(np.abs(vectors), axis=0), np.arange(3)])
    vectors = vectors * np.where(signs == 0, 1.0, signs)
    mean = (total / used).transpose(2, 0, 1)
    return Statistics(mean, values, vectors, used)


def load_image(path, preprocess, stats=None):
    """One image file as the network's test input: (1, 3, crop, crop) float32 centre crop."""
    from .datasets import decode_image

    return preprocess.test_input(decode_image(path, preprocess.image_size), stats)[None]
