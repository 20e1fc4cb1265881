"""One trial under walk-forward evaluation, its folds the fidelity the pruner judges on.

The folds (windows.fold_cuts) are trained most recent first, each from the same initial weights
(the trial's seed) with early stopping on its own validation period. The first fold is watched by
the trial's TrialMonitor as a holdout run is (epoch rungs, the time limit, and the dominance rule
against the other trials' first folds). After each fold but the last, a fold rung: the trial's
mean score over the folds it has done is compared with every trial (running or finished) that has
done at least as many, by the epoch rungs' promotion rule (pruning.promotable: non-dominated
sorting on score, size and time per fold as the study optimises them, the top 1/eta continue, a
non-dominated trial within score_tolerance of the cut-off too); a trial not promoted stops
("pruned after fold j"). The time limit is each fold's: a configuration fits under walk-forward
exactly when its training on every fold would fit under holdout.

The trial's objectives: accuracy = mean composite score over its folds, training_time = the sum of
its folds' minutes, model_size unchanged. Per-fold scores are the ``fold_scores`` user attribute.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
import torch

from .monitor import TimeLimitExceeded, TrialMonitor
from .objectives import Evaluation, steady_minutes
from .pruning import FOLD_SCORES, PEER_STATES, promotable
from .train import Trainer, TrainResult

if TYPE_CHECKING:
    from .study import MultiObjectiveOptimizer

# Rates of windows: their mean over folds is weighted by each fold's windows (the pooled rate).
POOLED = ("accuracy", "majority_rate", "top_prediction_share")


@dataclass(frozen=True)
class TrialRun:
    """What a trial's training gives the objective, under either scheme."""

    score: float  # the accuracy objective
    minutes: float  # the training_time objective
    limited_minutes: float  # what max_training_time_minutes limits: the minutes (walk-forward: the longest fold's)
    val_metrics: dict[str, float]
    constant_predictor: bool
    training: dict[str, Any]
    trainer: Trainer  # holding the best weights on the holdout's splits (walk-forward: the most recent fold's)


def fold_metrics(evaluations: list[Evaluation]) -> dict[str, float]:
    """The folds' validation metrics: the mean of each (composite: the objective), the windows
    summed, and the spread of the composite score over the folds (``fold_std``)."""
    rows = [e.to_dict() for e in evaluations]
    n = np.array([r["n_samples"] for r in rows], dtype=float)
    merged: dict[str, float] = {}
    for key in rows[0]:
        column = np.array([r[key] for r in rows], dtype=float)
        if key == "n_samples":
            merged[key] = int(n.sum())
        elif key in POOLED and n.sum() > 0:
            merged[key] = float(np.average(column, weights=n))
        else:
            merged[key] = float(column.mean())
    merged["fold_std"] = float(np.std([r["composite"] for r in rows], ddof=1)) if len(rows) > 1 else 0.0
    return merged


