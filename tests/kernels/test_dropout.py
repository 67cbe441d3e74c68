"""Dropout (kernels/dropout.cu) on both CPU paths: the Philox4x32-10 stream against Random123's
known-answer vectors and an independent pure-Python transcription, the mask's statistics, and the
arithmetic against torch.nn.functional.dropout's (PyTorch's CPU dropout is input * noise with
noise = bernoulli(1 - p).div_(1 - p); we replay it with our mask as the bernoulli draw)."""

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alexnet_raw import functional as F
from alexnet_raw.checks import tolerances
from alexnet_raw.ops.dropout import philox_words

MASK32 = 0xFFFFFFFF

# --------------------------------------------------------------------------------------------
# Philox4x32-10 written from the paper (Salmon et al., SC'11, and Random123's philox.h), on Python
# ints; nothing shared with the kernel.


def philox4x32_10(counter, key):
    c0, c1, c2, c3 = counter
    k0, k1 = key
    for r in range(10):
        if r:
            k0 = (k0 + 0x9E3779B9) & MASK32
            k1 = (k1 + 0xBB67AE85) & MASK32
        p0 = 0xD2511F53 * c0
        p1 = 0xCD9E8D57 * c2
        c0, c1, c2, c3 = ((p1 >> 32) ^ c1 ^ k0), p1 & MASK32, ((p0 >> 32) ^ c3 ^ k1), p0 & MASK32
    return c0, c1, c2, c3


