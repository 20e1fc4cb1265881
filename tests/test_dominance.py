"""Stopping a trial that can no longer reach the front (``pruning.dominance_quantile``)."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from cnn_lstm_hpo import MultiObjectiveOptimizer
from cnn_lstm_hpo.monitor import TrialMonitor, dominance_check, multi_objective_pruner
from cnn_lstm_hpo.objectives import Evaluation
from cnn_lstm_hpo.pruning import MIN_GAINS, DominanceCheck, expected_gain, score_if_ended
from cnn_lstm_hpo.train import EpochResult

from test_pruning import config

DIRECTIONS = {"accuracy": "maximize", "training_time": "minimize", "model_size": "minimize"}


def history(scores_and_losses, seconds=1.0):
    return [{"epoch": i + 1, "val_score": s, "val_loss": loss, "wall_seconds": seconds, "cpu_seconds": seconds}
            for i, (s, loss) in enumerate(scores_and_losses)]


def completed_study(objectives, trials):
    """An in-memory study of completed trials: (values by objective, epoch history, feasible)."""
    study = optuna.create_study(directions=[DIRECTIONS[o] for o in objectives])
    for values, epochs, feasible in trials:
        trial = study.ask()
        trial.set_user_attr("epoch_history", epochs)
        trial.set_constraint("model_size_mb", -1.0 if feasible else 1.0)
        study.tell(trial, [values[o] for o in objectives])
    return study


def check(tmp_path, objectives, quantile=0.5, scheme="holdout"):
    return DominanceCheck(config(tmp_path, objectives=objectives, pruning={"dominance_quantile": quantile},
                                 evaluation={"scheme": scheme, "folds": 3}))


# --- the parts, on hand-made curves ------------------------------------------------------------------------------
def test_score_if_ended_is_the_score_of_the_best_loss_epoch_the_first_of_equal_losses():
    epochs = history([(0.5, 1.0), (0.7, 0.8), (0.6, 0.8), (0.9, 0.9)])
    assert score_if_ended(epochs) == 0.7  # not the best score (0.9), not the later equal loss (0.6)
    assert score_if_ended(epochs[:1]) == 0.5


def test_expected_gain_is_a_quantile_of_what_trials_that_trained_past_the_epoch_gained():
    start = [(0.4, 1.0), (0.5, 0.9)]  # the score if ended at epoch 2: 0.5
    past = [(history(start + [(f, 0.8)]), f) for f in (0.5, 0.52, 0.54, 0.56, 0.60)]  # gains 0 .. 0.10
    ended_there = (history(start), 0.5)
    big_gain_early = (history([(0.1, 1.0), (0.5, 0.9), (0.9, 0.8)]), 0.9)  # gained 0.8 after epoch 1, 0.4 after 2
    assert expected_gain(past + [ended_there], 2, 0.5) == pytest.approx(0.04)
    assert expected_gain(past + [ended_there], 2, 1.0) == pytest.approx(0.10)
    assert expected_gain(past + [ended_there], 2, 0.25) == pytest.approx(0.02)
    assert expected_gain(past + [big_gain_early], 2, 1.0) == pytest.approx(0.4)
    assert expected_gain(past[:4] + [ended_there], 2, 0.5) is None  # 4 trained past epoch 2: too few
    assert expected_gain(past, 3, 0.5) is None  # none trained past epoch 3
    worse = [(history(start + [(0.45, 0.8)]), 0.45)] * MIN_GAINS
    assert expected_gain(worse, 2, 1.0) == 0.0  # a trial is never assumed to get worse


def _trained(final, size, minutes, feasible=True):
    """A completed trial of 9 epochs that gained 0.02 after epoch 1, 0.01 after epoch 2, nothing later."""
    epochs = history([(final - 0.02, 1.0), (final - 0.01, 0.9)] + [(final, 0.8 - e / 100) for e in range(7)],
                     seconds=minutes * 60 / 9)
    return {"accuracy": final, "training_time": minutes, "model_size": size}, epochs, feasible


def test_a_completed_trial_at_least_as_good_everywhere_stops_the_trial(tmp_path):
    objectives = ["accuracy", "training_time", "model_size"]
    others = [_trained(0.50, 9.0, 9.0) for _ in range(MIN_GAINS)]  # gains 0.02 after epoch 1, far from the rest
    study = completed_study(objectives, others + [_trained(0.60, 2.0, 1.0), _trained(0.70, 1.0, 0.5, feasible=False)])
    rule = check(tmp_path, objectives)
    epoch_1 = history([(0.57, 1.0)])
    # 0.57 + 0.02 = 0.59 <= 0.60, size 3 >= 2, time 1.5 >= 1: trial 5 dominates.
    assert rule.dominator(study, epoch_1, 1.5, 3.0).number == MIN_GAINS
    # Equal in every objective still adds nothing to the front.
    assert rule.dominator(study, history([(0.58, 1.0)]), 1.0, 2.0).number == MIN_GAINS
    # A projected score above 0.60, a smaller model or a faster one can still reach the front.
    assert rule.dominator(study, history([(0.59, 1.0)]), 1.5, 3.0) is None
    assert rule.dominator(study, epoch_1, 1.5, 1.5) is None
    assert rule.dominator(study, epoch_1, 0.9, 3.0) is None
    # The infeasible trial 6 would dominate everything but is not on the front.
    assert rule.dominator(study, history([(0.65, 1.0)]), 1.5, 3.0) is None


def test_without_enough_completed_curves_nothing_stops_unless_accuracy_is_no_objective(tmp_path):
    few = [_trained(0.60, 2.0, 1.0)] * (MIN_GAINS - 1)
    with_accuracy = ["accuracy", "training_time", "model_size"]
    assert check(tmp_path, with_accuracy).dominator(completed_study(with_accuracy, few), history([(0.1, 1.0)]), 5.0, 5.0) is None
    # Size and time are exact (time projected): no gains to estimate, one completed trial decides.
    cost_only = ["training_time", "model_size"]
    study = completed_study(cost_only, few[:1])
    assert check(tmp_path, cost_only).dominator(study, history([(0.9, 1.0)]), 5.0, 5.0).number == 0
    assert check(tmp_path, cost_only).dominator(study, history([(0.9, 1.0)]), 0.5, 5.0) is None


def _quantile(values, q):
    """Linear interpolation between order statistics, written out."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (position - low) * (ordered[high] - ordered[low])


