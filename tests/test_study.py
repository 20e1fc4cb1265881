"""Real small studies: objectives, storage, resume, constraints, failures, the guide's Python API."""

from __future__ import annotations

import json
import logging
import math
import os
import stat

import optuna
import pytest
import torch
from optuna.trial import TrialState
from torch.utils.data import DataLoader, TensorDataset

from cnn_lstm_hpo.errors import StudyFailed
from cnn_lstm_hpo import HPOError, IntegratedCNNLSTMTrainer, MultiObjectiveOptimizer, create_optimization_config
from cnn_lstm_hpo.distributed.storage import close_storage, open_storage
from cnn_lstm_hpo.train import Trainer
from cnn_lstm_hpo.distributed.workers import this_worker

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


def _non_dominated(study) -> set[int]:
    """Feasible complete trials that no other such trial dominates (computed here, not by Optuna)."""
    signs = [1 if d.name == "MAXIMIZE" else -1 for d in study.directions]  # as "larger is better"
    done = [t for t in study.trials if t.state == TrialState.COMPLETE and all(c <= 0 for c in t.constraints.values())]
    better = {t.number: [s * v for s, v in zip(signs, t.values)] for t in done}

    def dominates(a, b):
        return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))

    return {n for n, v in better.items() if not any(dominates(w, v) for m, w in better.items() if m != n)}


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
        assert record["constant_predictor"] is (record["val_metrics"]["top_prediction_share"] >= 0.99)
        history, training = t.user_attrs["epoch_history"], t.user_attrs["training"]
        assert training["epochs_trained"] == len(history) and 1 <= training["best_epoch"] <= len(history)
        assert training["cpu_minutes"] == pytest.approx(sum(e["cpu_seconds"] for e in history) / 60, rel=0.05)
    best = json.loads((save / "best_configurations.json").read_text())
    front = _non_dominated(study)
    assert front  # three complete feasible trials: at least one is on the front
    assert {b["trial_number"] for b in best} == front
    assert sorted(b["rank"] for b in best) == list(range(1, len(best) + 1))
    assert all(set(b) == {"trial_number", "params", "values", "objectives", "objective_definitions", "validation", "rank",
                          "constant_predictor"} for b in best)
    summary = (save / "optimization_summary.txt").read_text()
    assert "3 complete" in summary and "majority-class rate" in summary
    assert "n_trials: 3" in (save / "resolved_config.yaml").read_text()


def test_the_accuracy_objective_is_named_the_composite_beside_the_plain_metrics(tmp_path):
    config = tiny_config(tmp_path, n_trials=2, objectives=["accuracy", "model_size"],
                         training={"classification_metric": "balanced_accuracy", "classification_weight": 3,
                                   "regression_weight": 1})
    study = run(config)
    label = "accuracy (composite: 0.75 x balanced_accuracy + 0.25 x regression score)"
    best = json.loads((config.save_dir / "best_configurations.json").read_text())
    for record in best:
        assert record["objective_definitions"] == {"accuracy": label}
        shown = record["validation"]
        metrics = study.trials[record["trial_number"]].user_attrs["val_metrics"]
        assert shown["accuracy"] == metrics["accuracy"] and shown["majority_rate"] == metrics["majority_rate"]
        assert 0 <= shown["balanced_accuracy"] <= 1 and shown["balanced_accuracy"] != record["objectives"]["accuracy"]
        assert 0 < shown["p_value_vs_majority"] <= 1 and shown["n_samples"] > 0
    summary = (config.save_dir / "optimization_summary.txt").read_text()
    assert f"Objectives: {label} (maximize), model_size (minimize)" in summary
    assert f"trial {best[0]['trial_number']}: accuracy (composite)=" in summary
    analysis = json.loads((config.save_dir / "optimization_analysis.json").read_text())
    assert analysis["objectives"][0]["label"] == label


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
    with pytest.raises(HPOError, match=r"^study 'smoke' in sqlite:///.*/study\.db optimises \['accuracy', 'training_time', 'model_size'\], not \['accuracy'\]; use another --study-name or the same objectives$"):
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
    assert str(error.value).startswith("cannot open storage postgresql://***@127.0.0.1:1/nodb: ")
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


