"""Learning-rate schedules of the training job: a factor on every layer's epsW/epsB.

    StepSchedule(milestones=(25, 51), gamma=0.1)   factor gamma**k after the k-th milestone epoch
    PlateauSchedule(patience=3, gamma=0.1)          factor *= gamma when the validation error has
                                                    not improved for `patience` epochs (as the
                                                    2012 run was managed by hand)
Both are plain state (state_dict/load_state_dict) so a resumed run continues the same schedule.
"""

from __future__ import annotations


class StepSchedule:
    kind = "step"

    def __init__(self, milestones=(), gamma=0.1):
        milestones = sorted(int(m) for m in milestones)
        if any(m < 1 for m in milestones):
            raise ValueError(f"milestones must be epochs >= 1, got {milestones}")
        if not 0.0 < gamma <= 1.0:
            raise ValueError(f"gamma must be in (0, 1], got {gamma}")
        self.milestones, self.gamma = milestones, float(gamma)

    def factor(self, epoch: int) -> float:
        return self.gamma ** sum(epoch >= m for m in self.milestones)

    def observe(self, epoch: int, validation_error: float) -> None:
        pass

    def state_dict(self):
        return {"kind": self.kind, "milestones": self.milestones, "gamma": self.gamma}

    def load_state_dict(self, state):
        self.milestones, self.gamma = list(state["milestones"]), float(state["gamma"])


class PlateauSchedule:
    kind = "plateau"

    def __init__(self, patience=3, gamma=0.1, min_factor=1e-4):
        if patience < 1:
            raise ValueError(f"patience must be >= 1 epoch, got {patience}")
        if not 0.0 < gamma < 1.0:
            raise ValueError(f"gamma must be in (0, 1), got {gamma}")
        self.patience, self.gamma, self.min_factor = int(patience), float(gamma), float(min_factor)
        self.current, self.best, self.waited = 1.0, float("inf"), 0

    def factor(self, epoch: int) -> float:
        return self.current

    def observe(self, epoch: int, validation_error: float) -> None:
        if validation_error < self.best:
            self.best, self.waited = validation_error, 0
            return
        self.waited += 1
        if self.waited >= self.patience:
            self.current = max(self.min_factor, self.current * self.gamma)
            self.waited = 0

    def state_dict(self):
        return {"kind": self.kind, "patience": self.patience, "gamma": self.gamma, "min_factor": self.min_factor,
                "current": self.current, "best": self.best, "waited": self.waited}

    def load_state_dict(self, state):
        for key in ("patience", "waited"):
            setattr(self, key, int(state[key]))
        for key in ("gamma", "min_factor", "current", "best"):
            setattr(self, key, float(state[key]))


def from_state(state):
    schedule = StepSchedule() if state["kind"] == "step" else PlateauSchedule()
    schedule.load_state_dict(state)
    return schedule
