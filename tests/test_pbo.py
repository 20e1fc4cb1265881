"""PBO by CSCV against a direct transcription of the paper's steps, on random matrices with ties."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd
import pytest

from cnn_lstm_hpo.pbo import probability_of_backtest_overfitting


def _paper_pbo(scores: np.ndarray) -> tuple[float, list[float]]:
    """Bailey et al. (2017), section 3, step by step: pandas for the means and the ranks."""
    frame = pd.DataFrame(scores)
    if len(frame) % 2:
        frame = frame.iloc[1:]
    groups = list(frame.index)
    logits = []
    for chosen in combinations(groups, len(groups) // 2):
        train = frame.loc[list(chosen)].mean()
        test = frame.drop(index=list(chosen)).mean()
        n_star = train.index[train.to_numpy() == train.max()][0]
        omega = test.rank(method="average")[n_star] / (len(test) + 1)
        logits.append(np.log(omega / (1 - omega)))
    return float(np.mean(np.array(logits) <= 0)), logits


@pytest.mark.parametrize("seed", range(40))
def test_pbo_matches_the_papers_steps_on_random_scores_with_ties(seed):
    rng = np.random.default_rng(seed)
    periods, configs = int(rng.integers(2, 8)), int(rng.integers(2, 12))
    # Coarse values: many ties, in sample and out of sample.
    scores = rng.integers(0, 4, size=(periods, configs)).astype(float) / 4
    got = probability_of_backtest_overfitting(scores)
    expected, logits = _paper_pbo(scores)
    assert got.pbo == pytest.approx(expected, abs=1e-12)
    assert got.logits == pytest.approx(logits, abs=1e-12)
    assert got.periods_used == periods - periods % 2 and got.n_splits == len(logits)


def test_a_configuration_best_in_every_period_is_never_overfit_and_noise_is_a_coin_flip():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(6, 30))
    scores[:, 7] += 10  # best everywhere
    assert probability_of_backtest_overfitting(scores).pbo == 0.0
    noise = [probability_of_backtest_overfitting(rng.normal(size=(6, 30))).pbo for _ in range(200)]
    assert 0.4 < np.mean(noise) < 0.6


def test_pbo_refuses_too_small_or_non_finite_matrices():
    with pytest.raises(ValueError, match=r"need at least 2 periods and 2 configurations, got shape \(1, 3\)"):
        probability_of_backtest_overfitting(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="scores must be finite"):
        probability_of_backtest_overfitting(np.array([[0.5, np.nan], [0.5, 0.5]]))
