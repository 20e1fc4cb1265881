"""Retraining the top-k, the once-only test evaluation, saved models, predict and the shuffled-label control."""

from __future__ import annotations

import json
import math
import os
import stat
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from statsmodels.stats.multitest import multipletests
from typer.testing import CliRunner

from cnn_lstm_hpo import MultiObjectiveOptimizer, create_optimization_config
from cnn_lstm_hpo.deployment.checkpoint import checkpoint_meta, load_checkpoint, save_checkpoint
from cnn_lstm_hpo.cli import app
from cnn_lstm_hpo.config import DataConfig
from cnn_lstm_hpo.data import load_frames, synthetic_frame
from cnn_lstm_hpo.errors import HPOError
from cnn_lstm_hpo.features import FEATURE_NAMES, compute_features
from cnn_lstm_hpo.model import HybridCNNLSTM, ModelConfig
from cnn_lstm_hpo.deployment.predict import predict_frames
from cnn_lstm_hpo.deployment import retrain as retrain_module
from cnn_lstm_hpo.deployment.retrain import METRICS, RESULTS_FILE, accuracy_test, apply_holm, baselines, judge_control, strongest_rule
from cnn_lstm_hpo.train import Trainer
from cnn_lstm_hpo.windows import Split, WindowedData, build_windows, prepare_windows

runner = CliRunner()

# Small, fast models with a learning rate that learns the synthetic momentum within a few epochs.
LEARNABLE_SPACE = {
    "learning_rate": {"type": "loguniform", "low": 3e-3, "high": 1e-2},
    "optimizer": {"type": "categorical", "choices": ["adam"]},
    "scheduler": {"type": "categorical", "choices": ["none"]},
    "cnn_num_filters": {"type": "categorical", "choices": [4, 8]},
    "cnn_filter_sizes": {"type": "categorical", "choices": [[2, 3], [3]]},
    "cnn_attention_heads": {"type": "categorical", "choices": [2]},
    "lstm_hidden_dim": {"type": "categorical", "choices": [8, 16]},
    "lstm_num_layers": {"type": "int", "low": 1, "high": 1},
    "batch_size": {"type": "categorical", "choices": [128]},
}


def tiny_study(
    save_dir: Path, *, source: str = "synthetic", n_trials: int = 2, start: str | None = None, name: str = "retrain_test"
):
    config = create_optimization_config(
        scenario="smoke",
        study_name=name,
        n_trials=n_trials,
        max_epochs_per_trial=2,
        save_dir=save_dir,
        search_space=LEARNABLE_SPACE,
        # A larger test split than the default: significance on ~800 windows, not ~400.
        data={"source": source, "sequence_length": 10, "start": start, "test_fraction": 0.3},
        pruning={"enabled": False},
    )
    with pytest.MonkeyPatch.context() as patch:  # the plots and report.html are not under test here
        patch.setattr("cnn_lstm_hpo.reporting.report.write_analysis_outputs", lambda *args, **kwargs: None)
        MultiObjectiveOptimizer(config, progress=False).optimize()
    return config


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def copy_study(src: Path, dst: Path) -> Path:
    """A fresh save dir holding only the study (storage + resolved config) of ``src``."""
    dst.mkdir(parents=True)
    for name in ("study.db", "resolved_config.yaml", "best_configurations.json"):
        shutil.copy(src / name, dst / name)
    return dst


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory):
    """A tiny study on learnable synthetic bars, retrained through the CLI (top 2, 2 seeds), registered.

    The bars mean-revert (the synthetic generator with momentum -0.5): a model that learns the
    reversal beats every naive rule. With the source's own momentum (+0.5) persistence is already
    the best rule there is, and no model can beat the null.
    """
    root = tmp_path_factory.mktemp("synthetic")
    bars = root / "bars"
    bars.mkdir()
    for symbol in ("SYN_A", "SYN_B"):
        synthetic_frame(symbol, momentum=-0.5).reset_index().to_csv(bars / f"{symbol}.csv", index=False)
    save = root / "run"
    config = tiny_study(save, source=str(bars))
    result = invoke("retrain", "--save-dir", save, "--top-k", 2, "--epochs", 4, "--seeds", 2)
    return config, save, result


