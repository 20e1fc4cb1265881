"""benchmarks/replay.py drives the real study machinery: a replayed study takes a real one's decisions."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

import optuna
import pytest

from cnn_lstm_hpo import MultiObjectiveOptimizer, create_optimization_config
from cnn_lstm_hpo import replay
from cnn_lstm_hpo.config import OptimizationConfig, validate_config
from cnn_lstm_hpo.space import decode_params
from cnn_lstm_hpo.train import PROBE_BATCHES
from cnn_lstm_hpo.windows import prepare_windows


def loaders(config: OptimizationConfig) -> tuple:
    return replay.loaders_for(prepare_windows(config.data, None)[0])


SPACE = {
    "cnn_num_filters": {"type": "categorical", "choices": [4, 8]},
    "cnn_filter_sizes": {"type": "categorical", "choices": [[2, 3], [3]]},
    "cnn_attention_heads": {"type": "categorical", "choices": [2]},
    "lstm_hidden_dim": {"type": "categorical", "choices": [8, 16]},
    "lstm_num_layers": {"type": "int", "low": 1, "high": 2},
    "batch_size": {"type": "categorical", "choices": [128, 256]},
}


def tiny_config(save_dir: Path, **overrides) -> OptimizationConfig:
    settings = dict(
        scenario="smoke", n_trials=14, max_epochs_per_trial=8, seed=3, search_space=SPACE,
        data={"source": "synthetic", "sequence_length": 10, "start": None},
        objectives=["accuracy", "training_time", "model_size"], timeout_hours=None, max_training_time_minutes=None,
        sampler={"n_startup_trials": 4}, training={"early_stopping_patience": 3},
        pruning={"enabled": True, "min_resource": 1, "reduction_factor": 2}, pruning_warmup_steps=0,
        save_dir=save_dir,
    )
    return create_optimization_config(**{**settings, **overrides})


# With the dominance check, accuracy and size only: whether a trial is dominated must not hang on
# how fast this machine trained it, so that the study surely holds such a decision to replay.
@pytest.mark.parametrize(
    ("dominance", "objectives"),
    [(None, ["accuracy", "training_time", "model_size"]), (0.0, ["accuracy", "model_size"])],
    ids=["rungs", "rungs-and-dominance"],
)
def test_replaying_a_real_study_on_its_own_curves_takes_the_same_decisions(tmp_path, dominance, objectives):
    pruning = {"enabled": True, "min_resource": 1, "reduction_factor": 2, "dominance_quantile": dominance}
    config = tiny_config(tmp_path / "real", pruning=pruning, objectives=objectives)
    real = MultiObjectiveOptimizer(config, progress=False).optimize()
    real_trials = real.get_trials()
    assert {t.state for t in real_trials} >= {optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.COMPLETE}
    if dominance is not None:
        assert any(t.user_attrs.get("stop_reason", "").startswith("dominated at epoch") for t in real_trials)
    table = replay.CurveTable(replay.rows_from_study(real), config.search_space)

    again = tiny_config(tmp_path / "replayed", pruning=pruning, objectives=objectives)
    study, simulated, _ = replay.replay(again, table, loaders(again))
    replayed = study.get_trials()
    assert len(replayed) == len(real_trials)
    for a, b in zip(real_trials, replayed):
        assert (a.number, a.params, a.state, a.values) == (b.number, b.params, b.state, b.values)
        assert a.user_attrs.get("stop_reason") == b.user_attrs.get("stop_reason")
        assert len(a.user_attrs.get("epoch_history", [])) == len(b.user_attrs.get("epoch_history", []))
    spent = sum(e["wall_seconds"] for t in real_trials for e in t.user_attrs.get("epoch_history", []))
    assert simulated == pytest.approx(spent)


def hand_made_row(params: dict, scores: list[float], seconds: float) -> dict:
    return {
        "params": params,
        "truncated": False,
        "epochs": [
            {"epoch": i + 1, "val_score": s, "val_loss": 1 - s, "wall_seconds": seconds, "cpu_seconds": seconds}
            for i, s in enumerate(scores)
        ],
    }


def test_the_simulated_clock_ends_the_run_at_its_timeout(tmp_path):
    config = tiny_config(tmp_path / "timed", n_trials=1000, timeout_hours=0.5, max_epochs_per_trial=5,
                         pruning={"enabled": False}, training={"early_stopping_patience": 10})
    lowest = {name: spec.choices[0] if hasattr(spec, "choices") else spec.low for name, spec in config.search_space.items()}
    row = hand_made_row(lowest, [0.5, 0.6, 0.7, 0.7, 0.8], seconds=60.0)
    table = replay.CurveTable([row], config.search_space)
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # as the CLI sets it
    try:
        study, simulated, _ = replay.replay(config, table, loaders(config))
        assert optuna.logging.get_verbosity() == optuna.logging.ERROR  # the caller's setting, untouched
    finally:
        optuna.logging.set_verbosity(before)
    # Each trial replays the one curve: 5 epochs x 60 s. A trial starts while less than 30 min have passed.
    assert len(study.trials) == 6 and simulated == pytest.approx(1800.0)
    assert all(t.values[1] == pytest.approx(5.0) for t in study.trials)  # training_time in minutes
    assert gc.get_freeze_count() == 0  # the run froze the heap for its trials only (an API caller goes on)


def test_unrecorded_configurations_replay_the_nearest_curve():
    space = OptimizationConfig().search_space
    base = {"learning_rate": 1e-3, "cnn_num_filters": 32, "cnn_filter_sizes": [3, 5, 7], "cnn_attention_heads": 4,
            "lstm_hidden_dim": 64, "lstm_num_layers": 1, "lstm_bidirectional": False, "dropout_rate": 0.2,
            "weight_decay": 1e-5, "batch_size": 64, "optimizer": "adam", "scheduler": "none"}
    near = {**base, "learning_rate": 2e-3}
    far = {**base, "lstm_num_layers": 4, "lstm_hidden_dim": 512, "optimizer": "sgd"}
    rows = [hand_made_row(near, [0.6], 2.0), hand_made_row(far, [0.4], 50.0)]
    table = replay.CurveTable(rows, space)
    assert table.curve(base) is rows[0]
    assert table.curve({**base, "lstm_num_layers": 4, "lstm_hidden_dim": 512}) is rows[1]
    assert table.curve(far) is rows[1] and table.epoch_seconds(far) is None  # recorded: its own times
    assert table.epoch_seconds(base) == 2.0  # two rows fit no cost model: the nearest row's time


def test_score_jitter_moves_each_unrecorded_twin_by_its_own_fixed_offset():
    space = OptimizationConfig().search_space
    recorded = {"learning_rate": 1e-3, "cnn_num_filters": 32, "cnn_filter_sizes": [3, 5, 7], "cnn_attention_heads": 4,
                "lstm_hidden_dim": 64, "lstm_num_layers": 1, "lstm_bidirectional": False, "dropout_rate": 0.2,
                "weight_decay": 1e-5, "batch_size": 64, "optimizer": "adam", "scheduler": "none"}
    row = hand_made_row(recorded, [0.5, 0.6, 0.55], 2.0)
    twins = [{**recorded, "learning_rate": lr} for lr in (2e-3, 3e-3, 4e-3)]
    assert all(replay.CurveTable([row], space).curve(t) is row for t in twins)  # no jitter: exact twins
    table = replay.CurveTable([row], space, score_jitter=0.01)
    assert table.curve(recorded) is row  # a recorded configuration replays its own curve
    offsets = []
    for twin in twins:
        scores = [e["val_score"] for e in table.curve(twin)["epochs"]]
        shifts = [a - b for a, b in zip(scores, [0.5, 0.6, 0.55])]
        assert max(shifts) - min(shifts) < 1e-12  # one offset for the whole curve
        assert [e["val_score"] for e in table.curve(twin)["epochs"]] == scores  # the same on every lookup
        offsets.append(shifts[0])
    assert len(set(offsets)) == 3 and all(0 < abs(o) < 0.05 for o in offsets)
    assert [e["val_score"] for e in row["epochs"]] == [0.5, 0.6, 0.55]  # the table's row untouched


@pytest.mark.parametrize(
    ("epoch_seconds", "batches_timed"),
    [(20.0, PROBE_BATCHES),  # 2 min projected against a 1-minute limit: stopped by the full probe
     (40.0, 1)],  # 4 min, more than ROUGH_PROBE_MARGIN x the limit: stopped after its first batch
)
def test_a_trial_that_cannot_complete_in_time_costs_only_its_probe_batches_even_with_an_early_rung(
    tmp_path, epoch_seconds, batches_timed
):
    # Rungs at epochs 1 and 3 of 6; patience 10, so a trial completes at epoch 6 only: 6 x 20 s = 2 min
    # against a 1-minute limit. The first rung (20 s) fits, but the trial could never complete in time.
    config = tiny_config(tmp_path / "limit", n_trials=5, max_epochs_per_trial=6, max_training_time_minutes=1.0,
                         training={"early_stopping_patience": 10}, pruning={"enabled": True, "min_resource": 1,
                                                                            "reduction_factor": 3})
    lowest = {name: spec.choices[0] if hasattr(spec, "choices") else spec.low for name, spec in config.search_space.items()}
    row = hand_made_row(lowest, [0.5, 0.6, 0.7, 0.7, 0.8, 0.8], seconds=epoch_seconds)
    table = replay.CurveTable([row], config.search_space)
    windows = prepare_windows(config.data, None)[0]
    study, simulated, _ = replay.replay(config, table, replay.loaders_for(windows))
    batches = [-(-len(windows.train) // t.params["batch_size"]) for t in study.trials]
    assert min(batches) > PROBE_BATCHES
    # Each of the 5 trials is stopped by the probe, after its timed epoch-1 batches.
    assert simulated == pytest.approx(sum(epoch_seconds * batches_timed / b for b in batches))
    projected = 6 * epoch_seconds / 60
    for t in study.trials:
        assert t.state == optuna.trial.TrialState.PRUNED and "epoch_history" not in t.user_attrs
        assert t.user_attrs["stop_reason"] == f"time limit: {projected:.2f} min projected > 1.0 min"
        assert t.constraints["training_time_minutes"] == pytest.approx(projected - 1.0)  # infeasible


def test_with_cpu_time_the_replayed_probe_reports_cpu_seconds(tmp_path):
    """Epochs of 40 wall but 1 CPU second: 6 epochs are 4 wall minutes, 0.1 CPU minutes, against a
    1-minute CPU limit. The probe must see CPU time, as the real trainer's does."""
    config = tiny_config(tmp_path / "cpu", n_trials=2, max_epochs_per_trial=6, max_training_time_minutes=1.0,
                         training={"early_stopping_patience": 10, "time_measure": "cpu"}, pruning={"enabled": False})
    lowest = {name: spec.choices[0] if hasattr(spec, "choices") else spec.low for name, spec in config.search_space.items()}
    row = hand_made_row(lowest, [0.5, 0.6, 0.7, 0.7, 0.8, 0.8], seconds=40.0)
    for epoch in row["epochs"]:
        epoch["cpu_seconds"] = 1.0
    study, _, _ = replay.replay(config, replay.CurveTable([row], config.search_space), loaders(config))
    for t in study.trials:
        assert t.state == optuna.trial.TrialState.COMPLETE, t.user_attrs.get("stop_reason")
        assert t.values[1] == pytest.approx(0.1) and t.constraints["training_time_minutes"] == pytest.approx(-0.9)