# Random123 1.x, tests/kat_vectors: "philox4x32 10 <counter x4> <key x2> <expected x4>"
KAT = [
    ((0x00000000, 0x00000000, 0x00000000, 0x00000000), (0x00000000, 0x00000000),
     (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF),
     (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


def words_python(n, seed, offset, first_group=0):
    """The documented stream (kernels/dropout.cu header), one Philox call at a time: word w is word
    w % 4 of Philox at counter (first_group + w // 4 in two 32-bit halves, offset in two halves),
    key (seed low half, seed high half)."""
    key = (seed & MASK32, seed >> 32)
    out = []
    for g in range((n + 3) // 4):
        c = (first_group + g) % 2**64
        out.extend(philox4x32_10((c & MASK32, c >> 32, offset & MASK32, offset >> 32), key))
    return np.array(out[:n], dtype=np.uint32)


def words_numpy(n, seed, offset):
    """The same stream, vectorised over groups with uint64 NumPy arithmetic (for large n)."""
    g = np.arange((n + 3) // 4, dtype=np.uint64)
    m32 = np.uint64(MASK32)
    c0, c1 = g & m32, g >> np.uint64(32)
    c2 = np.full_like(g, offset & MASK32)
    c3 = np.full_like(g, offset >> 32)
    k0, k1 = seed & MASK32, seed >> 32
    for r in range(10):
        if r:
            k0, k1 = (k0 + 0x9E3779B9) & MASK32, (k1 + 0xBB67AE85) & MASK32
        p0 = np.uint64(0xD2511F53) * c0
        p1 = np.uint64(0xCD9E8D57) * c2
        c0, c1, c2, c3 = ((p1 >> np.uint64(32)) ^ c1 ^ np.uint64(k0), p1 & m32,
                          (p0 >> np.uint64(32)) ^ c3 ^ np.uint64(k1), p0 & m32)
    return np.stack([c0, c1, c2, c3], axis=1).reshape(-1)[:n].astype(np.uint32)


def expected_mask(n, p, seed, offset):
    """Kept iff u_i = r_i * 2^-32 >= p. r_i * 2^-32 is exact in float64, and so is the comparison."""
    return words_numpy(n, seed, offset).astype(np.float64) * 2.0**-32 >= p


SEEDS_OFFSETS = [(0, 0), (1, 0), (0, 1), (2**64 - 1, 2**64 - 1), (0x0123456789ABCDEF, 2**32 + 5)]


def test_python_philox_reproduces_random123_known_answers():
    for counter, key, expected in KAT:
        assert philox4x32_10(counter, key) == expected


def test_kernel_philox_reproduces_random123_known_answers(backend, under_schedules):
    for counter, key, expected in KAT:
        seed = key[0] | key[1] << 32
        offset = counter[2] | counter[3] << 32
        first_group = counter[0] | counter[1] << 32
        out = under_schedules(lambda: philox_words(np.zeros(4, np.uint32), seed, offset, first_group))
        assert tuple(int(v) for v in out) == expected


@pytest.mark.parametrize("seed, offset", SEEDS_OFFSETS)
def test_kernel_stream_matches_python_transcription(backend, under_schedules, seed, offset):
    n = 203  # not a multiple of 4
    out = under_schedules(lambda: philox_words(np.zeros(n, np.uint32), seed, offset))
    np.testing.assert_array_equal(out, words_python(n, seed, offset))
    np.testing.assert_array_equal(out, words_numpy(n, seed, offset))
    first = 2**64 - 2  # the group counter wraps at 2^64
    out = under_schedules(lambda: philox_words(np.zeros(16, np.uint32), seed, offset, first))
    np.testing.assert_array_equal(out, words_python(16, seed, offset, first))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("seed, offset", SEEDS_OFFSETS)
def test_mask_is_the_documented_function_of_seed_offset_and_index(backend, under_schedules, dtype, seed, offset):
    n = 1001
    ones = np.ones(n, dtype)
    for p in (0.5, 0.1, 0.9, 1 / 3, 2.0**-32, 1 - 2.0**-53):
        y = under_schedules(lambda: F.dropout(ones, p, seed=seed, offset=offset, mode="original"))
        np.testing.assert_array_equal(y != 0, expected_mask(n, p, seed, offset), err_msg=f"p={p}")
        assert set(np.unique(y)) <= {0.0, 1.0}


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9, 0.3])
def test_keep_rate_is_within_binomial_bounds(backend, under_schedules, p):
    n = 1 << 20
    y = under_schedules(lambda: F.dropout(np.ones(n, np.float32), p, seed=7, offset=3, mode="original"))
    kept = int(np.count_nonzero(y))
    keep = 1 - math.ceil(p * 2**32) / 2**32  # the exact keep probability (= 1 - p up to 2^-32)
    sigma = math.sqrt(n * keep * (1 - keep))
    assert abs(kept - n * keep) < 5 * sigma, f"kept {kept} of {n}, expected {n * keep:.0f} +- {sigma:.0f}"


def test_masks_of_other_seeds_and_offsets_differ_and_are_uncorrelated(backend, under_schedules):
    n = 1 << 18
    ones = np.ones(n, np.float32)

    def mask(seed, offset):
        return under_schedules(lambda: F.dropout(ones, 0.5, seed=seed, offset=offset, mode="original"))

    base = mask(5, 10)
    np.testing.assert_array_equal(base, mask(5, 10))  # same (seed, offset): same mask
    bound = 5 / math.sqrt(n)  # |correlation| of independent masks: about 1/sqrt(n)
    for seed, offset in [(5, 11), (6, 10), (5 + 2**32, 10), (5, 10 + 2**32), (10, 5)]:
        other = mask(seed, offset)
        assert not np.array_equal(base, other)
        corr = np.corrcoef(base, other)[0, 1]
        assert abs(corr) < bound, f"(seed, offset) = ({seed}, {offset}): correlation {corr:.4f} with (5, 10)"
    # within one mask: neighbours (same Philox call, next call) are uncorrelated too
    for lag in (1, 2, 3, 4, 5):
        corr = np.corrcoef(base[:-lag], base[lag:])[0, 1]
        assert abs(corr) < bound, f"lag {lag}: correlation {corr:.4f}"


def test_float32_and_float64_draw_the_same_mask(backend, under_schedules):
    x = np.random.default_rng(0).standard_normal((2, 4096)) + 3.0  # nonzero everywhere
    for p in (0.5, 0.25, 0.7):
        y32 = under_schedules(lambda: F.dropout(x.astype(np.float32), p, seed=11, offset=2))
        y64 = under_schedules(lambda: F.dropout(x, p, seed=11, offset=2))
        np.testing.assert_array_equal(y32 != 0, y64 != 0)


def _torch_dropout_with_mask(x, mask, p):
    """PyTorch's CPU dropout (aten/src/ATen/native/Dropout.cpp, _dropout_impl) with `mask` as the
    bernoulli draw: noise = mask; noise.div_(1 - p); input * noise."""
    noise = torch.from_numpy(mask.astype(x.dtype))
    noise.div_(1 - p)
    return (torch.from_numpy(x) * noise).numpy()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(2, 4096), (2, 2048), (2, 96, 55, 55), (7,), (0,)])
@pytest.mark.parametrize("p", [0.5, 0.3, 0.9])
def test_inverted_matches_torch_arithmetic_with_the_same_mask(backend, under_schedules, dtype, shape, p):
    rng = np.random.default_rng(4)
    x = rng.standard_normal(shape).astype(dtype)
    if x.size >= 5:
        x.reshape(-1)[:5] = [np.nan, np.inf, -np.inf, -0.0, 0.0]  # dropped NaN/Inf give NaN, as torch
    y = under_schedules(lambda: F.dropout(x, p, seed=3, offset=9))
    mask = expected_mask(x.size, p, 3, 9).reshape(shape)
    reference = _torch_dropout_with_mask(x, mask, p)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert tolerances.close(y, reference, "dropout", dtype), tolerances.max_errors(y, reference)
    np.testing.assert_array_equal(np.signbit(y), np.signbit(reference))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("p", [0.5, 0.3, 0.123456789])
def test_kept_values_equal_torch_dropout_where_both_keep(backend, under_schedules, dtype, p):
    # torch's own dropout draws another mask; where both keep an element the values must agree
    x = np.random.default_rng(5).standard_normal((2, 4096)).astype(dtype)
    y = under_schedules(lambda: F.dropout(x, p, seed=1, offset=0))
    torch.manual_seed(0)
    yt = torch.nn.functional.dropout(torch.from_numpy(x), p, training=True).numpy()
    both = (y != 0) & (yt != 0)
    assert both.sum() > 1000
    np.testing.assert_array_equal(y[both], yt[both])


@pytest.mark.parametrize("mode", ["inverted", "original"])
def test_expectation(backend, under_schedules, mode):
    # inverted: E[y] = x; original: E[y] = (1 - p) x = the eval output
    n, p, x0 = 1 << 18, 0.3, 1.5
    x = np.full(n, x0, np.float64)
    y = under_schedules(lambda: F.dropout(x, p, seed=2, offset=1, mode=mode))
    scale = 1 / (1 - p) if mode == "inverted" else 1.0
    expected = x0 if mode == "inverted" else x0 * (1 - p)
    sigma = x0 * scale * math.sqrt(p * (1 - p) / n)
    assert abs(y.mean() - expected) < 5 * sigma
    if mode == "original":
        ev = under_schedules(lambda: F.dropout(x, p, training=False, mode=mode))
        assert np.all(ev == np.float64(1 - p) * x0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_eval_modes(backend, under_schedules, dtype):
    x = np.random.default_rng(6).standard_normal((2, 4096)).astype(dtype)
    x[0, :3] = [np.nan, np.inf, -0.0]
    assert F.dropout(x, 0.5, training=False) is x  # inverted: the input itself, as torch
    torch_eval = torch.nn.functional.dropout(torch.from_numpy(x), 0.5, training=False).numpy()
    np.testing.assert_array_equal(x, torch_eval)
    for p in (0.5, 0.3, 0.0):
        y = under_schedules(lambda: F.dropout(x, p, training=False, mode="original"))
        assert y is not x
        np.testing.assert_array_equal(y, x * dtype(1 - p))  # cuda-convnet: scaled by the keep probability


@pytest.mark.parametrize("mode", ["inverted", "original"])
def test_p_zero_keeps_everything(backend, under_schedules, mode):
    x = np.random.default_rng(7).standard_normal(1001).astype(np.float32)
    x[:2] = [np.nan, -0.0]
    y = under_schedules(lambda: F.dropout(x, 0.0, seed=4, mode=mode))
    np.testing.assert_array_equal(y, x)
    np.testing.assert_array_equal(np.signbit(y), np.signbit(x))
    g = under_schedules(lambda: F.dropout_backward(x, 0.0, seed=4, mode=mode))
    np.testing.assert_array_equal(g, x)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mode", ["inverted", "original"])
def test_backward_uses_the_forward_mask_and_scale(backend, under_schedules, dtype, mode):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 4096)).astype(dtype)
    g = rng.standard_normal((2, 4096)).astype(dtype)
    p, seed, offset = 0.4, 123, 77
    y = under_schedules(lambda: F.dropout(x, p, seed=seed, offset=offset, mode=mode))
    gi = under_schedules(lambda: F.dropout_backward(g, p, seed=seed, offset=offset, mode=mode))
    np.testing.assert_array_equal(gi != 0, y != 0)
    scale = dtype(1) / dtype(1 - p) if mode == "inverted" else dtype(1)
    np.testing.assert_array_equal(gi, g * np.where(y != 0, scale, dtype(0)).astype(dtype))
    # against torch's autograd through its dropout formula with our mask
    xt = torch.from_numpy(x).requires_grad_()
    noise = torch.from_numpy((y != 0).astype(dtype))
    if mode == "inverted":
        noise.div_(1 - p)
    (xt * noise).backward(torch.from_numpy(g))
    assert tolerances.close(gi, xt.grad.numpy(), "dropout", dtype)