def test_synthetic_retrain_beats_majority_with_spread_and_champion_follows_the_strongest_baseline(synthetic_run):
    config, save, result = synthetic_run
    assert result.exit_code == 0, result.output
    results = json.loads((save / RESULTS_FILE).read_text())
    best = json.loads((save / "best_configurations.json").read_text())
    # The top-k of best_configurations.json, in rank order, with their hyperparameters.
    assert [m["trial_number"] for m in results["models"]] == [b["trial_number"] for b in best[:2]]
    assert [m["hyperparameters"] for m in results["models"]] == [b["params"] for b in best[:2]]
    null = results["baselines"]["null"]
    for model in results["models"]:
        assert len(model["seeds"]) == 2 and model["selected_seed"] in {s["seed"] for s in model["seeds"]}
        for split in ("validation_results", "test_results"):
            assert set(model[split]) == set(METRICS)
        for name in METRICS:
            per_seed = [s["test"][name] for s in model["seeds"]]
            assert model["test_results"][name]["mean"] == pytest.approx(np.mean(per_seed))
            assert model["test_results"][name]["std"] == pytest.approx(np.std(per_seed, ddof=1))
        # Validation picks the saved seed, never test.
        chosen = min(model["seeds"], key=lambda s: s["best_val_loss"])
        assert model["selected_model"]["test"] == chosen["test"]
        assert model["n_parameters"] > 0 and model["model_size_mb"] > 0 and model["training_time_minutes"] > 0
        # Learnable data: clearly above the strongest naive rule, and significant.
        assert model["test_results"]["accuracy"]["mean"] > null["rate"] + 0.03
        sig = model["significance"]
        assert sig["significant"] and sig["p_holm"] < 0.05
        assert (sig["null_rule"], sig["null_rate"]) == (null["rule"], null["rate"])
        assert sig["ci95_low"] < sig["accuracy"] < sig["ci95_high"]
        # The exact one-sided binomial tail, computed independently of scipy.
        n, k, p = sig["n"], sig["correct"], sig["null_rate"]
        tail = sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1))
        assert sig["p_value"] == pytest.approx(tail, rel=1e-6)
    # Holm over the k models decides "significant", as in the analysis.
    _, holm, _, _ = multipletests([m["significance"]["p_value"] for m in results["models"]], method="holm")
    assert [m["significance"]["p_holm"] for m in results["models"]] == pytest.approx(holm, abs=0, rel=1e-12)
    # The champion follows the exact McNemar test against the strongest test baseline, not the binomial
    # test above: this source's AR(1) momentum is linear, so the logistic regression finds it too.
    assert results["signal"]["baselines"]["strongest"] == "logistic_regression"
    winners = [i for i, m in enumerate(results["models"]) if m["vs_strongest_baseline"]["significant"]]
    champion = results["registry"]["versions"][winners[0]]["version"] if winners else None
    assert results["registry"]["champion_version"] == champion
    assert result.stdout.splitlines()[0] == results["verdict"]
    assert results["verdict"].startswith("edge: " if winners else "no edge found: ")
    # What MLflow itself holds: one version per retrained model, champion on the rank-1 (significant) one.
    mlflow = pytest.importorskip("mlflow")
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{save / 'mlflow.db'}")
    versions = sorted(client.search_model_versions("name='retrain_test'"), key=lambda v: int(v.version))
    assert [int(v.version) for v in versions] == [1, 2]
    assert [v.tags["trial_number"] for v in versions] == [str(m["trial_number"]) for m in results["models"]]
    assert client.get_registered_model("retrain_test").aliases == ({"champion": champion} if champion else {})
    run = client.get_run(versions[0].run_id)
    assert run.data.params["learning_rate"] == str(results["models"][0]["hyperparameters"]["learning_rate"])
    assert run.data.metrics["significance.p_value"] == pytest.approx(results["models"][0]["significance"]["p_value"])
    assert "model/model.safetensors" in {a.path for a in client.list_artifacts(run.info.run_id, "model")}


def test_baselines_are_those_of_the_same_test_windows(synthetic_run):
    config, save, _ = synthetic_run
    results = json.loads((save / RESULTS_FILE).read_text())
    data, _ = prepare_windows(config.data, config.symbols)
    y = data.test.y_class.numpy()
    base = results["baselines"]
    assert base["test_windows"] == len(y)
    train_majority = int(np.bincount(data.train.y_class.numpy()).argmax())
    assert base["training_majority_class"] == train_majority
    assert base["majority_class_rate"] == pytest.approx(np.mean(y == train_majority))
    assert base["zero_return_mse"] == pytest.approx(np.mean(data.test.y_return.numpy().astype(float) ** 2))
    # Persistence, computed another way: the previous bar's close-to-close direction from the frames.
    frames = load_frames(config.data.source)
    previous_up = {
        (symbol, date): up
        for symbol, frame in frames.items()
        for date, up in (np.log(frame["close"]).diff() > 0).items()
    }
    guess = np.array([previous_up[(s, d)] for s, d in zip(data.test.symbols, data.test.dates)], dtype=int)
    assert base["persistence"]["accuracy"] == pytest.approx(np.mean(guess == y))
    assert base["persistence"]["accuracy"] < 0.4  # mean reversion: persistence is mostly wrong
    # The null: the strongest of always-down, always-up and persistence on these very windows.
    candidates = {"always down": np.mean(y == 0), "always up": np.mean(y == 1), "persistence": np.mean(guess == y)}
    assert base["null"]["candidates"] == pytest.approx(candidates)
    assert base["null"]["rate"] == pytest.approx(max(candidates.values()))
    assert base["null"]["rule"] == max(candidates, key=candidates.get)


