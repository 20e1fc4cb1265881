"""The guide's output files, written atomically from what the study storage holds."""

from __future__ import annotations

import json
import math
import os
import secrets
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from .distributed.faults import RETRY_REASON, retried
from .objectives import CONSTANT_SHARE, objective_labels, p_value_vs_majority, weighted_ranks
from .space import decode_params


def atomic_write_text(path: Path, text: str) -> None:
    """Write to a temp file in the same folder, fsync, then rename: readers see old or new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    # 0o666 filtered by the umask, as open() would create it (mkstemp's 0600 would hide results from a team).
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def is_feasible(trial: FrozenTrial) -> bool:
    """Optuna's rule: every constraint value <= 0 (a trial without constraints is feasible)."""
    return all(v <= 0 for v in trial.constraints.values())


def epochs_trained(trials: list[FrozenTrial]) -> int:
    """Epochs the trials trained in all, whatever their state (their saved histories)."""
    return sum(len(t.user_attrs.get("epoch_history", [])) for t in trials)


def trial_record(trial: FrozenTrial, objectives: list[str]) -> dict[str, Any]:
    values = list(trial.values) if trial.values is not None and trial.state == TrialState.COMPLETE else None
    return {
        "trial_number": trial.number, "state": trial.state.name, "params": decode_params(trial.params),
        "values": values, "objectives": dict(zip(objectives, values)) if values else None,
        "feasible": is_feasible(trial), "constraints": trial.constraints, "datetime_start": trial.datetime_start,
        "datetime_complete": trial.datetime_complete,
        "duration_seconds": trial.duration.total_seconds() if trial.duration else None, **trial.user_attrs,
    }


def is_constant_predictor(trial: FrozenTrial) -> bool:
    """Its validation predictions were (almost) all one class (objectives.CONSTANT_SHARE)."""
    return bool(trial.user_attrs.get("constant_predictor"))


def constant_last(ranks: np.ndarray, trials: list[FrozenTrial]) -> np.ndarray:
    """The ranks again, every constant predictor after every other trial, the order kept within each."""
    order = sorted(range(len(trials)), key=lambda i: (is_constant_predictor(trials[i]), ranks[i]))
    out = np.empty(len(trials), dtype=int)
    out[order] = np.arange(1, len(trials) + 1)
    return out


def study_labels(study: optuna.Study, objectives: list[str]) -> dict[str, str]:
    """The objectives as shown: ``accuracy`` with its composite definition from the stored config."""
    config = study.user_attrs.get("config")
    return objective_labels(objectives, config.get("training") if isinstance(config, dict) else None)


def validation_metrics(trial: FrozenTrial) -> dict[str, Any]:
    """The plain classification metrics of the trial's best epoch, beside the composite objective."""
    m = trial.user_attrs.get("val_metrics") or {}
    out = {k: m.get(k) for k in ("accuracy", "balanced_accuracy", "majority_rate", "regression_score", "n_samples")}
    out["p_value_vs_majority"] = p_value_vs_majority(m.get("accuracy"), m.get("majority_rate"), m.get("n_samples"))
    return out


def ranked_pareto(study: optuna.Study, objectives: list[str], weights: dict[str, float]) -> list[dict[str, Any]]:
    """Feasible Pareto trials in the guide's format, ranked by the normalised objective weights,
    constant predictors last."""
    front = [t for t in study.best_trials if is_feasible(t)]
    if not front:
        return []
    ranks = constant_last(weighted_ranks(np.array([t.values for t in front], dtype=float), objectives, weights), front)
    labels = {o: label for o, label in study_labels(study, objectives).items() if label != o}
    records = [
        {
            "trial_number": t.number,
            "params": decode_params(t.params),
            "values": list(t.values),
            "objectives": dict(zip(objectives, t.values)),
            **({"objective_definitions": labels} if labels else {}),
            # Validation split; p: one-sided exact binomial test against the majority rate, uncorrected.
            "validation": validation_metrics(t),
            "rank": int(rank),
            "constant_predictor": is_constant_predictor(t),
        }
        for t, rank in zip(front, ranks)
    ]
    return sorted(records, key=lambda r: r["rank"])


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) and math.isfinite(value) else str(value)


