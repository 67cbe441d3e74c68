"""Generated bad arguments for every functional op (issue 15): one argument of a small valid call
(tests/kernels/functional_cases.py) is replaced by a generated value (another dtype, rank or
shape, zero-size dimensions, NaN/inf entries, a strided view, a NumPy subclass, a list, a string,
None, a bool, a huge or negative number, ...). The call must either raise TypeError or ValueError
with a message naming an argument (the replaced one, or for an array of the wrong shape one of the
op's arrays) or return what the kernel tests' reference returns for that call; any other
exception, a NumPy warning, or a result off the reference fails. On the CPU runtime (`emu`), small
shapes, a bounded number of examples."""

import os
import re
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

import functional_cases
from backend_choice import wanted_backends
from alexnet_raw.runtime import backends

CASES = {np.dtype(d): functional_cases.by_name(d) for d in (np.float32, np.float64)}
OPS = sorted(CASES[np.dtype(np.float32)])


class Tagged(np.ndarray):
    """A user's ndarray subclass."""


@pytest.fixture(autouse=True, scope="module")
def on_the_cpu_runtime():
    """The CPU runtime's JIT, or the extension's CPU path where that is the path under test
    (scripts/test.sh's sanitizer pass: ALEXNET_RAW_TEST_BACKENDS=emu_ext, a sanitized build)."""
    old = backends.current_backends()[0]
    backends.set_backend("emu_ext" if wanted_backends() == ["emu_ext"] else "emu")
    yield
    backends.set_backend(old)


def _masked(x):
    return np.ma.masked_array(x, mask=np.zeros(x.shape, bool))


def _matrix(x):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        return np.asmatrix(x.reshape(x.shape[0], -1) if x.ndim else x.reshape(1, 1))


