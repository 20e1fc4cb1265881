"""`cnn-lstm-hpo plan`: its range holds what a real run of the same scenario then does."""

from __future__ import annotations

import subprocess
import sys

import optuna

from cnn_lstm_hpo import MultiObjectiveOptimizer, create_optimization_config
from cnn_lstm_hpo.plan import make_plan, table_for


def test_a_real_run_falls_within_the_planned_range(tmp_path):
    # Pruning off and patience = epochs: every trial trains its budget, so the plan's trial and epoch
    # counts are exact and its time range is what is tested.
    config = create_optimization_config(
        scenario="smoke", save_dir=tmp_path / "real", pruning={"enabled": False},
        training={"early_stopping_patience": 3}, max_training_time_minutes=None,
    )
    plan = make_plan(config, timed_configs=5)
    study = MultiObjectiveOptimizer(config, progress=False).optimize()
    trials = study.get_trials()
    training_hours = sum(e["wall_seconds"] for t in trials for e in t.user_attrs["epoch_history"]) / 3600
    assert plan.span("trials") == (6, 6, 6) and plan.span("epochs") == (18, 18, 18)
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    _, low, high = plan.span("hours")
    assert low <= training_hours <= high, (low, training_hours, high)


def test_plan_prints_the_expected_time_and_outcomes():
    result = subprocess.run(
        [sys.executable, "-m", "cnn_lstm_hpo.cli", "plan", "--scenario", "smoke", "--data", "synthetic", "--timed", "2"],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == ("plan for scenario 'smoke': 6 trials x up to 3 epochs, timeout 0.25 h, "
                        "time limit per trial 2.5 min")
    assert lines[1].startswith("  timed here: 2 configurations, ")
    assert any(line.startswith("  expected wall time  ") and line.endswith(" min of training (add about 15 s "
               "for start-up and the final analysis)") for line in lines)
    assert any(line.startswith("  fits: all 6 trials within timeout_hours in every replay; expect about ")
               for line in lines), result.stdout
    assert "mostly stopped" not in result.stdout and "does not fit" not in result.stdout
    progress = result.stderr.splitlines()
    assert [line.split(":")[0] for line in progress[:2]] == ["timing 1/2", "timing 2/2"]
    assert "s per epoch (repeats " in progress[0]
    assert "learning curves from the shipped table synthetic.jsonl.gz" in result.stdout


def test_a_scenario_whose_trials_cannot_finish_in_the_time_limit_is_said_not_to_fit():
    config = create_optimization_config(scenario="smoke", data={"source": "synthetic"}, max_training_time_minutes=0.0001)
    said = []
    plan = make_plan(config, timed_configs=1, progress=said.append)
    lines = plan.lines()
    assert plan.span("feasible_complete")[0] == 0
    verdict = [line for line in lines if line.startswith("  does not fit: no trial is expected to complete")]
    assert verdict and "raise max_training_time_minutes (now 0.0001)" in verdict[0], lines
    assert not any(line.startswith("  fits") for line in lines)
    assert said[0].startswith("timing 1/1: ") and said[-1].startswith("replaying the scenario 3 times")


def test_a_scenario_that_optimises_sharpe_is_planned_with_accuracy_standing_in_and_says_so():
    from cnn_lstm_hpo.plan import SHARPE_NOTE

    config = create_optimization_config(scenario="smoke", data={"source": "synthetic"}, objectives=["sharpe", "training_time"])
    said = []
    plan = make_plan(config, timed_configs=1, progress=said.append)
    assert SHARPE_NOTE in said
    assert plan.span("trials") == (6, 6, 6) and plan.span("failed") == (0, 0, 0), plan.lines()


def test_the_plan_replays_curves_recorded_on_the_scenarios_data_where_there_are_some():
    assert table_for(create_optimization_config(scenario="quick_test")).name == "sample.jsonl.gz"  # bundled data
    assert table_for(create_optimization_config(data={"source": "synthetic"})).name == "synthetic.jsonl.gz"
    assert table_for(create_optimization_config(data={"source": "/data/prices.csv"})).name == "synthetic.jsonl.gz"


def test_plan_of_an_unknown_scenario_is_one_line_and_exit_2():
    result = subprocess.run([sys.executable, "-m", "cnn_lstm_hpo.cli", "plan", "--scenario", "nope"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr == ("error: unknown scenario 'nope'; available: accuracy_focused, default, "
                             "efficiency_focused, production, quick_test, smoke\n")


def test_outcome_counts_a_pruned_trial_over_a_limit_as_infeasible():
    from optuna.trial import TrialState

    from cnn_lstm_hpo.plan import outcome

    study = optuna.create_study(directions=["maximize", "minimize"])
    for over in (1.0, -1.0, -2.0):  # stopped by the time limit; pruned at rungs within it
        trial = study.ask()
        trial.set_constraint("training_time_minutes", over)
        study.tell(trial, state=TrialState.PRUNED)
    result = outcome(study, 1800.0)
    assert (result.infeasible, result.pruned, result.complete, result.hours) == (1, 2, 0, 0.5)


def test_a_walk_forward_scenario_is_replayed_fold_by_fold():
    # Pruning off: every trial trains every fold, so the replay's time is the holdout's and then some
    # (about 1 + 0.8 + 0.6 of it for three expanding folds); replayed as holdout, it would be 1x.
    from cnn_lstm_hpo.plan import simulate
    from cnn_lstm_hpo.windows import prepare_windows

    hours = {}
    for scheme in ("holdout", "walk_forward"):
        config = create_optimization_config(
            scenario="smoke", data={"source": "synthetic"}, pruning={"enabled": False}, max_training_time_minutes=None,
            evaluation={"scheme": scheme, "folds": 3},
        )
        data, _ = prepare_windows(config.data, config.symbols, evaluation=config.evaluation)
        [result] = simulate(config, data, [1.0], table_for(config))
        assert (result.trials, result.complete) == (6, 6)
        hours[scheme] = result.hours
    ratio = hours["walk_forward"] / hours["holdout"]  # 1.0 if the folds were not replayed
    assert ratio > 1.8, hours
    assert ratio < 3.0, hours


def test_plan_takes_folds_as_optimize_does():
    result = subprocess.run([sys.executable, "-m", "cnn_lstm_hpo.cli", "plan", "--scenario", "smoke", "--folds", "1"],
                            capture_output=True, text=True, timeout=120)
    assert (result.returncode, result.stderr) == (
        2, "error: invalid config (scenario smoke): evaluation.folds: Input should be greater than or equal to 2\n")
