"""The tolerance policy (alexnet_raw/checks/tolerances.py): elementwise bounds, and the normwise atol of
products (conv2d, linear), whose entries near zero keep only the sum's absolute accuracy."""

import numpy as np

from alexnet_raw.checks import tolerances


def test_table_is_sorted_and_covers_both_dtypes():
    assert list(tolerances.TOLERANCES) == sorted(tolerances.TOLERANCES)
    for op, table in tolerances.TOLERANCES.items():
        assert set(table) == {np.float32, np.float64}, op
    assert tolerances.NORMWISE <= set(tolerances.TOLERANCES)


def test_normwise_atol_scales_with_the_largest_reference_entry():
    atol, _ = tolerances.tolerance("conv2d", np.float32)
    reference = np.array([1000.0, 0.0, -3.0], np.float32)
    within = reference + np.array([0, 0.9 * atol * 1000, 0], np.float32)
    beyond = reference + np.array([0, 1.1 * atol * 1000, 0], np.float32)
    assert tolerances.close(within, reference, "conv2d", np.float32)
    assert not tolerances.close(beyond, reference, "conv2d", np.float32)
    # an elementwise op with the same atol would refuse the first: only products are normwise
    assert tolerances.atol_scale(reference, "relu") == 1.0


def test_normwise_scale_ignores_non_finite_entries():
    reference = np.array([np.inf, np.nan, 2.0, -4.0])
    assert tolerances.atol_scale(reference, "linear") == 4.0
    assert tolerances.close(reference.copy(), reference, "linear", np.float64)
    assert not tolerances.close(np.array([np.inf, 1.0, 2.0, -4.0]), reference, "linear", np.float64)
    assert tolerances.atol_scale(np.zeros(0), "linear") == 1.0
