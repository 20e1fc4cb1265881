"""analysis.py on studies with known structure, built with ask/tell in memory."""

from __future__ import annotations

import warnings

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState
from statsmodels.stats.multitest import multipletests

from _studies import DEGENERATE, OBJECTIVES, brute_force_front, degenerate_studies, planted_study, told
from cnn_lstm_hpo.reporting import analysis
from cnn_lstm_hpo.reporting.analysis import (
    LEAKAGE_MARGIN,
    analyze_study,
    baseline_part,
    correlation_part,
    feasible_front,
    hypervolume_part,
    importance_part,
    pruning_part,
    trial_states,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(scope="module")
def planted() -> optuna.Study:
    return planted_study()


@pytest.mark.parametrize("seed", range(6))
def test_feasible_front_equals_brute_force_with_ties_and_infeasible(seed):
    rng = np.random.default_rng(seed)
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"])
    for _ in range(40):
        # A coarse grid: many exact ties and duplicates, where a sloppy dominance test goes wrong.
        told(study, rng.integers(0, 4, size=3).astype(float).tolist(), feasible=rng.random() > 0.2)
    feasible = [t for t in study.trials if all(v <= 0 for v in t.constraints.values())]
    expected = {feasible[i].number for i in brute_force_front([tuple(t.values) for t in feasible], [True, False, False])}
    assert {t.number for t in feasible_front(study)} == expected


def test_known_front_skips_the_infeasible_dominator():
    study = optuna.create_study(directions=["maximize", "minimize"])
    for values, feasible in [([0.6, 1.0], True), ([0.5, 2.0], True), ([0.7, 3.0], True), ([0.9, 0.1], False)]:
        told(study, values, feasible=feasible)
    assert [t.number for t in feasible_front(study)] == [0, 2]  # trial 3 dominates all but is infeasible


def test_hypervolume_by_hand_and_reference_point_stated():
    study = optuna.create_study(directions=["minimize", "minimize"])
    study.set_user_attr("objectives", ["training_time", "model_size"])
    for values in ([1.0, 3.0], [3.0, 1.0], [2.0, 2.0], [3.0, 3.0]):
        told(study, values)
    part = hypervolume_part(study, ["training_time", "model_size"])
    # Worst 3 + 10% of the range 2 -> 3.2 on both; rectangles of the staircase (1,3), (2,2), (3,1):
    assert part["reference_point"] == pytest.approx({"training_time": 3.2, "model_size": 3.2})
    assert "worst value among feasible complete trials" in part["reference_rule"] and part["units"] == "minutes x MB"
    two = 2 * (2.2 * 0.2) - 0.2 * 0.2  # two boxes minus their overlap
    expected = [2.2 * 0.2, two, 0.2 * 1 + 1.2 * 1 + 2.2 * 0.2, 1.84]  # the last trial is dominated
    assert [h["hypervolume"] for h in part["history"]] == pytest.approx(expected)
    assert [h["trial_number"] for h in part["history"]] == [0, 1, 2, 3]


def test_states_and_stop_reasons(planted):
    states = trial_states(planted)
    assert states["by_state"]["COMPLETE"] == 40 and states["by_state"]["PRUNED"] == 6 and states["by_state"]["FAIL"] == 1
    assert states["stop_reasons"] == {
        "pruned at epoch 2": 6,
        "failed: TrialDiverged: loss became nan at epoch 1": 1,
    }
    assert states["complete_but_infeasible"] == [3]


def test_stop_reasons_name_the_limits():
    study = optuna.create_study(directions=["maximize", "minimize"])
    # The texts study.py and monitor.py store.
    told(study, None, state=TrialState.PRUNED, attrs={"stop_reason": "model size 612.0 MB > max_model_size_mb 500.0"})
    told(study, None, state=TrialState.PRUNED, attrs={"stop_reason": "time limit: 3.10 min projected > 2.0 min"})
    told(study, None, state=TrialState.PRUNED, attrs={"stop_reason": "pruned at epoch 4"})
    told(study, None, state=TrialState.PRUNED, attrs={"stop_reason": "dominated at epoch 1 by trial 12"})
    told(study, None, state=TrialState.PRUNED, attrs={"stop_reason": "dominated at epoch 1 by trial 3"})
    told(study, None, state=TrialState.PRUNED)
    told(study, None, state=TrialState.FAIL)
    assert trial_states(study)["stop_reasons"] == {
        "model size limit": 1, "time limit": 1, "pruned at epoch 4": 1, "dominated at epoch 1": 2,
        "pruned: no reason recorded": 1, "failed: no reason recorded": 1,
    }


def test_planted_correlation_significant_independent_not(planted):
    part = correlation_part(planted, OBJECTIVES)
    cells = {(c["param"], c["objective"]): c for c in part["cells"]}
    assert cells["learning_rate", "accuracy"]["significant"] and cells["learning_rate", "accuracy"]["effect"] > 0.9
    assert cells["lstm_hidden_dim", "model_size"]["significant"]
    assert not any(cells["dropout_rate", o]["significant"] for o in OBJECTIVES)
    assert all(cells["dropout_rate", o]["p_adjusted"] > 0.05 for o in OBJECTIVES)
    # The test is stated per kind: ranks for numbers, Kruskal-Wallis for labels.
    assert cells["lstm_hidden_dim", "accuracy"]["kind"] == "ordinal" and cells["lstm_hidden_dim", "accuracy"]["test"] == "spearman"
    assert cells["cnn_filter_sizes", "accuracy"]["test"] == "kruskal-wallis"
    assert cells["lstm_bidirectional", "accuracy"]["test"] == "kruskal-wallis"
    assert "Benjamini-Hochberg" in part["correction"] and "Kruskal-Wallis" in part["tests"]["categorical"]
    # Corrected p-values are never below the raw ones.
    assert all(c["p_adjusted"] >= c["p_value"] - 1e-15 for c in part["cells"])


def test_correlation_p_values_are_benjamini_hochberg_adjusted(planted, monkeypatch):
    # Planted p-values where BH moves every value and flips 0.02 to not significant at 0.05.
    planted_p = iter([0.001, 0.02, 0.03, 0.04, 0.3, 0.9] * 20)
    monkeypatch.setattr(analysis, "_test", lambda x, y, kind: ("spearman", 0.0, next(planted_p)))
    cells = correlation_part(planted, OBJECTIVES)["cells"]
    raw = [c["p_value"] for c in cells]
    reject, adjusted, _, _ = multipletests(raw, alpha=0.05, method="fdr_bh")
    assert len(cells) >= 6 and any(p < 0.05 <= a for p, a in zip(raw, adjusted))
    assert [c["p_adjusted"] for c in cells] == pytest.approx(adjusted, abs=0, rel=1e-12)
    assert [c["significant"] for c in cells] == reject.tolist()


def test_correlation_of_a_categorical_driver_is_found():
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=1))
    rng = np.random.default_rng(1)
    for i in range(30):
        trial = study.ask()
        opt = trial.suggest_categorical("optimizer", ["adam", "sgd", "rmsprop"])
        noise = trial.suggest_float("noise", 0, 1)
        trial.set_constraint("model_size_mb", -1.0)
        study.tell(trial, [{"adam": 0.6, "sgd": 0.5, "rmsprop": 0.55}[opt] + rng.normal(0, 0.005), noise])
    cells = {(c["param"], c["objective"]): c for c in correlation_part(study, ["accuracy", "model_size"])["cells"]}
    assert cells["optimizer", "accuracy"]["test"] == "kruskal-wallis" and cells["optimizer", "accuracy"]["significant"]
    assert not cells["optimizer", "model_size"]["significant"]


