"""Pruning inside multi-objective studies, and the training-time constraint."""

from __future__ import annotations

import json
import time

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState
from typer.testing import CliRunner

from cnn_lstm_hpo import MultiObjectiveOptimizer, create_optimization_config
from cnn_lstm_hpo.cli import app
from cnn_lstm_hpo.errors import StudyFailed
from cnn_lstm_hpo.monitor import LIVE_VIEW_SECONDS, TrialMonitor
from cnn_lstm_hpo.objectives import Evaluation
from cnn_lstm_hpo.pruning import BRACKET_ATTR, ParetoRungPruner, crowding_distances, non_domination_ranks, plan_brackets, promotable
from cnn_lstm_hpo.train import PROBE_BATCHES, EpochResult, Trainer

SPACE = {
    "cnn_num_filters": {"type": "categorical", "choices": [4, 8, 16]},
    "cnn_filter_sizes": {"type": "categorical", "choices": [[2, 3], [3]]},
    "cnn_attention_heads": {"type": "categorical", "choices": [2]},
    "lstm_hidden_dim": {"type": "categorical", "choices": [8, 16]},
    "lstm_num_layers": {"type": "int", "low": 1, "high": 1},
    "batch_size": {"type": "categorical", "choices": [256]},
}


def config(tmp_path, **overrides):
    base = dict(
        scenario="smoke",
        n_trials=12,
        max_epochs_per_trial=9,
        save_dir=tmp_path / "run",
        search_space=SPACE,
        data={"source": "synthetic", "sequence_length": 8},
        sampler={"n_startup_trials": 3},
        training={"early_stopping_patience": 9},
    )
    return create_optimization_config(**{**base, **overrides})


# --- brackets --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("max_epochs", "expected"),
    [
        (9, [[1, 3], [3]]),  # a lowered budget still leaves two rungs (1, 3) before the end
        (20, [[2, 6, 18], [6, 18]]),
        (50, [[5, 15, 45], [15, 45]]),
        (100, [[10, 30, 90], [30, 90]]),  # the guide's min_resource=10 once the budget allows it
        (1, []),
    ],
)
def test_brackets_fit_the_epoch_budget(max_epochs, expected):
    assert plan_brackets(max_epochs, 10, 3, warmup=10) == expected


def test_asha_keeps_the_most_aggressive_bracket_alone(tmp_path):
    pruner = ParetoRungPruner(config(tmp_path, pruning={"strategy": "asha"}))
    assert pruner.brackets == [[1, 3]]
    assert {pruner.bracket_of(n) for n in range(20)} == {0}
    assert ParetoRungPruner(config(tmp_path)).brackets == [[1, 3], [3]]


def test_bracket_rungs_follow_the_interval():
    assert plan_brackets(20, 2, 3, interval=4) == [[4, 8], [8]]  # 2, 6, 18 rounded up; 20 is the end


# --- the promotion rule, on hand-made rung data ----------------------------------------------
def judge(candidate, others, **kwargs):
    """The candidate as the newest trial of its rung (as in a sequential study)."""
    others = np.asarray(others, dtype=float).reshape(-1, len(candidate))
    return promotable(candidate, others, candidate_number=len(others), other_numbers=np.arange(len(others)), **kwargs)


def test_non_domination_ranks():
    points = np.array([[1.0, 5.0], [2.0, 1.0], [3.0, 6.0], [2.5, 2.0], [4.0, 7.0]])
    # (3, 6) is dominated by (2.5, 2), which is dominated by (2, 1).
    assert non_domination_ranks(points).tolist() == [0, 0, 2, 1, 3]


# (-score at the rung, model MB, seconds per epoch): five big models.
BIG = np.array([[-0.560, 40.0, 9.0], [-0.555, 35.0, 8.0], [-0.550, 50.0, 10.0], [-0.558, 45.0, 9.5], [-0.552, 38.0, 8.5]])


