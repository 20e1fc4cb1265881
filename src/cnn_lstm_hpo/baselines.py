"""Naive rules scored on the same windows as the models, and the paired test against the strongest.

Three baselines, each fitted or decided on the training split only:
- ``majority``: the most frequent training class, for every window;
- ``persistence``: the label of the window ``horizon`` bars earlier of the same symbol, whose
  outcome is complete at the decision bar (the last known label); a window with no such earlier
  window in its split (the first ``horizon`` of each symbol's segment, or windows that are not
  consecutive bars, as in user-supplied loaders) gets the majority class;
- ``logistic_regression``: scikit-learn's LogisticRegression on the last bar's features of each
  window, scaled exactly as the network sees them.

A model is compared with the strongest baseline by the study's classification metric, the one
the search ranks by (``Baselines.best``; ties go to the simpler rule, the order above), with a
one-sided paired test on the same windows (``paired_test``): the exact McNemar test for accuracy,
a paired randomization test for balanced accuracy and MCC. ``Baselines.strongest`` (by accuracy)
is the bar of the leakage warning, which reads accuracy.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import binomtest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score, matthews_corrcoef

from .windows import Split

NAMES = ("majority", "persistence", "logistic_regression")
RULES = {
    "majority": "always the most frequent class of the training split",
    "persistence": "the last known label (the window `horizon` bars earlier, same symbol)",
    "logistic_regression": "logistic regression on the last bar's scaled features, fit on the training split",
}
ALPHA = 0.05
METRIC_LABELS = {"accuracy": "accuracy", "balanced_accuracy": "balanced accuracy", "mcc": "MCC"}
PERMUTATIONS = 9999  # the randomization test's resolution: p >= 1e-4


@dataclass(frozen=True)
class BaselineScore:
    name: str
    rule: str
    n: int
    accuracy: float
    balanced_accuracy: float
    mcc: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Baselines:
    """The baselines of one split: scores, per-window predictions, and which is strongest."""

    split: str
    scores: dict[str, BaselineScore]
    predictions: dict[str, np.ndarray]

    @property
    def strongest(self) -> BaselineScore:
        return self.best("accuracy")

    def best(self, metric: str) -> BaselineScore:
        """The strongest baseline by ``metric`` (accuracy, balanced_accuracy or mcc)."""
        return self.scores[best_name({n: s.to_dict() for n, s in self.scores.items()}, metric)]

    def to_dict(self) -> dict:
        return {
            "split": self.split, "n_windows": self.strongest.n, "strongest": self.strongest.name,
            "strongest_rule": "most correct windows (accuracy): the leakage warning's bar",
            "scores": {n: s.to_dict() for n, s in self.scores.items()},
        }


def last_bar_features(split: Split) -> np.ndarray:
    """(N, F): each window's decision-bar features, as scaled for the network."""
    return split.rows[split.ends].cpu().numpy().astype(np.float64)


def majority_class(train: Split) -> int:
    return int(np.bincount(train.y_class.cpu().numpy()).argmax())


def persistence_predictions(split: Split, horizon: int, fallback: int) -> np.ndarray:
    """Per window, the class of the same symbol's window ``horizon`` bars earlier, else ``fallback``."""
    y = split.y_class.cpu().numpy()
    ends = split.ends.cpu().numpy()
    pred = np.full(len(y), fallback, dtype=np.int64)
    if len(y) <= horizon:
        return pred
    i = np.arange(horizon, len(y))
    # Samples are laid out segment by segment, bar after bar: i - horizon is the same symbol's
    # window ``horizon`` bars earlier exactly when its decision bar is ``horizon`` rows back (a
    # segment starts with sequence_length - 1 >= 1 rows that end no window, so crossing into the
    # next symbol spans more rows than samples).
    ok = ends[i] - ends[i - horizon] == horizon
    pred[i[ok]] = y[i[ok] - horizon]
    return pred


def fit_logistic(train: Split, seed: int = 0) -> LogisticRegression | None:
    """None when the training labels hold one class only (nothing to fit)."""
    y = train.y_class.cpu().numpy()
    if len(np.unique(y)) < 2:
        return None
    return LogisticRegression(max_iter=1000, random_state=seed).fit(last_bar_features(train), y)


def score(name: str, y: np.ndarray, pred: np.ndarray) -> BaselineScore:
    return BaselineScore(
        name=name, rule=RULES[name], n=len(y), accuracy=float(np.mean(pred == y)) if len(y) else float("nan"),
        balanced_accuracy=float(balanced_accuracy_score(y, pred)), mcc=float(matthews_corrcoef(y, pred)),
    )


def compute_baselines(train: Split, target: Split, *, horizon: int, split_name: str, seed: int = 0) -> Baselines:
    """Every baseline fitted/decided on ``train`` and scored on ``target`` (validation or test)."""
    y = target.y_class.cpu().numpy()
    majority = majority_class(train)
    model = fit_logistic(train, seed)
    predictions = {
        "majority": np.full(len(y), majority, dtype=np.int64),
        "persistence": persistence_predictions(target, horizon, majority),
        "logistic_regression": (
            model.predict(last_bar_features(target)).astype(np.int64) if model is not None
            else np.full(len(y), majority, dtype=np.int64)
        ),
    }
    scores = {name: score(name, y, pred) for name, pred in predictions.items()}
    return Baselines(split_name, scores, predictions)


def best_name(scores: dict[str, dict], metric: str) -> str:
    """The name of the highest-scoring baseline by ``metric``; max() keeps the first of equals:
    NAMES order, simplest first."""
    return max((n for n in NAMES if n in scores), key=lambda n: scores[n][metric])


