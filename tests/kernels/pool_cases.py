"""Random pooling problems for the property tests of max_pool2d and avg_pool2d (hypothesis)."""

from hypothesis import strategies as st


@st.composite
def pool_cases(draw, max_stride):
    """(shape, kernel, stride or None, padding, flag, flag): windows up to 5x5 with padding at most
    half the kernel, planes up to 14x14, strides up to max_stride (beyond the kernel too)."""
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))
    h = draw(st.integers(max(1, kh - 2 * ph), 14))
    w = draw(st.integers(max(1, kw - 2 * pw), 14))
    stride = draw(st.one_of(st.none(), st.tuples(st.integers(1, max_stride), st.integers(1, max_stride))))
    n, c = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    return (n, c, h, w), (kh, kw), stride, (ph, pw), draw(st.booleans()), draw(st.booleans())
