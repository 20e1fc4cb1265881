"""Stopping a study when its front stops moving: the rule against an independent implementation,
and a real run that stops."""

from __future__ import annotations

import datetime as dt
import itertools
import logging

import numpy as np
import optuna
import pytest
from optuna.study import StudyDirection
from optuna.trial import TrialState, create_trial

from cnn_lstm_hpo import MultiObjectiveOptimizer, create_optimization_config
from cnn_lstm_hpo.config import ConvergenceConfig
from cnn_lstm_hpo.convergence import front_stall

MAX, MIN = StudyDirection.MAXIMIZE, StudyDirection.MINIMIZE
T0 = dt.datetime(2026, 1, 1)


def trial(number, values, *, state=TrialState.COMPLETE, feasible=True, finished_at=None):
    made = create_trial(
        state=state,
        values=values if state == TrialState.COMPLETE else None,
        system_attrs={"constraints:model_size_mb": -1.0 if feasible else 2.0},
    )
    made.number = number
    made.datetime_complete = None if state == TrialState.RUNNING else T0 + dt.timedelta(seconds=finished_at if finished_at is not None else number)
    return made


def grid_hypervolume(points, ref, maximise):
    """Exact dominated volume by summing the cells of the grid the points' coordinates make
    (independent of moocore; fine for a handful of points)."""
    if not len(points):
        return 0.0
    signs = np.where(maximise, -1.0, 1.0)  # everything minimised
    pts, r = points * signs, ref * signs
    axes = [np.unique(np.concatenate([pts[:, j], [r[j]]])) for j in range(pts.shape[1])]
    volume = 0.0
    for cell in itertools.product(*(range(len(a) - 1) for a in axes)):
        low = np.array([axes[j][i] for j, i in enumerate(cell)])
        high = np.array([axes[j][i + 1] for j, i in enumerate(cell)])
        if (high <= r).all() and (pts <= low).all(axis=1).any():
            volume += float(np.prod(high - low))
    return volume


def independent_stall(trials, directions, patience, min_improvement, after):
    finished = [t for t in trials if t.state != TrialState.RUNNING]
    finished.sort(key=lambda t: (t.datetime_complete, t.number))
    if len(finished) - after <= patience:
        return None
    good = [t for t in finished if t.state == TrialState.COMPLETE and t.system_attrs["constraints:model_size_mb"] <= 0]
    if not good:
        return None
    maximise = np.array([d == MAX for d in directions])
    values = np.array([t.values for t in good])
    worst = np.where(maximise, values.min(0), values.max(0))
    span = values.max(0) - values.min(0)
    margin = np.where(span > 0, 0.1 * span, np.maximum(0.1 * np.abs(worst), 1e-9))
    ref = np.where(maximise, worst - margin, worst + margin)
    old = {t.number for t in finished[:-patience]}
    now = grid_hypervolume(values, ref, maximise)
    before = grid_hypervolume(np.array([t.values for t in good if t.number in old]).reshape(-1, values.shape[1]), ref, maximise)
    improvement = (now - before) / now if now > 0 else 0.0
    return improvement if improvement <= min_improvement + 1e-9 else None  # rounding: the sums' order differs


@pytest.mark.parametrize("seed", range(40))
def test_stall_matches_an_independent_implementation(seed):
    rng = np.random.default_rng(seed)
    directions = [MAX, MIN, MIN][: rng.integers(2, 4)]
    n = int(rng.integers(1, 12))
    kinds = [TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING]
    states = [kinds[i] for i in rng.choice(4, n, p=[0.6, 0.2, 0.1, 0.1])]
    trials = [
        trial(
            i,
            list(rng.integers(0, 4, len(directions)).astype(float)),  # few distinct values: ties and duplicates
            state=state,
            feasible=bool(rng.random() < 0.8),
            finished_at=int(rng.integers(0, 5)),  # completion order differs from numbers, with ties
        )
        for i, state in enumerate(states)
    ]
    patience = int(rng.integers(1, 6))
    min_improvement = float(rng.choice([0.0, 0.05, 0.3]))
    after = int(rng.integers(0, 3))
    expected = independent_stall(trials, directions, patience, min_improvement, after)
    got = front_stall(trials, directions, patience, min_improvement, after=after)
    if expected is None:
        assert got is None
    else:
        assert got is not None and got.trials == patience and got.improvement == pytest.approx(expected, abs=1e-9)


def test_a_front_that_still_moves_or_cannot_be_judged_does_not_stop():
    directions = [MAX, MIN]
    base = [trial(0, [0.5, 2.0]), trial(1, [0.6, 3.0]), trial(2, [0.55, 2.5])]
    # The newest trial is dominated: the last one moved nothing; the last two did (trial 2 is on the front).
    stall = front_stall([*base, trial(3, [0.5, 3.0])], directions, 1, 0.0)
    assert stall is not None and stall.trials == 1 and stall.improvement == pytest.approx(0.0, abs=1e-12)
    assert front_stall([*base, trial(3, [0.5, 3.0])], directions, 2, 0.0) is None
    # The newest trial extends the front (smaller): it moved.
    assert front_stall([*base, trial(3, [0.5, 1.0])], directions, 1, 0.0) is None
    # Too few finished trials to look back over; a running trial does not count.
    assert front_stall([*base, trial(3, [0.5, 3.0], state=TrialState.RUNNING)], directions, 3, 0.0) is None
    # The look-back never reaches into the random start-up trials.
    assert front_stall([*base, trial(3, [0.5, 3.0])], directions, 1, 0.0, after=3) is None
    # No feasible trial yet: nothing to stall.
    assert front_stall([trial(i, [0.9, 1.0], feasible=False) for i in range(5)], directions, 2, 0.0) is None


def test_a_study_stops_once_its_front_stalls(tmp_path, caplog):
    space = {
        "cnn_num_filters": {"type": "categorical", "choices": [4, 8]},
        "lstm_hidden_dim": {"type": "categorical", "choices": [8]},
        "lstm_num_layers": {"type": "int", "low": 1, "high": 1},
        "batch_size": {"type": "categorical", "choices": [256]},
    }
    cfg = create_optimization_config(
        scenario="smoke", n_trials=20, max_epochs_per_trial=1, save_dir=tmp_path / "run", search_space=space,
        data={"source": "synthetic", "sequence_length": 8}, pruning={"enabled": False}, sampler={"n_startup_trials": 2},
        # Any growth up to 100 % counts as stalled: the study stops after start-up + patience + 1 trials.
        convergence={"patience": 3, "min_improvement": 1.0},
    )
    with caplog.at_level(logging.INFO, logger="cnn_lstm_hpo"):
        study = MultiObjectiveOptimizer(cfg, progress=False).optimize()
    assert len(study.trials) == 6
    assert "stopping: the last 3 finished trials grew the front's hypervolume by " in caplog.text
    assert (cfg.save_dir / "best_configurations.json").is_file()  # the study's files are written as usual
    summary = (cfg.save_dir / "optimization_summary.txt").read_text()
    assert "Stopped before n_trials (convergence.patience 3): the last 3 finished trials grew the front's hypervolume by " in summary
    # Resumed without the rule, the study goes on, and its summary no longer says it stopped.
    resumed = MultiObjectiveOptimizer(cfg.model_copy(update={"n_trials": 7, "convergence": ConvergenceConfig()}), progress=False).optimize()
    assert len(resumed.trials) == 7
    assert "Stopped before n_trials" not in (cfg.save_dir / "optimization_summary.txt").read_text()
