"""The functional ops' argument handling (issue 15, "functional ops"): strided inputs give the
result of their contiguous copy on every backend, arrays written in place must be contiguous,
NumPy subclasses are refused naming the conversion (np.memmap is taken as its memory), scalars are
checked for type, range and the arrays' dtype, and a row with NaN logits is never top-k correct,
in F.topk_correct and in the training and evaluation counts built on it.

The calls and references are tests/kernels/functional_cases.py's (the kernel tests' references)."""

import re
import warnings

import numpy as np
import pytest

import functional_cases
from alexnet_raw import Model
from alexnet_raw.training import evaluate
from alexnet_raw import functional as F
from alexnet_raw.training import train

CASES = functional_cases.by_name()
OPS = sorted(CASES)


def same(a, b):
    """Bit-identical outputs (None for None), NaN included."""
    if a is None or b is None:
        return a is None and b is None
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


def strided(x, how):
    """A non-contiguous view holding x's values: every other element of a doubled last axis, a
    reversed copy read backwards, or a transposed copy read transposed."""
    if how == "every_other":
        view = np.stack([x, np.full_like(x, 7)], axis=-1)[..., 0]
    elif how == "reversed":
        view = np.ascontiguousarray(x[::-1])[::-1] if x.ndim else x
    else:
        view = np.ascontiguousarray(x.T).T
    assert np.array_equal(view, x)
    return view


def fresh(case):
    return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in case.kwargs.items()}


@pytest.mark.parametrize("op", OPS)
def test_strided_inputs_give_the_result_of_the_contiguous_copy(backend, op):
    case = CASES[op]
    expected = functional_cases.written(case, *case.call(**fresh(case)))
    for how in ("every_other", "reversed", "transposed"):
        views = {name: strided(case.kwargs[name], how) for name in case.arrays
                 if case.kwargs[name].ndim >= 2 or how != "transposed"}
        views = {name: v for name, v in views.items() if not v.flags.c_contiguous}
        assert views, f"{op}: no strided argument made ({how})"
        kwargs = dict(fresh(case), **views)
        ours = functional_cases.written(case, *case.call(**kwargs))
        assert all(same(o, e) for o, e in zip(ours, expected)), f"{op} with strided {sorted(views)} ({how})"
        assert all(np.array_equal(v, case.kwargs[n], equal_nan=True) for n, v in views.items()), "an input was written"


@pytest.mark.parametrize("op", [op for op in OPS if CASES[op].outputs])
def test_strided_arrays_written_in_place_are_refused(backend, op):
    case = CASES[op]
    for name in case.outputs:
        kwargs = fresh(case)
        kwargs[name] = strided(kwargs[name], "every_other")
        before = {k: v.copy() for k, v in kwargs.items() if isinstance(v, np.ndarray)}
        with pytest.raises(ValueError, match=rf"{name} must be C-contiguous, got shape .* with strides .*: {op} "
                                             "writes it in place"):
            case.call(**kwargs)
        assert all(np.array_equal(kwargs[k], v) for k, v in before.items()), f"{op} wrote an argument it refused"


class Tagged(np.ndarray):
    """A user's ndarray subclass (carrying a tag the ops would drop)."""


def subclass_instances(x):
    """(kind, instance holding x's values, the TypeError's pattern)."""
    masked = np.ma.masked_array(x, mask=np.zeros(x.shape, bool))
    yield "masked", masked, r"is a numpy.ma.MaskedArray, which the ops do not take: its mask would be ignored. " \
                            r"Pass np.ma.filled\(\w+, value\) .* or \w+.data"
    yield "subclass", x.view(Tagged), r"is a \S*Tagged, a subclass of numpy.ndarray, which the ops do not take .*" \
                                      r"np.asarray\(\w+\)"
    if x.ndim == 2:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PendingDeprecationWarning)
            yield "matrix", np.asmatrix(x), r"is a numpy.matrix, which the ops do not take .*np.asarray\(\w+\)"


