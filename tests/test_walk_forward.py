"""Walk-forward evaluation: each fold's windows, scaler and embargo; the folds as the pruner's
fidelity; per-fold scores, the probability of backtest overfitting and retrain of such a study."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import optuna
import pandas as pd
import pytest
import torch
from optuna.trial import TrialState
from sklearn.preprocessing import StandardScaler
from typer.testing import CliRunner

from cnn_lstm_hpo import MultiObjectiveOptimizer, create_optimization_config
from cnn_lstm_hpo.reporting.analysis import analyze_study
from cnn_lstm_hpo.cli import app
from cnn_lstm_hpo.config import DataConfig, EvaluationConfig, TrainingConfig
from cnn_lstm_hpo.data import synthetic_frame
from cnn_lstm_hpo.errors import HPOError
from cnn_lstm_hpo.features import compute_features
from cnn_lstm_hpo.fingerprint import fingerprint_differences, study_fingerprint
from cnn_lstm_hpo.model import HybridCNNLSTM, ModelConfig
from cnn_lstm_hpo.monitor import TimeLimitExceeded, TrialMonitor
from cnn_lstm_hpo.pbo import probability_of_backtest_overfitting
from cnn_lstm_hpo.pruning import promotable
from cnn_lstm_hpo.deployment.retrain import RetrainSettings, retrain_top_k
from cnn_lstm_hpo.objectives import Evaluation
from cnn_lstm_hpo.train import EpochResult, Trainer, TrainResult
from cnn_lstm_hpo.walk_forward import WalkForward, fold_rung_promotes
from cnn_lstm_hpo.windows import WindowLoader, build_windows

CFG = DataConfig(sequence_length=10, horizon=2, embargo_bars=3)


def walk_forward(folds: int = 3, window: str = "expanding") -> EvaluationConfig:
    return EvaluationConfig(scheme="walk_forward", folds=folds, window=window)


def _bar_positions(frames, split):
    """Per sample: the positions in its symbol's frame of its first window bar, decision bar, last label bar."""
    out = []
    for symbol, date in zip(split.symbols, split.dates):
        index = frames[symbol].index
        p = index.get_loc(date)
        out.append((index, p - CFG.sequence_length + 1, p, p + CFG.horizon))
    return out


@pytest.mark.parametrize("window", ["expanding", "rolling"])
def test_every_fold_window_and_label_lies_inside_its_period(synthetic_frames, window):
    data = build_windows(synthetic_frames, CFG, walk_forward(3, window))
    folds = data.folds
    assert len(folds) == 3
    # Back to back, the last ending at the test cut; its validation is holdout's validation split.
    assert [f.cuts["val_start"] for f in folds[1:]] == [f.cuts["val_end"] for f in folds[:-1]]
    assert folds[-1].cuts["val_end"] == data.cuts["test_start"]
    assert folds[-1].val.dates == data.val.dates and torch.equal(folds[-1].val.y_class, data.val.y_class)
    union = pd.DatetimeIndex(sorted(set().union(*(f.index for f in synthetic_frames.values()))))
    spans = []
    for fold in folds:
        assert len(fold.test) == 0 and len(fold.train) > 0 and len(fold.val) > 0
        train_start = fold.cuts.get("train_start")
        assert (train_start is None) == (window == "expanding")
        for index, first, _, label in _bar_positions(synthetic_frames, fold.train):
            assert index[label] < fold.cuts["val_start"]
            assert train_start is None or index[first] >= train_start
        for index, first, _, label in _bar_positions(synthetic_frames, fold.val):
            # The embargo: the window starts at least embargo_bars of the symbol's bars after the cut.
            assert first >= index.searchsorted(fold.cuts["val_start"]) + CFG.embargo_bars
            assert index[label] < fold.cuts["val_end"] <= data.cuts["test_start"]  # never the test split
        first_date = train_start if train_start is not None else min(fold.train.dates)
        spans.append(int(((union >= first_date) & (union < fold.cuts["val_start"])).sum()))
    if window == "rolling":  # every fold trains on as many dates as the oldest
        assert len(set(spans)) == 1
    else:
        assert spans == sorted(spans) and spans[0] < spans[-1]


