"""Learning-rate schedules (alexnet_raw/training/lr_schedules.py)."""

import json

import pytest

from alexnet_raw.training import lr_schedules


def test_step_schedule_as_run_145():
    s = lr_schedules.StepSchedule([25, 51], 0.1)
    assert [s.factor(e) for e in (0, 24, 25, 50, 51, 90)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    with pytest.raises(ValueError, match="milestones"):
        lr_schedules.StepSchedule([0])
    with pytest.raises(ValueError, match="gamma"):
        lr_schedules.StepSchedule([3], gamma=0)


def test_plateau_schedule_drops_after_patience_and_round_trips():
    s = lr_schedules.PlateauSchedule(patience=2, gamma=0.5)
    for epoch, err in enumerate([0.5, 0.4, 0.41, 0.42]):
        s.observe(epoch, err)
    assert s.factor(4) == 0.5
    s.observe(4, 0.45)
    state = json.loads(json.dumps(s.state_dict()))  # checkpoints store it as JSON
    t = lr_schedules.from_state(state)
    s.observe(5, 0.46)
    t.observe(5, 0.46)
    assert s.factor(6) == t.factor(6) == 0.25
    assert lr_schedules.from_state(lr_schedules.StepSchedule([3]).state_dict()).factor(3) == pytest.approx(0.1)
