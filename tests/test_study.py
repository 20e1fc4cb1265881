"""Real small studies: objectives, storage, resume, constraints, failures, the guide's Python API."""

from __future__ import annotations

import json
import math

import optuna
import pytest
import torch
from optuna.trial import TrialState
from torch.utils.data import DataLoader, TensorDataset

from cnn_lstm_hpo import HPOError, IntegratedCNNLSTMTrainer, MultiObjectiveOptimizer, create_optimization_config
from cnn_lstm_hpo.train import Trainer

TINY_SPACE = {
    "cnn_num_filters": {"type": "categorical", "choices": [4, 8]},
    "cnn_filter_sizes": {"type": "categorical", "choices": [[2, 3], [3]]},
    "cnn_attention_heads": {"type": "categorical", "choices": [2, 3]},
    "lstm_hidden_dim": {"type": "categorical", "choices": [8, 16]},
    "lstm_num_layers": {"type": "int", "low": 1, "high": 2},
    "batch_size": {"type": "categorical", "choices": [128]},
}


def tiny_config(tmp_path, **overrides):
    base = dict(
        scenario="smoke",
        n_trials=3,
        max_epochs_per_trial=2,
        save_dir=tmp_path / "run",
        search_space=TINY_SPACE,
        data={"source": "synthetic", "sequence_length": 10},
        pruning={"enabled": False},  # these tests pin the study itself; test_pruning.py covers pruning
    )
    return create_optimization_config(**{**base, **overrides})


def run(config):
    return MultiObjectiveOptimizer(config, progress=False).optimize()


def test_study_writes_guide_outputs_and_ranks_feasible_pareto(tmp_path):
    config = tiny_config(tmp_path)
    study = run(config)
    save = config.save_dir
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE", "MINIMIZE"]
    trials = study.get_trials()
    assert len(trials) == 3 and all(t.state == TrialState.COMPLETE for t in trials)
    for t in trials:
        record = json.loads((save / f"trial_{t.number}_result.json").read_text())
        assert record["state"] == "COMPLETE"
        assert record["values"] == pytest.approx(t.values)
        assert set(record["objectives"]) == {"accuracy", "training_time", "model_size"}
        assert isinstance(record["params"]["cnn_filter_sizes"], list)
        assert 0.0 <= record["objectives"]["accuracy"] <= 1.0
        assert record["objectives"]["model_size"] == pytest.approx(record["model_size_mb"])
    best = json.loads((save / "best_configurations.json").read_text())
    front = {t.number for t in study.best_trials}
    assert {b["trial_number"] for b in best} == front
    assert sorted(b["rank"] for b in best) == list(range(1, len(best) + 1))
    assert all(set(b) == {"trial_number", "params", "values", "objectives", "rank"} for b in best)
    summary = (save / "optimization_summary.txt").read_text()
    assert "3 complete" in summary and "majority-class rate" in summary
    assert "n_trials: 3" in (save / "resolved_config.yaml").read_text()


def test_objective_subset_and_order_follow_config(tmp_path):
    config = tiny_config(tmp_path, n_trials=2, objectives=["model_size", "accuracy"])
    study = run(config)
    assert [d.name for d in study.directions] == ["MINIMIZE", "MAXIMIZE"]
    for t in study.trials:
        assert t.values[0] == pytest.approx(t.user_attrs["model_size_mb"])
        assert 0.0 <= t.values[1] <= 1.0


def test_single_objective_study(tmp_path):
    study = run(tiny_config(tmp_path, n_trials=2, objectives=["accuracy"]))
    assert study.direction.name == "MAXIMIZE"
    assert len(study.trials) == 2


def test_same_command_resumes_the_study(tmp_path):
    first = run(tiny_config(tmp_path, n_trials=2))
    before = {t.number: (t.params, t.values) for t in first.trials}
    second = run(tiny_config(tmp_path, n_trials=4))
    assert len(second.trials) == 4
    for t in second.trials[:2]:
        assert (t.params, t.values) == before[t.number]
    # The resumed sampler must not replay the first run's start-up points.
    assert second.trials[2].params != second.trials[0].params
    again = run(tiny_config(tmp_path, n_trials=4))  # target already reached: nothing new runs
    assert len(again.trials) == 4