class PrunesAtEpoch2:
    """A rung pruner that prunes every trial at epoch 2: what a rung decides is not this test's matter."""

    def bracket_of(self, trial_number: int) -> int:
        return 0

    def is_rung(self, bracket: int, epoch: int) -> bool:
        return epoch == 2

    def should_prune(self, study, trial_number, bracket, history, model_size) -> bool:
        return len(history) == 2


def test_a_trial_pruned_at_a_rung_while_it_could_not_complete_in_time_is_recorded_infeasible(tmp_path):
    """Epochs of 10 s, patience 5: the probe sees 6 epochs (1.0 min) within the 1.1-minute limit, but
    epoch 2 improves, so the trial cannot complete before epoch 7 (1.17 min). The rung prunes it
    there first; it is still over the limit, which is what the sampler must learn."""
    config = tiny_config(tmp_path / "rung", n_trials=1, max_epochs_per_trial=8, max_training_time_minutes=1.1,
                         training={"early_stopping_patience": 5}, pruning={"enabled": True, "dominance_quantile": None})
    lowest = {name: spec.choices[0] if hasattr(spec, "choices") else spec.low for name, spec in config.search_space.items()}
    table = replay.CurveTable([hand_made_row(lowest, [0.5, 0.6] + [0.55] * 6, seconds=10.0)], config.search_space)
    clock = replay.SimulatedClock()
    optimizer = replay.ReplayOptimizer(config, table, loaders(config), clock)
    optimizer.pruner = PrunesAtEpoch2()
    (trial,) = optimizer.optimize().trials
    assert trial.user_attrs["stop_reason"] == "pruned at epoch 2"
    assert trial.constraints["training_time_minutes"] == pytest.approx(7 * 10 / 60 - 1.1)  # > 0: infeasible