def _with(x, value):
    y = x.copy()
    if y.size:
        y.flat[y.size // 2] = value
    return y


def _resize(x, axis, n):
    """x with n entries along axis (cut, or padded by repeating)."""
    if x.ndim == 0:
        return x
    axis %= x.ndim
    return np.resize(np.moveaxis(x, axis, 0), (n,) + tuple(np.delete(x.shape, axis)))


ARRAY_CHANGES = {
    # name -> (function of (x, draw), whether the result may be valid)
    "float16": lambda x, d: x.astype(np.float16),
    "int32": lambda x, d: x.astype(np.int32),
    "int64": lambda x, d: x.astype(np.int64),
    "uint8": lambda x, d: x.astype(np.uint8),
    "bool": lambda x, d: x.astype(bool),
    "object": lambda x, d: x.astype(object),
    "complex": lambda x, d: x.astype(np.complex64),
    "big-endian": lambda x, d: x.astype(x.dtype.newbyteorder(">")),
    "other float": lambda x, d: x.astype(np.float64 if x.dtype == np.float32 else np.float32) if x.dtype.kind == "f"
    else x.astype(np.float32),
    "one more axis": lambda x, d: x[None],
    "one axis fewer": lambda x, d: x.reshape(-1) if x.ndim > 1 else x[0] if x.ndim else x,
    "other length": lambda x, d: _resize(x, d(st.integers(-4, 3)), d(st.integers(1, 7))),
    "zero-size axis": lambda x, d: _resize(x, d(st.integers(-4, 3)), 0),
    "NaN entry": lambda x, d: _with(x, np.nan) if x.dtype.kind == "f" else x,
    "inf entry": lambda x, d: _with(x, d(st.sampled_from([np.inf, -np.inf]))) if x.dtype.kind == "f" else x,
    "every other element": lambda x, d: np.stack([x, x], axis=-1)[..., 0] if x.ndim else x,
    "reversed": lambda x, d: np.ascontiguousarray(x[::-1])[::-1] if x.ndim else x,
    "transposed": lambda x, d: np.ascontiguousarray(x.T).T,
    "broadcast": lambda x, d: np.broadcast_to(x[:1], x.shape) if x.ndim and x.shape[0] else x,
    "read-only": lambda x, d: _read_only(x),
    "unaligned": lambda x, d: _unaligned(x),
    "masked array": lambda x, d: _masked(x),
    "matrix": lambda x, d: _matrix(x),
    "subclass": lambda x, d: x.view(Tagged),
    "list": lambda x, d: x.tolist(),
    "python float": lambda x, d: 1.5,
    "None": lambda x, d: None,
    "string": lambda x, d: "x",
}


VALUE_CHANGES = ("NaN entry", "inf entry", "other length", "broadcast")


def _read_only(x):
    y = x.copy()
    y.flags.writeable = False
    return y


def _unaligned(x):
    raw = np.zeros(x.nbytes + 1, np.uint8)
    y = raw[1:].view(x.dtype).reshape(x.shape)
    y[...] = x
    return y


SCALARS = st.one_of(
    st.sampled_from([None, True, False, np.bool_(True), "", "1", "0.5", "nan", "same", "inverted", "torch", "relu",
                     1j, (), (1,), (1, 2, 3), [2, 2], (2, 2.0), (True, 1), object(), np.array(2), np.array([1, 2])]),
    st.sampled_from([0, 1, 2, 3, 5, -1, -2, 2**31 - 1, 2**31, 2**32, 2**63, 2**64, 2**70, 10**30, -2**63]),
    st.sampled_from([0.0, -0.0, 0.25, 0.5, 0.999, 1.0, 1.5, 2.0, np.nan, np.inf, -np.inf, 1e300, -1e300, 1e39,
                     1e-300, 5e-324, 3.4e38]),
    st.sampled_from([np.float32(0.5), np.float64(2.0), np.float16(0.5), np.int32(2), np.int64(3), np.uint8(1),
                     np.int64(-1)]),
    st.tuples(st.integers(-2, 6), st.integers(-2, 6)),
)


def canonical(v, kind=None):
    """The plain equivalent the reference is called with: contiguous ndarrays, Python numbers
    (floats for real-valued arguments)."""
    if kind in ("real", "optional_real", "unit") and isinstance(v, (int, np.number)) and not isinstance(v, bool):
        return float(v)
    if isinstance(v, np.ndarray):
        return np.array(np.asarray(v), order="C")
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    if isinstance(v, list):
        return tuple(v)
    return v


def names_an_argument(error, case, name):
    """The error names the argument replaced or, when it disagrees with another now (a dtype, a
    shape: a valid stride makes grad_output the wrong shape), that one; a TypeError over a scalar
    names the scalar."""
    words = [name] if isinstance(error, TypeError) and name in case.scalars else [name, *case.kwargs]
    return any(re.search(rf"(?<![A-Za-z]){re.escape(w)}(?![A-Za-z])", str(error)) for w in words)


# ALEXNET_RAW_PROPERTY_EXAMPLES: fewer examples in scripts/test.sh's sanitizer pass (the argument
# checks are Python, run in full by the first pass; the sanitizer pass looks for overruns, which the
# random shapes of the kernel tests reach)
EXAMPLES = int(os.environ.get("ALEXNET_RAW_PROPERTY_EXAMPLES", "500"))


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_bad_arguments_give_a_clear_error_or_the_reference_result(data):
    dtype = np.dtype(data.draw(st.sampled_from([np.float32, np.float64]), label="dtype"))
    op = data.draw(st.sampled_from(OPS), label="op")
    case = CASES[dtype][op]
    name = data.draw(st.sampled_from(case.arrays + case.outputs + tuple(case.scalars)), label="argument")
    kwargs = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in case.kwargs.items()}
    change = None
    if name in case.arrays + case.outputs:
        change = data.draw(st.sampled_from(sorted(ARRAY_CHANGES)), label="change")
        assume(not (name in case.linked and change in VALUE_CHANGES))  # a forward's output stays its input's
        assume(not (name in case.finite and change in ("NaN entry", "inf entry")))
        kwargs[name] = ARRAY_CHANGES[change](kwargs[name], data.draw)
    else:
        kwargs[name] = data.draw(SCALARS, label="value")
    plain = {k: canonical(v, case.scalars.get(k)) for k, v in kwargs.items()}  # before the call: in-place ops write theirs
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a NumPy overflow or cast warning is a failure too
        warnings.simplefilter("ignore", PendingDeprecationWarning)  # np.matrix's own
        try:
            result, kwargs = case.call(**kwargs)
        except (TypeError, ValueError) as e:
            assert type(e) in (TypeError, ValueError), f"{op}: {type(e).__name__} is a subclass: {e}"
            assert names_an_argument(e, case, name), f"{op}({name} <- {change}): unclear error: {e!r}"
            event(f"refused: {type(e).__name__}")
            return
    event("a result, checked against the reference")
    ours = functional_cases.written(case, result, kwargs)
    with np.errstate(all="ignore"):  # the references' own overflow (huge hyperparameters) is theirs
        expected = functional_cases.reference(case, plain)
    functional_cases.assert_matches(case, ours, expected, dtype, f"{op}({name} <- {change or kwargs[name]!r})",
                                    reference_nan_is_undefined=change is None, loose=4.0 if change is None else 1.0)
