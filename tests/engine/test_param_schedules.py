"""cuda-convnet2's learning-rate schedules (alexnet_raw/engine/param_schedules.py): values against
hand-computed ones, the params-file syntax and its errors, the rate each step takes, and the
training job following them."""

import math

import numpy as np
import pytest

from alexnet_raw import Model
from alexnet_raw.engine import cfg, param_schedules
from test_cfg_strict import LAYERS, PARAMS, _set


def schedule(text):
    return param_schedules.parse(text, float)


@pytest.mark.parametrize("text, progress, expected", [
    ("0.01", 0.7, 0.01),
    ("const[base=0.01]", 1.0, 0.01),
    ("linear[base=0.01;tgtFactor=10]", 0.0, 0.01),
    ("linear[base=0.01;tgtFactor=10]", 0.5, 0.0055),  # 0.01 * 0.5 + 0.001 * 0.5
    ("linear[base=0.01;tgtFactor=10]", 1.0, 0.001),
    ("exp[base=0.01;tgtFactor=100]", 0.5, 0.001),  # 0.01 * 100 ** -0.5
    ("exp[base=0.01;tgtFactor=100]", 1.0, 0.0001),
    # dexp, 4 pieces from 0.02 to 0.02 / 250: 0.02, 0.02 / 250 ** (1/3), 0.02 / 250 ** (2/3), 8e-5
    ("dexp[base=0.02;tgtFactor=250;numSteps=4]", 0.0, 0.02),
    ("dexp[base=0.02;tgtFactor=250;numSteps=4]", 0.25, 0.02),
    ("dexp[base=0.02;tgtFactor=250;numSteps=4]", 0.26, 0.02 / 6.299605249474366),
    ("dexp[base=0.02;tgtFactor=250;numSteps=4]", 0.5, 0.02 / 6.299605249474366),
    ("dexp[base=0.02;tgtFactor=250;numSteps=4]", 0.75, 0.02 / 39.68502629920499),
    ("dexp[base=0.02;tgtFactor=250;numSteps=4]", 0.76, 8e-5),
    ("dexp[base=0.02;tgtFactor=250;numSteps=4]", 1.0, 8e-5),
    ("DEXP[base=0.04;tgtFactor=10;numSteps=2]", 0.5, 0.04),  # names without regard to case, as there
    ("dexp[base=0.04;tgtFactor=10;numSteps=2]", 0.51, 0.004),
    ("dexp[ base = 0.04 ; tgtFactor = 10 ; numSteps = 1 ]", 0.0, 0.004),  # one piece: the final rate
    ("linear[base=0.01;tgtFactor=10]", 7.0, 0.001),  # progress is clamped to [0, 1]
])
def test_schedule_values_are_the_hand_computed_ones(text, progress, expected):
    assert math.isclose(schedule(text).value(progress), expected, rel_tol=1e-12)


@pytest.mark.parametrize("text, message", [
    ("cosine[base=0.1]", "unknown schedule 'cosine'"),
    ("dexp[base=0.1;numSteps=4;tgtFactor=10]", "dexp takes base=...;tgtFactor=...;numSteps=... (in this order)"),
    ("linear[base=0.1]", "linear takes base=...;tgtFactor=..."),
    ("exp[base=0.1;tgtFactor=0]", "tgtFactor must be a finite number > 0"),
    ("exp[base=0.1;tgtFactor=nan]", "tgtFactor must be a finite number > 0"),
    ("exp[base=0.1;tgtFactor=ten]", "tgtFactor must be a number, got 'ten'"),
    ("dexp[base=0.1;tgtFactor=10;numSteps=0]", "numSteps must be an integer >= 1, got '0'"),
    ("dexp[base=0.1;tgtFactor=10;numSteps=2.5]", "numSteps must be an integer >= 1, got '2.5'"),
])
def test_bad_schedules_are_refused_naming_what_is_wrong(text, message):
    with pytest.raises(param_schedules.ScheduleError) as info:
        schedule(text)
    assert message in str(info.value)


def test_a_params_file_holds_schedules_per_input_and_errors_name_file_section_key(write_cfg):
    params = _set(PARAMS, "conv1", "epsW=dexp[base=0.02;tgtFactor=250;numSteps=4]")
    params = _set(params, "conv1", "epsB=linear[base=0.04;tgtFactor=10]")
    lp, pp = write_cfg(LAYERS, params)
    learn = cfg.read_params(pp, cfg.read_layers(lp))
    conv1 = learn["conv1"]
    assert conv1.scheduled and not learn["fc1"].scheduled
    assert conv1.eps_w == [0.02] and conv1.eps_b == 0.04  # the rates at the start
    eps_w, eps_b = conv1.rates(1.0)
    assert math.isclose(eps_w[0], 8e-5) and math.isclose(eps_b, 0.004)
    assert conv1.eps_w_schedules[0].describe() == "dexp[base=0.02;tgtFactor=250;numSteps=4]"
    for line, message in [("epsW=dexp[base=-1;tgtFactor=2;numSteps=2]", "must be >= 0, got -1"),
                          ("epsW=exp[base=0.1;tgtFactor=0]", "tgtFactor must be a finite number > 0"),
                          ("epsW=dexp[base=1e39;tgtFactor=2;numSteps=2]", "overflows float32"),
                          ("epsW=lin[base=0.1;tgtFactor=2]", "unknown schedule 'lin'")]:
        lp, pp = write_cfg(LAYERS, _set(PARAMS, "conv1", line))
        with pytest.raises(cfg.CfgError, match=message) as info:
            cfg.read_params(pp, cfg.read_layers(lp))
        assert (info.value.file, info.value.section, info.value.key) == (str(pp), "conv1", "epsW")


def test_several_inputs_take_one_schedule_each_or_one_for_all():
    text = "dexp[base=0.02;tgtFactor=250;numSteps=4],exp[base=0.01;tgtFactor=10]"
    assert param_schedules.split_per_input(text) == ["dexp[base=0.02;tgtFactor=250;numSteps=4]",
                                                     "exp[base=0.01;tgtFactor=10]"]
    assert param_schedules.split_per_input("0.1, 0.2") == ["0.1", "0.2"]


def test_a_step_takes_the_rate_of_its_progress(write_cfg):
    """W' = W - eps(p) * grad with no momentum or decay: the update of conv1 at progress p is the
    gradient times the scheduled rate."""
    params = _set(_set(PARAMS, "conv1", "epsW=exp[base=0.01;tgtFactor=100]"), "conv1", "momW=0")
    params = _set(params, "conv1", "wc=0")
    model = Model.from_cfg(*write_cfg(LAYERS, params), seed=2, dtype=np.float64)
    assert model.scheduled
    x = np.random.default_rng(0).standard_normal((2, 3, 16, 16))
    for progress in (0.0, 0.5, 1.0):
        before = model.state_dict()["conv1.weights.0"]
        model.forward(x, train=True)
        model.backward(np.array([0, 1]))
        grad = model.gradient_dict()["conv1.weights.0"]
        model.step(progress=progress)
        rate = 0.01 * 100.0 ** -progress
        np.testing.assert_allclose(model.state_dict()["conv1.weights.0"], before - rate * grad, rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match=r"progress must be in \[0, 1\]"):
        model.step(progress=1.5)


def test_progress_is_the_share_of_steps_done():
    assert [param_schedules.progress(k, 4) for k in range(5)] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert param_schedules.progress(9, 4) == 1.0 and param_schedules.progress(3, 0) == 0.0