def test_majority_class_is_decided_on_training_labels(small_data_config):
    # Training says "up" (1); test says "down" (0): the baseline must predict up and score 1/4.
    def split(labels: list[int]) -> Split:
        n = len(labels)
        return Split.from_windows(torch.zeros(n, 2, 3), torch.tensor(labels), torch.full((n,), 0.01))

    data = WindowedData(split([1, 1, 1, 0]), split([1, 0]), split([0, 0, 0, 1]), scaler=None, num_classes=2)
    config = create_optimization_config(scenario="smoke", data={"source": "synthetic"})
    base = baselines(config, data)
    assert base["training_majority_class"] == 1
    assert base["majority_class_rate"] == pytest.approx(0.25)
    assert base["persistence"] is None  # no symbols/dates: nothing to persist from
    # The null is the test split's own strongest rule, not training's majority.
    assert (base["null"]["rule"], base["null"]["rate"]) == ("always down", pytest.approx(0.75))


def test_the_null_is_the_most_accurate_candidate_first_listed_on_a_tie():
    y = np.array([0, 0, 1, 1, 1, 0])
    rules = {"always down": np.zeros(6), "always up": np.ones(6), "persistence": np.array([0, 0, 1, 1, 0, 0])}
    null = strongest_rule(rules, y)
    assert (null["rule"], null["rate"]) == ("persistence", pytest.approx(5 / 6))
    assert null["candidates"] == pytest.approx({"always down": 0.5, "always up": 0.5, "persistence": 5 / 6})
    assert strongest_rule({"always down": np.zeros(6), "always up": np.ones(6)}, y)["rule"] == "always down"


def test_binomial_test_is_one_sided_on_a_known_case():
    # 60 of 100 against 0.5: one-sided 0.0284 (the two-sided p would be 0.0569).
    exact = sum(math.comb(100, i) for i in range(60, 101)) / 2**100
    test = accuracy_test(60, 100, {"rule": "always up", "rate": 0.5})
    assert test["p_value"] == pytest.approx(exact, abs=0, rel=1e-9)
    assert test["p_value"] == pytest.approx(0.028444, abs=0, rel=1e-3)


def _issue_simulation(up_share: float, copy: float, runs: int = 400, n: int = 3000) -> float:
    """How often the control is called a leak: training says "up", test is ``up_share`` up, the control
    predicts up half the time at random except on a ``copy`` share of windows, where it knows the label."""
    rng = np.random.default_rng(26)
    config = create_optimization_config(scenario="smoke", data={"source": "synthetic"})
    train = Split.from_windows(torch.zeros(3, 1, 1), torch.tensor([1, 1, 0]), torch.zeros(3))
    leaks = 0
    for _ in range(runs):
        y = (rng.random(n) < up_share).astype(int)
        test = Split.from_windows(torch.zeros(n, 1, 1), torch.from_numpy(y), torch.zeros(n))
        null = baselines(config, WindowedData(train, train, test, scaler=None, num_classes=2))["null"]
        pred = np.where(rng.random(n) < copy, y, rng.random(n) < 0.5)
        leaks += judge_control(pred, y, null)["leak"]
    return leaks / runs


@pytest.mark.parametrize("up_share", [0.47, 0.5])
def test_a_control_that_ignores_its_inputs_is_rarely_called_a_leak(up_share):
    # The issue's case (training "up", test 47 % up): 72.9 % false alarms against training's majority.
    assert _issue_simulation(up_share, copy=0.0) <= 0.05


def test_a_control_clearly_above_the_null_is_reported_as_a_leak():
    # Knowing 20 % of the labels: accuracy about 0.60 against a null of about 0.53 (always down).
    assert _issue_simulation(0.47, copy=0.2) >= 0.95


def test_holm_over_the_k_models_decides_significance():
    # Raw p 0.03 and 0.04 are both below 0.05; Holm over two models makes both 0.06: neither may be champion.
    models = [{"significance": {"p_value": 0.03}}, {"significance": {"p_value": 0.04}}, {"model_path": None}]
    apply_holm(models)
    assert [m["significance"]["p_holm"] for m in models[:2]] == pytest.approx([0.06, 0.06], abs=0, rel=1e-12)
    assert [m["significance"]["significant"] for m in models[:2]] == [False, False]
    assert "significance" not in models[2]  # every seed diverged: not in the family


def test_shuffled_label_control_lands_at_baseline(synthetic_run):
    _, save, result = synthetic_run
    results = json.loads((save / RESULTS_FILE).read_text())
    control = results["shuffled_label_control"]
    assert results["pipeline_leaks"] is False and control["leak"] is False
    assert control["significance"]["p_value"] >= retrain_module.LEAK_ALPHA
    best = max(m["test_results"]["accuracy"]["mean"] for m in results["models"])
    assert control["test"]["accuracy"] < best
    assert "shuffled-label control: at baseline" in result.stdout


