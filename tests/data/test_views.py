"""ten_views: the original's five crops and their mirrors, against explicit slicing."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alexnet_raw import data
from alexnet_raw.data import DataError


def explicit_views(images, crop):
    s = images.shape[-1]
    far, mid = s - crop, (s - crop) // 2
    crops = [images[:, :, r:r + crop, c:c + crop] for r, c in ((0, 0), (0, far), (mid, mid), (far, 0), (far, far))]
    return np.stack(crops + [np.flip(v, axis=3) for v in crops])


@settings(max_examples=20, deadline=None)
@given(b=st.integers(1, 3), s=st.integers(1, 12), data_=st.data(),
       dtype=st.sampled_from([np.uint8, np.float32, np.float64]))
def test_ten_views_equal_explicit_slicing_and_flipping(b, s, data_, dtype):
    crop = data_.draw(st.integers(1, s))
    images = np.random.default_rng(s * 10 + b).integers(0, 256, (b, 3, s, s)).astype(dtype)
    views = data.ten_views(images, crop)
    assert views.shape == (10, b, 3, crop, crop) and views.dtype == dtype and views.flags.c_contiguous
    np.testing.assert_array_equal(views, explicit_views(images, crop))


def test_view_order_names_and_offsets():
    images = np.arange(2 * 3 * 5 * 5, dtype=np.float32).reshape(2, 3, 5, 5)
    views = data.ten_views(images, 3)
    assert data.VIEW_NAMES[2] == "centre" and data.view_offsets(5, 3) == [(0, 0), (0, 2), (1, 1), (2, 0), (2, 2)]
    np.testing.assert_array_equal(views[1, :, :, 0, 0], images[:, :, 0, 2])  # top-right
    np.testing.assert_array_equal(views[8, :, :, 0, 2], images[:, :, 2, 0])  # bottom-left mirrored
    np.testing.assert_array_equal(views[7], views[2][..., ::-1])


@pytest.mark.parametrize("shape, crop", [((3, 5, 5), 3), ((1, 3, 5, 4), 3), ((1, 3, 5, 5), 6), ((1, 3, 5, 5), 0)])
def test_ten_views_bad_input(shape, crop):
    with pytest.raises(DataError):
        data.ten_views(np.zeros(shape), crop)