def _finished_runs(objectives, trials, walk_forward):
    """(number, epoch history, values by objective) of what a trial is checked against: completed
    feasible trials, or under walk-forward the first fold of every feasible trial that has done one."""
    feasible = [t for t in trials if all(v <= 0 for v in t.constraints.values())]
    if not walk_forward:
        return [(t.number, t.user_attrs["epoch_history"], dict(zip(objectives, t.values)))
                for t in feasible if t.state == TrialState.COMPLETE]
    runs = []
    for t in feasible:
        if t.state != TrialState.FAIL and t.user_attrs.get("fold_scores"):
            first = t.user_attrs["fold_scores"][0]
            runs.append((t.number, t.user_attrs["epoch_history"], {
                "accuracy": first["score"], "training_time": first["minutes"], "model_size": t.user_attrs["model_size_mb"]}))
    return runs


def _independent_dominator(objectives, trials, epochs, minutes, size, quantile, walk_forward=False):
    """The rule written another way: loops over named objectives, first dominating trial by number;
    equal within floating-point noise counts as equal."""
    done = _finished_runs(objectives, trials, walk_forward)
    mine = {"training_time": minutes, "model_size": size}
    if "accuracy" in objectives:
        k = len(epochs)
        gains = []
        for _, h, values in done:
            if len(h) > k:
                best = 0
                for i in range(1, k):
                    if h[i]["val_loss"] < h[best]["val_loss"]:
                        best = i
                gains.append(values["accuracy"] - h[best]["val_score"])
        if len(gains) < MIN_GAINS:
            return None
        best = 0
        for i in range(1, k):
            if epochs[i]["val_loss"] < epochs[best]["val_loss"]:
                best = i
        mine["accuracy"] = epochs[best]["val_score"] + max(0.0, _quantile(gains, quantile))
    for number, _, values in sorted(done, key=lambda run: run[0]):
        if all(math.isclose(values[o], mine[o], rel_tol=1e-9)
               or ((values[o] > mine[o]) if DIRECTIONS[o] == "maximize" else (values[o] < mine[o]))
               for o in objectives):
            return number
    return None


OBJECTIVE_SETS = [["accuracy", "training_time", "model_size"], ["model_size", "accuracy", "training_time"],
                  ["training_time", "accuracy"], ["model_size", "accuracy"], ["training_time", "model_size"]]