@pytest.mark.parametrize("op", OPS)
def test_numpy_subclasses_are_refused_naming_the_conversion(op):
    case = CASES[op]
    for name in case.arrays + case.outputs:
        for kind, instance, says in subclass_instances(case.kwargs[name]):
            kwargs = dict(fresh(case), **{name: instance})
            with pytest.raises(TypeError, match=rf"^{name} {says}"):
                case.call(**kwargs)


@pytest.mark.parametrize("op", OPS)
def test_memmaps_are_taken_as_their_memory(op, tmp_path):
    case = CASES[op]
    expected = functional_cases.written(case, *case.call(**fresh(case)))
    kwargs = fresh(case)
    for name in case.arrays + case.outputs:
        m = np.memmap(tmp_path / f"{name}.bin", dtype=kwargs[name].dtype, mode="w+", shape=kwargs[name].shape)
        m[...] = kwargs[name]
        kwargs[name] = m
    result, kwargs = case.call(**kwargs)
    ours = functional_cases.written(case, result, kwargs)
    assert all(same(o, e) for o, e in zip(ours, expected)), op
    for name in case.outputs:  # written in place: into the mapped file
        assert np.array_equal(np.fromfile(tmp_path / f"{name}.bin", kwargs[name].dtype).reshape(kwargs[name].shape),
                              expected[case.outputs.index(name)])


# --------------------------------------------------------------------------------------------
# scalars: what each kind refuses, (value, exception, what the message must say besides the name)
BAD_SCALARS = {
    "real": [("0.5", TypeError, r"must be a real number, got '0.5' \(a str\)"),
             (True, TypeError, r"must be a real number, got True \(a bool\)"),
             (None, TypeError, "must be a real number, got None"),
             (float("nan"), ValueError, "must be finite, got nan"),
             (-float("inf"), ValueError, "must be finite, got -inf"),
             (10**400, ValueError, "must be finite"),
             (1e300, ValueError, r"must be representable in float32 .* got 1e\+300")],
    "unit": [("0.5", TypeError, "must be a real number, got '0.5'"),
             (np.bool_(False), TypeError, "must be a real number"),
             (1.0, ValueError, r"must be in \[0, 1\), got 1.0"),
             (-0.25, ValueError, r"must be in \[0, 1\), got -0.25"),
             (float("nan"), ValueError, "must be finite")],
    "int": [(True, TypeError, r"must be an int, got True \(a bool\)"),
            (1.5, TypeError, "must be an int, got 1.5"),
            ("3", TypeError, "must be an int, got '3'"),
            (-1, ValueError, "must be >= 0, got -1"),
            (2**64, ValueError, r"must be < 2\*\*64")],
    "size": [(True, TypeError, "must be an int, got True"),
             (2.0, TypeError, "must be an int, got 2.0"),
             (None, TypeError, "must be an int, got None"),
             (0, ValueError, "must be >= 1, got 0"),
             (-3, ValueError, "must be >= 1, got -3")],
    "pair": [(True, TypeError, "must be an int, got True"),
             (1.5, TypeError, "must be an int, got 1.5"),
             ((1, 2, 3), ValueError, r"must be an int or a pair of ints, got \(1, 2, 3\)"),
             (-1, ValueError, "must be >= [01], got -1"),
             (2**31, ValueError, f"must be at most {2**31 - 1}, got {2**31}"),
             (2**70, ValueError, "must be at most")],
    "bool": [(1, TypeError, "must be a bool"), ("yes", TypeError, "must be a bool"),
             (None, TypeError, "must be a bool")],
    "str": [(3, (TypeError, ValueError), "must be"), (None, (TypeError, ValueError), "must be"),
            ("no such thing", ValueError, "")],
}
BAD_SCALARS["optional_real"] = [bad for bad in BAD_SCALARS["real"] if bad[0] is not None]  # None: the default