_UNITS = {"training_time": " min", "model_size": " MB"}


# A study attribute: the summary's line saying why the last run stopped before n_trials
# (convergence.py); None once a later run goes on.
STOP_ATTR = "convergence_stop"


def summary_text(
    study: optuna.Study, objectives: list[str], best: list[dict[str, Any]], *, analysis: dict[str, Any] | None = None,
    context: dict[str, Any] | None = None,
) -> str:
    """The study for a person: what ran on what data, how long, states, the best configurations
    against their baselines, what mattered. ``analysis`` (analysis.analyze_study) and ``context``
    (report.run_context) add to it when given; without them it says what the storage says."""
    trials = study.get_trials(deepcopy=False)
    counts = {state.name: sum(t.state == state for t in trials) for state in TrialState}
    infeasible = sum(1 for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED) and not is_feasible(t))
    context = context or {}
    lines = [analysis["verdict"], ""] if analysis and analysis.get("verdict") else []
    lines.append(f"Study: {study.study_name}")
    lines += [f"{key.capitalize()}: {context[key]}" for key in ("scenario", "data", "symbols", "target", "budget")
              if key in context]
    if "elapsed_minutes" in context:
        lines.append(
            f"Time: started {context['first_trial_start']} UTC; {context['elapsed_minutes']:.1f} min from first "
            f"trial start to last trial end; {context['trial_minutes']:.1f} trial-minutes in all"
        )
    labels = study_labels(study, objectives)
    lines += [
        f"Objectives: {', '.join(f'{labels[o]} ({d.name.lower()})' for o, d in zip(objectives, study.directions))}",
        f"Trials: {len(trials)} total; {counts['COMPLETE']} complete, {counts['PRUNED']} pruned, "
        f"{counts['FAIL']} failed, {counts['RUNNING']} running; {infeasible} infeasible (constraints)",
    ]
    if stopped := study.user_attrs.get(STOP_ATTR):
        lines.append(stopped)
    if analysis and (reasons := analysis["trials"]["stop_reasons"]):
        lines.append("Why trials stopped early: " + "; ".join(f"{k}: {v}" for k, v in reasons.items()))
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    constant = sum(is_constant_predictor(t) for t in complete)
    lines += [
        f"Constant predictors (validation predictions >= {CONSTANT_SHARE:.0%} one class): {constant} of "
        f"{len(complete)} complete trials",
        f"Feasible Pareto-optimal trials: {len(best)}", "",
    ]
    tests = {r["trial_number"]: r for r in (analysis or {}).get("baselines", {}).get("configurations", [])}
    by_number = {t.number: t for t in trials}
    if best:
        lines.append("Best configurations (ranked by the objective weights):")
    if analysis and "signal" in analysis:
        from .verdict import summary_lines  # verdict imports windows/torch: only where an analysis exists

        lines += [f"    {line}" for line in summary_lines(analysis["signal"])]
    for record in best:
        trial = by_number[record["trial_number"]]
        values = ", ".join(f"{k}{' (composite)' if labels[k] != k else ''}={_fmt(v)}{_UNITS.get(k, '')}"
                           for k, v in record["objectives"].items())
        constant = " [constant predictor: ranked last]" if record.get("constant_predictor") else ""
        lines.append(f"Rank {record['rank']}: trial {record['trial_number']}: {values}{constant}")
        metrics, training = trial.user_attrs.get("val_metrics") or {}, trial.user_attrs.get("training") or {}
        if "accuracy" in metrics:
            balanced = f", balanced accuracy {metrics['balanced_accuracy']:.4f}" if "balanced_accuracy" in metrics else ""
            lines.append(
                f"    validation accuracy {metrics['accuracy']:.4f}{balanced} vs majority-class rate "
                f"{metrics['majority_rate']:.4f}; classification score {metrics.get('classification_score', float('nan')):.4f}; "
                f"epochs {training.get('epochs_trained')}; cpu {training.get('cpu_minutes', float('nan')):.3f} min"
            )
        test = tests.get(record["trial_number"], {})
        if "p_holm" in test:
            verdict = "better than the majority class" if test["beats_majority"] else "NOT better than the majority class"
            lines.append(f"    {verdict}: n={test['n_val_samples']}, one-sided binomial p={test['p_holm']:.3g} (Holm), "
                         f"95% CI of accuracy {test['ci95'][0]:.3f}-{test['ci95'][1]:.3f}")
        if test.get("regression_score") is not None:
            lines.append(f"    regression score {test['regression_score']:.4f} vs 0.5 for the zero-return forecast")
        lines.append(f"    params: {json.dumps(record['params'])}")
    if best:
        top = by_number[best[0]["trial_number"]].user_attrs.get("val_metrics") or {}
        if "accuracy" in top and top["accuracy"] <= top["majority_rate"]:
            lines += ["", "Note: the top-ranked model is no better than always predicting the majority class "
                          f"({top['accuracy']:.4f} <= {top['majority_rate']:.4f}) on validation data."]
    if analysis:
        lines += _analysis_lines(analysis)
    failed = [t for t in trials if t.state == TrialState.FAIL]
    if failed:
        lines += ["", "Failed trials:"]
        retries = retried(trials)
        for t in failed:
            retry = retries.get(t.number)
            # A trial failed by Optuna's heartbeat has its reason on its retry only.
            reason = (
                t.user_attrs.get("fail_reason") or t.system_attrs.get("fail_reason")
                or (retry and retry.user_attrs[RETRY_REASON]) or "unknown"
            )
            lines.append(f"    trial {t.number}: {reason}" + (f" (retried as trial {retry.number})" if retry else ""))
    return "\n".join(lines) + "\n"