@pytest.mark.parametrize("scheme", ["holdout", "walk_forward"])
def test_dominator_matches_an_independent_implementation(tmp_path, scheme):
    """200 random studies, every objective order; values, losses and times from 3 values (ties
    everywhere); infeasible, pruned and running trials, under walk-forward with 0-3 folds done.
    The accuracy path must be reached often."""
    walk_forward = scheme == "walk_forward"
    outcomes = {"waits": 0, "dominated": 0, "free": 0}
    grid = [0.1, 0.2, 0.3]
    for seed in range(200):
        rng = np.random.default_rng(seed)
        objectives = OBJECTIVE_SETS[seed % len(OBJECTIVE_SETS)]
        quantile = float(rng.choice([0.0, 0.25, 0.5, 0.9, 1.0]))

        def epochs(n):
            return history([(float(rng.choice(grid)), float(rng.choice(grid))) for _ in range(n)],
                           seconds=float(rng.choice(grid)))

        study = optuna.create_study(directions=[DIRECTIONS[o] for o in objectives])
        for _ in range(int(rng.integers(0, 30))):
            trial = study.ask()
            trial.set_user_attr("epoch_history", epochs(int(rng.integers(1, 8))))
            trial.set_constraint("model_size_mb", float(rng.choice([-1.0, 0.0, 1.0], p=[0.4, 0.4, 0.2])))
            trial.set_user_attr("model_size_mb", float(rng.choice(grid)))
            if walk_forward:
                trial.set_user_attr("fold_scores", [{"score": float(rng.choice(grid)), "minutes": float(rng.choice(grid))}
                                                    for _ in range(int(rng.integers(0, 4)))])
            state = rng.choice(["complete", "pruned", "running"], p=[0.7, 0.15, 0.15])
            if state == "complete":
                study.tell(trial, [float(rng.choice(grid)) for _ in objectives])
            elif state == "pruned":
                study.tell(trial, state=TrialState.PRUNED)
        rule = check(tmp_path, objectives, quantile, scheme)
        for _ in range(5):
            mine, minutes, size = epochs(int(rng.integers(1, 5))), float(rng.choice(grid)), float(rng.choice(grid))
            found = rule.dominator(study, mine, minutes, size)
            expected = _independent_dominator(objectives, study.trials, mine, minutes, size, quantile, walk_forward)
            assert (found.number if found else None) == expected, (seed, objectives)
            if expected is not None:
                outcomes["dominated"] += 1
            elif "accuracy" in objectives and _gains_wait(_finished_runs(objectives, study.trials, walk_forward), len(mine)):
                outcomes["waits"] += 1
            else:
                outcomes["free"] += 1
    assert min(outcomes.values()) >= 100, outcomes


def _gains_wait(runs, epoch):
    return sum(len(history) > epoch for _, history, _ in runs) < MIN_GAINS


@pytest.mark.parametrize(
    "overrides",
    [{"objectives": ["accuracy"]}, {"pruning": {"enabled": False}}, {"pruning": {"dominance_quantile": None}}],
    ids=["one-objective", "pruning-off", "quantile-null"],
)
def test_the_check_is_off_where_it_cannot_or_should_not_apply(tmp_path, overrides):
    assert dominance_check(config(tmp_path, **overrides)) is None
    assert isinstance(dominance_check(config(tmp_path)), DominanceCheck)  # the default: on


# --- in a trial and in a study -------------------------------------------------------------------------------------
def _epoch(number, score, loss, seconds=6.0):
    val = Evaluation(loss=loss, accuracy=score, classification_score=score, regression_score=0.5, composite=score, majority_rate=0.5)
    return EpochResult(number, 1.0, val, wall_seconds=seconds, cpu_seconds=seconds, last=False, epochs_since_best=0)


def test_a_trial_is_checked_after_every_epoch_against_its_projected_time(tmp_path):
    """9 epochs, patience 9: after epoch e of 6 s the trial will surely train 9 - e more, so its
    projected training time is 0.9 minutes whatever e is."""
    objectives = ["accuracy", "training_time", "model_size"]
    cfg = config(tmp_path, objectives=objectives, pruning={"dominance_quantile": 1.0})
    others = [_trained(0.50, 9.0, 9.0) for _ in range(MIN_GAINS)]
    study = completed_study(objectives, others + [_trained(0.60, 1.0, 0.9)])
    trial = study.ask()
    monitor = TrialMonitor(trial, cfg, 1.0, multi_objective_pruner(cfg), dominance_check(cfg))
    monitor.pruner = None  # the rungs decide nothing here
    monitor(_epoch(1, 0.59, 1.0))  # 0.59 + 0.02 > 0.60: not dominated
    monitor(_epoch(2, 0.60, 0.9))  # 0.60 + 0.01: not dominated
    assert "stop_reason" not in study.trials[-1].user_attrs
    # Projected: 3 epochs of 6 s, then 6 more it will surely train (patience 9) = 0.9 minutes, as
    # fast as the completed trial; 0.55 if ended (epoch 3 has the best loss) + 0 gained after epoch 3.
    with pytest.raises(optuna.TrialPruned, match=rf"^dominated at epoch 3 by trial {MIN_GAINS}$"):
        monitor(_epoch(3, 0.55, 0.8))
    assert monitor.projected_minutes(_epoch(3, 0.55, 0.8)) == pytest.approx(0.9)
    monitor.save()  # as the objective does however the trial ends
    stored = study.trials[-1].user_attrs
    assert stored["stop_reason"] == f"dominated at epoch 3 by trial {MIN_GAINS}"
    assert len(stored["epoch_history"]) == 3


