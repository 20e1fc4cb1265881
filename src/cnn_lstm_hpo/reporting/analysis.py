"""What a stored study says, computed from the study storage alone.

Trial states and why trials stopped, the feasible Pareto front and its hypervolume as trials
accumulate, parameter importance per objective, the correlation of every hyperparameter with
every objective, the top configurations against naive baselines, and whether the pruning rungs
predict the final score. ``analyze_study`` returns one JSON-ready dict (``optimization_analysis.json``);
a part that the study is too small for carries a ``note`` instead of numbers.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import math
import re
import warnings
from collections import Counter
from typing import Any, Callable

import moocore
import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState
from scipy import stats
from statsmodels.stats.multitest import multipletests

from ..objectives import DIRECTIONS, p_value_vs_majority, reference_point, weighted_ranks
from ..pbo import probability_of_backtest_overfitting
from ..results import constant_last, is_constant_predictor, is_feasible, study_labels  # is_feasible: Optuna's rule
from ..baselines import holm_adjusted as holm
from ..space import decode_params
from ..verdict import STUDY_ATTR as STUDY_BASELINES, signal_part
from ..walk_forward import FOLD_SCORES

ALPHA = 0.05
# Validation accuracy this far above the strongest baseline on the same windows (the study's stored
# baselines; the majority-class rate where a study has none) is implausible for market data, whatever
# the target: about six standard errors of an accuracy on 1,400 windows. On daily direction (majority
# about 0.54) it warns from about 0.62; on the volatility target it judges against its own baselines.
LEAKAGE_MARGIN = 0.08
TOP_K = 5
# Fewer trials than this give importances that are noise (PED-ANOVA compares the best 10% with the rest).
MIN_IMPORTANCE_TRIALS = 10
UNITS = {"accuracy": "composite score 0-1", "training_time": "minutes", "model_size": "MB", "sharpe": "annualized, net of costs"}
EVALUATORS = ("ped_anova", "fanova")
# Up to this many trials Spearman's p-value is exact (every ordering of the ranks, 8! = 40320); the
# t approximation scipy uses otherwise says p = 0 for a perfect rank order of 4 trials (exact: 1/12).
EXACT_SPEARMAN_MAX_N = 8
_PRUNED_AT = re.compile(r"pruned at epoch (\d+)")
_DOMINATED_AT = re.compile(r"^dominated at epoch (\d+)")
_PRUNED_AFTER_FOLD = re.compile(r"^pruned after fold (\d+)")


def objective_names(study: optuna.Study) -> list[str]:
    """The study's objective names: stored by ``optimize``, else Optuna's metric names, else generic."""
    n = len(study.directions)
    stored = study.user_attrs.get("objectives")
    if isinstance(stored, list) and len(stored) == n:
        return [str(name) for name in stored]
    if study.metric_names and len(study.metric_names) == n:
        return list(study.metric_names)
    return [f"objective_{i}" for i in range(n)]


def unit(name: str) -> str:
    return UNITS.get(name, "value")


def axis_label(name: str) -> str:
    """An objective's name with its unit, as the plots and the report label their axes."""
    return f"{name} ({unit(name)})"


def maximised(study: optuna.Study) -> list[bool]:
    return [d == StudyDirection.MAXIMIZE for d in study.directions]


def complete_trials(study: optuna.Study) -> list[FrozenTrial]:
    """COMPLETE trials with finite values, in completion order (ties by number)."""
    trials = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
              if t.values is not None and all(math.isfinite(v) for v in t.values)]
    return sorted(trials, key=lambda t: (t.datetime_complete or dt.datetime.max, t.number))


def history(trial: FrozenTrial) -> list[dict[str, float]]:
    return list(trial.user_attrs.get("epoch_history") or [])


