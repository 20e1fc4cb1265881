"""A live one-line progress report, counted from the storage (so it sees every worker's trials)."""

from __future__ import annotations

import sys
import time
from datetime import timedelta
from typing import TextIO

import optuna
from optuna.trial import FrozenTrial, TrialState

from .distributed.faults import counted


def _clock(seconds: float) -> str:
    return str(timedelta(seconds=int(seconds)))


class ProgressLine:
    """Optuna callback: after each trial, rewrite one status line (a new line when not a terminal)."""

    def __init__(self, target_trials: int, objectives: list[str], stream: TextIO | None = None) -> None:
        self.target = target_trials
        self.objectives = objectives
        self.stream = stream or sys.stderr
        self.started = time.monotonic()
        self.done_at_start: int | None = None

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        trials = counted(study.get_trials(deepcopy=False))  # as the target counts them
        counts = {s: sum(t.state == s for t in trials) for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
        finished = sum(counts.values())
        if self.done_at_start is None:
            self.done_at_start = finished - 1
        elapsed = time.monotonic() - self.started
        done_here = max(finished - self.done_at_start, 1)
        eta = elapsed / done_here * max(self.target - finished, 0)
        best = ""
        if "accuracy" in self.objectives:
            i = self.objectives.index("accuracy")
            scores = [t.values[i] for t in trials if t.state == TrialState.COMPLETE and t.values]
            if scores:
                best = f" | best accuracy {max(scores):.4f}"
        line = (
            f"trials {finished}/{self.target} | complete {counts[TrialState.COMPLETE]} "
            f"pruned {counts[TrialState.PRUNED]} failed {counts[TrialState.FAIL]}{best} | "
            f"elapsed {_clock(elapsed)} eta {_clock(eta)}"
        )
        end = "\r" if self.stream.isatty() and finished < self.target else "\n"
        self.stream.write(line + end)
        self.stream.flush()