# --- the paired test ----------------------------------------------------------------------------
def paired_test(y: np.ndarray, model_pred: np.ndarray, baseline_pred: np.ndarray, metric: str, *, seed: int = 0) -> dict:
    """One-sided paired test on the same windows, H1: the model scores higher than the baseline by ``metric``.

    Accuracy: the exact McNemar test (below). Balanced accuracy and MCC: a paired randomization
    test (approximate randomization, Noreen 1989): under H0 the model's and the baseline's
    prediction for a window are exchangeable, so swapping them in each window with probability 1/2
    draws from the null distribution of the score difference; p = (1 + draws at least the observed
    difference) / (1 + PERMUTATIONS). For accuracy the same test is McNemar's sign test.
    """
    result = mcnemar_vs_baseline(y, model_pred, baseline_pred)
    model_score, baseline_score = metric_scores(y, np.stack([model_pred, baseline_pred]), metric)
    result.update(metric=metric, model_score=float(model_score), baseline_score=float(baseline_score))
    if metric == "accuracy":
        return result
    observed = model_score - baseline_score
    rng = np.random.default_rng(seed)
    at_least, done = 0, 0
    while done < PERMUTATIONS:
        size = min(1000, PERMUTATIONS - done)
        swap = rng.random((size, len(y))) < 0.5
        first = np.where(swap, baseline_pred, model_pred)
        second = np.where(swap, model_pred, baseline_pred)
        null = metric_scores(y, first, metric) - metric_scores(y, second, metric)
        at_least += int(np.sum(null >= observed - 1e-12))
        done += size
    result.update(test=f"paired randomization test ({PERMUTATIONS} draws), one-sided H1: model's "
                       f"{METRIC_LABELS[metric]} higher", p_value=(1 + at_least) / (1 + PERMUTATIONS))
    return result


def metric_scores(y: np.ndarray, preds: np.ndarray, metric: str) -> np.ndarray:
    """``metric`` of each row of ``preds`` (rows: prediction vectors for the windows ``y``), as scikit-learn
    computes it (balanced accuracy: mean recall over the classes present in ``y``; MCC: its multi-class form)."""
    preds = np.atleast_2d(preds)
    if metric == "accuracy":
        return np.mean(preds == y, axis=1)
    classes = np.unique(y)
    if metric == "balanced_accuracy":
        return np.mean([np.sum((preds == k) & (y == k), axis=1) / np.sum(y == k) for k in classes], axis=0)
    n = float(len(y))
    labels = np.union1d(classes, np.unique(preds))
    t = np.array([np.sum(y == k) for k in labels], dtype=float)
    p = np.stack([np.sum(preds == k, axis=1) for k in labels], axis=1).astype(float)
    correct = np.sum(preds == y, axis=1).astype(float)
    numerator = correct * n - p @ t
    denominator = np.sqrt((n * n - np.sum(p * p, axis=1)) * (n * n - np.sum(t * t)))
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)


def mcnemar_vs_baseline(y: np.ndarray, model_pred: np.ndarray, baseline_pred: np.ndarray) -> dict:
    """Exact McNemar test on correct/incorrect per window, model vs baseline.

    One-sided, H1: the model is right more often than the baseline. One-sided because the only
    claim ever made from it (an edge, the champion alias) is in the model's favour, and that
    direction is fixed before the test split is looked at. The exact one-sided p-value is the
    binomial tail P(B >= b), B ~ Binomial(b + c, 1/2), b = windows only the model gets right,
    c = windows only the baseline gets right; statsmodels' exact (two-sided) p is reported beside it.
    """
    model_ok, base_ok = model_pred == y, baseline_pred == y
    b = int(np.sum(model_ok & ~base_ok))
    c = int(np.sum(~model_ok & base_ok))
    table = [[int(np.sum(model_ok & base_ok)), b], [c, int(np.sum(~model_ok & ~base_ok))]]
    from statsmodels.stats.contingency_tables import mcnemar  # lazy, as holm_adjusted

    two_sided = float(mcnemar(table, exact=True).pvalue)
    one_sided = float(binomtest(b, b + c, 0.5, alternative="greater").pvalue) if b + c else 1.0
    return {
        "test": "exact McNemar (paired, per window), one-sided H1: model correct more often", "model_only_correct": b,
        "baseline_only_correct": c, "n": len(y), "model_accuracy": float(np.mean(model_ok)),
        "baseline_accuracy": float(np.mean(base_ok)), "p_value": one_sided, "p_value_two_sided": two_sided,
    }


def holm_adjusted(p_values: list[float], *, alpha: float = ALPHA) -> tuple[list[float], list[bool]]:
    """Holm-adjusted p-values and rejections over one family: the one rule for the analysis's top
    configurations, retrain's k models and the champion alias."""
    from statsmodels.stats.multitest import multipletests  # lazy: statsmodels loads in a second

    reject, adjusted, _, _ = multipletests(p_values, alpha=alpha, method="holm")
    return [float(a) for a in adjusted], [bool(r) for r in reject]


def holm(tests: list[dict], alpha: float = ALPHA) -> list[dict]:
    """Adds ``p_holm`` and ``significant`` to each test (Holm over the family), in place; returns them."""
    if tests:
        adjusted, reject = holm_adjusted([t["p_value"] for t in tests], alpha=alpha)
        for t, p, r in zip(tests, adjusted, reject):
            t.update(p_holm=p, alpha=alpha, significant=r)
    return tests