def test_small_model_slightly_worse_score_is_not_starved():
    tiny = np.array([-0.550, 0.5, 1.0])  # a little behind the cut-off (2nd best, 0.558); smallest
    assert judge(tiny, BIG, reduction_factor=3, tolerance=0.01)
    assert judge(tiny, BIG, reduction_factor=3, tolerance=0.0)  # an extreme of the front
    # The same score on a big slow model is dominated: pruned.
    assert not judge(np.array([-0.550, 60.0, 12.0]), BIG, reduction_factor=3, tolerance=0.01)


def test_crowded_middle_of_the_front_with_a_poor_score_is_pruned():
    # A tiny model that learns nothing, five big ones, and in between a non-dominated model that
    # is neither an extreme nor close in score.
    others = np.vstack([BIG, [[-0.40, 0.4, 0.9], [-0.551, 30.0, 7.0]]])
    middle = np.array([-0.45, 20.0, 5.0])
    ranks = non_domination_ranks(np.vstack([middle, others]))
    assert ranks[0] == 0
    assert not judge(middle, others, reduction_factor=3, tolerance=0.01)
    # Within the tolerance of the cut-off it would continue.
    assert judge(np.array([-0.551, 20.0, 5.0]), others, reduction_factor=3, tolerance=0.01)


def test_crowding_distance_extremes_are_infinite():
    points = np.array([[0.0, 3.0], [1.0, 2.0], [2.0, 1.0], [3.0, 0.0], [5.0, 5.0]])
    ranks = non_domination_ranks(points)
    distance = crowding_distances(points, ranks, np.arange(len(points)))
    assert np.isinf(distance[[0, 3, 4]]).all()  # both ends of front 0; the lone point of front 1
    assert distance[1] == pytest.approx(distance[2]) == pytest.approx(4 / 3)


def test_top_fraction_by_front_then_score_continues():
    others = np.array([[0.10, 1.0], [0.50, 3.0], [0.60, 4.0], [0.70, 5.0], [0.80, 6.0]])
    candidate = np.array([0.20, 2.0])  # dominated by the first, but second in NSGA-II order of six
    assert judge(candidate, others, reduction_factor=3, tolerance=0.0)  # top 6 // 3 = 2
    assert not judge(np.array([0.55, 3.5]), others, reduction_factor=3, tolerance=0.0)


def test_few_trials_only_the_best_or_close_front_continues():
    others = np.array([[0.1, 1.0]])
    assert not judge(np.array([0.2, 2.0]), others, reduction_factor=3, tolerance=0.5)  # dominated
    assert judge(np.array([0.105, 0.5]), others, reduction_factor=3, tolerance=0.01)
    assert not judge(np.array([0.3, 0.5]), others, reduction_factor=3, tolerance=0.01)
    assert judge(np.array([0.3, 3.0]), np.empty((0, 2)), reduction_factor=3, tolerance=0.0)  # alone


# --- an independent implementation of the rule, for random and recorded checks ---------------
def reference_ranks(points):
    """Non-domination fronts by peeling, in plain Python."""
    def dominates(a, b):
        return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))

    ranks, remaining, front = [None] * len(points), set(range(len(points))), 0
    while remaining:
        current = {i for i in remaining if not any(dominates(points[j], points[i]) for j in remaining if j != i)}
        for i in current:
            ranks[i] = front
        remaining -= current
        front += 1
    return ranks


def reference_crowding(points, ranks, numbers):
    distance = [0.0] * len(points)
    for front in set(ranks):
        members = [i for i in range(len(points)) if ranks[i] == front]
        for j in range(len(points[0])):
            ordered = sorted(members, key=lambda i: (points[i][j], numbers[i]))
            lo, hi = points[ordered[0]][j], points[ordered[-1]][j]
            distance[ordered[0]] = distance[ordered[-1]] = float("inf")
            for k in range(1, len(ordered) - 1):
                if hi > lo:
                    distance[ordered[k]] += (points[ordered[k + 1]][j] - points[ordered[k - 1]][j]) / (hi - lo)
    return distance