@pytest.mark.parametrize("mode", ["inverted", "original"])
@pytest.mark.parametrize("rows, row_length", [(7, 12), (5, 13), (9, 1), (3, 4099)])
def test_a_slice_with_its_start_draws_the_whole_arrays_mask(backend, under_schedules, mode, rows, row_length):
    # data-parallel replicas: rows a..b of a batch with start = a * row length draw the batch's mask
    # there (row lengths that are no multiple of 4 put slices inside Philox groups)
    x = np.random.default_rng(4).standard_normal((rows, row_length))
    g = np.random.default_rng(5).standard_normal((rows, row_length))
    whole = F.dropout(x, 0.4, seed=9, offset=3, mode=mode)
    whole_grad = F.dropout_backward(g, 0.4, seed=9, offset=3, mode=mode)
    cuts = [0, 1, rows // 2, rows - 1, rows]
    for a, b in zip(cuts, cuts[1:]):
        if a == b:
            continue
        part = under_schedules(lambda: F.dropout(x[a:b], 0.4, seed=9, offset=3, mode=mode, start=a * row_length))
        np.testing.assert_array_equal(part, whole[a:b])
        np.testing.assert_array_equal(F.dropout_backward(g[a:b], 0.4, seed=9, offset=3, mode=mode,
                                                         start=a * row_length), whole_grad[a:b])
    with pytest.raises(ValueError, match="start must be >= 0"):
        F.dropout(x, 0.4, start=-1)
    with pytest.raises(TypeError, match="start must be an int"):
        F.dropout_backward(g, 0.4, start=1.0)


def test_gradient_check_float64(backend):
    # dropout is linear for a fixed mask: central differences along random directions
    rng = np.random.default_rng(9)
    x = rng.standard_normal(40)
    g = rng.standard_normal(40)
    eps = 1e-6
    for mode in ("inverted", "original"):
        grad = F.dropout_backward(g, 0.35, seed=8, offset=1, mode=mode)
        for _ in range(3):
            v = rng.standard_normal(40)
            fp = F.dropout(x + eps * v, 0.35, seed=8, offset=1, mode=mode)
            fm = F.dropout(x - eps * v, 0.35, seed=8, offset=1, mode=mode)
            numeric = np.dot(g, (fp - fm) / (2 * eps))
            assert numeric == pytest.approx(np.dot(grad, v), rel=1e-7, abs=1e-9)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    shape=st.lists(st.integers(1, 9), min_size=1, max_size=4),
    p=st.floats(0.0, 0.99),
    seed=st.integers(0, 2**64 - 1),
    offset=st.integers(0, 2**64 - 1),
    double=st.booleans(),
    mode=st.sampled_from(["inverted", "original"]),
)
def test_property_random_shapes(backend, under_schedules, shape, p, seed, offset, double, mode):
    # the fixtures hold no per-example state: the backend stays set, under_schedules is a runner
    dtype = np.float64 if double else np.float32
    x = np.random.default_rng(seed % 1000).standard_normal(shape).astype(dtype)
    mask = expected_mask(x.size, p, seed, offset).reshape(shape)
    reference = _torch_dropout_with_mask(x, mask, p) if mode == "inverted" else x * mask.astype(dtype)
    y, gi = under_schedules(lambda: (F.dropout(x, p, seed=seed, offset=offset, mode=mode),
                                     F.dropout_backward(x, p, seed=seed, offset=offset, mode=mode)))
    assert tolerances.close(y, reference, "dropout", dtype), tolerances.max_errors(y, reference)
    np.testing.assert_array_equal(gi, y)  # backward of g = x: same mask, same scale