def _first_folds_study(objectives, best_minutes):
    """Trials pruned after their second fold: MIN_GAINS far off, then one of 0.60, size 1 and
    ``best_minutes`` on its first fold."""
    study = optuna.create_study(directions=[DIRECTIONS[o] for o in objectives])
    for final, size, minutes in [(0.50, 9.0, 9.0)] * MIN_GAINS + [(0.60, 1.0, best_minutes)]:
        _, epochs, _ = _trained(final, size, minutes)
        trial = study.ask()
        trial.set_user_attr("epoch_history", epochs)
        trial.set_user_attr("model_size_mb", size)
        trial.set_user_attr("fold_scores", [{"score": final, "minutes": minutes}, {"score": 0.0, "minutes": 50.0}])
        study.tell(trial, state=TrialState.PRUNED)
    return study


def test_under_walk_forward_a_first_fold_is_checked_against_the_other_trials_first_folds(tmp_path):
    """The trial above under walk-forward, beside trials pruned after their second fold (no values,
    a second fold of 0.0 and 50 minutes): their first folds are what it is checked against."""
    objectives = ["accuracy", "training_time", "model_size"]
    cfg = config(tmp_path, objectives=objectives, pruning={"dominance_quantile": 1.0},
                 evaluation={"scheme": "walk_forward", "folds": 3})
    for best_minutes in (0.9, 1.5):
        monitor = TrialMonitor(_first_folds_study(objectives, best_minutes).ask(), cfg, 1.0, None, dominance_check(cfg))
        monitor(_epoch(1, 0.59, 1.0))
        monitor(_epoch(2, 0.60, 0.9))
        if best_minutes == 0.9:  # as fast as this fold's projected 0.9 minutes: dominated
            with pytest.raises(optuna.TrialPruned, match=rf"^dominated at epoch 3 by trial {MIN_GAINS} on the first fold$"):
                monitor(_epoch(3, 0.55, 0.8))
        else:  # this fold is faster than that first fold: not dominated
            monitor(_epoch(3, 0.55, 0.8))


def test_a_study_stops_exactly_the_trials_that_can_no_longer_reach_the_front(tmp_path):
    """A real study (trials one after another): every check is redone from the stored trials by
    the independent implementation, stopped trials and continued ones alike. Accuracy and size:
    epoch times vary run to run, and whether a trial is stopped must not."""
    objectives = ["accuracy", "model_size"]
    cfg = config(tmp_path, n_trials=16, objectives=objectives, pruning={"dominance_quantile": 0.0}, max_training_time_minutes=60)
    trials = sorted(MultiObjectiveOptimizer(cfg, progress=False).optimize().trials, key=lambda t: t.number)
    reasons = [t.user_attrs.get("stop_reason", "") for t in trials]
    assert any(r.startswith("dominated at epoch") for r in reasons), reasons
    checks = 0
    for trial, reason in zip(trials, reasons):
        trained = trial.user_attrs["epoch_history"]
        for e in range(1, len(trained) + 1):
            last = e == len(trained) and trial.state == TrialState.COMPLETE  # early stopping or the budget: no check
            if last or reason == f"pruned at epoch {e}":
                break
            earlier = [t for t in trials if t.number < trial.number]
            expected = _independent_dominator(objectives, earlier, trained[:e], None, trial.user_attrs["model_size_mb"], 0.0)
            stopped_by = int(reason.rsplit(" ", 1)[1]) if reason.startswith(f"dominated at epoch {e} by") else None
            assert stopped_by == expected, (trial.number, e)
            checks += 1
    assert checks >= len(trials)