def reference_promoted(points, numbers, eta, tolerance):
    """Which rows continue: the top n // eta in NSGA-II order, or first-front rows near the cut-off."""
    ranks = reference_ranks(points)
    crowding = reference_crowding(points, ranks, numbers)
    order = sorted(range(len(points)), key=lambda i: (ranks[i], -crowding[i], points[i][0], numbers[i]))
    n_promote = max(1, len(points) // eta)
    cutoff = sorted(p[0] for p in points)[n_promote - 1]
    return [i in order[:n_promote] or (ranks[i] == 0 and points[i][0] <= cutoff + tolerance) for i in range(len(points))]


def _random_points(rng, n, dims):
    # Small integer grids: many ties and exact duplicates.
    return rng.integers(0, 4, size=(n, dims)).astype(float)


@pytest.mark.parametrize("seed", range(40))
def test_ranks_and_crowding_match_an_independent_implementation(seed):
    rng = np.random.default_rng(seed)
    points = _random_points(rng, int(rng.integers(1, 14)), int(rng.integers(1, 4)))
    numbers = rng.permutation(len(points))
    ranks = non_domination_ranks(points)
    assert ranks.tolist() == reference_ranks(points.tolist())
    assert crowding_distances(points, ranks, numbers).tolist() == pytest.approx(
        reference_crowding(points.tolist(), ranks.tolist(), numbers.tolist())
    )


@pytest.mark.parametrize("seed", range(10))
def test_ranks_of_a_crowded_rung_match_an_independent_implementation(seed):
    # A crowded rung of a long study: 50-120 trials, 2-3 objectives, ties on the grid.
    rng = np.random.default_rng(500 + seed)
    points = rng.integers(0, 30, size=(int(rng.integers(50, 120)), int(rng.integers(2, 4)))).astype(float)
    assert non_domination_ranks(points).tolist() == reference_ranks(points.tolist())


@pytest.mark.parametrize("seed", range(40))
def test_decision_does_not_depend_on_which_trial_is_judged(seed):
    rng = np.random.default_rng(100 + seed)
    n, dims = int(rng.integers(2, 12)), int(rng.integers(2, 4))
    points = _random_points(rng, n, dims)
    numbers = rng.permutation(n) + 10
    tolerance = float(rng.choice([0.0, 0.5]))
    expected = reference_promoted(points.tolist(), numbers.tolist(), 3, tolerance)
    for i in range(n):
        rest = np.delete(np.arange(n), i)
        got = promotable(points[i], points[rest], 3, tolerance, candidate_number=numbers[i], other_numbers=numbers[rest])
        assert got == expected[i], (i, points.tolist(), numbers.tolist())


def test_tied_duplicates_are_decided_by_trial_number_not_by_being_the_candidate():
    best, dup = [0.0, 0.0], [1.0, 1.0]
    worse = np.array([best, dup, dup, [2.0, 2.0], [3.0, 3.0]])  # with the candidate: 6 points, 2 continue
    # Three identical points on the second front: only the earliest of them takes the second place.
    numbers = np.array([0, 1, 2, 4, 5])
    assert not promotable(np.array(dup), worse, 3, 0.0, candidate_number=3, other_numbers=numbers)
    assert promotable(np.array(dup), worse, 3, 0.0, candidate_number=0, other_numbers=numbers + 1)


def test_a_pruner_that_remembers_finished_peers_decides_like_a_fresh_one(tmp_path):
    """The pruner keeps finished peers' rung vectors; a running peer's history still grows, so its
    vector must be read anew at every decision."""
    cfg = config(tmp_path, max_epochs_per_trial=27)
    kept, rng = ParetoRungPruner(cfg), np.random.default_rng(5)
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"])

    def history(n):
        return [{"epoch": e + 1, "val_score": float(rng.choice([0.4, 0.5, 0.6])), "val_loss": 1.0,
                 "wall_seconds": float(rng.choice([1.0, 2.0])), "cpu_seconds": 1.0} for e in range(n)]

    running = []
    for number in range(40):
        trial = study.ask()
        trial.set_user_attr(BRACKET_ATTR, kept.bracket_of(number))
        trial.set_user_attr("model_size_mb", float(rng.choice([1.0, 2.0])))
        trial.set_user_attr("epoch_history", history(int(rng.integers(1, 27))))
        if number % 4 == 0:
            running.append(trial)  # left running: its history grows below
        else:
            study.tell(trial, state=TrialState.PRUNED)
    decisions = set()
    for _ in range(200):
        grown = running[int(rng.integers(len(running)))]
        grown.set_user_attr("epoch_history", history(int(rng.integers(1, 27))))
        bracket = int(rng.integers(len(kept.brackets)))
        me = history(int(rng.choice(kept.brackets[bracket])))
        args = (study, 1000, bracket, me, float(rng.choice([1.0, 2.0])))
        decision = kept.should_prune(*args)
        assert decision == ParetoRungPruner(cfg).should_prune(*args)
        decisions.add(decision)
    assert decisions == {True, False} and kept._finished_vectors


def test_an_infeasible_peer_takes_no_promotion_slot(tmp_path):
    """Three trials at the first rung, one promoted (eta 3). The best scorer was stopped over the time
    limit: it cannot join the front, so the slot goes to the best feasible trial."""
    cfg = config(tmp_path, max_epochs_per_trial=27)
    pruner = ParetoRungPruner(cfg)
    rung = pruner.brackets[0][0]
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"])

    def history(score):
        return [{"epoch": e + 1, "val_score": score, "val_loss": 1.0, "wall_seconds": 1.0, "cpu_seconds": 1.0}
                for e in range(rung)]

    for score, over_limit in [(0.9, 2.0), (0.3, -1.0)]:  # slow and best; feasible and worst
        trial = study.ask()
        trial.set_user_attr(BRACKET_ATTR, 0)
        trial.set_user_attr("model_size_mb", 1.0)
        trial.set_user_attr("epoch_history", history(score))
        trial.set_constraint("model_size_mb", -1.0)
        trial.set_constraint("training_time_minutes", over_limit)
        study.tell(trial, state=TrialState.PRUNED)
    assert not pruner.should_prune(study, 2, 0, history(0.6), 1.0)
    # Were the slow trial a peer, it would take the slot: it dominates the candidate.
    assert not promotable(np.array([-0.6, 1.0, 1.0]), np.array([[-0.9, 1.0, 1.0], [-0.3, 1.0, 1.0]]), 3, 0.01,
                          candidate_number=2, other_numbers=np.array([0, 1]))


# --- a real multi-objective study with pruning -----------------------------------------------
def _assert_every_decision_follows_the_rule(trials, pruner, tolerance):
    """Rebuild each rung's peers from the stored epoch histories (trials run one after another, so a
    trial's peers are the earlier feasible trials of its bracket that reached the rung) and check that every
    pruned trial was not promotable and every continued one was, by the independent implementation."""
    decisions = 0
    for trial in trials:
        history, bracket = trial.user_attrs["epoch_history"], trial.user_attrs[BRACKET_ATTR]
        for rung in pruner.brackets[bracket]:
            if len(history) < rung:
                continue
            peers = [t for t in trials if t.number < trial.number and t.user_attrs[BRACKET_ATTR] == bracket
                     and len(t.user_attrs["epoch_history"]) >= rung and all(c <= 0 for c in t.constraints.values())]
            rows = [trial] + peers

            def vector(t):
                seen = t.user_attrs["epoch_history"][:rung]
                return [-max(h["val_score"] for h in seen), t.user_attrs["model_size_mb"],
                        sum(h["wall_seconds"] for h in seen) / rung]

            expected = reference_promoted([vector(t) for t in rows], [t.number for t in rows], pruner.eta, tolerance)[0]
            pruned_here = trial.user_attrs.get("stop_reason") == f"pruned at epoch {rung}"
            assert pruned_here == (not expected), (trial.number, rung)
            decisions += 1
    assert decisions >= len(trials)  # every trial met at least its first rung


def test_multi_objective_study_prunes_and_sampler_keeps_working(tmp_path):
    # The rungs alone: the dominance check (tests/test_dominance.py) would stop some trials too, and
    # whether it does hangs on this machine's epoch times.
    cfg = config(tmp_path, pruning={"dominance_quantile": None})
    study = MultiObjectiveOptimizer(cfg, progress=False).optimize()
    trials = study.get_trials()
    states = [t.state for t in trials]
    assert len(trials) == 12 and TrialState.FAIL not in states
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned, "expected some pruned trials"
    first_pruned = min(t.number for t in pruned)
    # TPE (after 3 start-up trials) kept proposing and completing trials after pruned ones.
    assert any(t.state == TrialState.COMPLETE for t in trials if t.number > max(first_pruned, 3))
    # Intermediate scores are in storage, per trial and epoch, and survive a reload.
    reloaded = optuna.load_study(study_name=cfg.resolved_study_name, storage=cfg.resolved_storage)
    for t in reloaded.trials:
        history = t.user_attrs["epoch_history"]
        assert [h["epoch"] for h in history] == list(range(1, len(history) + 1))
        assert t.user_attrs[BRACKET_ATTR] in (0, 1)
        if t.state == TrialState.PRUNED:
            assert len(history) < 9 and t.user_attrs["stop_reason"].startswith("pruned at epoch")
            assert len(history) in (1, 3)  # only at rung epochs
    _assert_every_decision_follows_the_rule(reloaded.trials, ParetoRungPruner(cfg), cfg.pruning.score_tolerance)
    best = json.loads((cfg.save_dir / "best_configurations.json").read_text())
    assert best and not {b["trial_number"] for b in best} & {t.number for t in pruned}
    assert all(t.state == TrialState.COMPLETE for t in study.best_trials)
    # The sampler still proposes from a study holding pruned trials.
    trial = study.ask()
    assert set(trial.params) == set() and isinstance(study.sampler, optuna.samplers.TPESampler)
    MultiObjectiveOptimizer(cfg, progress=False).suggest_hyperparameters(trial)
    assert set(SPACE) <= set(trial.params)


def test_no_pruning_switch_trains_every_trial_to_the_end(tmp_path):
    result = CliRunner().invoke(
        app,
        ["optimize", "--scenario", "smoke", "--data", "synthetic", "--n-trials", "4", "--no-pruning",
         "--save-dir", str(tmp_path / "np")],
    )
    assert result.exit_code == 0, result.output
    study = optuna.load_study(study_name="smoke", storage=f"sqlite:///{tmp_path / 'np' / 'study.db'}")
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    assert all(BRACKET_ATTR not in t.user_attrs for t in study.trials)


@pytest.mark.parametrize(
    ("strategy", "pruner"),
    [("hyperband", optuna.pruners.HyperbandPruner), ("asha", optuna.pruners.SuccessiveHalvingPruner)],
)
def test_single_objective_uses_optunas_own_pruner(tmp_path, strategy, pruner):
    cfg = config(tmp_path, objectives=["accuracy"], n_trials=4, pruning={"strategy": strategy})
    study = MultiObjectiveOptimizer(cfg, progress=False).optimize()
    assert type(study.pruner) is pruner
    assert all(len(t.intermediate_values) >= 1 for t in study.trials)


# --- the training-time constraint --------------------------------------------------------------
def test_slow_trial_is_stopped_and_infeasible(tmp_path, monkeypatch):
    original = Trainer._train_epoch

    def slow(self, optimizer, generator):
        time.sleep(0.5)
        return original(self, optimizer, generator)

    monkeypatch.setattr(Trainer, "_train_epoch", slow)
    # 3 s limit; each epoch >= 0.5 s; early stopping (patience 2) cannot end it before epoch 3.
    cfg = config(tmp_path, n_trials=2, max_training_time_minutes=0.05, pruning={"enabled": False},
                 training={"early_stopping_patience": 2})
    study = MultiObjectiveOptimizer(cfg, progress=False).optimize()
    for t in study.trials:
        assert t.state == TrialState.PRUNED
        assert t.constraints["training_time_minutes"] > 0
        assert t.user_attrs["stop_reason"].startswith("time limit")
        # Stopped as soon as exceeding became certain, long before its 9 epochs.
        assert len(t.user_attrs.get("epoch_history", [])) <= 5
    assert json.loads((cfg.save_dir / "best_configurations.json").read_text()) == []
    summary = (cfg.save_dir / "optimization_summary.txt").read_text()
    assert "2 infeasible" in summary


def test_fast_trial_records_feasible_time_constraint(tmp_path):
    cfg = config(tmp_path, n_trials=2, max_training_time_minutes=30.0, max_epochs_per_trial=2)
    study = MultiObjectiveOptimizer(cfg, progress=False).optimize()
    for t in study.trials:
        assert t.constraints["training_time_minutes"] <= 0
        if t.state == TrialState.COMPLETE:
            assert t.constraints["training_time_minutes"] == pytest.approx(t.values[1] - 30.0)


def test_trial_whose_first_epoch_breaks_the_limit_stops_within_a_few_batches(tmp_path, monkeypatch):
    from cnn_lstm_hpo.model import HybridCNNLSTM

    calls = []
    original = HybridCNNLSTM.forward

    def slow_forward(self, x):
        if self.training:
            calls.append(1)
            time.sleep(0.5)
        return original(self, x)

    monkeypatch.setattr(HybridCNNLSTM, "forward", slow_forward)
    # ~2,000 training windows (all 1,500 bars of each symbol) / 64 per batch = 31 batches x 0.5 s
    # = 15 s projected after 3 batches, far over 0.05 min (3 s).
    space = {**SPACE, "batch_size": {"type": "categorical", "choices": [64]}}
    cfg = config(tmp_path, n_trials=1, search_space=space, max_training_time_minutes=0.05, pruning={"enabled": False},
                 data={"source": "synthetic", "sequence_length": 8, "start": None})
    trial = MultiObjectiveOptimizer(cfg, progress=False).optimize().trials[0]
    assert trial.state == TrialState.PRUNED
    assert trial.user_attrs["stop_reason"].startswith("time limit:")
    assert "epoch_history" not in trial.user_attrs  # not even one epoch was spent
    assert len(calls) <= 4 and trial.constraints["training_time_minutes"] > 0


def test_epochs_that_will_surely_follow_stop_a_trial_early(tmp_path, monkeypatch):
    """0.5 s epochs, 9 epochs at most, patience 9, no pruning: all 9 epochs are certain, so 4.5 s
    of training is projected after epoch 1 and a 3 s limit stops the trial there."""
    original = Trainer._train_epoch

    def slow(self, optimizer, generator):
        time.sleep(0.5)
        return original(self, optimizer, generator)

    monkeypatch.setattr(Trainer, "_train_epoch", slow)
    cfg = config(tmp_path, n_trials=1, max_training_time_minutes=0.05, pruning={"enabled": False})
    trial = MultiObjectiveOptimizer(cfg, progress=False).optimize().trials[0]
    assert trial.state == TrialState.PRUNED
    assert len(trial.user_attrs["epoch_history"]) == 1
    assert trial.constraints["training_time_minutes"] > 0


@pytest.mark.parametrize("measure", ["cpu", "wall", "steady"])
def test_the_probe_and_the_limit_use_the_configured_time_measure(tmp_path, monkeypatch, measure):
    """A wall clock that runs 100 s a call, CPU time as it is: with time_measure cpu the probe, the
    projection and the constraint see CPU seconds and the trial completes within 3 CPU seconds;
    with wall (and steady, a wall measure) the same trial is stopped by the probe."""
    import types

    import cnn_lstm_hpo.train as train_module

    ticks = iter(range(10**6))
    monkeypatch.setattr(train_module, "time", types.SimpleNamespace(
        perf_counter=lambda: 100.0 * next(ticks), process_time=time.process_time))
    cfg = config(tmp_path, n_trials=1, max_epochs_per_trial=2, max_training_time_minutes=0.05,
                 pruning={"enabled": False}, training={"time_measure": measure, "early_stopping_patience": 9})
    trial = MultiObjectiveOptimizer(cfg, progress=False).optimize().trials[0]
    if measure in ("wall", "steady"):
        assert trial.state == TrialState.PRUNED and "epoch_history" not in trial.user_attrs
        assert trial.user_attrs["stop_reason"].startswith("time limit:")
        return
    assert trial.state == TrialState.COMPLETE, trial.user_attrs.get("stop_reason")
    training = trial.user_attrs["training"]
    assert training["wall_minutes"] > 1 and training["cpu_minutes"] < 0.05  # the two measures differ clearly
    assert trial.values[1] == pytest.approx(training["cpu_minutes"])
    assert trial.constraints["training_time_minutes"] == pytest.approx(training["cpu_minutes"] - 0.05)


def _monitor(tmp_path, **overrides):
    from cnn_lstm_hpo.monitor import multi_objective_pruner, single_objective_pruner

    cfg = config(tmp_path, **overrides)
    study = optuna.create_study(directions=["maximize"] * len(cfg.objectives) if len(cfg.objectives) == 1
                                else ["maximize", "minimize", "minimize"][: len(cfg.objectives)])
    study.pruner = single_objective_pruner(cfg)
    return TrialMonitor(study.ask(), cfg, 1.0, multi_objective_pruner(cfg))


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        # Patience 9 > 6 epochs: a trial completes at epoch 6 only; the rungs (epochs 1 and 3) do not count.
        (dict(max_epochs_per_trial=6), [(0, 0, 6), (1, 0, 6), (3, 0, 6), (4, 2, 6)]),
        # Patience 2 ends a trial at epoch 3 at the earliest; then 2 - stale epochs after the last best.
        (dict(max_epochs_per_trial=6, pruning={"enabled": False}, training={"early_stopping_patience": 2}),
         [(0, 0, 3), (1, 0, 3), (3, 1, 4), (4, 0, 6)]),
        # The same with rungs at epochs 1 and 3: unchanged.
        (dict(max_epochs_per_trial=6, training={"early_stopping_patience": 2}), [(0, 0, 3), (1, 0, 3), (3, 1, 4)]),
        # Optuna's HyperbandPruner (one objective) may stop a trial after any epoch: that is no completion.
        (dict(max_epochs_per_trial=6, objectives=["accuracy"]), [(0, 0, 6), (2, 0, 6)]),
    ],
)
def test_epoch_at_which_a_trial_can_complete(tmp_path, overrides, expected):
    monitor = _monitor(tmp_path, **overrides)
    for done, stale, through in expected:
        assert monitor.completes_at(done, stale) == through, (done, stale)


