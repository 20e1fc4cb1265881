"""Probability of backtest overfitting by combinatorially symmetric cross-validation (CSCV).

Bailey, Borwein, Lopez de Prado and Zhu, "The Probability of Backtest Overfitting" (2017): the
performance matrix (periods x configurations) is cut into S groups of periods; for every way of
choosing S/2 groups as "in sample", the configuration best in sample is ranked out of sample (the
other S/2 groups). PBO is the share of those choices in which it ranks at or below the median out of
sample (logit of its relative rank <= 0). Here the periods are the walk-forward folds, one group
each: a configuration chosen for its score on some periods that is no better than the median on
the others was chosen by luck.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata


@dataclass(frozen=True)
class BacktestOverfitting:
    pbo: float  # share of the splits whose in-sample best ranks at or below the out-of-sample median
    logits: tuple[float, ...]  # one per split: log(w / (1 - w)), w its relative out-of-sample rank
    n_splits: int
    n_configurations: int
    periods_used: int  # an odd number of periods leaves the oldest out (the halves must be equal)

    def to_dict(self) -> dict[str, float | int | list[float]]:
        return {
            "pbo": self.pbo, "logits": list(self.logits), "n_splits": self.n_splits,
            "n_configurations": self.n_configurations, "periods_used": self.periods_used,
        }


def probability_of_backtest_overfitting(scores: np.ndarray) -> BacktestOverfitting:
    """``scores`` (periods, configurations), higher is better, periods oldest first.

    The in-sample best is the configuration with the highest mean over the in-sample periods (the
    first such on ties); its out-of-sample rank among all configurations is the average rank of
    ties (1 = worst), and w = rank / (N + 1) as in the paper.
    """
    scores = np.asarray(scores, dtype=float)
    if scores.ndim != 2 or scores.shape[0] < 2 or scores.shape[1] < 2:
        raise ValueError(f"need at least 2 periods and 2 configurations, got shape {scores.shape}")
    if not np.isfinite(scores).all():
        raise ValueError("scores must be finite")
    periods = scores.shape[0] - scores.shape[0] % 2
    scores = scores[-periods:]  # the most recent periods, an even number of them
    n = scores.shape[1]
    logits = []
    for inside in itertools.combinations(range(periods), periods // 2):
        outside = [p for p in range(periods) if p not in inside]
        best = int(np.argmax(scores[list(inside)].mean(axis=0)))
        rank = rankdata(scores[outside].mean(axis=0), method="average")[best]
        w = rank / (n + 1)
        logits.append(float(np.log(w / (1 - w))))
    return BacktestOverfitting(
        pbo=float(np.mean([lam <= 0 for lam in logits])), logits=tuple(logits), n_splits=len(logits),
        n_configurations=n, periods_used=periods,
    )