def test_resume_refuses_other_objectives(tmp_path):
    run(tiny_config(tmp_path, n_trials=1))
    with pytest.raises(HPOError, match="optimises"):
        run(tiny_config(tmp_path, n_trials=2, objectives=["accuracy"]))


def test_oversized_models_cost_no_training_and_are_infeasible(tmp_path):
    config = tiny_config(tmp_path, n_trials=3, max_model_size_mb=1e-4)
    study = run(config)
    for t in study.trials:
        assert t.state == TrialState.PRUNED
        assert t.constraints["model_size_mb"] > 0
        assert "epoch_history" not in t.user_attrs  # stopped before any epoch
    assert json.loads((config.save_dir / "best_configurations.json").read_text()) == []
    assert "3 infeasible" in (config.save_dir / "optimization_summary.txt").read_text()


def test_diverging_trial_is_recorded_failed_and_study_continues(tmp_path, monkeypatch):
    original = Trainer._train_epoch

    def sometimes_nan(self, optimizer, generator):
        loss = original(self, optimizer, generator)
        return math.nan if self.seed == 42 + 1 else loss  # trial 1 (seed = config seed + number)

    monkeypatch.setattr(Trainer, "_train_epoch", sometimes_nan)
    config = tiny_config(tmp_path, n_trials=3)
    study = run(config)
    states = [t.state for t in study.trials]
    assert states == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    assert "non-finite training loss" in study.trials[1].user_attrs["fail_reason"]
    record = json.loads((config.save_dir / "trial_1_result.json").read_text())
    assert record["state"] == "FAIL" and record["values"] is None
    ranked = {b["trial_number"] for b in json.loads((config.save_dir / "best_configurations.json").read_text())}
    assert study.trials[1].number not in ranked
    assert "non-finite" in (config.save_dir / "optimization_summary.txt").read_text()


def test_unreachable_storage_is_one_line_error_without_password(tmp_path):
    config = tiny_config(tmp_path, storage="postgresql://user:secret@127.0.0.1:1/nodb")
    with pytest.raises(HPOError) as error:
        run(config)
    assert "cannot open storage" in str(error.value)
    assert "secret" not in str(error.value)


def test_guide_api_with_prepared_and_plain_loaders(tmp_path):
    config = tiny_config(tmp_path, n_trials=2)
    trainer = IntegratedCNNLSTMTrainer(config)
    loaders = trainer.prepare_data(["SYN_A"], ("2010-01-01", "2014-12-31"))
    train, val, test = loaders
    assert len(train.split) > len(val.split) > 0 and len(test.split) > 0
    assert max(train.split.dates) < min(val.split.dates) < max(val.split.dates) < min(test.split.dates)
    batch = next(iter(train))
    assert batch[0].shape[1:] == (10, trainer.data.n_features)

    optimizer = MultiObjectiveOptimizer(config, data_loaders=loaders, progress=False)
    trial = optuna.create_study(directions=["maximize", "minimize", "minimize"]).ask()
    params = optimizer.suggest_hyperparameters(trial)
    model_config = optimizer.create_model_config(params)
    assert model_config.cnn_filter_sizes == tuple(params["cnn_filter_sizes"])
    assert model_config.n_features == trainer.data.n_features
    assert len(optimizer.optimize().trials) == 2

    # A user's own torch DataLoaders over (x, y_class, y_return) work too.
    plain = tuple(
        DataLoader(TensorDataset(s.x, s.y_class, s.y_return), batch_size=256)
        for s in (train.split, val.split, test.split)
    )
    other = MultiObjectiveOptimizer(tiny_config(tmp_path / "b", n_trials=1), data_loaders=plain, progress=False)
    assert torch.equal(other.data.val.x, val.split.x)
    assert len(other.optimize().trials) == 1