def test_probe_stops_a_trial_that_cannot_complete_even_if_it_could_reach_the_first_rung(tmp_path):
    monitor = _monitor(tmp_path, max_epochs_per_trial=6, max_training_time_minutes=1.0)
    assert monitor.pruner.brackets == [[1, 3]]
    monitor.probe(9.0, PROBE_BATCHES)  # 6 epochs x 9 s = 0.9 min to complete: within the limit, the trial goes on
    with pytest.raises(optuna.TrialPruned, match=r"training time 1\.10 min > max_training_time_minutes 1\.0"):
        monitor.probe(11.0, PROBE_BATCHES)  # the first rung (epoch 1) takes 11 s, but completing takes 1.1 min


def test_after_one_batch_the_probe_stops_only_a_trial_far_over_the_limit(tmp_path):
    monitor = _monitor(tmp_path, max_epochs_per_trial=6, max_training_time_minutes=1.0)
    # One batch timed, warm-up included: 6 epochs x 29 s = 2.9 min < 3 x 1 min, so it waits for the full probe.
    monitor.probe(29.0, 1)
    with pytest.raises(optuna.TrialPruned, match=r"training time 3\.10 min > max_training_time_minutes 1\.0"):
        monitor.probe(31.0, 1)


def test_auto_time_limit_follows_the_study_budget():
    assert create_optimization_config(scenario="quick_test").max_training_time_minutes == pytest.approx(2.4)  # 2 h / 50
    assert create_optimization_config(scenario="production").max_training_time_minutes == 90.0  # the guide's
    assert create_optimization_config(n_trials=10).max_training_time_minutes == 120.0  # capped


