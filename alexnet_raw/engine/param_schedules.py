"""cuda-convnet2's parameter schedules: a params file's `epsW`/`epsB` as a function of training
progress (the facts from cuda-convnet2's layer.py, which parses them, and lr.cu, which evaluates them).

    epsW=0.01                                  a constant (cuda-convnet's form; also const[base=0.01])
    epsW=linear[base=0.01;tgtFactor=10]        base * (1 - p) + (base / tgtFactor) * p
    epsW=exp[base=0.01;tgtFactor=10]           base * (1 / tgtFactor) ** p
    epsW=dexp[base=0.02;tgtFactor=250;numSteps=4]
        numSteps constant pieces: rate i = base * (1 / tgtFactor) ** (i / (numSteps - 1)) for
        i < numSteps - 1, the last base / tgtFactor; p in ((i) / numSteps, (i + 1) / numSteps] takes
        rate i (p = 0 takes rate 0). numSteps=4, tgtFactor=250: base, base / 6.3, base / 39.7, base / 250.

p, the progress, is the share of the run's training steps done before this one, in [0, 1]: step k
(counted from 0) of a run of K steps has p = k / K. (cuda-convnet2 counts its data batches, files of
many minibatches, the same way; the steps here are minibatches, a finer grain of the same curve.)
The schedule name is read without regard to case, the parameters in the order above, as there.
"""

from __future__ import annotations

import dataclasses
import math
import re

KINDS = {"const": ("base",), "linear": ("base", "tgtFactor"), "exp": ("base", "tgtFactor"),
         "dexp": ("base", "tgtFactor", "numSteps")}
_FORM = re.compile(r"^\s*(\w+)\s*\[(.*)\]\s*$", re.S)


class ScheduleError(ValueError):
    """A schedule text that does not parse (the caller adds file, section and key)."""


@dataclasses.dataclass(frozen=True)
class ParameterSchedule:
    kind: str  # one of KINDS
    base: float  # the rate at progress 0
    tgt_factor: float = 1.0  # the rate falls to base / tgt_factor at progress 1
    num_steps: int = 1  # dexp's number of constant pieces

    def value(self, progress: float) -> float:
        """The rate at `progress` (clamped to [0, 1])."""
        p = min(1.0, max(0.0, float(progress)))
        if self.kind == "const":
            return self.base
        final = self.base / self.tgt_factor
        if self.kind == "linear":
            return self.base * (1 - p) + final * p
        if self.kind == "exp":
            return self.base * (1.0 / self.tgt_factor) ** p
        rates = [self.base * (1.0 / self.tgt_factor) ** (i / (self.num_steps - 1)) for i in range(self.num_steps - 1)]
        rates.append(final)
        for i, rate in enumerate(rates):
            if p <= (i + 1) / len(rates):
                return rate
        return rates[-1]

    def describe(self) -> str:
        if self.kind == "const":
            return f"{self.base:g}"
        values = {"base": self.base, "tgtFactor": self.tgt_factor, "numSteps": self.num_steps}
        return f"{self.kind}[" + ";".join(f"{k}={values[k]:g}" for k in KINDS[self.kind]) + "]"


def constant(rate: float) -> ParameterSchedule:
    return ParameterSchedule("const", float(rate))


def parse(text: str, convert_base):
    """The schedule `text` holds. A plain number is a constant. `convert_base(text)` turns the base
    rate's text into a float (the caller's checks of a rate: range, dtype); ScheduleError otherwise."""
    m = _FORM.match(text)
    if m is None:
        return constant(convert_base(text.strip()))
    kind = m.group(1).lower()
    if kind not in KINDS:
        raise ScheduleError(f"unknown schedule {m.group(1)!r} in {text.strip()!r}; cuda-convnet2's are "
                            + ", ".join(f"{k}[{';'.join(v)}]" for k, v in KINDS.items()))
    names = KINDS[kind]
    parts = [p.strip() for p in m.group(2).split(";")]
    keys = [p.split("=", 1)[0].strip() if "=" in p else None for p in parts]
    if keys != list(names):
        raise ScheduleError(f"{kind} takes {';'.join(f'{n}=...' for n in names)} (in this order), got {text.strip()!r}")
    values = dict(zip(names, (p.split("=", 1)[1].strip() for p in parts)))
    base = convert_base(values["base"])
    tgt = 1.0
    if "tgtFactor" in values:
        try:
            tgt = float(values["tgtFactor"])
        except ValueError:
            raise ScheduleError(f"tgtFactor must be a number, got {values['tgtFactor']!r}") from None
        if not math.isfinite(tgt) or tgt <= 0:
            raise ScheduleError(f"tgtFactor must be a finite number > 0 (the rate ends at base / tgtFactor), "
                                f"got {values['tgtFactor']}")
    steps = 1
    if "numSteps" in values:
        if not re.fullmatch(r"\+?\d+", values["numSteps"]) or int(values["numSteps"]) < 1:
            raise ScheduleError(f"numSteps must be an integer >= 1, got {values['numSteps']!r}")
        steps = int(values["numSteps"])
    return ParameterSchedule(kind, base, tgt, steps)


def split_per_input(text: str):
    """A key's per-input values: split at the commas outside brackets."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return parts


def progress(step: int, total_steps: int) -> float:
    """The progress of step `step` (from 0) of a run of `total_steps`: step / total_steps in [0, 1]."""
    if total_steps < 1:
        return 0.0
    return min(1.0, max(0.0, step / total_steps))
