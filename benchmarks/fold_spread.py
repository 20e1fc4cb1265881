"""How differently configurations score from fold to fold: the trial x fold interaction of walk-forward studies.

For each study's trials that completed every fold, the composite scores form a trials x folds
matrix; the residual after removing each trial's mean and each fold's mean (two-way ANOVA without
replication) is what moves one configuration's rank from fold to fold. Its standard deviation is
the ``--fold-spread`` of ``benchmarks/replay.py --goals walk-forward``, which replays older folds
as the recorded curve moved by such an offset.

    python benchmarks/fold_spread.py sqlite:///RUN/seed0_walk_forward/study.db [...]
"""

from __future__ import annotations

import sys

import numpy as np
import optuna

from cnn_lstm_hpo.walk_forward import FOLD_SCORES


def score_matrix(study: optuna.Study) -> np.ndarray:
    rows = [sorted(t.user_attrs.get(FOLD_SCORES, ()), key=lambda r: r["fold"]) for t in study.get_trials(deepcopy=False)]
    folds = max((len(r) for r in rows), default=0)
    return np.array([[r["score"] for r in row] for row in rows if folds > 1 and len(row) == folds]).reshape(-1, folds)


def interaction_std(scores: np.ndarray) -> float:
    residual = scores - scores.mean(axis=1, keepdims=True) - scores.mean(axis=0, keepdims=True) + scores.mean()
    return float(np.sqrt((residual**2).sum() / ((scores.shape[0] - 1) * (scores.shape[1] - 1))))


def main() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spreads = []
    for url in sys.argv[1:]:
        for name in optuna.get_all_study_names(url):
            scores = score_matrix(optuna.load_study(study_name=name, storage=url))
            if scores.shape[0] < 2:
                print(f"{url} {name}: {scores.shape[0]} trial(s) with every fold, too few")
                continue
            spreads.append(interaction_std(scores))
            print(f"{url} {name}: {scores.shape[0]} trials x {scores.shape[1]} folds; fold means "
                  f"{', '.join(f'{m:.3f}' for m in scores.mean(axis=0))}; between trials {scores.mean(axis=1).std(ddof=1):.4f}; "
                  f"trial x fold interaction {spreads[-1]:.4f}")
    if spreads:
        print(f"mean trial x fold interaction over {len(spreads)} studies: {np.mean(spreads):.4f}")


if __name__ == "__main__":
    main()