def _epoch(number: int, last: bool = False) -> EpochResult:
    val = Evaluation(loss=1.0, accuracy=0.5, classification_score=0.5, regression_score=0.5, composite=0.5, majority_rate=0.5)
    return EpochResult(number, 1.0, val, wall_seconds=0.1, cpu_seconds=0.1, last=last, epochs_since_best=0)


def test_history_is_saved_at_rungs_at_the_end_and_every_few_seconds_not_every_epoch(tmp_path, monkeypatch):
    now = [100.0]
    monkeypatch.setattr("cnn_lstm_hpo.monitor.time.monotonic", lambda: now[0])
    monitor = _monitor(tmp_path, max_epochs_per_trial=9, pruning={"enabled": True, "reduction_factor": 3})
    rungs = monitor.pruner.brackets[monitor.bracket]
    assert rungs == [1, 3]
    saved = []
    for number in range(1, 10):
        if number == 6:
            now[0] += LIVE_VIEW_SECONDS  # the live view's interval passes during epoch 6
        monitor(_epoch(number, last=number == 9))
        saved.append(len(monitor.trial.study.trials[0].user_attrs.get("epoch_history", [])))
    # epoch 1 and 3: rungs; 6: the interval; nothing in between. Not the last epoch: the objective
    # saves it, with the trial's other last writes (one transaction).
    assert saved == [1, 1, 3, 3, 3, 6, 6, 6, 6]
    monitor.save()
    assert len(monitor.trial.study.trials[0].user_attrs["epoch_history"]) == 9