def test_importance_highest_for_the_driving_parameter(planted):
    part = importance_part(planted, OBJECTIVES, rungs=[2])
    assert "PED-ANOVA" in part["evaluator"]
    accuracy = part["complete_trials"]["accuracy"]["importances"]
    assert max(accuracy, key=accuracy.get) == "learning_rate"
    size = part["complete_trials"]["model_size"]["importances"]
    assert max(size, key=size.get) == "lstm_hidden_dim"
    rung = part["first_rung"]
    assert rung["epoch"] == 2 and rung["n_trials"] == 46  # the 6 pruned trials count here
    assert max(rung["importances"], key=rung["importances"].get) == "learning_rate"


def test_fanova_as_an_option(planted):
    part = importance_part(planted, ["accuracy", "training_time", "model_size"], evaluator="fanova")
    accuracy = part["complete_trials"]["accuracy"]["importances"]
    assert "fANOVA" in part["evaluator"] and max(accuracy, key=accuracy.get) == "learning_rate"
    with pytest.raises(ValueError, match="evaluator must be one of"):
        importance_part(planted, OBJECTIVES, evaluator="shap")


def _baseline_study(accuracies: list[float], *, n: int = 400, majority: float = 0.55) -> optuna.Study:
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.set_user_attr("objectives", ["accuracy", "model_size"])
    for i, acc in enumerate(accuracies):
        told(study, [acc, 1.0 + i], attrs={
            "val_metrics": {"accuracy": acc, "majority_rate": majority, "regression_score": 0.5, "n_samples": n},
        })
    return study


