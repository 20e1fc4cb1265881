"""Early pruning inside multi-objective studies (Optuna's pruners only work with one objective).

Rule: Hyperband brackets of successive halving, with promotion by non-dominated sorting
(MO-ASHA, Schmucker et al. 2021).

- Brackets. ``min_resource`` is fitted to the trial's epoch budget so that the most aggressive
  bracket always has at least two decision rungs before ``max_resource`` (= max epochs per
  trial): effective min = min(max(min_resource, pruning_warmup_steps), max_epochs // eta**2),
  at least 1. Bracket b decides at epochs min * eta**(b + k) < max_epochs; every bracket keeps
  at least one decision (a bracket without one is plain random search, which TPE already does).
  Decision epochs are rounded up to a multiple of ``pruning_interval_steps``. A trial's bracket
  is fixed by its number, weighted like Hyperband's trial allocation. ``pruning.strategy: asha``
  keeps the most aggressive bracket alone (asynchronous successive halving).
- Rung vector. When a trial reaches a rung epoch r, it and every other feasible trial of its
  bracket that reached r (running, complete or pruned; feasible: no recorded constraint, size or
  projected time, over its limit) are described by the study's objectives as seen at r:
  the best validation score up to epoch r (loss or composite accuracy, ``pruning.metric``), the
  model size, and the mean time per epoch (wall, or CPU with ``training.time_measure: cpu``).
  All are oriented so that lower is better.
- Promotion. Order the set as NSGA-II does (non-dominated front, then crowding distance, so
  the extremes and the spread of each front come first, then score); the top
  ``max(1, n // eta)`` continue, as in successive halving. A trial on the first front also
  continues when its score is within ``pruning.score_tolerance`` of the promotion cut-off (the
  ``max(1, n // eta)``-th best score). So the smallest or fastest model on the running Pareto
  front is never pruned just because its score is a little lower, while a crowded middle of the
  front is thinned like any other rung.

Besides the rungs, ``pruning.dominance_quantile`` turns on a second rule (:class:`DominanceCheck`):
a trial stops once even its projected final point is dominated by a completed feasible trial, so it
can no longer reach the front. Size is exact, training time is projected to the earliest epoch at
which the trial can complete, and accuracy is what it would score if it ended now plus the gain the
study's completed trials made after the same epoch (a quantile of those gains).

The per-epoch scores live in the trial's ``epoch_history`` user attribute, so they survive
restarts and every worker sharing the storage sees them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import moocore
import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from .config import OptimizationConfig
from .results import is_feasible

BRACKET_ATTR = "pruning_bracket"
FOLD_SCORES = "fold_scores"  # a walk-forward trial's per-fold records (walk_forward.py)
PEER_STATES = (TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED)  # the trials a rung compares with


def fitted_min_resource(max_epochs: int, min_resource: int, reduction_factor: int, warmup: int) -> int:
    return max(1, min(max(min_resource, warmup), max_epochs // reduction_factor**2))


def plan_brackets(max_epochs: int, min_resource: int, reduction_factor: int, *, warmup: int = 0, interval: int = 1) -> list[list[int]]:
    """Decision epochs of each bracket, most aggressive first; [] when no pruning is possible."""
    lowest = fitted_min_resource(max_epochs, min_resource, reduction_factor, warmup)
    brackets = []
    for b in range(max(1, math.floor(math.log(max_epochs / lowest, reduction_factor) + 1e-9))):
        rungs, epoch = [], lowest * reduction_factor**b
        while epoch < max_epochs:
            aligned = math.ceil(epoch / interval) * interval
            if aligned < max_epochs and aligned not in rungs:
                rungs.append(aligned)
            epoch *= reduction_factor
        if rungs:
            brackets.append(rungs)
    return brackets


def study_brackets(config: OptimizationConfig) -> list[list[int]]:
    """The decision epochs of each of the config's brackets (``pruning.strategy`` applied)."""
    p = config.pruning
    brackets = plan_brackets(
        config.max_epochs_per_trial, p.min_resource, p.reduction_factor, warmup=config.pruning_warmup_steps,
        interval=config.pruning_interval_steps,
    )
    return brackets[:1] if p.strategy == "asha" else brackets  # asha: the most aggressive bracket only


def non_domination_ranks(points: np.ndarray) -> np.ndarray:
    """Front index (0 = non-dominated) of each row; every column is minimised; equal rows share a
    front. moocore's sort: a rung of a 1000-trial study holds hundreds of trials."""
    return moocore.pareto_rank(points)


def crowding_distances(points: np.ndarray, ranks: np.ndarray, tiebreak: np.ndarray) -> np.ndarray:
    """NSGA-II crowding distance within each front; the extremes of a front get infinity.

    Equal values are ordered by ``tiebreak`` (trial numbers), so which of two tied points counts as
    the extreme does not depend on the order the caller listed them in.
    """
    distance = np.zeros(len(points))
    for front in np.unique(ranks):
        members = np.flatnonzero(ranks == front)
        for j in range(points.shape[1]):
            values = points[members, j]
            order = members[np.lexsort((tiebreak[members], values))]
            distance[order[[0, -1]]] = np.inf
            span = values.max() - values.min()
            if span > 0 and len(order) > 2:
                distance[order[1:-1]] += (points[order[2:], j] - points[order[:-2], j]) / span
    return distance