def score_at(trial: FrozenTrial, epoch: int) -> float | None:
    """Best validation score up to ``epoch`` (what the pruner compares), or None if not reached."""
    scores = [h["val_score"] for h in history(trial) if h["epoch"] <= epoch]
    return max(scores) if len(history(trial)) >= epoch and scores else None


def final_score(trial: FrozenTrial) -> float | None:
    scores = [h["val_score"] for h in history(trial)]
    return max(scores) if scores else None


def _num(value: Any) -> float | None:
    """JSON has no NaN: non-finite numbers become null."""
    return float(value) if value is not None and math.isfinite(float(value)) else None


# --- states and stop reasons ------------------------------------------------------------------
def stop_reason(trial: FrozenTrial) -> str:
    """One category per stopped trial: the limit it hit, the rung that pruned it, or why it failed."""
    text = str(trial.user_attrs.get("stop_reason") or trial.user_attrs.get("fail_reason") or "")
    if trial.state == TrialState.FAIL:
        return f"failed: {text}" if text else "failed: no reason recorded"
    if text.startswith("model size"):
        return "model size limit"
    if text.startswith("time limit"):
        return "time limit"
    # dominated: pruning.dominance_quantile (which trial dominated is in the detail); fold: a walk-forward rung
    for pattern, label in ((_PRUNED_AT, "pruned at epoch"), (_DOMINATED_AT, "dominated at epoch"),
                           (_PRUNED_AFTER_FOLD, "pruned after fold")):
        if match := pattern.search(text):
            return f"{label} {match.group(1)}"
    return "pruned: no reason recorded"


def trial_states(study: optuna.Study) -> dict[str, Any]:
    trials = study.get_trials(deepcopy=False)
    stopped = [t for t in trials if t.state in (TrialState.PRUNED, TrialState.FAIL)]
    infeasible = [t.number for t in trials if t.state == TrialState.COMPLETE and not is_feasible(t)]
    return {
        "total": len(trials),
        "by_state": {state.name: sum(t.state == state for t in trials) for state in TrialState},
        "stop_reasons": dict(Counter(stop_reason(t) for t in stopped).most_common()),
        "complete_but_infeasible": infeasible,
        "stopped": [
            {"trial_number": t.number, "state": t.state.name, "reason": stop_reason(t),
             "detail": t.user_attrs.get("stop_reason") or t.user_attrs.get("fail_reason"), "epochs_trained": len(history(t))}
            for t in stopped
        ],
    }


# --- Pareto front and hypervolume -------------------------------------------------------------
def nondominated_mask(values: np.ndarray, maximise: list[bool]) -> np.ndarray:
    """Rows of ``values`` (n_trials, n_objectives) that no other row dominates; duplicates all kept."""
    if len(values) == 0:
        return np.zeros(0, dtype=bool)
    return np.asarray(moocore.is_nondominated(values, maximise=maximise, keep_weakly=True), dtype=bool)


def feasible_front(study: optuna.Study) -> list[FrozenTrial]:
    """Feasible, non-dominated COMPLETE trials, found from the values (not ``study.best_trials``)."""
    feasible = [t for t in complete_trials(study) if is_feasible(t)]
    mask = nondominated_mask(np.array([t.values for t in feasible], dtype=float), maximised(study))
    return sorted((t for t, keep in zip(feasible, mask) if keep), key=lambda t: t.number)


def pareto_part(study: optuna.Study, objectives: list[str]) -> dict[str, Any]:
    complete = complete_trials(study)
    front = feasible_front(study)
    part: dict[str, Any] = {
        "feasibility": "every constraint value <= 0 (model size and training-time limits)",
        "complete_trials": len(complete),
        "feasible_complete_trials": sum(is_feasible(t) for t in complete),
        "trials": [
            {"trial_number": t.number, "objectives": dict(zip(objectives, (_num(v) for v in t.values))),
             "params": decode_params(t.params)}
            for t in front
        ],
    }
    if not front:
        part["note"] = "no feasible complete trial yet, so no Pareto front"
    elif len(objectives) == 1:
        part["note"] = "one objective: the front is the best trial (and any ties)"
    return part