class WalkForward:
    def __init__(self, optimizer: MultiObjectiveOptimizer) -> None:
        cfg = optimizer.config
        self.optimizer = optimizer
        self.folds = optimizer.data.folds
        self.order = list(range(len(self.folds)))[::-1]  # most recent first
        self.time_key = "cpu_seconds" if cfg.training.time_measure == "cpu" else "wall_seconds"
        self.steady = cfg.training.time_measure == "steady"
        self.fold_rungs = cfg.pruning.enabled
        self.eta, self.tolerance = cfg.pruning.reduction_factor, cfg.pruning.score_tolerance
        self.use_size, self.use_time = "model_size" in cfg.objectives, "training_time" in cfg.objectives

    def run(
        self, trial: optuna.Trial, params: dict[str, Any], model: torch.nn.Module, monitor: TrialMonitor, seed: int
    ) -> TrialRun:
        opt, cfg = self.optimizer, self.optimizer.config
        records: list[dict[str, Any]] = []
        evaluations: list[Evaluation] = []
        results: list[TrainResult] = []
        trainers: list[Trainer] = []
        for j, index in enumerate(self.order):
            fold = self.folds[index]
            if j > 0:
                torch.manual_seed(seed)  # the same initial weights on every fold
                model = opt.build_model(params)
            trainer = opt.make_trainer(model, params, seed, fold)
            trainers.append(trainer)
            if j == 0:
                result = trainer.fit(cfg.max_epochs_per_trial, on_epoch=monitor, on_probe=monitor.probe)
                monitor.save()
            else:
                result = trainer.fit(cfg.max_epochs_per_trial)
            best = result.best.val
            results.append(result)
            evaluations.append(best)
            records.append({
                "fold": index, "val_start": f"{fold.cuts['val_start']:%Y-%m-%d}", "val_end": f"{fold.cuts['val_end']:%Y-%m-%d}",
                "score": best.composite, "classification_score": best.classification_score, "accuracy": best.accuracy,
                "majority_rate": best.majority_rate, "epochs": len(result.epochs), "best_epoch": result.best_epoch,
                "minutes": self._minutes(result),
            })
            trial.set_user_attr(FOLD_SCORES, list(records))  # peers at the fold rungs read it
            # The limit is each fold's (the first fold's run is watched by the monitor, the later ones
            # checked once trained); the objective records a stopped trial's constraint from its longest.
            monitor.projected = max(r["minutes"] for r in records)
            limit = cfg.max_training_time_minutes
            if limit is not None and records[-1]["minutes"] > limit:
                monitor.stop_reason = f"time limit in fold {j + 1}: {records[-1]['minutes']:.2f} min > {limit} min"
                raise TimeLimitExceeded(records[-1]["minutes"], limit)
            if j + 1 < len(self.order) and self.fold_rungs and not self._promoted(trial, records, monitor.model_size):
                monitor.stop_reason = f"pruned after fold {j + 1}"
                raise optuna.TrialPruned(monitor.stop_reason)
        return TrialRun(
            score=float(np.mean([r["score"] for r in records])),
            minutes=sum(r["minutes"] for r in records),
            limited_minutes=monitor.projected,
            val_metrics=fold_metrics(evaluations),
            constant_predictor=all(e.constant_predictor for e in evaluations),
            training={
                "folds": len(records), "epochs_trained": sum(len(r.epochs) for r in results),
                "cpu_minutes": sum(r.cpu_seconds for r in results) / 60, "wall_minutes": sum(r.wall_seconds for r in results) / 60,
            },
            trainer=trainers[0],
        )

    def _minutes(self, result: TrainResult) -> float:
        """A fold's training minutes by the configured measure, as the holdout objective takes them."""
        if self.steady:
            return steady_minutes([{"cpu_seconds": e.cpu_seconds} for e in result.epochs])
        return sum(getattr(e, self.time_key) for e in result.epochs) / 60

    def _promoted(self, trial: optuna.Trial, records: list[dict[str, Any]], model_size: float) -> bool:
        return fold_rung_promotes(
            trial.study, trial.number, records, model_size, eta=self.eta, tolerance=self.tolerance,
            use_size=self.use_size, use_time=self.use_time,
        )


def fold_rung_promotes(
    study: optuna.Study, number: int, records: list[dict[str, Any]], model_size: float, *,
    eta: int, tolerance: float, use_size: bool, use_time: bool,
) -> bool:
    """Does trial ``number``, with the folds ``records`` done, continue? Its peers: every other
    running or finished trial with at least as many folds done, each judged on the same number."""
    done = len(records)

    def vector(folds: list[dict[str, Any]], size: float) -> np.ndarray:
        # Lower is better: -mean score, and size and minutes per fold where the study optimises them.
        parts = [-float(np.mean([r["score"] for r in folds]))]
        if use_size:
            parts.append(size)
        if use_time:
            parts.append(float(np.mean([r["minutes"] for r in folds])))
        return np.array(parts)

    peers = [t for t in study.get_trials(deepcopy=False, states=PEER_STATES)
             if t.number != number and len(t.user_attrs.get(FOLD_SCORES, ())) >= done]
    me = vector(records, model_size)
    others = [vector(t.user_attrs[FOLD_SCORES][:done], t.user_attrs["model_size_mb"]) for t in peers]
    return promotable(
        me, np.array(others).reshape(len(others), me.size), eta, tolerance,
        candidate_number=number, other_numbers=np.array([t.number for t in peers]),
    )