def test_unshuffled_control_is_reported_as_a_leak_and_exits_non_zero(synthetic_run, tmp_path, monkeypatch):
    # A control that is not really shuffled keeps the signal: exactly what a leaking pipeline looks like.
    monkeypatch.setattr(retrain_module, "_shuffled_within_symbol", lambda split, seed: split)
    save = copy_study(synthetic_run[1], tmp_path / "leaky")
    result = invoke("retrain", "--save-dir", save, "--top-k", 1, "--epochs", 4, "--seeds", 1, "--no-registry")
    assert result.exit_code == 3, result.output
    assert "the pipeline leaks" in result.stderr
    results = json.loads((save / RESULTS_FILE).read_text())
    assert results["pipeline_leaks"] is True and "LEAK" in results["shuffled_label_control"]["verdict"]


def test_shuffle_permutes_labels_within_each_symbol_only():
    n = 40
    symbols = ["A"] * 20 + ["B"] * 20
    y = torch.tensor([0] * 15 + [1] * 5 + [1] * 18 + [0] * 2)
    r = torch.arange(n, dtype=torch.float32)
    split = Split.from_windows(torch.zeros(n, 2, 3), y, r, symbols, [pd.Timestamp("2020-01-01")] * n)
    shuffled = retrain_module._shuffled_within_symbol(split, seed=0)
    order = shuffled.y_return.long()  # the returns were 0..n-1: they name where each label came from
    assert sorted(order[:20].tolist()) == list(range(20)) and sorted(order[20:].tolist()) == list(range(20, 40))
    assert not torch.equal(order, torch.arange(n))
    assert torch.equal(shuffled.y_class, y[order])  # class and return moved together


def test_saved_model_folder_is_complete_and_loads_without_pickle(synthetic_run):
    config, save, _ = synthetic_run
    folder = save / "retrained_model_1"
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoint.json", "metrics.json", "model.safetensors"]
    assert not [p for p in save.iterdir() if p.name.startswith(".retrained_model")]  # no temp folders left
    meta = json.loads((folder / "checkpoint.json").read_text())
    data, _ = prepare_windows(config.data, config.symbols)
    assert meta["feature_names"] == list(FEATURE_NAMES)
    assert (meta["sequence_length"], meta["horizon"], meta["num_classes"]) == (10, 1, 2)
    assert meta["scaler"]["mean"] == pytest.approx(data.scaler.mean_.tolist())  # fitted on training only
    assert meta["scaler"]["scale"] == pytest.approx(data.scaler.scale_.tolist())
    assert "fingerprint" in meta
    state = load_file(str(folder / "model.safetensors"))
    saved = load_checkpoint(folder)
    assert all(torch.equal(state[k], v) for k, v in saved.model.state_dict().items())
    metrics = json.loads((folder / "metrics.json").read_text())
    results = json.loads((save / RESULTS_FILE).read_text())
    assert metrics["significance"] == results["models"][0]["significance"]
    assert metrics["vs_strongest_baseline"] == results["models"][0]["vs_strongest_baseline"]  # McNemar, Holm


# A small model, trained briefly: the checkpoints of the predict tests.
SMALL_PARAMS = {
    "learning_rate": 3e-3, "weight_decay": 0.0, "optimizer": "adam", "scheduler": "none", "batch_size": 128,
    "cnn_num_filters": 4, "cnn_filter_sizes": [2, 3], "cnn_attention_heads": 2, "lstm_hidden_dim": 8,
    "lstm_num_layers": 1, "lstm_bidirectional": False, "dropout_rate": 0.1,
}


def _trained_checkpoint(tmp_path: Path) -> tuple[Path, HybridCNNLSTM, dict, Trainer, WindowedData]:
    cfg = DataConfig(source="synthetic", sequence_length=10)
    data, _ = prepare_windows(cfg, None)
    params = dict(SMALL_PARAMS)
    model_config = ModelConfig.from_params(params, n_features=data.n_features, num_classes=2)
    torch.manual_seed(0)
    model = HybridCNNLSTM(model_config)
    config = create_optimization_config(scenario="smoke")
    trainer = Trainer(model, data.train, data.val, params, config.training, device=torch.device("cpu"), seed=0)
    trainer.fit(1)
    meta = checkpoint_meta(
        model_config, hyperparameters=params, feature_names=data.feature_names, sequence_length=10, horizon=1,
        direction_threshold=0.0, scaler=data.scaler, return_scale=trainer.return_scale,
    )
    folder = save_checkpoint(tmp_path / "model", model, meta)
    return folder, model, meta, trainer, data