def test_a_study_whose_every_trial_failed_raises_with_the_commonest_reason(tmp_path, monkeypatch):
    def diverge(self, optimizer, generator):
        return math.nan

    monkeypatch.setattr(Trainer, "_train_epoch", diverge)
    config = tiny_config(tmp_path, n_trials=2)
    with pytest.raises(StudyFailed) as error:
        run(config)
    assert str(error.value).startswith(
        "all 2 trials failed; most common reason (2 of 2): TrialDiverged: non-finite training loss"
    )
    # What the trials left is still written for the user to inspect.
    assert json.loads((config.save_dir / "trial_1_result.json").read_text())["state"] == "FAIL"


def test_resume_refuses_other_data_or_budget_naming_the_fields(tmp_path):
    run(tiny_config(tmp_path, n_trials=1))
    changed = tiny_config(tmp_path, n_trials=2, max_epochs_per_trial=3, data={"source": "synthetic", "sequence_length": 12})
    with pytest.raises(HPOError) as error:
        run(changed)
    assert "was run with other settings: data.sequence_length (10 -> 12); max_epochs_per_trial (2 -> 3); " in str(
        error.value
    )
    # Settings that do not change what a trial measures may change: more trials, another device.
    assert len(run(tiny_config(tmp_path, n_trials=2, training={"device": "cpu"})).trials) == 2


def test_resume_refuses_a_changed_search_space_range(tmp_path):
    run(tiny_config(tmp_path, n_trials=1))
    wider = {**TINY_SPACE, "lstm_num_layers": {"type": "int", "low": 1, "high": 3}}
    with pytest.raises(HPOError) as error:
        run(tiny_config(tmp_path, n_trials=2, search_space=wider))
    assert "was run with other settings: search_space; its trials would not be comparable" in str(error.value)


def test_a_setting_added_later_keeps_older_studies_resumable(tmp_path):
    """pruning.strategy and pruning.dominance_quantile came after studies existed: at the values older
    studies ran with (hyperband, no dominance check) they are left out of the stored fingerprint,
    so an older study (no such keys) resumes with them. Any other value is a difference, the new
    default dominance_quantile (0.5) included, and the refusal says how to resume as before, except
    where the rule is off anyway (one objective, no pruning): there the quantile is never read."""
    older = {"enabled": True, "strategy": "hyperband", "dominance_quantile": None}
    run(tiny_config(tmp_path, n_trials=1, pruning=older))
    stored = optuna.load_study(study_name="smoke", storage=f"sqlite:///{tmp_path / 'run' / 'study.db'}")
    assert not {"pruning.strategy", "pruning.dominance_quantile"} & set(stored.user_attrs["fingerprint"])
    assert len(run(tiny_config(tmp_path, n_trials=2, pruning=older)).trials) == 2
    with pytest.raises(HPOError) as error:
        run(tiny_config(tmp_path, n_trials=3, pruning={**older, "strategy": "asha"}))
    assert ("was run with other settings: pruning.strategy ('hyperband' -> 'asha'); its trials would not be "
            "comparable: resume with the same settings (here pruning.strategy: hyperband) "
            "or use another --study-name") in str(error.value)
    with pytest.raises(HPOError) as error:
        run(tiny_config(tmp_path, n_trials=3, pruning={"enabled": True}))
    assert ("was run with other settings: pruning.dominance_quantile (None -> 0.5); its trials would not be "
            "comparable: resume with the same settings (here pruning.dominance_quantile: null) "
            "or use another --study-name") in str(error.value)
    cases = {  # (the older study, the same settings today)
        "one-objective": ({"objectives": ["accuracy"], "pruning": older}, {"objectives": ["accuracy"], "pruning": {"enabled": True}}),
        "pruning-off": ({"pruning": {**older, "enabled": False}}, {"pruning": {"enabled": False}}),
    }
    for name, (before, now) in cases.items():
        run(tiny_config(tmp_path / name, n_trials=1, **before))
        assert len(run(tiny_config(tmp_path / name, n_trials=2, **now)).trials) == 2


def _stored(config):
    return optuna.load_study(study_name=config.resolved_study_name, storage=config.resolved_storage)


