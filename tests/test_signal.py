"""Baselines on the same windows, the paired McNemar test, trading statistics, PSR and DSR."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from cnn_lstm_hpo import baselines, trading
from cnn_lstm_hpo.windows import Split


def _split(x: np.ndarray, y: np.ndarray, symbols: list[str]) -> Split:
    """Windows of length 2 over consecutive bars of each symbol (as build_windows lays them out)."""
    rows, ends, offset = [], [], 0
    for symbol in dict.fromkeys(symbols):
        mine = x[np.asarray(symbols) == symbol]
        rows.append(np.vstack([mine[:1], mine]))  # one warm-up bar, then one bar per window
        ends.extend(range(offset + 1, offset + 1 + len(mine)))
        offset += len(mine) + 1
    return Split(torch.from_numpy(np.vstack(rows)).float(), torch.tensor(ends), 2,
                 torch.from_numpy(y).long(), torch.zeros(len(y)), symbols, [])


def test_persistence_is_the_label_horizon_windows_back_of_the_same_symbol():
    y = np.array([1, 0, 0, 1, 1, 0, 1, 0])
    split = _split(np.zeros((8, 1)), y, ["A"] * 4 + ["B"] * 4)
    assert baselines.persistence_predictions(split, 1, fallback=9).tolist() == [9, 1, 0, 0, 9, 1, 0, 1]
    assert baselines.persistence_predictions(split, 2, fallback=9).tolist() == [9, 9, 1, 0, 9, 9, 1, 0]


def test_logistic_baseline_uses_the_last_bar_and_finds_a_linear_rule():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 3))
    y = (x[:, 1] > 0).astype(np.int64)  # the label is the sign of feature 1 of the last bar
    train, val = _split(x[:300], y[:300], ["A"] * 300), _split(x[300:], y[300:], ["A"] * 100)
    result = baselines.compute_baselines(train, val, horizon=1, split_name="validation")
    assert result.scores["logistic_regression"].accuracy > 0.95
    assert result.strongest.name == "logistic_regression"
    assert result.scores["majority"].balanced_accuracy == pytest.approx(0.5)


def test_strongest_prefers_the_simpler_rule_on_a_tie():
    y = np.array([1, 1, 1, 0])
    split = _split(np.zeros((4, 1)), y, ["A"] * 4)
    result = baselines.compute_baselines(split, split, horizon=1, split_name="validation")
    # persistence [1, 1, 1, 1] ties majority at 0.75 (logistic: one class of features, also 0.75)
    assert result.scores["persistence"].accuracy == result.scores["majority"].accuracy == 0.75
    assert result.strongest.name == "majority"


def test_mcnemar_counts_discordant_windows_and_is_one_sided():
    y = np.ones(30, dtype=int)
    model = np.ones(30, dtype=int)
    base = np.ones(30, dtype=int)
    base[:9] = 0  # the baseline alone is wrong on 9 windows
    model[9:10] = 0  # the model alone is wrong on 1
    test = baselines.mcnemar_vs_baseline(y, model, base)
    assert (test["model_only_correct"], test["baseline_only_correct"]) == (9, 1)
    # P(B >= 9), B ~ Bin(10, 1/2) = 11 / 1024, half of the two-sided exact p-value
    assert test["p_value"] == pytest.approx(11 / 1024)
    assert test["p_value_two_sided"] == pytest.approx(22 / 1024)
    reverse = baselines.mcnemar_vs_baseline(y, base, model)
    assert reverse["p_value"] == pytest.approx(1 - 1 / 1024)  # the baseline's advantage is no edge


def test_holm_over_the_models():
    tests = baselines.holm([{"p_value": 0.01}, {"p_value": 0.04}, {"p_value": 0.03}])
    assert [t["p_holm"] for t in tests] == pytest.approx([0.03, 0.06, 0.06])
    assert [t["significant"] for t in tests] == [True, False, False]


# --- trading ------------------------------------------------------------------------------------
def test_positions_long_short_and_long_flat():
    assert trading.positions(np.array([0, 1, 2]), 3).tolist() == [-1, 0, 1]
    assert trading.positions(np.array([0, 1, 2]), 3, "long_flat").tolist() == [0, 0, 1]
    assert trading.positions(np.array([0, 1]), 2).tolist() == [-1, 1]


def test_book_returns_costs_per_symbol_then_mean_across_symbols_per_date():
    dates = list(pd.bdate_range("2020-01-01", periods=3)) * 2
    symbols = ["A"] * 3 + ["B"] * 3
    pos = np.array([1, 1, -1, -1, -1, -1], dtype=float)
    log_r = np.log(np.array([1.01, 1.02, 0.99, 1.01, 0.98, 1.00]))
    out = trading.book_returns(pos, log_r, symbols, dates, cost_bps=10)
    # A: +0.01 - 0.001 (open), +0.02, +0.01 - 0.002 (flip); B: -0.01 - 0.001, +0.02, 0
    expected = [(0.009 + -0.011) / 2, (0.02 + 0.02) / 2, (0.008 + 0.0) / 2]
    assert out.to_numpy() == pytest.approx(expected)


def test_return_statistics_by_hand():
    r = np.array([0.01, -0.02, 0.03, -0.01, 0.02])
    mean, sd = 0.006, math.sqrt(np.sum((r - 0.006) ** 2) / 4)
    assert trading.sharpe(r) == pytest.approx(mean / sd)
    assert trading.sortino(r) == pytest.approx(mean / math.sqrt((0.02**2 + 0.01**2) / 5))
    # equity 1, 1.01, 0.9898, 1.019494, 1.00929906, 1.0294850412: deepest fall 1.01 -> 0.9898
    assert trading.max_drawdown(r) == pytest.approx(0.9898 / 1.01 - 1)
    stats = trading.return_stats(r, 252.0)
    assert stats.sharpe == pytest.approx(mean / sd * math.sqrt(252))


def test_evaluate_trading_perfect_foresight_beats_buy_and_hold():
    rng = np.random.default_rng(1)
    log_r = rng.normal(0, 0.01, 300)
    dates = list(pd.bdate_range("2020-01-01", periods=300))
    result = trading.evaluate_trading((log_r > 0).astype(int), log_r, ["A"] * 300, dates, num_classes=2, cost_bps=0)
    assert result["strategy"]["hit_rate"] == 1.0
    assert result["strategy"]["sharpe"] > 10 > result["buy_and_hold"]["sharpe"]
    assert result["strategy"]["periods_per_year"] == pytest.approx(261, abs=2)  # business days


# --- PSR / DSR ----------------------------------------------------------------------------------
def test_deflated_sharpe_matches_the_papers_numerical_example():
    """Bailey and Lopez de Prado (2014), 'A numerical example': an annualized SR of 2.5 over 5 years
    of daily returns (T = 1250), N = 100 trials whose SRs have an annualized variance of 0.5,
    skewness -3, kurtosis 10 -> SR0 = 0.1132 per day (1.7889 annualized), DSR = 0.9004."""
    days = 250
    sr0 = trading.expected_max_sharpe(100, 0.5 / days)
    assert sr0 == pytest.approx(0.1132, abs=1e-4)
    result = trading.deflated_sharpe(2.5 / math.sqrt(days), 1250, -3.0, 10.0, n_trials=100, trial_sr_variance=0.5 / days)
    assert result["dsr"] == pytest.approx(0.9004, abs=1e-4)


def test_psr_normal_returns_and_benchmark():
    # Skew 0, kurtosis 3: z = SR sqrt(T - 1) / sqrt(1 + SR^2 / 2)
    sr, t = 0.1, 101
    assert trading.probabilistic_sharpe(sr, 0.0, t, 0.0, 3.0) == pytest.approx(
        float(__import__("scipy").stats.norm.cdf(sr * 10 / math.sqrt(1 + sr**2 / 2))))
    assert trading.probabilistic_sharpe(sr, sr, t, 0.0, 3.0) == pytest.approx(0.5)
    assert trading.expected_max_sharpe(1, 1.0) == 0.0


# --- the verdict ----------------------------------------------------------------------------------
def _verdict_study(model_right_extra: int):
    """A 2-objective study whose validation labels are 60 % up; the strongest baseline (majority,
    always up) is right on 120 of 200 windows; the rank-1 trial is right on ``model_right_extra`` more
    windows (discordant pairs all in its favour); a worse trial completes the front."""
    import optuna

    from cnn_lstm_hpo import verdict
    from cnn_lstm_hpo.baselines import score

    y = np.array([1] * 120 + [0] * 80)
    majority = np.ones(200, dtype=int)
    model = majority.copy()
    model[120:120 + model_right_extra] = 0  # right where the majority is wrong
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.set_user_attr("objectives", ["accuracy", "training_time"])
    scores = {name: score(name, y, majority).to_dict() for name in ("majority", "persistence", "logistic_regression")}
    study.set_user_attr(verdict.STUDY_ATTR, {
        "split": "validation", "n_windows": 200, "strongest": "majority", "strongest_rule": "accuracy", "scores": scores,
        "labels": verdict.encode(y), "predictions": {n: verdict.encode(majority) for n in scores}})
    for value, pred in ((0.9, model), (0.1, majority)):
        trial = study.ask()
        trial.suggest_float("x", 0, 1)
        trial.set_user_attr(verdict.PREDICTIONS_ATTR, verdict.encode(pred))
        study.tell(trial, [value, 1.0])
    return study


def test_study_verdict_says_edge_only_when_the_paired_test_supports_it():
    from cnn_lstm_hpo.reporting.analysis import analyze_study

    edge = analyze_study(_verdict_study(12), weights={"accuracy": 1.0, "training_time": 0.0})
    # 12 discordant windows, all the model's: p = 0.5 ** 12
    assert edge["signal"]["rank_1"]["vs_strongest_baseline"]["p_value"] == pytest.approx(0.5**12)
    assert edge["verdict"].startswith("edge: trial 0 beats majority on validation (chosen there")
    weak = analyze_study(_verdict_study(3), weights={"accuracy": 1.0, "training_time": 0.0})
    assert weak["verdict"].startswith("no edge found: trial 0 does not beat majority on validation")
    assert "p=0.125 >= 0.05" in weak["verdict"]


def test_the_verdict_judges_by_the_metric_the_study_ranks_by():
    """60 % of the windows are up; the model is right on 50 % of the ups and 70 % of the downs: accuracy
    0.58, below the majority's 0.60, but balanced accuracy 0.60 against the majority's 0.50."""
    import optuna

    from cnn_lstm_hpo import verdict
    from cnn_lstm_hpo.baselines import score
    from cnn_lstm_hpo.reporting.analysis import analyze_study

    y = np.array([1] * 600 + [0] * 400)
    majority = np.ones(1000, dtype=int)
    model = np.array([1] * 300 + [0] * 300 + [0] * 280 + [1] * 120)
    verdicts = {}
    for metric in ("accuracy", "balanced_accuracy"):
        study = optuna.create_study(directions=["maximize"])
        study.set_user_attr("config", {"training": {"classification_metric": metric}})
        scores = {name: score(name, y, majority).to_dict() for name in ("majority", "persistence", "logistic_regression")}
        study.set_user_attr(verdict.STUDY_ATTR, {"n_windows": 1000, "strongest": "majority", "scores": scores,
                                                 "labels": verdict.encode(y),
                                                 "predictions": {n: verdict.encode(majority) for n in scores}})
        trial = study.ask()
        trial.set_user_attr(verdict.PREDICTIONS_ATTR, verdict.encode(model))
        study.tell(trial, [0.6])
        verdicts[metric] = analyze_study(study)["verdict"]
    assert verdicts["accuracy"].startswith("no edge found: trial 0 does not beat majority")
    assert "(accuracy 0.5800 vs 0.6000, one-sided McNemar p=" in verdicts["accuracy"]
    assert verdicts["balanced_accuracy"].startswith("edge: trial 0 beats majority on validation")
    assert "(balanced accuracy 0.6000 vs 0.5000, one-sided paired randomization p=0.000" in verdicts["balanced_accuracy"]


def test_the_verdict_opens_the_summary_and_the_report(tmp_path):
    from cnn_lstm_hpo.reporting.report import write_analysis_outputs

    study = _verdict_study(12)
    assert write_analysis_outputs(study, tmp_path) == []
    first = (tmp_path / "optimization_summary.txt").read_text().splitlines()[0]
    assert first.startswith("edge: trial 0 beats majority")
    page = (tmp_path / "report.html").read_text()
    assert page.index('id="verdict"') < page.index("<section")
    assert "edge: trial 0 beats majority" in page


def test_retrain_verdict_needs_holm_and_no_leak():
    from cnn_lstm_hpo.verdict import retrain_verdict

    def entry(k, p_holm):
        return {"k": k, "trial_number": k, "vs_strongest_baseline": {
            "p_value": p_holm / 2, "p_holm": p_holm, "significant": p_holm < 0.05, "metric": "balanced_accuracy",
            "model_score": 0.6, "baseline_score": 0.55}}

    assert retrain_verdict([entry(1, 0.2), entry(2, 0.01)], "logistic_regression", leak=False) == (
        "edge: model 2 (trial 2) beats logistic_regression on test (balanced accuracy 0.6000 vs 0.5500, "
        "one-sided paired randomization p=0.005, Holm p=0.01 over 2 model(s))")
    assert retrain_verdict([entry(1, 0.2)], "majority", leak=False).startswith(
        "no edge found: no retrained model beats majority on test")
    assert retrain_verdict([entry(1, 0.01)], "majority", leak=True).startswith(
        "no edge found: the shuffled-label control")


# --- the planted edge -----------------------------------------------------------------------------
def test_planted_edge_is_the_bayes_accuracy_and_invisible_to_linear_and_persistence_rules():
    from cnn_lstm_hpo.synthetic import planted_returns

    r = planted_returns(100_000, 0.6, np.random.default_rng(0))
    m = np.abs(r)
    order = np.argsort(m)
    cut = m[order][np.searchsorted(np.cumsum(m[order]), m.sum() / 2)]
    bayes = np.sign(r[:-1]) * np.where(m[:-1] > cut, 1, -1)
    assert np.mean(bayes == np.sign(r[1:])) == pytest.approx(0.6, abs=0.006)
    assert abs(np.corrcoef(r[:-1], np.sign(r[1:]))[0, 1]) < 0.01  # nothing for a linear rule on today's return
    assert np.mean(np.sign(r[1:]) == 1) == pytest.approx(0.5, abs=0.01)  # no drift: majority at 0.5
    no_edge = planted_returns(100_000, 0.5, np.random.default_rng(0))
    assert np.mean(np.sign(no_edge[:-1]) * np.where(np.abs(no_edge[:-1]) > cut, 1, -1) == np.sign(no_edge[1:])) == \
        pytest.approx(0.5, abs=0.006)
    # volatility clusters: |r| is autocorrelated
    assert np.corrcoef(m[:-1], m[1:])[0, 1] > 0.05


def test_synthetic_edge_source_loads_and_refuses_bad_parameters():
    from cnn_lstm_hpo.data import load_frames
    from cnn_lstm_hpo.errors import HPOError

    frames = load_frames("synthetic:edge=0.55,seed=1,bars=300")
    assert list(frames) == ["EDGE_A", "EDGE_B", "EDGE_C", "EDGE_D"] and len(frames["EDGE_A"]) == 300
    with pytest.raises(HPOError, match="edge must be in \\[0.5, 1\\), but got 1.2"):
        load_frames("synthetic:edge=1.2")
    with pytest.raises(HPOError, match="unknown parameter 'drift'"):
        load_frames("synthetic:drift=1")


def test_strongest_by_accuracy_is_the_leakage_bar_and_best_follows_the_metric():
    y = np.array([1, 1, 1, 1, 1, 1, 0, 0, 1, 1])
    split = _split(np.zeros((10, 1)), y, ["A"] * 10)
    result = baselines.compute_baselines(split, split, horizon=1, split_name="validation")
    # persistence: same accuracy (0.8) as majority, higher balanced accuracy (0.6875): majority stays the bar
    assert result.scores["persistence"].balanced_accuracy == pytest.approx(0.6875)
    assert result.scores["persistence"].accuracy == result.scores["majority"].accuracy == 0.8
    assert result.strongest.name == "majority"
    assert result.best("accuracy").name == "majority" and result.best("balanced_accuracy").name == "persistence"


def test_metric_scores_match_scikit_learn_on_random_predictions_ties_and_constant_ones():
    from sklearn.metrics import balanced_accuracy_score, matthews_corrcoef

    rng = np.random.default_rng(7)
    for _ in range(200):
        k, n = int(rng.integers(2, 4)), int(rng.integers(4, 50))
        y = rng.integers(0, k, n)
        preds = rng.integers(0, k, (3, n))
        preds[0] = preds[0][0]  # a constant predictor: MCC's zero denominator
        preds[1] = y  # perfect
        for row, pred in enumerate(preds):
            assert baselines.metric_scores(y, preds, "balanced_accuracy")[row] == pytest.approx(balanced_accuracy_score(y, pred))
            assert baselines.metric_scores(y, preds, "mcc")[row] == pytest.approx(matthews_corrcoef(y, pred), abs=1e-12)
            assert baselines.metric_scores(y, preds, "accuracy")[row] == pytest.approx(np.mean(pred == y))


def test_the_paired_randomization_test_holds_its_level_and_finds_a_real_difference(monkeypatch):
    monkeypatch.setattr(baselines, "PERMUTATIONS", 499)
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 300)
    # H0: two models equally good (each right 60 % of the time, independently): rejections near 5 %
    p = [baselines.paired_test(y, np.where(rng.random(300) < 0.6, y, 1 - y), np.where(rng.random(300) < 0.6, y, 1 - y),
                               "balanced_accuracy", seed=s)["p_value"] for s in range(200)]
    assert 0.01 <= np.mean(np.array(p) < 0.05) <= 0.10
    better = baselines.paired_test(y, np.where(rng.random(300) < 0.75, y, 1 - y), np.zeros(300, dtype=int), "mcc")
    assert better["p_value"] == pytest.approx(1 / 500) and better["test"].startswith("paired randomization test (499 draws)")
    # accuracy: the exact McNemar test, whatever the draws
    exact = baselines.paired_test(y, y, np.zeros(300, dtype=int), "accuracy")
    assert exact["p_value"] == baselines.mcnemar_vs_baseline(y, y, np.zeros(300, dtype=int))["p_value"]