def test_reloaded_model_predicts_bit_identically_in_a_new_process(tmp_path):
    from cnn_lstm_hpo.deployment.checkpoint import SavedModel

    folder, model, meta, trainer, data = _trained_checkpoint(tmp_path)
    before = predict_frames(SavedModel(model, meta), load_frames("synthetic"))  # the model before saving
    out = tmp_path / "pred.csv"
    code = "import sys; from cnn_lstm_hpo.cli import main; sys.argv[0] = 'cnn-lstm-hpo'; main()"
    proc = subprocess.run(
        [sys.executable, "-c", code, "predict", "--model", str(folder), "--data", "synthetic", "--output", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    after = pd.read_csv(out, parse_dates=["date"])
    assert list(after["symbol"]) == list(before["symbol"]) and list(after["date"]) == list(before["date"])
    for column in ("prob_down", "prob_up", "predicted_return"):
        assert np.array_equal(after[column].to_numpy(), before[column].to_numpy()), column
    assert np.array_equal(after["predicted_class"].to_numpy(), before["predicted_class"].to_numpy())
    # predict's own windows and scaling reproduce the training pipeline's test windows.
    probs, rets = trainer.predict(data.test.x)
    keyed = before.set_index(["symbol", "date"])
    rows = keyed.loc[list(zip(data.test.symbols, data.test.dates))]
    np.testing.assert_allclose(rows["prob_up"].to_numpy(), probs[:, 1], atol=1e-6)
    np.testing.assert_allclose(rows["predicted_return"].to_numpy(), rets, atol=1e-7)


def test_interrupted_save_keeps_the_previous_model(tmp_path, monkeypatch):
    folder, model, meta, _, _ = _trained_checkpoint(tmp_path)
    original = {p.name: p.read_bytes() for p in folder.iterdir()}

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("cnn_lstm_hpo.deployment.checkpoint.write_json", interrupted)  # after the weights, before the JSON
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(folder, HybridCNNLSTM(ModelConfig(**{**meta["model_config"], "cnn_filter_sizes": (2, 3)})), meta)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == original
    assert [p.name for p in folder.parent.iterdir() if p.name.startswith(".")] == []


def test_saved_model_folder_follows_the_umask(tmp_path):
    folder, model, meta, _, _ = _trained_checkpoint(tmp_path)
    old = os.umask(0o022)
    try:
        save_checkpoint(tmp_path / "shared", model, meta)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "shared").stat().st_mode) == 0o755  # not mkdtemp's 0700
    assert stat.S_IMODE((tmp_path / "shared" / "checkpoint.json").stat().st_mode) == 0o644


def test_predict_on_bundled_data_and_on_a_csv_folder(synthetic_run, csv_folder, tmp_path):
    model = synthetic_run[1] / "retrained_model_1"
    out = tmp_path / "sample.csv"
    result = invoke("predict", "--model", model, "--data", "sample", "--symbols", "SP500", "--output", out)
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out, parse_dates=["date"])
    frame = load_frames("sample", ["SP500"])["SP500"]
    assert set(table["symbol"]) == {"SP500"}
    assert table["date"].is_monotonic_increasing and table["date"].iloc[-1] == frame.index[-1]  # up to the latest bar
    warm_up = int(np.argmax(np.isfinite(compute_features(frame).to_numpy()).all(axis=1)))
    assert len(table) == len(frame) - warm_up - 10 + 1  # every window the bars allow
    np.testing.assert_allclose(table["prob_down"] + table["prob_up"], 1.0, atol=1e-6)
    assert (table["predicted_class"] == (table["prob_up"] > table["prob_down"]).astype(int)).all()
    assert f"{len(table)} predictions" in result.stdout

    out = tmp_path / "folder.csv"
    result = invoke("predict", "--model", model, "--data", csv_folder, "--output", out)
    assert result.exit_code == 0, result.output
    assert set(pd.read_csv(out)["symbol"]) == {"SYN_A", "SYN_B"}


def test_predict_refuses_data_missing_a_needed_column(synthetic_run, synthetic_frames, write_csv_folder, tmp_path):
    folder = write_csv_folder(synthetic_frames)
    for path in folder.iterdir():
        pd.read_csv(path).drop(columns=["Volume"]).to_csv(path, index=False)
    out = tmp_path / "never.csv"
    result = invoke("predict", "--model", synthetic_run[1] / "retrained_model_1", "--data", folder, "--output", out)
    assert result.exit_code == 2
    assert "missing column 'volume'" in result.stderr and "Traceback" not in result.output
    assert not out.exists()


def test_predict_refuses_a_mismatched_feature_set(synthetic_run, tmp_path):
    model = tmp_path / "old_model"
    shutil.copytree(synthetic_run[1] / "retrained_model_1", model)
    meta = json.loads((model / "checkpoint.json").read_text())
    meta["feature_names"] = [*meta["feature_names"][:-1], "obv_ratio"]
    (model / "checkpoint.json").write_text(json.dumps(meta))
    result = invoke("predict", "--model", model, "--data", "synthetic", "--output", tmp_path / "p.csv")
    assert result.exit_code == 2
    assert "feature set mismatch" in result.stderr and "missing here: obv_ratio" in result.stderr