def test_nothing_beats_the_majority_class_is_flagged():
    part = baseline_part(_baseline_study([0.55, 0.56]), ["accuracy", "model_size"], {"accuracy": 1.0, "model_size": 0.0})
    assert part["nothing_beats_baseline"] is True and "none of the top configurations" in part["note"]
    top = part["configurations"][0]
    assert top["trial_number"] == 1 and top["correct"] == 224 and top["n_val_samples"] == 400
    assert top["ci95"][0] < 0.56 < top["ci95"][1] and top["p_holm"] >= top["p_value"]
    assert part["leakage_warning"] is None


def test_a_real_edge_beats_the_baseline_and_a_leak_is_warned():
    part = baseline_part(_baseline_study([0.62, 0.70]), ["accuracy", "model_size"], {"accuracy": 1.0, "model_size": 0.0})
    assert part["nothing_beats_baseline"] is False
    assert all(row["beats_majority"] for row in part["configurations"])
    assert part["configurations"][0]["p_value"] < 1e-6
    # No stored baselines: judged against the majority rate (0.55): 0.62 is within the margin, 0.70 is not.
    assert part["leakage_warning"] == (
        f"validation accuracy more than {LEAKAGE_MARGIN} above the majority-class rate on the same windows in trials [1]: "
        "implausible for market data, check for look-ahead leakage"
    )


def _with_baselines(study: optuna.Study, scores: dict[str, float], strongest: str) -> optuna.Study:
    from cnn_lstm_hpo.verdict import STUDY_ATTR

    study.set_user_attr(STUDY_ATTR, {"strongest": strongest, "scores": {n: {"accuracy": a} for n, a in scores.items()}})
    return study


def test_the_leakage_warning_follows_the_targets_own_strongest_baseline():
    weights = {"accuracy": 1.0, "model_size": 0.0}
    # Volatility: the logistic regression scores 0.70 on the same windows (majority 0.60); a model at
    # 0.75 is good, not leaky (the majority rate plus the margin would call it so)...
    scores = {"majority": 0.60, "logistic_regression": 0.70}
    vol = _with_baselines(_baseline_study([0.75], majority=0.60), scores, "logistic_regression")
    assert baseline_part(vol, ["accuracy", "model_size"], weights)["leakage_warning"] is None
    # ...while 0.80 is more than the margin above it.
    vol = _with_baselines(_baseline_study([0.80], majority=0.60), scores, "logistic_regression")
    part = baseline_part(vol, ["accuracy", "model_size"], weights)
    assert part["leaky_trials"] == [{"trial_number": 0, "val_accuracy": 0.80, "baseline_accuracy": 0.70}]
    assert "above the strongest baseline (logistic_regression)" in part["leakage_warning"]
    # Direction: majority 0.536; a model at 0.62 is still called leaky (the old fixed 0.65 let it pass).
    direction = _with_baselines(_baseline_study([0.62], majority=0.536), {"majority": 0.536, "persistence": 0.44}, "majority")
    assert baseline_part(direction, ["accuracy", "model_size"], weights)["leaky_trials"][0]["trial_number"] == 0


def test_no_sample_count_means_no_test_and_a_note():
    study = optuna.create_study(directions=["maximize", "minimize"])
    told(study, [0.6, 1.0], attrs={"val_metrics": {"accuracy": 0.6, "majority_rate": 0.5}})
    part = baseline_part(study, ["accuracy", "model_size"], {"accuracy": 1.0, "model_size": 0.0})
    assert "p_value" not in part["configurations"][0] and "sample count" in part["note"]
    assert part["nothing_beats_baseline"] is False  # not tested is not "tested and failed"


def test_pruning_diagnostics_per_rung(planted):
    part = pruning_part(planted, [2, 4])
    rung2, rung4 = part["rungs"]
    assert (rung2["reached"], rung2["continued"], rung2["pruned_here"], rung2["finished"]) == (46, 40, 6, 40)
    assert rung2["spearman_rho"] > 0.9  # the planted curves keep their order
    assert (rung4["reached"], rung4["continued"], rung4["pruned_here"]) == (40, 40, 0)
    for row in part["rungs"]:
        assert row["reached"] == row["continued"] + row["pruned_here"] + row["stopped_here"]


