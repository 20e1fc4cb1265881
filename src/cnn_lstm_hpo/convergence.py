"""Stopping a study when its front stops moving (``convergence.patience``).

Optuna's terminator judges single-objective studies only; nothing in Optuna stops a
multi-objective study when more trials no longer help. The rule here: the hypervolume of the
feasible front of COMPLETE trials, now, against the same hypervolume before the last
``patience`` trials finished (in any state: a run of pruned or infeasible trials moved nothing;
the sampler's random start-up trials are never looked back over). Both are measured from one
reference point, the current one (objectives.reference_point, the report's), so the comparison
is fair. The study stops when the front grew by no more than ``min_improvement`` (a fraction of
the current hypervolume) over those trials. It never stops before a feasible trial exists: until
then there is no front to stall.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import moocore
import numpy as np
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from .objectives import reference_point
from .results import is_feasible


@dataclass(frozen=True)
class Stall:
    trials: int  # finished trials looked back over
    improvement: float  # relative growth of the hypervolume over them

    def describe(self) -> str:
        return f"the last {self.trials} finished trials grew the front's hypervolume by {100 * self.improvement:.3g} %"


def front_stall(
    trials: list[FrozenTrial], directions: list[StudyDirection], patience: int, min_improvement: float, *, after: int = 0
) -> Stall | None:
    """A Stall when the front grew by at most ``min_improvement`` over the last ``patience``
    finished trials; None while it still moves (or too few trials finished to tell). ``after``:
    the sampler's random start-up trials, which say nothing about convergence: the look-back
    starts after them (on recorded quick_test runs, counting them stopped studies at trial 8-13)."""
    finished = sorted(
        (t for t in trials if t.state.is_finished()), key=lambda t: (t.datetime_complete or dt.datetime.max, t.number)
    )
    if len(finished) <= after + patience:
        return None
    earlier = {t.number for t in finished[:-patience]}
    feasible = [
        t for t in finished
        if t.state == TrialState.COMPLETE and t.values is not None and all(map(math.isfinite, t.values)) and is_feasible(t)
    ]
    if not feasible:
        return None
    maximise = [d == StudyDirection.MAXIMIZE for d in directions]
    values = np.array([t.values for t in feasible], dtype=float)
    ref = reference_point(values, maximise)
    now = float(moocore.hypervolume(values, ref=ref, maximise=maximise))
    before_rows = [i for i, t in enumerate(feasible) if t.number in earlier]
    before = float(moocore.hypervolume(values[before_rows], ref=ref, maximise=maximise)) if before_rows else 0.0
    improvement = (now - before) / now if now > 0 else 0.0
    # 1e-9: hypervolumes of the same points summed in another order differ in the last bits.
    return Stall(patience, improvement) if improvement <= min_improvement + 1e-9 else None