def test_a_trial_over_the_time_limit_stops_as_infeasible_even_when_also_dominated(tmp_path):
    objectives = ["accuracy", "training_time", "model_size"]
    cfg = config(tmp_path, objectives=objectives, max_training_time_minutes=0.5)
    study = completed_study(objectives, [_trained(0.60, 1.0, 0.4) for _ in range(MIN_GAINS)])
    monitor = TrialMonitor(study.ask(), cfg, 1.0, None, dominance_check(cfg))
    # 9 epochs of 6 s are certain (patience 9): 0.9 min > 0.5; and trial 0 dominates (0.52 < 0.60).
    with pytest.raises(optuna.TrialPruned, match=r"^training time 0\.90 min > max_training_time_minutes 0\.5$"):
        monitor(_epoch(1, 0.50, 1.0))
    monitor.save()  # as the objective does however the trial ends: the reason goes with its last writes
    assert study.trials[-1].user_attrs["stop_reason"].startswith("time limit: 0.90 min projected")


def test_a_trial_identical_to_a_completed_one_stops_at_its_first_epoch(tmp_path):
    """One architecture, one replayed curve of 0.7-s epochs (best at epoch 1, so each trial
    completes at epoch 6, patience 5). A later trial's time projected at epoch 1 (0.7 s + 5 x 0.7 s)
    and a completed trial's (six 0.7 s summed) differ in their last bits, the projection lower:
    equal must still count as dominated."""
    from test_replay import hand_made_row, loaders

    from cnn_lstm_hpo import replay

    one_architecture = {"cnn_num_filters": {"type": "categorical", "choices": [8]},
                        "cnn_filter_sizes": {"type": "categorical", "choices": [[3]]},
                        "cnn_attention_heads": {"type": "categorical", "choices": [2]},
                        "lstm_hidden_dim": {"type": "categorical", "choices": [8]},
                        "lstm_num_layers": {"type": "int", "low": 1, "high": 1},
                        "lstm_bidirectional": {"type": "categorical", "choices": [False]},
                        "batch_size": {"type": "categorical", "choices": [256]}}
    cfg = config(tmp_path, n_trials=MIN_GAINS + 3, max_epochs_per_trial=8, search_space=one_architecture,
                 objectives=["accuracy", "training_time", "model_size"], max_training_time_minutes=None,
                 training={"early_stopping_patience": 5}, pruning={"dominance_quantile": 0.5})
    params = {name: spec.choices[0] if hasattr(spec, "choices") else spec.low for name, spec in cfg.search_space.items()}
    table = replay.CurveTable([hand_made_row(params, [0.6, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5], seconds=0.7)], cfg.search_space)
    trials = sorted(replay.replay(cfg, table, loaders(cfg))[0].trials, key=lambda t: t.number)
    assert sum([0.7] * 6) / 60 > 0.7 / 60 + 5 * (0.7 / 60)  # what this test is about
    assert [len(t.user_attrs["epoch_history"]) for t in trials] == [6] * MIN_GAINS + [1] * 3
    assert [t.user_attrs.get("stop_reason") for t in trials[MIN_GAINS:]] == ["dominated at epoch 1 by trial 0"] * 3


@pytest.mark.parametrize("others_may_finish", [True, False])
def test_the_completed_trials_are_read_again_each_epoch_only_where_other_processes_may_add_some(tmp_path, others_may_finish):
    """On a storage only this process writes (SQLite), no trial completes while this one trains: one
    read a trial. On a shared one, a trial another worker completed meanwhile counts at the next epoch."""
    objectives = ["accuracy", "training_time", "model_size"]
    cfg = config(tmp_path, objectives=objectives, pruning={"dominance_quantile": 1.0})
    study = completed_study(objectives, [_trained(0.50, 9.0, 9.0) for _ in range(MIN_GAINS)])
    trial = study.ask()
    monitor = TrialMonitor(trial, cfg, 1.0, None, dominance_check(cfg), others_may_finish=others_may_finish)
    monitor(_epoch(1, 0.59, 1.0))
    # Another worker completes a trial that dominates this one (0.60 at 0.9 min, size 1.0).
    values, epochs, _ = _trained(0.60, 1.0, 0.9)
    other = study.ask()
    other.set_user_attr("epoch_history", epochs)
    other.set_constraint("model_size_mb", -1.0)
    study.tell(other, [values[o] for o in objectives])
    if others_may_finish:
        with pytest.raises(optuna.TrialPruned, match=rf"^dominated at epoch 2 by trial {other.number}$"):
            monitor(_epoch(2, 0.55, 0.9))  # 0.55 + 0.01 after epoch 2 < 0.60
    else:
        monitor(_epoch(2, 0.55, 0.9))  # what it read at epoch 1 still stands
        assert monitor.completed is not None and other.number not in [t.number for t in monitor.completed]