def test_a_resumed_study_keeps_its_time_limit_and_refuses_another_one_naming_it(tmp_path):
    """The smoke scenario sets no limit: 0.25 h / 2 trials = 7.5 min. Resumed with 1000 trials (and a
    tiny timeout, so that one trial runs), the derived limit would be 0: the study keeps 7.5."""
    first = tiny_config(tmp_path, n_trials=2)
    assert first.max_training_time_minutes == 7.5 and not first.time_limit_given
    run(first)
    resumed = tiny_config(tmp_path, n_trials=1000, timeout_hours=1e-6)
    assert resumed.max_training_time_minutes == pytest.approx(1e-6 * 60 / 1000)  # this run's budget alone: small, not 0
    optimizer = MultiObjectiveOptimizer(resumed, progress=False)
    study = optimizer.optimize()
    assert optimizer.config.max_training_time_minutes == 7.5
    new = study.trials[2]
    assert len(study.trials) == 3 and new.state == TrialState.COMPLETE
    assert new.constraints["training_time_minutes"] == pytest.approx(new.values[1] - 7.5)
    assert _stored(first).user_attrs["fingerprint"]["max_training_time_minutes"] == 7.5
    assert "max_training_time_minutes: 7.5\n" in (first.save_dir / "resolved_config.yaml").read_text()
    with pytest.raises(HPOError) as error:
        run(tiny_config(tmp_path, n_trials=4, max_training_time_minutes=1.0))
    assert "was run with other settings: max_training_time_minutes (7.5 -> 1.0); its trials would not be comparable" in str(
        error.value
    )
    assert len(run(tiny_config(tmp_path, n_trials=4, max_training_time_minutes=7.5)).trials) == 4  # the same: fine


def test_a_study_fingerprinted_before_the_limit_and_rungs_were_keeps_those_it_last_ran_with(tmp_path):
    first = tiny_config(tmp_path, n_trials=1, max_training_time_minutes=5.0)
    run(first)
    study = _stored(first)
    older = {k: v for k, v in study.user_attrs["fingerprint"].items() if k not in ("max_training_time_minutes", "pruning.brackets")}
    study.set_user_attr("fingerprint", older)
    with pytest.raises(HPOError) as error:  # the limit and rungs it ran with are compared, from its stored config
        run(tiny_config(tmp_path, n_trials=2, max_training_time_minutes=6.0))
    assert "other settings: max_training_time_minutes (5.0 -> 6.0); its trials" in str(error.value)
    optimizer = MultiObjectiveOptimizer(tiny_config(tmp_path, n_trials=2), progress=False)  # derived: 7.5
    assert len(optimizer.optimize().trials) == 2 and optimizer.config.max_training_time_minutes == 5.0
    stored = _stored(first).user_attrs["fingerprint"]
    assert stored["max_training_time_minutes"] == 5.0 and stored["pruning.brackets"] is None  # pruning off


def test_resume_refuses_other_pruning_rungs_naming_them(tmp_path):
    """pruning_warmup_steps and pruning_interval_steps move the rungs (100 epochs, min_resource 10, eta 3)."""
    from cnn_lstm_hpo.study import open_study

    def opened(**overrides):
        config = tiny_config(tmp_path, max_epochs_per_trial=100, pruning={"enabled": True}, **overrides)
        study = open_study(config, MultiObjectiveOptimizer(config, progress=False).fingerprint)
        return study.user_attrs["fingerprint"]["pruning.brackets"]

    assert opened() == [[10, 30, 90], [30, 90]]
    assert opened(pruning_warmup_steps=5) == [[10, 30, 90], [30, 90]]  # below min_resource: the same rungs
    for overrides, rungs in [({"pruning_warmup_steps": 12}, "[[11, 33, 99], [33, 99]]"),  # capped at 100 // 9
                             ({"pruning_interval_steps": 4}, "[[12, 32, 92], [32, 92]]")]:
        with pytest.raises(HPOError) as error:
            opened(**overrides)
        assert f"other settings: pruning.brackets ([[10, 30, 90], [30, 90]] -> {rungs}); its trials" in str(error.value)