@pytest.mark.parametrize("op", [op for op in OPS if CASES[op].scalars])
def test_bad_scalars_are_a_clear_error_naming_the_argument(op):
    case = CASES[op]
    for name, kind in case.scalars.items():
        for value, error, says in BAD_SCALARS[kind]:
            kwargs = fresh(case)
            before = {k: v.copy() for k, v in kwargs.items() if isinstance(v, np.ndarray)}
            kwargs[name] = value
            what = f"{op}({name}={value!r:.20})"
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # no NumPy overflow warning on the way to the error
                with pytest.raises(error) as caught:
                    case.call(**kwargs)
            message = str(caught.value)
            assert type(caught.value) in (error if isinstance(error, tuple) else (error,)), what
            assert re.search(rf"(^{name} |\b{name}=| as {name}$)", message), f"{what}: does not name {name}: {message}"
            assert re.search(says, message), f"{what}: {message}"
            assert all(np.array_equal(kwargs[k], v) for k, v in before.items()), f"{what} wrote an argument it refused"


def test_a_string_p_is_a_type_error_naming_p_the_type_and_the_value():
    x = np.ones((2, 3), np.float32)
    with pytest.raises(TypeError, match=r"^p must be a real number, got '0.5' \(a str\)$"):
        F.dropout(x, "0.5")


def test_a_learning_rate_past_float32_is_refused_not_cast_to_inf():
    p, g, buf = (np.ones((2, 3), np.float32) for _ in range(3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=r"^lr must be representable in float32 \(the arrays' dtype: magnitudes "
                                             r"up to 3.4028235e\+38\), got 1e\+300$"):
            F.sgd_update(p, g, buf, 1e300)
    assert (p == 1).all() and (buf == 1).all()
    F.sgd_update(p.astype(np.float64), g.astype(np.float64), buf.astype(np.float64), 1e300)  # a float64 it is


def test_float32_parameters_that_vanish_or_overflow_in_the_kernels_are_refused():
    x = np.ones((1, 2, 3, 3), np.float32)
    with pytest.raises(ValueError, match=r"neuron tanh\[a,b\] needs a != 0 .*got a=1e-60 \(0 in float32\)"):
        F.neuron(x, "tanh", 1e-60, 1.0)
    F.neuron(x.astype(np.float64), "tanh", 1e-60, 1.0)  # not 0 in float64
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=r"2 \* beta \* alpha / size must be representable in float32"):
            F.local_response_norm_backward(x, x, 1, alpha=3e38, beta=1.0)
        with pytest.raises(ValueError, match=r"2 \* beta \* alpha / size\^2 must be representable in float32"):
            F.same_map_norm_backward(x, x, 1, alpha=3e38, beta=1.0)


# --------------------------------------------------------------------------------------------
NAN = np.nan
NAN_ROWS = np.array([
    [NAN, NAN, NAN, NAN],   # all NaN: was counted correct (nothing ranks above a NaN target)
    [NAN, 1, 2, 0],         # NaN elsewhere, target 2 the largest number
    [3, NAN, 1, 0],         # NaN at the target
    [1, 5, 2, 0],           # no NaN, target 1 the largest: correct for every k
    [1, 2, 5, 4],           # no NaN, target 3 second: correct from k = 2
], np.float32)
NAN_TARGETS = np.array([0, 2, 1, 1, 3], np.int64)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rows_with_nan_logits_are_never_correct(backend, under_schedules, dtype):
    x = NAN_ROWS.astype(dtype)
    for k, expected in ((1, 1), (2, 2), (3, 2), (4, 2)):
        assert under_schedules(lambda: F.topk_correct(x, NAN_TARGETS, k)) == expected, f"k={k}"
    wide = np.zeros((3, 300), dtype)  # NaN seen by one thread of many: the block's count still sees it
    wide[:, 7] = 1
    wide[1, 299] = NAN
    assert under_schedules(lambda: F.topk_correct(wide, np.array([7, 7, 7], np.int64), 1)) == 2


def test_training_and_evaluation_count_nan_rows_as_wrong():
    # the engine's counts (training's top-1, evaluate's top-1/top-k) are F.topk_correct's
    model = Model.named("mini", seed=7, num_classes=4)
    assert evaluate.count_correct(model, NAN_ROWS.astype(model.dtype), NAN_TARGETS, 2) == (1, 2)
    assert train._host_logits_correct(model, NAN_ROWS.astype(model.dtype), NAN_TARGETS) == 1