def test_retrain_on_bundled_real_data_sets_champion_only_if_significant(synthetic_run, tmp_path):
    save = tmp_path / "sample"
    tiny_study(save, source="sample", n_trials=2, start="2014-01-01", name="retrain_real")
    # Any tracking URI: here the synthetic run's store (a fresh SQLite store costs seconds of migrations).
    store = f"sqlite:///{synthetic_run[1] / 'mlflow.db'}"
    result = invoke("retrain", "--save-dir", save, "--top-k", 1, "--epochs", 2, "--seeds", 1, "--registry-uri", store)
    assert result.exit_code == 0, result.output
    results = json.loads((save / RESULTS_FILE).read_text())
    model = results["models"][0]
    assert model["significance"]["p_holm"] == model["significance"]["p_value"]  # a family of one
    vs = model["vs_strongest_baseline"]  # the champion's test (by balanced accuracy against the strongest baseline, Holm)
    assert vs["metric"] == "balanced_accuracy" and vs["test"].startswith("paired randomization test")
    significant = vs["p_holm"] < 0.05
    assert vs["significant"] == significant
    mlflow = pytest.importorskip("mlflow")
    client = mlflow.MlflowClient(tracking_uri=store)
    assert len(client.search_model_versions("name='retrain_real'")) == 1
    aliases = client.get_registered_model("retrain_real").aliases
    if significant:
        assert aliases == {"champion": results["registry"]["versions"][0]["version"]}
    else:
        assert aliases == {}
        assert (f"alias 'champion' not moved: no model's test balanced accuracy beats the strongest baseline "
                f"({vs['baseline']}, paired randomization) significantly") in result.stdout


def test_retrain_bad_input_is_one_line_exit_2(tmp_path, synthetic_run):
    result = invoke("retrain", "--save-dir", tmp_path / "nothing_here")
    assert result.exit_code == 2 and "no resolved_config.yaml" in result.stderr
    result = invoke("retrain", "--save-dir", synthetic_run[1], "--top-k", 0)
    assert result.exit_code == 2 and "top_k must be an integer >= 1, but got top_k=0" in result.stderr
    assert "Traceback" not in result.output
    result = invoke("retrain", "--save-dir", synthetic_run[1], "--epochs", 0)  # not "the default"
    assert result.exit_code == 2 and result.stderr == "error: retrain epochs must be an integer >= 1, but got epochs=0\n"


def test_optimize_retrain_top_k_retrains_at_the_end(tmp_path, monkeypatch):
    monkeypatch.setattr("cnn_lstm_hpo.reporting.report.write_analysis_outputs", lambda *args, **kwargs: None)
    calls = []
    monkeypatch.setattr("cnn_lstm_hpo.cli._retrain_and_report", lambda config, study, data, settings: calls.append((study, settings)))
    save = tmp_path / "run"
    result = invoke(
        "optimize", "--scenario", "smoke", "--data", "synthetic", "--n-trials", 1, "--max-epochs-per-trial", 1,
        "--save-dir", save, "--retrain-top-k", 2, "-q",
    )
    assert result.exit_code == 0, result.output
    (study, settings), = calls
    assert settings.top_k == 2 and len(study.trials) == 1
    result = invoke("optimize", "--scenario", "smoke", "--save-dir", tmp_path / "x", "--retrain-top-k", 0)
    assert result.exit_code == 2 and "top_k" in result.stderr and not (tmp_path / "x").exists()


