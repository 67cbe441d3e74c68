"""The original's 10-view test: five crops of the full image and their mirror images.

cuda-convnet's multiview test takes, from the S x S image (after mean subtraction), the crops at
(row, col) offsets, in this order:
    0 top-left (0, 0)          1 top-right (0, S-c)        2 centre (b, b), b = (S-c)//2
    3 bottom-left (S-c, 0)     4 bottom-right (S-c, S-c)
and then views 5..9 = the same five crops mirrored horizontally (columns reversed). The network's
softmax outputs over the 10 views are averaged (the evaluator does that)."""

from __future__ import annotations

import numpy as np

from .errors import DataError

VIEW_NAMES = ("top-left", "top-right", "centre", "bottom-left", "bottom-right",
              "top-left mirrored", "top-right mirrored", "centre mirrored",
              "bottom-left mirrored", "bottom-right mirrored")


def view_offsets(image_size, crop):
    """The five (row, col) crop offsets, in the original's order."""
    far, mid = image_size - crop, (image_size - crop) // 2
    return [(0, 0), (0, far), (mid, mid), (far, 0), (far, far)]


def ten_views(images, crop):
    """(B, 3, S, S) images -> (10, B, 3, crop, crop) views, same dtype, C-contiguous."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[2] != images.shape[3]:
        raise DataError(f"ten_views: images of shape {images.shape}; expected (B, channels, S, S)")
    s = images.shape[2]
    if not 1 <= crop <= s:
        raise DataError(f"ten_views: crop {crop} for {s} x {s} images; expected 1 <= crop <= {s}")
    out = np.empty((10,) + images.shape[:2] + (crop, crop), images.dtype)
    for k, (r, c) in enumerate(view_offsets(s, crop)):
        out[k] = images[:, :, r:r + crop, c:c + crop]
        out[k + 5] = out[k][..., ::-1]
    return out