def hypervolume_part(study: optuna.Study, objectives: list[str]) -> dict[str, Any]:
    feasible = [t for t in complete_trials(study) if is_feasible(t)]
    if not feasible:
        return {"note": "no feasible complete trial yet, so no hypervolume", "history": []}
    values = np.array([t.values for t in feasible], dtype=float)
    maximise = maximised(study)
    ref = reference_point(values, maximise)
    # Hypervolume of the feasible front after each feasible trial completes (moocore's exact algorithms).
    curve = [
        {"trial_number": t.number, "hypervolume": float(moocore.hypervolume(values[: i + 1], ref=ref, maximise=maximise))}
        for i, t in enumerate(feasible)
    ]
    return {
        "reference_point": dict(zip(objectives, ref.tolist())),
        "reference_rule": "per objective, the worst value among feasible complete trials moved a further "
        "10% of their range (10% of the value when all are equal); units as the objectives",
        "units": " x ".join(unit(o) for o in objectives),
        "library": f"moocore {moocore.__version__}",
        "final": curve[-1]["hypervolume"],
        "history": curve,
    }


# --- parameter importance ---------------------------------------------------------------------
def _importances(study: optuna.Study, target: Callable[[FrozenTrial], float], evaluator: str, n: int) -> dict[str, Any]:
    """Importances of ``study``'s complete trials for ``target`` (lower is better), or a note why not."""
    if n < MIN_IMPORTANCE_TRIALS:
        return {"n_trials": n, "note": f"needs at least {MIN_IMPORTANCE_TRIALS} trials, has {n}"}
    varying = _varying_params(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    if not varying:
        return {"n_trials": n, "note": "no parameter takes more than one value"}
    try:
        with warnings.catch_warnings():
            # PED-ANOVA warns that it treats low targets as good: our targets are oriented so.
            warnings.filterwarnings("ignore", message=".*low `target` values", category=UserWarning)
            chosen = (optuna.importance.FanovaImportanceEvaluator(seed=0) if evaluator == "fanova"
                      else optuna.importance.PedAnovaImportanceEvaluator())
            result = optuna.importance.get_param_importances(
                study, evaluator=chosen, params=varying, target=target, normalize=True)
    except (ValueError, RuntimeError, ZeroDivisionError) as error:  # Optuna refuses degenerate inputs
        return {"n_trials": n, "note": f"not computable: {error}"}
    importances = {k: float(v) for k, v in result.items() if math.isfinite(v)}
    if not importances or sum(importances.values()) == 0:
        return {"n_trials": n, "importances": importances, "note": "no parameter separates the best trials yet"}
    return {"n_trials": n, "importances": importances}


def _varying_params(trials: list[FrozenTrial]) -> list[str]:
    """Parameters present in every trial with one distribution and more than one value."""
    if not trials:
        return []
    names = set.intersection(*(set(t.params) for t in trials))
    return sorted(name for name in names if len({repr(t.distributions[name]) for t in trials}) == 1
                  and len({repr(t.params[name]) for t in trials}) > 1)


def importance_part(study: optuna.Study, objectives: list[str], *, evaluator: str = "ped_anova",
                    rungs: list[int] | None = None) -> dict[str, Any]:
    if evaluator not in EVALUATORS:
        raise ValueError(f"evaluator must be one of {EVALUATORS}, but got {evaluator=}")
    n = len(complete_trials(study))
    # PED-ANOVA looks at the best quantile assuming lower is better: negate maximised objectives.
    per_objective = {
        name: _importances(study, lambda t, i=i, s=(-1.0 if maxi else 1.0): s * t.values[i], evaluator, n)
        for i, (name, maxi) in enumerate(zip(objectives, maximised(study)))
    }
    return {
        "evaluator": {"ped_anova": "PED-ANOVA (optuna.importance.PedAnovaImportanceEvaluator)",
                      "fanova": "fANOVA (optuna.importance.FanovaImportanceEvaluator, seed 0)"}[evaluator],
        "complete_trials": per_objective,
        "first_rung": _first_rung_importance(study, evaluator, rungs or []),
    }


def _first_rung_importance(study: optuna.Study, evaluator: str, rungs: list[int]) -> dict[str, Any]:
    """Importance for the validation score at the first rung, over every trial that reached it,
    pruned ones included: they are most of a pruned study and say which regions are bad."""
    if not rungs:
        return {"note": "no pruning rungs in this study"}
    rung = min(rungs)
    shadow = optuna.create_study(direction="maximize")  # in memory; the stored study is only read
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
        score = score_at(t, rung)
        if score is not None and math.isfinite(score) and t.params:
            shadow.add_trial(optuna.trial.create_trial(params=t.params, distributions=t.distributions, value=score))
    part = _importances(shadow, lambda t: -t.value, evaluator, len(shadow.trials))
    return {"epoch": rung, "target": "best validation score (composite accuracy) up to the rung", **part}


# --- correlations -----------------------------------------------------------------------------
def param_kind(distribution: BaseDistribution) -> str:
    """numeric (float/int ranges), ordinal (categorical of numbers) or categorical (anything else)."""
    if not isinstance(distribution, CategoricalDistribution):
        return "numeric"
    numbers = all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in distribution.choices)
    return "ordinal" if numbers else "categorical"