def test_trials_ended_at_a_rung_for_another_reason_are_counted_apart():
    study = optuna.create_study(directions=["maximize", "minimize"])
    curve = lambda n: [{"epoch": e, "val_score": 0.5, "val_loss": 1.0} for e in range(1, n + 1)]
    told(study, None, state=TrialState.PRUNED, attrs={"epoch_history": curve(2), "stop_reason": "pruned at epoch 2"})
    told(study, None, state=TrialState.PRUNED, attrs={"epoch_history": curve(2), "stop_reason": "dominated at epoch 2 by trial 0"})
    told(study, [0.5, 1.0], attrs={"epoch_history": curve(2)})  # early stopping ended it at the rung
    told(study, [0.5, 1.0], attrs={"epoch_history": curve(4)})
    told(study, None, state=TrialState.PRUNED, attrs={"epoch_history": curve(1), "stop_reason": "pruned at epoch 1"})
    (rung,) = pruning_part(study, [2])["rungs"]
    assert (rung["reached"], rung["continued"], rung["pruned_here"], rung["stopped_here"]) == (4, 1, 1, 2)


def test_rungs_come_from_pruned_trials_without_a_config(planted):
    analysis = analyze_study(planted)
    assert [r["epoch"] for r in analysis["pruning"]["rungs"]] == [2]
    assert analysis["importance"]["first_rung"]["epoch"] == 2


@pytest.mark.parametrize("name", DEGENERATE)
def test_degenerate_studies_get_notes_not_crashes(name):
    study = degenerate_studies()[name]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no silent NaN arithmetic
        analysis = analyze_study(study)
    importance = analysis["importance"]["complete_trials"]
    assert all("note" in part for part in importance.values())
    if name in ("empty", "only pruned and failed"):
        assert "no feasible complete trial" in analysis["pareto_front"]["note"]
        assert "no feasible complete trial" in analysis["hypervolume"]["note"]
        assert analysis["baselines"]["note"].startswith("no feasible complete trial")
    if name == "one objective":
        assert "one objective" in analysis["pareto_front"]["note"]
    if name == "constant parameter":
        assert analysis["correlations"]["notes"] == ["x: constant (0.3) in the complete trials, not tested"]
    if name in ("empty", "one complete", "only pruned and failed"):
        assert "needs at least 3 complete trials" in analysis["correlations"]["note"]


def test_front_agrees_with_optuna_best_trials(planted):
    """Our front comes from the values, Optuna's from its own code: on feasible trials they agree."""
    ours = {t.number for t in feasible_front(planted)}
    optunas = {t.number for t in planted.best_trials if all(v <= 0 for v in t.constraints.values())}
    assert ours == optunas and ours


@pytest.mark.parametrize("seed", range(3))
def test_small_sample_spearman_p_is_exact(seed):
    """Four trials in perfect rank order: exact p = 2/4! = 1/12, not the t approximation's 0."""
    from scipy import stats

    from cnn_lstm_hpo.reporting.analysis import spearman

    assert spearman(np.arange(4.0), -np.arange(4.0)) == (-1.0, pytest.approx(1 / 12))
    rng = np.random.default_rng(seed)
    x, y = rng.integers(0, 4, size=7).astype(float), rng.normal(size=7)  # ties in x
    exact = stats.permutation_test((x,), lambda a: stats.spearmanr(a, y).statistic,
                                   permutation_type="pairings", n_resamples=np.inf).pvalue
    assert spearman(x, y)[1] == pytest.approx(exact)


def test_four_trials_in_perfect_order_are_not_significant():
    study = optuna.create_study(directions=["maximize", "minimize"])
    for v in (0.1, 0.2, 0.3, 0.4):
        told(study, [v, 1.0 + v], x=v)
    cells = correlation_part(study, ["accuracy", "model_size"])["cells"]
    assert [c["effect"] for c in cells] == [1.0, 1.0] and not any(c["significant"] for c in cells)


def test_under_walk_forward_the_leakage_warning_reads_the_fold_whose_windows_the_baselines_scored():
    weights = {"accuracy": 1.0, "model_size": 0.0}
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.set_user_attr("objectives", ["accuracy", "model_size"])
    # Pooled over the folds 0.60, but 0.70 on the most recent fold (fold 2), whose windows the baselines scored.
    folds = [{"fold": 2, "accuracy": 0.70}, {"fold": 1, "accuracy": 0.55}, {"fold": 0, "accuracy": 0.55}]
    told(study, [0.60, 1.0], attrs={"val_metrics": {"accuracy": 0.60, "majority_rate": 0.55, "n_samples": 400},
                                    "fold_scores": folds})
    _with_baselines(study, {"majority": 0.55}, "majority")
    part = baseline_part(study, ["accuracy", "model_size"], weights)
    assert part["leaky_trials"] == [{"trial_number": 0, "val_accuracy": 0.70, "baseline_accuracy": 0.55}]