@pytest.mark.parametrize("window", ["expanding", "rolling"])
def test_each_fold_scaler_is_fitted_on_its_own_training_rows(synthetic_frames, window):
    data = build_windows(synthetic_frames, CFG, walk_forward(3, window))
    for fold in data.folds:
        rows = []
        for symbol, frame in synthetic_frames.items():
            features = compute_features(frame)
            start = max(data.boundaries[symbol]["train_start"], fold.cuts.get("train_start", pd.Timestamp.min))
            rows.append(features[(features.index >= start) & (features.index < fold.cuts["val_start"])].to_numpy())
        expected = StandardScaler().fit(np.concatenate(rows))
        np.testing.assert_allclose(fold.scaler.mean_, expected.mean_, rtol=1e-10)
        np.testing.assert_allclose(fold.scaler.scale_, expected.scale_, rtol=1e-10)
    assert not np.allclose(data.folds[0].scaler.mean_, data.folds[-1].scaler.mean_)


def _perturb_from(frame: pd.DataFrame, cut: pd.Timestamp, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    out = frame.copy()
    later = out.index >= cut
    price = rng.uniform(0.5, 2.0, int(later.sum()))
    for column in ("open", "high", "low", "close"):
        out.loc[later, column] = out.loc[later, column].to_numpy() * price
    return out


def _score_on(fold, params) -> float:
    torch.manual_seed(0)
    model = HybridCNNLSTM(ModelConfig.from_params(params, n_features=fold.n_features, num_classes=fold.num_classes))
    trainer = Trainer(model, fold.train, fold.val, params, TrainingConfig(), device=torch.device("cpu"), seed=0)
    return trainer.fit(1).best.val.composite


def test_later_bars_do_not_move_an_earlier_fold(synthetic_frames, small_params):
    base = build_windows(synthetic_frames, CFG, walk_forward(3))
    cut = base.folds[1].cuts["val_start"]  # fold 0's validation ends just before
    perturbed = {s: _perturb_from(f, cut, seed=i) for i, (s, f) in enumerate(synthetic_frames.items())}
    again = build_windows(perturbed, CFG, walk_forward(3))
    before, after = base.folds[0], again.folds[0]
    for split in ("train", "val"):
        a, b = getattr(before, split), getattr(after, split)
        assert torch.equal(a.x, b.x) and torch.equal(a.y_class, b.y_class) and torch.equal(a.y_return, b.y_return)
        assert a.dates == b.dates
    np.testing.assert_array_equal(before.scaler.mean_, after.scaler.mean_)
    np.testing.assert_array_equal(before.scaler.scale_, after.scaler.scale_)
    assert _score_on(before, small_params) == _score_on(after, small_params)
    # The perturbation is real: the later folds see it.
    assert not torch.equal(base.folds[1].val.x, again.folds[1].val.x)
    assert not torch.equal(base.folds[2].train.x, again.folds[2].train.x)


def test_too_many_folds_are_refused(synthetic_frames):
    with pytest.raises(HPOError) as error:
        build_windows(synthetic_frames, CFG, walk_forward(6))
    assert "walk-forward with 6 folds leaves the oldest fold" in str(error.value)
    assert "use fewer folds, a smaller data.val_fraction or a longer date range" in str(error.value)
    with pytest.raises(HPOError) as error:
        create_optimization_config(evaluation={"scheme": "walk_forward", "folds": 1})
    assert "evaluation.folds: Input should be greater than or equal to 2" in str(error.value)
    result = CliRunner().invoke(app, ["optimize", "--scenario", "smoke", "--folds", "1"])
    assert result.exit_code != 0 and "evaluation.folds: Input should be greater than or equal to 2" in result.stderr
    assert "Traceback" not in result.output


def test_the_fingerprint_names_the_scheme_and_older_studies_resume_as_holdout(synthetic_windows):
    def fingerprint(**evaluation):
        return study_fingerprint(create_optimization_config(evaluation=evaluation), synthetic_windows)

    holdout = fingerprint()
    assert not any(k.startswith("evaluation.") for k in holdout)  # as stored by studies before walk-forward
    assert fingerprint(folds=7, window="rolling") == holdout  # holdout never reads them
    # The derived limit (each fold's under walk-forward) does not move with the scheme or K.
    assert fingerprint_differences(holdout, fingerprint(scheme="walk_forward")) == [
        "evaluation.folds", "evaluation.scheme", "evaluation.window"
    ]
    assert fingerprint_differences(fingerprint(scheme="walk_forward"), fingerprint(scheme="walk_forward", folds=3)) == [
        "evaluation.folds"
    ]


class _TimedFolds:
    """An optimizer whose folds train for the given minutes (one epoch each), with nothing trained."""

    def __init__(self, config, fold_minutes):
        self.config, self.fold_minutes, self.trained = config, list(fold_minutes), 0
        fold = SimpleNamespace(train=[0] * 10, cuts={"val_start": pd.Timestamp("2020-01-01"), "val_end": pd.Timestamp("2020-06-30")})
        self.data = SimpleNamespace(folds=[fold] * len(self.fold_minutes))

    def build_model(self, params):
        return None

    def make_trainer(self, model, params, seed, fold):
        minutes = self.fold_minutes[self.trained]
        self.trained += 1
        val = Evaluation(loss=1.0, accuracy=0.5, classification_score=0.5, regression_score=0.5, composite=0.5, majority_rate=0.5)
        epoch = EpochResult(1, 1.0, val, wall_seconds=minutes * 60, cpu_seconds=minutes * 60, last=True, epochs_since_best=0)
        return SimpleNamespace(fit=lambda *args, **kwargs: TrainResult(epochs=[epoch], best_epoch=1))


def test_the_time_limit_is_each_folds_and_the_objective_their_sum():
    """Limit 2 min: folds of 1.5, 1.5 and 1.9 min fit (4.9 in all, the training_time objective); a
    later fold over 2 stops the trial there, whatever the folds before it."""
    config = create_optimization_config(max_training_time_minutes=2.0, objectives=["accuracy", "training_time"],
                                        pruning={"enabled": False}, evaluation={"scheme": "walk_forward", "folds": 3})
    trial = optuna.create_study(directions=["maximize", "minimize"]).ask()
    monitor = TrialMonitor(trial, config, 0.1, None)
    run = WalkForward(_TimedFolds(config, [1.5, 1.9, 1.5])).run(trial, {}, None, monitor, seed=0)
    assert run.minutes == pytest.approx(4.9) and run.limited_minutes == pytest.approx(1.9)
    monitor = TrialMonitor(trial, config, 0.1, None)
    with pytest.raises(TimeLimitExceeded):
        WalkForward(_TimedFolds(config, [1.0, 2.5, 0.5])).run(trial, {}, None, monitor, seed=0)
    assert monitor.stop_reason == "time limit in fold 2: 2.50 min > 2.0 min"
    assert monitor.projected == pytest.approx(2.5)  # the constraint the objective records: 0.5 over


TINY_SPACE = {
    "cnn_num_filters": {"type": "categorical", "choices": [4, 8]},
    "cnn_filter_sizes": {"type": "categorical", "choices": [[2, 3], [3]]},
    "cnn_attention_heads": {"type": "categorical", "choices": [2]},
    "lstm_hidden_dim": {"type": "categorical", "choices": [8, 16]},
    "lstm_num_layers": {"type": "int", "low": 1, "high": 2},
    "batch_size": {"type": "categorical", "choices": [128]},
}


@pytest.fixture(scope="module")
def wf_study(tmp_path_factory):
    """A small walk-forward study (3 folds), deterministic: no time objective, no time limit."""
    folder = tmp_path_factory.mktemp("bars")
    for symbol in ("SYN_A", "SYN_B"):
        table = synthetic_frame(symbol, n_bars=400).reset_index()
        table.columns = ["Date", "Open", "High", "Low", "Close", "Volume"]
        table.to_csv(folder / f"{symbol}.csv", index=False)
    config = create_optimization_config(
        scenario="smoke", n_trials=8, max_epochs_per_trial=2, save_dir=tmp_path_factory.mktemp("wf") / "run",
        search_space=TINY_SPACE, objectives=["accuracy", "model_size"], max_training_time_minutes=None,
        data={"source": str(folder), "sequence_length": 10, "start": None},
        pruning={"enabled": True, "score_tolerance": 0.0, "dominance_quantile": None},
        evaluation={"scheme": "walk_forward", "folds": 3},
    )
    optimizer = MultiObjectiveOptimizer(config, progress=False)
    return optimizer, optimizer.optimize()


def test_a_walk_forward_trial_scores_the_mean_over_its_folds_most_recent_first(wf_study):
    optimizer, study = wf_study
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert complete
    for t in complete:
        folds = t.user_attrs["fold_scores"]
        assert [f["fold"] for f in folds] == [2, 1, 0]
        assert [f["val_start"] for f in folds] == [f"{optimizer.data.folds[i].cuts['val_start']:%Y-%m-%d}" for i in (2, 1, 0)]
        scores = [f["score"] for f in folds]
        assert t.values[0] == pytest.approx(np.mean(scores))
        metrics = t.user_attrs["val_metrics"]
        assert metrics["composite"] == pytest.approx(np.mean(scores))
        assert metrics["fold_std"] == pytest.approx(np.std(scores, ddof=1))
        assert metrics["n_samples"] == sum(len(f.val) for f in optimizer.data.folds)
        assert t.user_attrs["training"]["epochs_trained"] == sum(f["epochs"] for f in folds)
        # Early stopping per fold: each fold trained within the budget, to its own best epoch.
        assert all(1 <= f["best_epoch"] <= f["epochs"] <= 2 for f in folds)


def _vector(folds, size):
    return np.array([-np.mean([f["score"] for f in folds]), size])


def test_a_trial_is_pruned_after_a_fold_by_the_rungs_promotion_rule(wf_study):
    _, study = wf_study
    trials = study.get_trials()
    pruned_after_fold = [t for t in trials if str(t.user_attrs.get("stop_reason", "")).startswith("pruned after fold")]
    assert pruned_after_fold, "the study should prune at a fold rung"
    for t in trials:
        folds = t.user_attrs.get("fold_scores", [])
        for done in range(1, min(len(folds), 2) + 1):  # fold rungs after folds 1 and 2 of 3
            peers = [p for p in trials if p.number < t.number and len(p.user_attrs.get("fold_scores", [])) >= done]
            me = _vector(folds[:done], t.user_attrs["model_size_mb"])
            others = np.array([_vector(p.user_attrs["fold_scores"][:done], p.user_attrs["model_size_mb"]) for p in peers])
            expected = promotable(me, others.reshape(len(peers), 2), 3, 0.0, candidate_number=t.number,
                                  other_numbers=np.array([p.number for p in peers]))
            stopped_here = t.user_attrs.get("stop_reason") == f"pruned after fold {done}"
            assert expected != stopped_here, (t.number, done)
            if stopped_here:
                assert len(folds) == done and t.state == TrialState.PRUNED


def _peer(study, number, scores, size, state=TrialState.COMPLETE):
    folds = [{"fold": 3 - i, "score": s, "minutes": 1.0} for i, s in enumerate(scores)]
    values = [float(np.mean(scores)), size] if state == TrialState.COMPLETE else None
    study.add_trial(optuna.trial.create_trial(
        state=state, values=values, user_attrs={"fold_scores": folds, "model_size_mb": size}
    ))


def test_the_fold_rung_compares_with_every_trial_that_has_done_as_many_folds():
    study = optuna.create_study(directions=["maximize", "minimize"])
    _peer(study, 0, [0.60, 0.40, 0.40, 0.40], 1.0)  # 0.5 after 2 folds, 0.6 after 1
    _peer(study, 1, [0.58], 1.0, TrialState.PRUNED)  # pruned after fold 1: a peer there only
    _peer(study, 2, [0.57, 0.57], 1.0, TrialState.PRUNED)
    _peer(study, 3, [0.90], 0.5, TrialState.RUNNING)  # still training fold 2: a peer at rung 1 only

    def promotes(records, size=1.0, eta=2):
        return fold_rung_promotes(study, 9, records, size, eta=eta, tolerance=0.0, use_size=True, use_time=False)

    me = [{"fold": 3, "score": 0.59, "minutes": 1.0}, {"fold": 2, "score": 0.53, "minutes": 1.0}]
    # After 1 fold: 5 trials, the top 2 continue; 0.90 (smaller too) and 0.60 dominate 0.59.
    assert not promotes(me[:1])
    # After 2 folds only trials 0 (mean 0.5) and 2 (0.57) compete: trial 2 dominates a mean of 0.56.
    assert not promotes(me, eta=3)
    assert promotes([me[0], {**me[1], "score": 0.56}], eta=3)  # mean 0.575 beats both
    assert promotes(me[:1], size=0.4)  # the smallest model is on the front: it continues
    assert not promotes(me[:1], size=0.4, eta=5)  # unless it is not among the top 1/eta by crowding and score


def test_the_analysis_reports_pbo_and_the_top_configurations_by_fold(wf_study):
    optimizer, study = wf_study
    save_dir = optimizer.config.save_dir
    analysis = json.loads((save_dir / "optimization_analysis.json").read_text())
    part = analysis["backtest_overfitting"]
    full = sorted((t for t in study.get_trials(states=(TrialState.COMPLETE,))), key=lambda t: t.number)
    matrix = np.array([[f["score"] for f in sorted(t.user_attrs["fold_scores"], key=lambda f: f["fold"])] for t in full]).T
    assert part["trials"] == len(full) and part["folds"] == 3
    if len(full) >= 2:
        expected = probability_of_backtest_overfitting(matrix)
        assert (part["pbo"], part["logits"], part["periods_used"]) == (expected.pbo, list(expected.logits), 2)
    top = part["top_configurations"][0]
    assert [f["fold"] for f in top["folds"]] == [0, 1, 2]
    assert (save_dir / "plots" / "fold_scores.png").stat().st_size > 0
    assert "Walk-forward over 3 folds: probability of backtest overfitting" in (save_dir / "optimization_summary.txt").read_text()
    assert "Walk-forward folds (3)" in (save_dir / "report.html").read_text()
    assert "pruned after fold" in " ".join(analysis["trials"]["stop_reasons"])


def test_a_holdout_study_has_no_fold_part(tmp_path, csv_folder):
    config = create_optimization_config(
        scenario="smoke", n_trials=1, max_epochs_per_trial=1, save_dir=tmp_path / "run", search_space=TINY_SPACE,
        data={"source": str(csv_folder), "sequence_length": 10, "start": None}, pruning={"enabled": False},
    )
    study = MultiObjectiveOptimizer(config, progress=False).optimize()
    assert "fold_scores" not in study.trials[0].user_attrs
    assert "backtest_overfitting" not in analyze_study(study)


def test_retrain_of_a_walk_forward_study_trains_before_the_test_split_and_names_the_scheme(wf_study):
    optimizer, study = wf_study
    report = retrain_top_k(optimizer.config, study, optimizer.data, RetrainSettings(top_k=1, epochs=1, seeds=1, register=False))
    assert report.results["evaluation"] == {"scheme": "walk_forward", "folds": 3, "window": "expanding"}
    assert any(line.startswith("chosen by walk-forward over 3 folds (expanding); retrained on the bars before the test split")
               for line in report.lines)
    # The holdout splits: the last fold's validation period is the validation tail it stops on.
    assert optimizer.data.val.dates == optimizer.data.folds[-1].val.dates
    assert max(optimizer.data.train.dates) < optimizer.data.cuts["val_start"] < optimizer.data.cuts["test_start"]


def test_the_data_command_shows_the_folds_of_a_walk_forward_scenario(tmp_path):
    scenario = tmp_path / "wf.yaml"
    scenario.write_text("wf:\n  evaluation: {scheme: walk_forward, folds: 4, window: rolling}\n")
    result = CliRunner().invoke(app, ["data", "--data", "synthetic", "--scenario", str(scenario)])
    assert result.exit_code == 0, result.output
    folds = [line for line in result.stdout.splitlines() if line.startswith("fold ")]
    assert [line.split(":")[0] for line in folds] == [f"fold {i} (rolling)" for i in range(4)]


def test_walk_forward_needs_the_bars_not_ready_made_loaders(synthetic_windows):
    config = create_optimization_config(evaluation={"scheme": "walk_forward"})
    loaders = tuple(WindowLoader(getattr(synthetic_windows, s)) for s in ("train", "val", "test"))
    with pytest.raises(HPOError) as error:
        MultiObjectiveOptimizer(config, data_loaders=loaders, progress=False)
    assert "evaluation.scheme walk_forward cuts folds from the bars of config.data: data_loaders need scheme holdout" in str(error.value)


def test_a_rolling_walk_forward_trial_records_its_predictions_on_the_inputs_its_model_was_scaled_for(
    tmp_path, monkeypatch, csv_folder
):
    """The paired test and the sharpe objective read the rank's validation predictions: under rolling
    windows the most recent fold's scaler is not the holdout's, so they must come from the fold's own
    validation windows (the same bars)."""
    import cnn_lstm_hpo.train as train_module

    config = create_optimization_config(
        scenario="smoke", n_trials=1, max_epochs_per_trial=1, save_dir=tmp_path / "run", search_space=TINY_SPACE,
        objectives=["accuracy", "model_size"], max_training_time_minutes=None,
        data={"source": str(csv_folder), "sequence_length": 10, "start": None}, pruning={"enabled": False},
        evaluation={"scheme": "walk_forward", "folds": 3, "window": "rolling"},
    )
    optimizer = MultiObjectiveOptimizer(config, progress=False)
    latest, holdout = optimizer.data.folds[-1].val, optimizer.data.val
    assert latest.dates == holdout.dates and not torch.equal(latest.rows, holdout.rows)  # same bars, other scaling
    seen, predict = [], train_module.Trainer.predict

    def recording(self, data):
        seen.append(data)
        return predict(self, data)

    monkeypatch.setattr(train_module.Trainer, "predict", recording)
    optimizer.optimize()
    assert torch.equal(seen[-1].rows, latest.rows)  # the last prediction: the trial's record, after its folds


def test_the_fold_spread_benchmark_matches_a_two_way_anova_residual_on_random_matrices_ties_included():
    import importlib.util

    import pandas as pd
    import statsmodels.formula.api as smf

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "fold_spread.py"
    spec = importlib.util.spec_from_file_location("fold_spread", path)
    fold_spread = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fold_spread)
    rng = np.random.default_rng(0)
    for case in range(20):
        trials, folds = int(rng.integers(2, 9)), int(rng.integers(2, 6))
        scores = rng.integers(0, 4, (trials, folds)) / 4 if case % 2 else rng.normal(0.55, 0.05, (trials, folds))
        frame = pd.DataFrame([(t, f, scores[t, f]) for t in range(trials) for f in range(folds)], columns=["t", "f", "y"])
        fit = smf.ols("y ~ C(t) + C(f)", data=frame).fit()
        assert fold_spread.interaction_std(scores) == pytest.approx(np.sqrt(fit.mse_resid), abs=1e-9)


@pytest.mark.parametrize(("overrides", "limit"), [
    ({}, 2.5),  # smoke: its budget / its trials = 2.5 min, each fold's limit as it is each holdout training's
    ({"max_training_time_minutes": 5.0}, 5.0),  # set by the user: theirs to size
    ({"evaluation": {"scheme": "holdout"}}, 2.5),
])
def test_a_walk_forward_study_derives_the_holdout_studys_limit_for_each_fold(tmp_path, overrides, limit):
    settings = {"evaluation": {"scheme": "walk_forward", "folds": 3}, **overrides}
    config = create_optimization_config(scenario="smoke", save_dir=tmp_path, **settings)
    assert config.max_training_time_minutes == pytest.approx(limit)
    assert config.time_limit_given == ("max_training_time_minutes" in overrides)