@functools.cache
def _orderings(n: int) -> np.ndarray:
    return np.array(list(itertools.permutations(range(n))), dtype=np.int8)


def spearman(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(rho, two-sided p): exact permutation p-value (ties kept) up to EXACT_SPEARMAN_MAX_N pairs,
    scipy's t approximation above."""
    result = stats.spearmanr(x, y)
    rho = float(result.statistic)
    n = len(y)
    if n > EXACT_SPEARMAN_MAX_N or not math.isfinite(rho):
        return rho, float(result.pvalue)
    rx, ry = stats.rankdata(x), stats.rankdata(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    null = ry[_orderings(n)] @ rx / (np.linalg.norm(rx) * np.linalg.norm(ry))
    return rho, float(np.mean(np.abs(null) >= abs(rho) - 1e-12))


def _test(x: list[Any], y: np.ndarray, kind: str) -> tuple[str, float, float]:
    """(test name, effect, p-value): Spearman's rho, or Kruskal-Wallis with epsilon^2 = H / (n - 1)."""
    if kind in ("numeric", "ordinal"):
        return "spearman", *spearman(np.asarray(x, dtype=float), y)
    groups = [y[[repr(v) == key for v in x]] for key in sorted({repr(v) for v in x})]
    h, p = stats.kruskal(*groups)
    return "kruskal-wallis", float(h) / (len(y) - 1), float(p)


def correlation_part(study: optuna.Study, objectives: list[str]) -> dict[str, Any]:
    trials = complete_trials(study)
    part: dict[str, Any] = {
        "tests": {
            "numeric": "Spearman rank correlation (effect = rho, -1..1)",
            "ordinal": "Spearman rank correlation on the choice's value (effect = rho, -1..1)",
            "spearman_p": f"exact permutation p-value up to {EXACT_SPEARMAN_MAX_N} trials, t approximation above",
            "categorical": "Kruskal-Wallis H test (effect = epsilon^2 = H / (n - 1), 0..1, no sign)",
        },
        "correction": "Benjamini-Hochberg false discovery rate over all tests below (statsmodels)",
        "alpha": ALPHA,
        "n_trials": len(trials),
        "cells": [],
        "notes": [],
    }
    if len(trials) < 3:
        part["note"] = f"needs at least 3 complete trials, has {len(trials)}"
        return part
    names = sorted(set().union(*(t.params for t in trials)))
    cells = []
    for name in names:
        having = [t for t in trials if name in t.params]
        x = [t.params[name] for t in having]
        if len({repr(v) for v in x}) < 2:
            part["notes"].append(f"{name}: constant ({x[0]!r}) in the complete trials, not tested")
            continue
        kind = param_kind(having[0].distributions[name])
        for i, objective in enumerate(objectives):
            y = np.array([t.values[i] for t in having], dtype=float)
            if len(having) < 3 or np.ptp(y) == 0:
                part["notes"].append(f"{name} vs {objective}: too few trials or a constant objective, not tested")
                continue
            test, effect, p = _test(x, y, kind)
            if math.isfinite(p):
                cells.append({"param": name, "objective": objective, "kind": kind, "test": test,
                              "effect": effect, "p_value": p, "n": len(having)})
    if cells:
        reject, adjusted, _, _ = multipletests([c["p_value"] for c in cells], alpha=ALPHA, method="fdr_bh")
        for cell, adj, sig in zip(cells, adjusted, reject):
            cell.update(p_adjusted=float(adj), significant=bool(sig), effect=_num(cell["effect"]))
    part["cells"] = cells
    return part


# --- top configurations against the baselines ----------------------------------------------
def ranked_front(study: optuna.Study, objectives: list[str], weights: dict[str, float]) -> list[FrozenTrial]:
    """The feasible front ordered by the objective weights (normalised first), as best_configurations.json."""
    front = feasible_front(study)
    if not front:
        return []
    values = np.array([t.values for t in front], dtype=float)
    if all(name in DIRECTIONS for name in objectives):
        ranks = constant_last(weighted_ranks(values, objectives, weights), front)
    else:  # a study not made by this tool: order by its first objective
        ranks = np.argsort(np.argsort(-values[:, 0] if maximised(study)[0] else values[:, 0], kind="stable")) + 1
    return [t for _, t in sorted(zip(ranks, front), key=lambda pair: pair[0])]


def _strongest_validation_baseline(study: optuna.Study) -> tuple[str | None, float | None]:
    """The strongest validation baseline the study stored when it started (verdict.study_baselines)."""
    stored = study.user_attrs.get(STUDY_BASELINES)
    if not isinstance(stored, dict) or stored.get("strongest") not in (stored.get("scores") or {}):
        return None, None
    name = stored["strongest"]
    return name, float(stored["scores"][name]["accuracy"])


def baseline_part(study: optuna.Study, objectives: list[str], weights: dict[str, float], *, top_k: int = TOP_K) -> dict[str, Any]:
    top = ranked_front(study, objectives, weights)[:top_k]
    rows = []
    for rank, t in enumerate(top, start=1):
        attrs = t.user_attrs
        metrics = attrs.get("val_metrics") or {}
        accuracy, majority = metrics.get("accuracy"), metrics.get("majority_rate")
        n = int(metrics.get("n_samples") or 0)
        row: dict[str, Any] = {
            "rank": rank, "trial_number": t.number, "objectives": dict(zip(objectives, (_num(v) for v in t.values))),
            "val_accuracy": _num(accuracy), "majority_rate": _num(majority), "n_val_samples": n or None,
            "regression_score": _num(metrics.get("regression_score")),
            "classification_score": _num(metrics.get("classification_score")),
            "constant_predictor": is_constant_predictor(t),
            "zero_forecast_score": 0.5,  # 1 / (1 + MSE_zero / MSE_zero), see objectives.py
        }
        if accuracy is not None and majority is not None and n > 0:
            correct = round(accuracy * n)
            p0 = min(max(majority, 1e-12), 1 - 1e-12)
            ci = stats.binomtest(correct, n, p=p0).proportion_ci(confidence_level=0.95, method="exact")
            row.update(correct=correct, p_value=p_value_vs_majority(accuracy, majority, n), ci95=[float(ci.low), float(ci.high)])
        else:
            row["note"] = "no validation accuracy with its sample count stored for this trial"
        rows.append(row)
    tested = [r for r in rows if "p_value" in r]
    if tested:
        adjusted, reject = holm([r["p_value"] for r in tested])
        for row, adj, sig in zip(tested, adjusted, reject):
            row.update(p_holm=adj, beats_majority=sig)
    strongest_name, strongest_accuracy = _strongest_validation_baseline(study)
    leaks = []
    for t in complete_trials(study):
        metrics = t.user_attrs.get("val_metrics") or {}
        accuracy = metrics.get("accuracy")
        folds = t.user_attrs.get(FOLD_SCORES)
        if folds and strongest_accuracy is not None:  # the stored baselines are of the most recent fold's windows
            accuracy = max(folds, key=lambda f: f["fold"]).get("accuracy")
        bar = strongest_accuracy if strongest_accuracy is not None else metrics.get("majority_rate")
        if isinstance(accuracy, (int, float)) and isinstance(bar, (int, float)) and accuracy > bar + LEAKAGE_MARGIN:
            leaks.append({"trial_number": t.number, "val_accuracy": float(accuracy), "baseline_accuracy": float(bar)})
    against = f"the strongest baseline ({strongest_name})" if strongest_name else "the majority-class rate"
    part: dict[str, Any] = {
        "test": "exact one-sided binomial test (scipy.stats.binomtest): correct validation predictions "
        "vs the majority-class rate taken as known; two-sided 95% Clopper-Pearson interval of the accuracy; Holm-corrected over the rows",
        "alpha": ALPHA,
        "configurations": rows,
        "nothing_beats_baseline": bool(tested) and not any(r["beats_majority"] for r in tested),
        "leakage_margin": LEAKAGE_MARGIN,
        "leakage_warning": (
            f"validation accuracy more than {LEAKAGE_MARGIN} above {against} on the same windows in trials "
            f"{[x['trial_number'] for x in leaks]}: implausible for market data, check for look-ahead leakage"
            if leaks else None
        ),
        "leaky_trials": leaks,
    }
    if not top:
        part["note"] = "no feasible complete trial yet, nothing to test"
    elif not tested:
        part["note"] = "no trial stores its validation accuracy with the sample count; no test possible"
    elif part["nothing_beats_baseline"]:
        part["note"] = "none of the top configurations beats always predicting the majority class"
    return part


# --- walk-forward -----------------------------------------------------------------------------
def fold_scores(trial: FrozenTrial) -> list[dict[str, Any]]:
    """A walk-forward trial's per-fold scores, oldest fold first."""
    return sorted(trial.user_attrs.get(FOLD_SCORES) or [], key=lambda r: r["fold"])


def backtest_overfitting_part(study: optuna.Study, objectives: list[str], weights: dict[str, float], *,
                              top_k: int = TOP_K) -> dict[str, Any] | None:
    """The probability of backtest overfitting (pbo.py) from the complete trials x folds matrix of
    composite scores, and the top configurations' per-fold scores; None for a holdout study."""
    complete = [t for t in complete_trials(study) if fold_scores(t)]
    if not complete:
        return None
    n_folds = max(len(fold_scores(t)) for t in complete)
    full = [t for t in complete if len(fold_scores(t)) == n_folds]
    part: dict[str, Any] = {
        "method": "combinatorially symmetric cross-validation (Bailey et al. 2017), one group per fold",
        "folds": n_folds,
        "trials": len(full),
        "top_configurations": [
            {"rank": rank, "trial_number": t.number, "folds": fold_scores(t)}
            for rank, t in enumerate(ranked_front(study, objectives, weights)[:top_k], start=1)
        ],
    }
    if len(full) < 2:
        part["note"] = "needs at least 2 complete trials with every fold scored"
        return part
    matrix = np.array([[r["score"] for r in fold_scores(t)] for t in full]).T  # (folds, trials)
    part.update(probability_of_backtest_overfitting(matrix).to_dict())
    return part


# --- pruning ----------------------------------------------------------------------------------
def rung_epochs(study: optuna.Study, planned: list[int] | None = None) -> list[int]:
    """Decision epochs: the planned ones (from the config) and every epoch a trial was pruned at."""
    seen = {
        int(m.group(1))
        for t in study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))
        if (m := _PRUNED_AT.search(str(t.user_attrs.get("stop_reason", ""))))
    }
    return sorted(seen | set(planned or []))