def test_resume_refuses_changed_bars_and_fingerprints_an_older_study(tmp_path, synthetic_frames, write_csv_folder):
    folder = write_csv_folder(synthetic_frames)
    config = tiny_config(tmp_path, n_trials=1, data={"source": str(folder), "sequence_length": 10, "start": None})
    # A study made before fingerprints existed: same name and objectives, no fingerprint.
    config.save_dir.mkdir(parents=True)
    older = optuna.create_study(
        storage=config.resolved_storage, study_name=config.resolved_study_name, directions=["maximize", "minimize", "minimize"]
    )
    older.set_user_attr("objectives", config.objectives)
    run(config)
    stored = optuna.load_study(study_name=config.resolved_study_name, storage=config.resolved_storage)
    assert stored.user_attrs["fingerprint"]["data.symbols_loaded"] == ["SYN_A", "SYN_B"]

    edited = synthetic_frames["SYN_B"].copy()
    edited.iloc[100, edited.columns.get_loc("volume")] *= 2  # one re-exported bar
    (folder / "SYN_B.csv").unlink()
    write_csv_folder({"SYN_B": edited}, name="edited")
    (tmp_path / "edited" / "SYN_B.csv").rename(folder / "SYN_B.csv")
    with pytest.raises(HPOError) as error:
        run(tiny_config(tmp_path, n_trials=2, data={"source": str(folder), "sequence_length": 10, "start": None}))
    assert "was run with other settings: data.digest; its trials would not be comparable" in str(error.value)


def _open_files_under(folder) -> list[str]:
    targets = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            targets.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:  # closed between listdir and readlink
            pass
    return [t for t in targets if t.startswith(str(folder))]


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc to list open files")
def test_optimize_closes_its_database_connections_and_files_honour_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        for n in (1, 2):  # a run and a resume: neither leaves the study database open
            config = tiny_config(tmp_path, n_trials=n)
            run(config)
            assert _open_files_under(config.save_dir) == []
    finally:
        os.umask(old)
    for name in ("best_configurations.json", "trial_0_result.json", "optimization_summary.txt", "resolved_config.yaml"):
        assert stat.S_IMODE((config.save_dir / name).stat().st_mode) == 0o644, name


@pytest.mark.parametrize(
    ("kind", "sampler_class"),
    [("tpe", optuna.samplers.TPESampler), ("gp", optuna.samplers.GPSampler),
     ("nsga2", optuna.samplers.NSGAIISampler), ("random", optuna.samplers.RandomSampler)],
)
def test_sampler_choice_is_optunas_own_and_seeded(tmp_path, kind, sampler_class):
    from cnn_lstm_hpo.study import open_study

    config = tiny_config(tmp_path, sampler={"type": kind, "n_startup_trials": 0, "population_size": 4})
    config.save_dir.mkdir(parents=True)
    draws = []
    for _ in range(2):  # the same seed draws the same first point
        study = open_study(config.model_copy(update={"study_name": f"{kind}{len(draws)}"}))
        assert type(study.sampler) is sampler_class
        trial = study.ask()
        draws.append(trial.suggest_float("x", 0.0, 1.0))
    assert draws[0] == draws[1]


@pytest.mark.parametrize("multivariate", ["unset", None, True, False])
def test_tpe_samples_jointly_by_default_and_one_by_one_where_asked(multivariate):
    from cnn_lstm_hpo.config import SamplerConfig
    from cnn_lstm_hpo.samplers import make_sampler

    given = {} if multivariate == "unset" else {"multivariate": multivariate}
    sampler = make_sampler(SamplerConfig(n_startup_trials=0, **given), seed=0)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    for x in (0.1, 0.5, 0.9):
        study.add_trial(optuna.trial.create_trial(
            params={"x": x, "y": x}, values=[x, 1 - x],
            distributions={"x": optuna.distributions.FloatDistribution(0, 1), "y": optuna.distributions.FloatDistribution(0, 1)},
        ))
    joint = sampler.infer_relative_search_space(study, study.ask())
    # Ours samples jointly unless told otherwise; Optuna 5 (null) samples each parameter alone in
    # multi-objective studies.
    assert set(joint) == ({"x", "y"} if multivariate in ("unset", True) else set())


