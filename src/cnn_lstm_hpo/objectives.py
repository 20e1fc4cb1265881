"""Metrics -> objective values, their directions, and ranking of a Pareto set by weights.

``accuracy`` (maximised) = classification_weight * classification score
                         + regression_weight * regression score, divided by the weight sum.
- classification score: plain accuracy (the guide's), balanced accuracy, or (MCC + 1) / 2.
- regression score: 1 / (1 + MSE / MSE_zero), MSE_zero = mean(y**2) being the error of the
  zero-return forecast. A perfect forecast scores 1, the zero forecast 0.5, worse ones less.
``training_time`` (minimised) is minutes; ``model_size`` (minimised) is MB.

A model whose validation predictions are at least CONSTANT_SHARE one class is a constant predictor:
results.py ranks it after every other trial (it learned no more than the class frequencies).
``sharpe`` (maximised) is the annualized Sharpe ratio, net of costs, of trading the validation
predictions (trading.py; config ``trading``).
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from typing import Any, Mapping

import numpy as np
from sklearn.metrics import balanced_accuracy_score, matthews_corrcoef

DIRECTIONS = {"accuracy": "maximize", "training_time": "minimize", "model_size": "minimize", "sharpe": "maximize"}
CONSTANT_SHARE = 0.99


@dataclass(frozen=True)
class Evaluation:
    loss: float
    accuracy: float  # plain accuracy, always reported
    classification_score: float  # the configured metric, in [0, 1]
    regression_score: float
    composite: float  # the ``accuracy`` objective
    majority_rate: float  # accuracy of always predicting the most frequent class
    n_samples: int = 0  # validation windows scored; the binomial test against the majority rate needs it
    top_prediction_share: float = float("nan")  # share of the predictions in the most predicted class
    balanced_accuracy: float = float("nan")  # mean recall over the classes (nan: not measured, as in replays)

    @property
    def constant_predictor(self) -> bool:
        return self.top_prediction_share >= CONSTANT_SHARE

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def classification_score(y_true: np.ndarray, y_pred: np.ndarray, metric: str) -> float:
    if metric == "accuracy":
        return float(np.mean(y_true == y_pred))
    if metric == "balanced_accuracy":
        return float(balanced_accuracy_score(y_true, y_pred))
    return (float(matthews_corrcoef(y_true, y_pred)) + 1.0) / 2.0


def regression_score(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    mse = float(np.mean((y_true - y_pred) ** 2))
    mse_zero = float(np.mean(y_true**2))
    if mse_zero == 0.0:
        return 1.0 if mse == 0.0 else 0.0
    return 1.0 / (1.0 + mse / mse_zero)


def evaluate_predictions(
    *, loss: float, y_class: np.ndarray, pred_class: np.ndarray, y_return: np.ndarray, pred_return: np.ndarray,
    metric: str, classification_weight: float, regression_weight: float,
) -> Evaluation:
    cls = classification_score(y_class, pred_class, metric)
    reg = regression_score(y_return, pred_return)
    composite = (classification_weight * cls + regression_weight * reg) / (classification_weight + regression_weight)
    counts = np.bincount(y_class)
    return Evaluation(
        loss=loss, accuracy=float(np.mean(y_class == pred_class)),
        balanced_accuracy=float(balanced_accuracy_score(y_class, pred_class)), classification_score=cls,
        regression_score=reg, composite=composite, majority_rate=float(counts.max() / len(y_class)),
        n_samples=len(y_class), top_prediction_share=float(np.bincount(pred_class).max() / len(pred_class)),
    )


_METRIC_NAMES = {"accuracy": "accuracy", "balanced_accuracy": "balanced_accuracy", "mcc": "(MCC + 1) / 2"}


def composite_definition(training: Mapping[str, Any] | None) -> str:
    """What the ``accuracy`` objective is, from the training settings (a study stores them in its
    ``config`` attribute): "composite: 0.7 x accuracy + 0.3 x regression score"."""
    training = training or {}
    metric = training.get("classification_metric", "accuracy")
    cw, rw = training.get("classification_weight", 0.7), training.get("regression_weight", 0.3)
    parts = [f"{w / (cw + rw):.2g} x {name}" for w, name in ((cw, _METRIC_NAMES[metric]), (rw, "regression score")) if w]
    return "composite: " + " + ".join(parts)


def objective_labels(objectives: list[str], training: Mapping[str, Any] | None) -> dict[str, str]:
    """Each objective's name as shown to a person: ``accuracy`` says it is the composite."""
    return {o: f"{o} ({composite_definition(training)})" if o == "accuracy" else o for o in objectives}


def p_value_vs_majority(accuracy: float | None, majority_rate: float | None, n: int | None) -> float | None:
    """One-sided exact binomial p-value of ``accuracy`` over ``n`` windows against the majority-class
    rate taken as known (uncorrected); None without the three numbers."""
    if accuracy is None or majority_rate is None or not n:
        return None
    from scipy import stats

    p0 = min(max(majority_rate, 1e-12), 1 - 1e-12)
    return float(stats.binomtest(round(accuracy * n), n, p=p0, alternative="greater").pvalue)


def steady_minutes(history: list[dict[str, float]]) -> float:
    """Training minutes at the steady-state epoch cost: the median CPU seconds of the epochs after
    the first (whose warm-up, one-off allocations and first kernel calls, dominates small models)
    times the epochs trained. CPU time, not wall: a neighbour that takes the cores delays a trial
    but does not add to the work it does (with one torch thread, see config.threads_per_worker;
    more threads spin while they wait). A one-epoch history is its own steady state."""
    seconds = [h["cpu_seconds"] for h in history]
    if not seconds:
        return 0.0
    return statistics.median(seconds[1:] or seconds) * len(seconds) / 60


def directions(objectives: list[str]) -> list[str]:
    return [DIRECTIONS[name] for name in objectives]


def weighted_ranks(values: np.ndarray, objectives: list[str], weights: dict[str, float]) -> np.ndarray:
    """Rank rows of ``values`` (n_trials, n_objectives); 1 = best weighted, normalised score.

    Each objective is min-max normalised over the given rows to [0, 1] with 1 the best end, so
    weights compare like with like whatever the units (minutes vs MB vs accuracy).
    """
    if len(values) == 0:
        return np.array([], dtype=int)
    lo, hi = values.min(axis=0), values.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    normalised = (values - lo) / span
    for j, name in enumerate(objectives):
        if DIRECTIONS[name] == "minimize":
            normalised[:, j] = 1.0 - normalised[:, j]
        if hi[j] == lo[j]:
            normalised[:, j] = 1.0  # every trial ties on this objective
    w = np.array([weights.get(name, 0.0) for name in objectives])
    scores = normalised @ w
    order = np.argsort(-scores, kind="stable")
    ranks = np.empty(len(values), dtype=int)
    ranks[order] = np.arange(1, len(values) + 1)
    return ranks


def reference_point(values: np.ndarray, maximise: list[bool]) -> np.ndarray:
    """The worst value of each objective among the points, moved 10% of the range (or of the value) further."""
    worst = np.where(maximise, values.min(axis=0), values.max(axis=0))
    span = values.max(axis=0) - values.min(axis=0)
    margin = np.where(span > 0, 0.1 * span, np.maximum(0.1 * np.abs(worst), 1e-9))
    return np.where(maximise, worst - margin, worst + margin)