def _analysis_lines(analysis: dict[str, Any]) -> list[str]:
    """Baseline verdict, leakage, the most important parameters and significant correlations."""
    lines: list[str] = []
    baselines = analysis["baselines"]
    if baselines.get("nothing_beats_baseline"):
        lines += ["", "Warning: none of the top configurations beats always predicting the majority class "
                      "(binomial test, Holm-corrected, alpha 0.05)."]
    if baselines.get("leakage_warning"):
        lines += ["", f"Warning: {baselines['leakage_warning']}"]
    importance = analysis["importance"]
    lines += ["", f"Most important parameters ({importance['evaluator'].split(' (')[0]}, complete trials):"]
    for name, part in importance["complete_trials"].items():
        top = sorted((part.get("importances") or {}).items(), key=lambda kv: -kv[1])[:3]
        shown = ", ".join(f"{k} {v:.2f}" for k, v in top) if top else part.get("note", "none")
        lines.append(f"    {name}: {shown}")
    cells = [c for c in analysis["correlations"].get("cells", []) if c.get("significant")]
    if cells:
        lines += ["", "Significant correlations (Benjamini-Hochberg, alpha 0.05):"]
        lines += [
            f"    {c['param']} ~ {c['objective']}: {'rho' if c['test'] == 'spearman' else 'epsilon^2'} "
            f"{c['effect']:.2f}, p={c['p_adjusted']:.2g}"
            for c in cells
        ]
    folds = analysis.get("backtest_overfitting")
    if folds is not None:  # walk-forward
        pbo = f"{folds['pbo']:.2f} ({folds['n_splits']} splits of {folds['trials']} trials)" if "pbo" in folds else folds["note"]
        lines += ["", f"Walk-forward over {folds['folds']} folds: probability of backtest overfitting {pbo}"]
        for row in folds["top_configurations"][:3]:
            lines.append(f"    rank {row['rank']} (trial {row['trial_number']}) by fold: " + "; ".join(
                f"{f['val_start']}: {f['score']:.4f} (accuracy {f['accuracy']:.4f} vs majority {f['majority_rate']:.4f})"
                for f in row["folds"]))
    hv = analysis["hypervolume"]
    if "final" in hv:
        lines += ["", f"Hypervolume of the feasible front: {hv['final']:.4g} ({hv['units']}); reference point "
                      + ", ".join(f"{k}={v:.4g}" for k, v in hv["reference_point"].items())]
    return lines


def write_study_outputs(study: optuna.Study, objectives: list[str], weights: dict[str, float], save_dir: Path) -> list[dict[str, Any]]:
    best = ranked_pareto(study, objectives, weights)
    write_json(save_dir / "best_configurations.json", best)
    atomic_write_text(save_dir / "optimization_summary.txt", summary_text(study, objectives, best))
    return best