def promotable(
    candidate: np.ndarray, others: np.ndarray, reduction_factor: int, tolerance: float, *, candidate_number: int,
    other_numbers: np.ndarray,
) -> bool:
    """Does the candidate (first column: score, lower is better) continue past this rung?

    Ties are broken by trial number (earlier first) everywhere, so the candidate gains nothing from
    being the one judged.
    """
    points = np.vstack([candidate[None, :], others.reshape(-1, candidate.size)])
    numbers = np.concatenate([[candidate_number], np.asarray(other_numbers, dtype=float)])
    ranks = non_domination_ranks(points)
    n_promote = max(1, len(points) // reduction_factor)
    # NSGA-II order: by front, then by crowding distance (spread along the front, extremes first),
    # then by score, then by trial number.
    crowding = crowding_distances(points, ranks, numbers)
    order = np.lexsort((numbers, points[:, 0], -crowding, ranks))
    if 0 in order[:n_promote]:
        return True
    # A non-dominated trial whose score is only a little behind the promotion cut-off continues:
    # a small or fast model on the running Pareto front is not starved by the accuracy race.
    cutoff = np.sort(points[:, 0])[n_promote - 1]
    return bool(ranks[0] == 0 and candidate[0] <= cutoff + tolerance)


@dataclass(frozen=True)
class RungPoint:
    score: float  # best validation metric up to the rung, lower is better
    model_size: float
    epoch_seconds: float


class ParetoRungPruner:
    """Decides, at each rung epoch of a trial's bracket, whether the trial continues."""

    def __init__(self, config: OptimizationConfig) -> None:
        p = config.pruning
        self.metric = p.metric
        self.eta = p.reduction_factor
        self.tolerance = p.score_tolerance
        self.time_key = "wall_seconds" if config.training.time_measure == "wall" else "cpu_seconds"  # as the objective
        self.brackets = study_brackets(config)
        # Which rung-vector parts the study optimises besides the score.
        self.use_size = "model_size" in config.objectives
        self.use_time = "training_time" in config.objectives
        # Hyperband gives brackets with more rungs more trials: weight ~ eta**rungs / (rungs).
        self.weights = [math.ceil(self.eta ** len(r) / len(r)) for r in self.brackets]
        self._finished_vectors: dict[tuple[int, int], np.ndarray] = {}

    @property
    def active(self) -> bool:
        return bool(self.brackets)

    def bracket_of(self, trial_number: int) -> int:
        slot = trial_number % sum(self.weights)
        for bracket, weight in enumerate(self.weights):
            if slot < weight:
                return bracket
            slot -= weight
        raise AssertionError("unreachable")

    def rung_point(self, history: list[dict], model_size: float, rung: int) -> RungPoint:
        seen = history[:rung]
        score = min(h["val_loss"] for h in seen) if self.metric == "val_loss" else -max(h["val_score"] for h in seen)
        return RungPoint(score, model_size, sum(h[self.time_key] for h in seen) / len(seen))

    def _vector(self, point: RungPoint) -> np.ndarray:
        parts = [point.score]
        if self.use_size:
            parts.append(point.model_size)
        if self.use_time:
            parts.append(point.epoch_seconds)
        return np.array(parts, dtype=float)

    def _peer_vector(self, trial: FrozenTrial, epoch: int) -> np.ndarray:
        """A peer's rung vector; a finished peer's is computed once (its history no longer changes),
        else each of a 1000-trial study's rungs would redo hundreds of them at every decision."""
        key = (trial.number, epoch)
        vector = self._finished_vectors.get(key)
        if vector is None:
            vector = self._vector(self.rung_point(trial.user_attrs["epoch_history"], trial.user_attrs["model_size_mb"], epoch))
            if trial.state.is_finished():
                self._finished_vectors[key] = vector
        return vector

    def is_rung(self, bracket: int, epoch: int) -> bool:
        return epoch in self.brackets[bracket]

    def should_prune(self, study: optuna.Study, trial_number: int, bracket: int, history: list[dict], model_size: float) -> bool:
        epoch = len(history)
        if not self.is_rung(bracket, epoch):
            return False
        me = self._vector(self.rung_point(history, model_size, epoch))
        peers = [t for t in study.get_trials(deepcopy=False, states=PEER_STATES)
                 if _competes(t, trial_number, bracket, epoch)]
        others = [self._peer_vector(t, epoch) for t in peers]
        return not promotable(
            me, np.array(others).reshape(len(others), me.size), self.eta, self.tolerance, candidate_number=trial_number,
            other_numbers=np.array([t.number for t in peers]),
        )


def _competes(trial: FrozenTrial, trial_number: int, bracket: int, epoch: int) -> bool:
    # Feasible peers only: a trial recorded over a limit cannot join the front, so it must not take
    # a promotion slot. A running peer has only its size constraint recorded, and it passed every
    # time-limit check up to its saved epochs (the monitor stops a trial once its projection breaks it).
    return (
        trial.number != trial_number
        and trial.user_attrs.get(BRACKET_ATTR) == bracket
        and len(trial.user_attrs.get("epoch_history", ())) >= epoch
        and is_feasible(trial)
    )


MIN_GAINS = 5  # completed trials that trained past an epoch before their gains tell what a trial still gains
# Relative: a value equal to another but summed in another order (a trial's time projected epoch by
# epoch against a completed trial's total) differs in its last bits, and equal must count as equal.
EQUAL_WITHIN = 1e-9


def score_if_ended(history: list[dict]) -> float:
    """The accuracy objective of a trial that ended after these epochs: the composite score of its
    best epoch by validation loss (the weights early stopping keeps; the first of equal losses)."""
    return min(history, key=lambda h: h["val_loss"])["val_score"]


def expected_gain(completed: list[tuple[list[dict], float]], epoch: int, quantile: float) -> float | None:
    """The ``quantile`` of what completed trials (history, final accuracy) gained after ``epoch``
    over :func:`score_if_ended` at that epoch, at least 0; None with fewer than MIN_GAINS of them
    trained past it (too few to know how much a trial still gains there)."""
    gains = [final - score_if_ended(history[:epoch]) for history, final in completed if len(history) > epoch]
    if len(gains) < MIN_GAINS:
        return None
    return max(0.0, float(np.quantile(gains, quantile)))


@dataclass(frozen=True)
class FinalPoint:
    """A finished run a trial is checked against: its number, epoch history and objective values."""

    number: int
    history: list[dict]
    values: tuple[float, ...]


class DominanceCheck:
    """Stops a trial that can no longer reach the front (``pruning.dominance_quantile``).

    Checked after every epoch but the last: a check reads the study's completed trials (a few ms,
    small beside an epoch; once a trial where no other process can complete one, see
    :class:`.monitor.TrialMonitor`), and checking at epochs 1, 2, 4, 8, ... only trained 1.1x more trial-epochs in the
    replay (docs/benchmarks.md, "The dominance check, refined").

    Under walk-forward the rule watches a trial's first fold as it watches a holdout run, against
    the first fold of every feasible trial that has done one (complete, pruned after a later fold
    or still training one): the fold rungs judge the folds after it. Checked against completed
    trials only, a 50-trial study had 2-9 of them to judge by and cost 2.8x the holdout study
    (docs/benchmarks.md).
    """

    def __init__(self, config: OptimizationConfig) -> None:
        assert config.pruning.dominance_quantile is not None
        self.quantile = config.pruning.dominance_quantile
        self.objectives = list(config.objectives)
        self.first_fold = config.evaluation.scheme == "walk_forward"
        # Oriented so that lower is better in every objective.
        self.sign = np.array([-1.0 if name == "accuracy" else 1.0 for name in self.objectives])

    def completed(self, study: optuna.Study) -> list[FinalPoint]:
        """What a trial is checked against: completed feasible trials, or under walk-forward every
        feasible trial's first fold once it is done (its score, minutes and the trial's size)."""
        if not self.first_fold:
            return [FinalPoint(t.number, t.user_attrs.get("epoch_history", []), tuple(t.values))
                    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if is_feasible(t)]
        points = []
        for t in study.get_trials(deepcopy=False, states=PEER_STATES):
            if t.user_attrs.get(FOLD_SCORES) and is_feasible(t):
                first = t.user_attrs[FOLD_SCORES][0]
                value = {"accuracy": first["score"], "training_time": first["minutes"], "model_size": t.user_attrs["model_size_mb"]}
                points.append(FinalPoint(t.number, t.user_attrs.get("epoch_history", []), tuple(value[n] for n in self.objectives)))
        return points

    def dominator(
        self, study: optuna.Study, history: list[dict], minutes: float, model_size: float,
        completed: list[FinalPoint] | None = None,
    ) -> FinalPoint | None:
        """A finished run (:meth:`completed`) at least as good in every objective as this run's projected
        final point (``minutes``: its training time projected to completion), or None.
        ``completed``: :meth:`completed` as read before, where the caller knows nothing changed since."""
        if completed is None:
            completed = self.completed(study)
        projected = {"training_time": minutes, "model_size": model_size}
        if "accuracy" in self.objectives:
            index = self.objectives.index("accuracy")
            gain = expected_gain([(p.history, p.values[index]) for p in completed], len(history), self.quantile)
            if gain is None:
                return None
            projected["accuracy"] = score_if_ended(history) + gain
        point = self.sign * np.array([projected[name] for name in self.objectives])
        point += EQUAL_WITHIN * np.abs(point)
        return next((p for p in completed if np.all(self.sign * np.array(p.values) <= point)), None)