def test_unreachable_registry_keeps_local_models_and_ends_with_one_line(synthetic_run, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # a closed port fails at once, not after backoff
    save = copy_study(synthetic_run[1], tmp_path / "offline")
    result = invoke("retrain", "--save-dir", save, "--top-k", 1, "--epochs", 1, "--seeds", 1,
                    "--registry-uri", "http://127.0.0.1:9", "-q")
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and "Traceback" not in result.output
    assert errors[0].startswith("error: model registry at http://127.0.0.1:9 unreachable (")
    assert errors[0].endswith(f"; local models kept in {save}")
    assert load_checkpoint(save / "retrained_model_1").meta["sequence_length"] == 10
    results = json.loads((save / RESULTS_FILE).read_text())
    assert results["registry"]["registered"] is False and results["models"][0]["model_path"]


def test_retrain_without_mlflow_works_and_says_how_to_enable(synthetic_run, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # `import mlflow` now raises ImportError
    save = copy_study(synthetic_run[1], tmp_path / "no_mlflow")
    result = invoke("retrain", "--save-dir", save, "--top-k", 1, "--epochs", 1, "--seeds", 1, "-q")
    assert result.exit_code == 0, result.output
    assert 'registry: not used (mlflow is not installed; install the registry extra to enable it: pip install -e ".[registry]")' in result.stdout
    assert (save / "retrained_model_1" / "model.safetensors").is_file() and not (save / "mlflow.db").exists()
    assert json.loads((save / RESULTS_FILE).read_text())["registry"]["registered"] is False


def test_control_never_sees_a_true_label_not_even_for_early_stopping(monkeypatch):
    n = 60
    symbols = ["A"] * 30 + ["B"] * 30

    def split(offset: int) -> Split:
        y = torch.tensor([(i * 7 + offset) % 3 % 2 for i in range(n)])
        return Split.from_windows(torch.zeros(n, 2, 3), y, torch.arange(n, dtype=torch.float32), symbols,
                                  [pd.Timestamp("2020-01-01")] * n)

    data = WindowedData(split(0), split(1), split(2), scaler=None, num_classes=2)
    seen = {}

    def fake_train(config, data, params, seed, epochs, device, label, train=None, val=None):
        seen.update(train=train, val=val)
        probs = np.tile([0.9, 0.1], (n, 1))  # always class 0
        return retrain_module.TrainedRun(seed, None, {"test": {}}, 0.0, probs)

    monkeypatch.setattr(retrain_module, "train_once", fake_train)
    config = create_optimization_config(scenario="smoke")
    control = retrain_module.shuffled_label_control(
        config, data, {}, epochs=1, device=torch.device("cpu"), null={"rule": "always down", "rate": 0.5}
    )
    for name, true in (("train", data.train), ("val", data.val)):
        given = seen[name]
        assert given is not None, name
        origin = given.y_return.long()  # returns were 0..n-1: where each label came from
        assert not torch.equal(origin, torch.arange(n)), name
        assert sorted(origin[:30].tolist()) == list(range(30)), name  # permuted within symbol A only
        assert torch.equal(given.y_class, true.y_class[origin]), name
    assert control["significance"]["n"] == n


def test_a_save_dir_without_its_study_is_refused_and_leaves_no_connection_open(tmp_path):
    config = create_optimization_config(scenario="smoke", save_dir=tmp_path, study_name="gone")
    (tmp_path / "resolved_config.yaml").write_text(config.to_yaml())
    storage = optuna.storages.RDBStorage(config.resolved_storage)
    optuna.create_study(storage=storage, study_name="another")
    storage.engine.dispose()
    database = (tmp_path / "study.db").resolve()

    def open_on_database() -> int:
        return sum(os.path.realpath(f"/proc/self/fd/{fd}") == str(database) for fd in os.listdir("/proc/self/fd"))

    assert open_on_database() == 0
    with pytest.raises(retrain_module.HPOError, match="no study named 'gone' in sqlite:///"):
        retrain_module.load_saved_study(tmp_path)
    assert open_on_database() == 0


# --- retrain rebuilds the study's data, or refuses ------------------------------------------------


def _study_on(folder: Path, save_dir: Path):
    """A study (no trials) as optimize leaves it on the bars of ``folder``: config file, storage, fingerprint."""
    config = create_optimization_config(
        scenario="smoke", save_dir=save_dir, study_name="data_check",
        data={"source": str(folder), "sequence_length": 10, "start": None},
    )
    fingerprint = MultiObjectiveOptimizer(config, progress=False).fingerprint
    save_dir.mkdir(parents=True)
    (save_dir / "resolved_config.yaml").write_text(config.to_yaml())
    study = optuna.create_study(storage=config.resolved_storage, study_name=config.resolved_study_name,
                                directions=["maximize", "minimize", "minimize"])
    study.set_user_attr("fingerprint", fingerprint)
    return config, study


def _rewrite(folder: Path, frames: dict[str, pd.DataFrame], write_csv_folder) -> None:
    """Replace the bars in ``folder`` as a re-export would."""
    written = write_csv_folder(frames, name=f"export_{len(list(folder.parent.iterdir()))}")
    for path in written.iterdir():
        path.replace(folder / path.name)


def test_retrain_refuses_back_filled_bars_even_with_the_flag(tmp_path, synthetic_frames, write_csv_folder):
    folder = write_csv_folder(synthetic_frames)
    config, study = _study_on(folder, tmp_path / "run")
    assert retrain_module.study_data(config, study).source_digest == study.user_attrs["fingerprint"]["data.digest"]
    earlier = synthetic_frame("SYN_A", n_bars=60).set_axis(pd.bdate_range(end="2009-12-31", periods=60, name="date"))
    _rewrite(folder, {"SYN_A": pd.concat([earlier, synthetic_frames["SYN_A"]])}, write_csv_folder)
    for allow in (False, True):
        with pytest.raises(HPOError) as error:
            retrain_module.study_data(config, study, allow_appended_bars=allow)
        assert str(error.value) == (
            "the data of study 'data_check' changed since it ran: data.digest; the test split would not be the one "
            "the search never saw: restore the data the study ran on"
        )


def test_retrain_accepts_appended_bars_only_with_the_flag_and_keeps_the_studys_splits(
    tmp_path, synthetic_frames, write_csv_folder
):
    folder = write_csv_folder(synthetic_frames)
    config, study = _study_on(folder, tmp_path / "run")
    before = retrain_module.study_data(config, study)
    longer = {s: synthetic_frame(s, n_bars=500) for s in synthetic_frames}  # the same dates, and 100 after
    _rewrite(folder, {s: pd.concat([f, longer[s].iloc[400:]]) for s, f in synthetic_frames.items()}, write_csv_folder)
    with pytest.raises(HPOError) as error:
        retrain_module.study_data(config, study)
    assert str(error.value) == (
        "the data of study 'data_check' changed since it ran: data.digest; the test split would not be the one the "
        "search never saw: only bars after the study's last ones were added: --allow-appended-bars tests on them too"
    )
    after = retrain_module.study_data(config, study, allow_appended_bars=True)
    assert after.cuts == before.cuts != build_windows(load_frames(str(folder)), config.data).cuts
    for split in ("train", "val"):
        assert getattr(after, split).dates == getattr(before, split).dates
        assert torch.equal(getattr(after, split).x, getattr(before, split).x)
    assert len(after.test) == len(before.test) + 2 * 100
    grown, first = retrain_module.tested_period(after), retrain_module.tested_period(before)
    assert grown["start"] == first["start"] and grown["windows"] == first["windows"] + 200
    assert pd.Timestamp(grown["end"]) == longer["SYN_A"].index[-1] > pd.Timestamp(first["end"])

    # A study from before the extent was recorded cannot tell appended from changed: refused.
    older = {k: v for k, v in study.user_attrs["fingerprint"].items() if k != "data.extent"}
    study.set_user_attr("fingerprint", older)
    with pytest.raises(HPOError, match="restore the data the study ran on"):
        retrain_module.study_data(config, study, allow_appended_bars=True)


def test_retrain_command_refuses_changed_data_in_one_line_and_takes_the_flag(
    tmp_path, synthetic_frames, write_csv_folder, monkeypatch
):
    folder = write_csv_folder(synthetic_frames)
    _study_on(folder, tmp_path / "run")
    longer = {s: synthetic_frame(s, n_bars=450) for s in synthetic_frames}
    _rewrite(folder, {s: pd.concat([f, longer[s].iloc[400:]]) for s, f in synthetic_frames.items()}, write_csv_folder)
    result = invoke("retrain", "--save-dir", tmp_path / "run")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr.startswith("error: the data of study 'data_check' changed since it ran: data.digest;")
    assert len(result.stderr.splitlines()) == 1
    calls = []
    monkeypatch.setattr("cnn_lstm_hpo.cli._retrain_and_report", lambda config, study, data, settings: calls.append(data))
    result = invoke("retrain", "--save-dir", tmp_path / "run", "--allow-appended-bars")
    assert result.exit_code == 0, result.output
    assert [d.boundaries["SYN_A"]["test_end"] for d in calls] == [longer["SYN_A"].index[-1]]


@pytest.mark.parametrize("target", ["direction", "volatility", "triple_barrier"])
def test_predictions_carry_their_split_and_the_realized_outcome(tmp_path, target):
    cfg = DataConfig(source="synthetic", sequence_length=10, target=target, horizon=5 if target == "volatility" else 1)
    frames = load_frames("synthetic")
    end = frames["SYN_A"].index[-200]  # the study saw bars up to here; later ones are new
    data, _ = prepare_windows(cfg.model_copy(update={"end": end.date()}), None)
    params = dict(SMALL_PARAMS)
    model_config = ModelConfig.from_params(params, n_features=data.n_features, num_classes=2)
    torch.manual_seed(0)
    meta = checkpoint_meta(
        model_config, hyperparameters=params, feature_names=data.feature_names, sequence_length=10, horizon=cfg.horizon,
        direction_threshold=0.0, scaler=data.scaler, return_scale=1.0, calendar=data.calendar(),
        origin={"data": cfg.model_dump(mode="json")},  # the target's labels, as retrain saves them
    )
    folder = save_checkpoint(tmp_path / "model", HybridCNNLSTM(model_config), meta)
    out = tmp_path / "all.csv"
    result = invoke("predict", "--model", folder, "--data", "synthetic", "--output", out)
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out, parse_dates=["date"]).set_index(["symbol", "date"])
    for name, split in (("train", data.train), ("validation", data.val), ("test", data.test)):
        rows = table.loc[list(zip(split.symbols, split.dates))]
        assert (rows["split"] == name).all(), name
        assert (rows["realized_class"] == split.y_class.numpy()).all(), name
        np.testing.assert_allclose(rows["realized_return"], split.y_return.numpy(), rtol=1e-6, atol=1e-7)
    after = table[table["split"] == "after"]
    assert len(after) == 2 * 199 and (after.index.get_level_values("date") > end).all()
    latest = table.groupby(level="symbol").tail(1)  # its outcome is not known yet: empty
    assert latest["realized_return"].isna().all() and latest["realized_class"].isna().all()

    new = tmp_path / "new.csv"
    assert invoke("predict", "--model", folder, "--data", "synthetic", "--output", new, "--new-only").exit_code == 0
    assert pd.read_csv(new, parse_dates=["date"]).set_index(["symbol", "date"]).index.equals(after.index)
    same = invoke("predict", "--model", folder, "--data", "synthetic", "--output", new, "--start", "after-training")
    assert same.exit_code == 0 and "398 predictions for 2 symbol(s)" in same.stdout and "(398 after)" in same.stdout
    bad = invoke("predict", "--model", folder, "--data", "synthetic", "--output", new, "--start", "soon")
    assert bad.exit_code == 2
    assert bad.stderr == "error: --start must be a date YYYY-MM-DD or after-training, but got 'soon'\n"