def test_the_constant_liar_is_on_only_where_workers_share_the_study_and_alone_changes_no_decision(tmp_path):
    """Alone, TPE's constant liar rereads every trial for each parameter; it is off for SQLite (one process)."""
    table = replay.CurveTable(replay.load_rows(replay.CURVES / "synthetic.jsonl.gz"), OptimizationConfig().search_space)
    studies = {}
    for kind, url in {"sqlite": f"sqlite:///{tmp_path / 'study.db'}",
                      "journal": f"journal:///{(tmp_path / 'study.journal').as_posix().lstrip('/')}"}.items():
        config = create_optimization_config(
            scenario="default", n_trials=16, seed=5, sampler={"n_startup_trials": 4}, storage=url,
            data={"source": "synthetic"}, save_dir=tmp_path / kind, timeout_hours=None,
        )
        studies[kind] = replay.replay(config, table, loaders(config))[0]
    assert not studies["sqlite"].sampler._constant_liar and studies["journal"].sampler._constant_liar
    sampled = {kind: [t.params for t in study.trials] for kind, study in studies.items()}
    assert len(sampled["sqlite"]) == 16 and sampled["sqlite"] == sampled["journal"]  # 12 TPE trials alike


def test_the_default_time_limit_is_each_trials_share_so_the_trials_fit_the_timeout(tmp_path):
    # Two kinds of configuration: fast ones complete 5 epochs in 2.5 min, slow ones would take 8.3 min.
    overrides = dict(n_trials=12, timeout_hours=0.5, max_epochs_per_trial=5, pruning={"enabled": False},
                     training={"early_stopping_patience": 10})
    raw = tiny_config(tmp_path / "share", **overrides).model_dump(mode="json", exclude={"max_training_time_minutes"})
    shared = validate_config(raw, "test")  # the limit unset: derived from the budget
    del overrides["n_trials"]
    assert shared.max_training_time_minutes == pytest.approx(2.5)  # 30 min / 12 trials
    ends = {name: {spec_name: (spec.choices[-i] if hasattr(spec, "choices") else [spec.low, spec.high][i])
                   for spec_name, spec in shared.search_space.items()} for i, name in enumerate(["fast", "slow"])}
    scores = [0.5, 0.6, 0.7, 0.7, 0.8]
    rows = [hand_made_row(ends["fast"], scores, seconds=30.0), hand_made_row(ends["slow"], scores, seconds=100.0)]
    table = replay.CurveTable(rows, shared.search_space)
    windows = prepare_windows(shared.data, None)[0]
    study, simulated, _ = replay.replay(shared, table, replay.loaders_for(windows))
    assert len(study.trials) == 12 and simulated <= 1800.0  # every trial, within the timeout
    slow = [t for t in study.trials if table.curve(decode_params(t.params)) is rows[1]]
    assert slow and all("time limit" in t.user_attrs["stop_reason"] for t in slow)

    # 4 x the share (the old default) lets the slow ones train: the timeout ends the study first.
    quadruple = tiny_config(tmp_path / "quadruple", n_trials=12, max_training_time_minutes=10.0, **overrides)
    study, simulated, _ = replay.replay(quadruple, table, replay.loaders_for(windows))
    assert len(study.trials) < 12 and simulated >= 1800.0