def pruning_part(study: optuna.Study, rungs: list[int]) -> dict[str, Any]:
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    part: dict[str, Any] = {
        "score": "best validation score (composite accuracy) up to the rung",
        "final": "best validation score over all epochs of a COMPLETE trial",
        "rungs": [],
    }
    if not rungs:
        part["note"] = "no pruning rungs: pruning was off, or no trial reached a decision yet"
        return part
    for rung in rungs:
        reached = [t for t in trials if len(history(t)) >= rung]
        finished = [t for t in reached if t.state == TrialState.COMPLETE and final_score(t) is not None]
        row: dict[str, Any] = {
            "epoch": rung,
            "reached": len(reached),
            "continued": sum(len(history(t)) > rung for t in reached),
            "pruned_here": sum(stop_reason(t) == f"pruned at epoch {rung}" for t in reached),
            # Ended at this epoch otherwise (early stopping, the epoch budget, the time limit, the
            # dominance check): reached = continued + pruned_here + stopped_here.
            "stopped_here": sum(len(history(t)) == rung and stop_reason(t) != f"pruned at epoch {rung}" for t in reached),
            "finished": len(finished),
        }
        at = np.array([score_at(t, rung) for t in finished], dtype=float)
        final = np.array([final_score(t) for t in finished], dtype=float)
        if len(finished) >= 3 and np.ptp(at) > 0 and np.ptp(final) > 0:
            rho, p = spearman(at, final)
            row.update(spearman_rho=_num(rho), p_value=_num(p))
        else:
            row["note"] = "needs 3 finished trials with varying scores for a rank correlation"
        part["rungs"].append(row)
    return part