def test_an_ending_trial_saves_the_epochs_not_yet_saved(tmp_path, monkeypatch):
    monkeypatch.setattr("cnn_lstm_hpo.monitor.time.monotonic", lambda: 100.0)
    monitor = _monitor(tmp_path, max_epochs_per_trial=9, pruning={"enabled": False})
    for number in (1, 2, 3):
        monitor(_epoch(number))
    history = lambda: monitor.trial.study.trials[0].user_attrs["epoch_history"]  # noqa: E731
    assert len(history()) == 1
    monitor.save()  # the objective does this however the trial ends
    assert [h["epoch"] for h in history()] == [1, 2, 3]


def test_a_trial_that_fails_mid_way_keeps_every_epoch_it_trained(tmp_path, monkeypatch):
    original, calls = Trainer._train_epoch, []

    def fails_in_epoch_3(self, optimizer, generator):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("out of memory")
        return original(self, optimizer, generator)

    monkeypatch.setattr(Trainer, "_train_epoch", fails_in_epoch_3)
    cfg = config(tmp_path, n_trials=1, max_epochs_per_trial=6, pruning={"enabled": False})
    with pytest.raises(StudyFailed, match="all 1 trials failed"):
        MultiObjectiveOptimizer(cfg, progress=False).optimize()
    trial = optuna.load_study(study_name="smoke", storage=f"sqlite:///{tmp_path / 'run' / 'study.db'}").trials[0]
    assert trial.state == TrialState.FAIL and trial.user_attrs["fail_reason"] == "RuntimeError: out of memory"
    assert [h["epoch"] for h in trial.user_attrs["epoch_history"]] == [1, 2]