def test_each_trials_model_is_freed_before_the_next_trial(tmp_path):
    # Pruned and failed trials hold their model in a cycle (traceback -> frame -> model) that only a
    # collection frees; the study's survivors are frozen after each trial, the finished trial's are not.
    config = tiny_config(tmp_path / "freed", n_trials=10)
    table = replay.CurveTable(replay.rows_from_study(MultiObjectiveOptimizer(config, progress=False).optimize()),
                              config.search_space)
    again = tiny_config(tmp_path / "replayed", n_trials=10)
    alive_at_build: list[int] = []
    built: list = []

    class Watched(replay.ReplayOptimizer):
        def build_model(self, params):
            alive_at_build.append(sum(ref() is not None for ref in built))
            model = super().build_model(params)
            built.append(weakref.ref(model))
            return model

    study = Watched(again, table, loaders(again), replay.SimulatedClock()).optimize()
    assert {t.state for t in study.trials} >= {optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.COMPLETE}
    assert alive_at_build == [0] * 10


def test_a_walk_forward_study_replays_the_curve_on_its_latest_fold_and_moves_older_folds_by_their_own_offsets(tmp_path):
    def run(spread: float, name: str) -> tuple[optuna.Study, replay.ReplayOptimizer]:
        config = tiny_config(tmp_path / name, n_trials=3, pruning={"enabled": False},
                             evaluation={"scheme": "walk_forward", "folds": 3})
        lowest = {n: s.choices[0] if hasattr(s, "choices") else s.low for n, s in config.search_space.items()}
        table = replay.CurveTable([hand_made_row(lowest, [0.5, 0.6, 0.7], seconds=30.0)], config.search_space)
        optimizer = replay.ReplayOptimizer(config, table, (), replay.SimulatedClock(), fold_spread=spread)
        return optimizer.optimize(), optimizer

    flat, optimizer = run(0.0, "flat")
    folds = optimizer.data.folds
    assert len(folds) == 3 and len(folds[0].train) < len(folds[1].train) < len(folds[2].train)  # expanding
    for trial in flat.trials:
        records = {r["fold"]: r for r in trial.user_attrs["fold_scores"]}
        assert [records[i]["score"] for i in range(3)] == [0.7, 0.7, 0.7]  # the best epoch of the one curve
        for i in range(3):  # 3 + patience 3 epochs of 30 s, scaled by the fold's training windows
            assert records[i]["epochs"] == 6
            assert records[i]["minutes"] == pytest.approx(3.0 * len(folds[i].train) / len(folds[2].train))
        assert trial.values[0] == pytest.approx(0.7)

    moved, _ = run(0.05, "moved")
    again, _ = run(0.05, "again")
    for a, b in zip(moved.trials, again.trials):
        scores = {r["fold"]: r["score"] for r in a.user_attrs["fold_scores"]}
        assert scores[2] == 0.7 and scores[0] != 0.7 and scores[1] != 0.7 and scores[0] != scores[1]
        assert scores == {r["fold"]: r["score"] for r in b.user_attrs["fold_scores"]}  # fixed by configuration and fold