def test_rejects_bad_input(backend):
    x = np.ones((4, 4), np.float32)
    with pytest.raises(ValueError, match=r"p \(the drop probability\) must be in \[0, 1\), got 1.0"):
        F.dropout(x, 1.0)
    with pytest.raises(ValueError, match=r"must be in \[0, 1\), got -0.1"):
        F.dropout(x, -0.1)
    with pytest.raises(ValueError, match="p must be finite, got nan"):
        F.dropout(x, float("nan"))
    with pytest.raises(TypeError, match="p must be a real number, got 'half'"):
        F.dropout(x, "half")
    with pytest.raises(ValueError, match=r"mode must be one of \('inverted', 'original'\), got 'torch'"):
        F.dropout(x, mode="torch")
    with pytest.raises(ValueError, match="seed must be >= 0, got -1"):
        F.dropout(x, seed=-1)
    with pytest.raises(ValueError, match=r"offset must be < 2\*\*64"):
        F.dropout_backward(x, offset=2**64)
    with pytest.raises(TypeError, match="seed must be an int, got 1.5"):
        F.dropout(x, seed=1.5)
    with pytest.raises(TypeError, match="training must be a bool, got 'yes'"):
        F.dropout(x, training="yes")
    with pytest.raises(TypeError, match="float32 or float64, got int32"):
        F.dropout(x.astype(np.int32))
    with pytest.raises(TypeError, match="numpy.ndarray or cupy.ndarray, got list"):
        F.dropout_backward([1.0])
    with pytest.raises(TypeError, match="uint32"):
        philox_words(np.zeros(4, np.int32))