@pytest.mark.parametrize("sampler, pruning, expected", [
    ({"type": "nsga2", "population_size": 8}, True,
     "note: sampler.type nsga2 breeds only from completed trials (8 a generation) and pruning ends most trials "
     "early: it samples at random until 8 trials complete"),
    ({"type": "gp", "n_startup_trials": 4}, True,
     "note: sampler.type gp fits completed trials only and pruning ends most trials early: it samples at random "
     "until 4 trials complete"),
    ({"type": "nsga2"}, False, None),
    ({"type": "tpe"}, True, None),  # TPE learns from pruned trials too
])
def test_samplers_that_learn_from_completed_trials_only_are_flagged_under_pruning(tmp_path, caplog, sampler, pruning, expected):
    config = tiny_config(tmp_path, sampler=sampler, pruning={"enabled": pruning})
    with caplog.at_level(logging.WARNING, logger="cnn_lstm_hpo"):
        MultiObjectiveOptimizer(config, progress=False)
        MultiObjectiveOptimizer(config, progress=False, write_outputs=False)  # a spawned worker: says nothing
    notes = [r.getMessage() for r in caplog.records if "sampler.type" in r.getMessage()]
    assert len(notes) == (expected is not None)
    if expected:
        assert notes[0].startswith(expected)


def test_the_worker_is_in_the_database_before_the_trial_samples(tmp_path, monkeypatch):
    """The sweep of dead workers' trials finds a trial by its worker: a process killed while its trial
    samples or builds its model (writes still held) must not leave a RUNNING trial no sweep can fail."""
    cfg = tiny_config(tmp_path, n_trials=2, max_epochs_per_trial=1, storage=f"sqlite:///{tmp_path / 'study.db'}")
    optimizer = MultiObjectiveOptimizer(cfg, progress=False)
    seen, suggest = [], optimizer.suggest_hyperparameters

    def suggest_and_look(trial):
        elsewhere = open_storage(cfg.resolved_storage, create=False)  # as another process sees the study
        try:
            seen.append(elsewhere.get_trial(trial._trial_id).user_attrs.get("worker"))
        finally:
            close_storage(elsewhere)
        return suggest(trial)

    monkeypatch.setattr(optimizer, "suggest_hyperparameters", suggest_and_look)
    optimizer.optimize()
    assert seen == [this_worker()] * 2


def test_steady_training_time_leaves_out_the_warm_up_epoch():
    from cnn_lstm_hpo.objectives import steady_minutes

    # CPU seconds: the warm-up, then one epoch slowed by a neighbour; wall time does not enter.
    history = [{"cpu_seconds": s, "wall_seconds": 99.0} for s in (30.0, 6.0, 12.0, 6.6)]
    assert steady_minutes(history) == pytest.approx(6.6 * 4 / 60)
    assert steady_minutes(history[:1]) == pytest.approx(0.5) and steady_minutes([]) == 0.0


def test_the_steady_measure_trains_with_one_thread_unless_told_otherwise(tmp_path):
    import os

    from cnn_lstm_hpo import create_optimization_config

    def threads(**overrides):
        config = create_optimization_config(scenario="smoke", save_dir=tmp_path, **overrides)
        return config.threads_per_worker, config.torch_threads  # torch_threads: what optimize and plan set

    assert threads(training={"time_measure": "steady"}) == (1, 1)
    assert threads(training={"time_measure": "steady"}, threads=2) == (2, 2)
    assert threads(training={"time_measure": "cpu"}) == (max(1, os.cpu_count() or 1), None)  # torch's default


def test_a_study_can_measure_training_time_at_the_steady_epoch_time(tmp_path, monkeypatch):
    import torch

    from cnn_lstm_hpo.objectives import steady_minutes

    config = tiny_config(tmp_path, n_trials=1, max_epochs_per_trial=3, training={"time_measure": "steady",
                                                                                  "early_stopping_patience": 3})
    threads_set: list[int] = []
    monkeypatch.setattr(torch, "set_num_threads", threads_set.append)  # recorded, not applied to this process
    trial = run(config).trials[0]
    assert threads_set == [1]  # the study trained with one torch thread
    history = trial.user_attrs["epoch_history"]
    assert len(history) == 3
    assert trial.values[1] == pytest.approx(steady_minutes(history))
    assert trial.user_attrs["training"]["steady_minutes"] == pytest.approx(trial.values[1])