# --- everything -------------------------------------------------------------------------------
def analyze_study(study: optuna.Study, *, weights: dict[str, float] | None = None, rungs: list[int] | None = None,
                  evaluator: str = "ped_anova", top_k: int = TOP_K) -> dict[str, Any]:
    """The whole analysis of ``study`` as a JSON-ready dict (``optimization_analysis.json``)."""
    objectives = objective_names(study)
    weights = weights or {name: 1.0 for name in objectives}
    all_rungs = rung_epochs(study, rungs)
    ranked = ranked_front(study, objectives, weights)
    shown = study_labels(study, objectives)
    analysis = {
        "verdict": (signal := signal_part(study, ranked, complete_trials(study)))["verdict"],
        "study_name": study.study_name,
        "generated_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "objectives": [
            {"name": name, "label": shown[name], "direction": d.name.lower(), "unit": unit(name)}
            for name, d in zip(objectives, study.directions)
        ],
        "objective_weights": weights,
        "trials": trial_states(study),
        "pareto_front": pareto_part(study, objectives),
        "hypervolume": hypervolume_part(study, objectives),
        "importance": importance_part(study, objectives, evaluator=evaluator, rungs=all_rungs),
        "correlations": correlation_part(study, objectives),
        "baselines": baseline_part(study, objectives, weights, top_k=top_k),
        "signal": signal,  # the rank-1 trial against the strongest validation baseline; trading, DSR
        "pruning": pruning_part(study, all_rungs),
    }
    overfitting = backtest_overfitting_part(study, objectives, weights, top_k=top_k)
    if overfitting is not None:  # walk-forward studies only
        analysis["backtest_overfitting"] = overfitting
    return analysis

