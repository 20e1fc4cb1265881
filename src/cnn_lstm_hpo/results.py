"""The guide's output files, written atomically from what the study storage holds."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from .objectives import weighted_ranks
from .space import decode_params


def atomic_write_text(path: Path, text: str) -> None:
    """Write to a temp file in the same folder, fsync, then rename: readers see old or new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
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
    return all(v <= 0 for v in trial.constraints.values())


def trial_record(trial: FrozenTrial, objectives: list[str]) -> dict[str, Any]:
    values = list(trial.values) if trial.values is not None and trial.state == TrialState.COMPLETE else None
    return {
        "trial_number": trial.number,
        "state": trial.state.name,
        "params": decode_params(trial.params),
        "values": values,
        "objectives": dict(zip(objectives, values)) if values else None,
        "feasible": is_feasible(trial),
        "constraints": trial.constraints,
        "datetime_start": trial.datetime_start,
        "datetime_complete": trial.datetime_complete,
        "duration_seconds": trial.duration.total_seconds() if trial.duration else None,
        **{k: v for k, v in trial.user_attrs.items()},
    }


def ranked_pareto(study: optuna.Study, objectives: list[str], weights: dict[str, float]) -> list[dict[str, Any]]:
    """Feasible Pareto trials in the guide's format, ranked by the normalised objective weights."""
    front = [t for t in study.best_trials if is_feasible(t)]
    if not front:
        return []
    ranks = weighted_ranks(np.array([t.values for t in front], dtype=float), objectives, weights)
    records = [
        {
            "trial_number": t.number,
            "params": decode_params(t.params),
            "values": list(t.values),
            "objectives": dict(zip(objectives, t.values)),
            "rank": int(rank),
        }
        for t, rank in zip(front, ranks)
    ]
    return sorted(records, key=lambda r: r["rank"])


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) and math.isfinite(value) else str(value)


def summary_text(study: optuna.Study, objectives: list[str], best: list[dict[str, Any]]) -> str:
    trials = study.get_trials(deepcopy=False)
    counts = {state.name: sum(t.state == state for t in trials) for state in TrialState}
    infeasible = sum(1 for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED) and not is_feasible(t))
    lines = [
        f"Study: {study.study_name}",
        f"Objectives: {', '.join(f'{o} ({d.name.lower()})' for o, d in zip(objectives, study.directions))}",
        f"Trials: {len(trials)} total; {counts['COMPLETE']} complete, {counts['PRUNED']} pruned, "
        f"{counts['FAIL']} failed, {counts['RUNNING']} running; {infeasible} infeasible (constraints)",
        f"Feasible Pareto-optimal trials: {len(best)}",
        "",
    ]
    by_number = {t.number: t for t in trials}
    for record in best:
        trial = by_number[record["trial_number"]]
        values = ", ".join(f"{k}={_fmt(v)}" for k, v in record["objectives"].items())
        lines.append(f"Rank {record['rank']}: trial {record['trial_number']}: {values}")
        attrs = trial.user_attrs
        if "val_accuracy" in attrs:
            lines.append(
                f"    validation accuracy {attrs['val_accuracy']:.4f} vs majority-class rate "
                f"{attrs['val_majority_rate']:.4f}; epochs {attrs.get('epochs_trained')}; "
                f"cpu {attrs.get('cpu_minutes', float('nan')):.3f} min"
            )
        lines.append(f"    params: {json.dumps(record['params'])}")
    if best:
        top = by_number[best[0]["trial_number"]].user_attrs
        if "val_accuracy" in top and top["val_accuracy"] <= top["val_majority_rate"]:
            lines += [
                "",
                "Note: the top-ranked model is no better than always predicting the majority class "
                f"({top['val_accuracy']:.4f} <= {top['val_majority_rate']:.4f}) on validation data.",
            ]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    if failed:
        lines += ["", "Failed trials:"]
        lines += [f"    trial {t.number}: {t.user_attrs.get('fail_reason', t.system_attrs.get('fail_reason', 'unknown'))}" for t in failed]
    return "\n".join(lines) + "\n"


def write_study_outputs(study: optuna.Study, objectives: list[str], weights: dict[str, float], save_dir: Path) -> list[dict[str, Any]]:
    best = ranked_pareto(study, objectives, weights)
    write_json(save_dir / "best_configurations.json", best)
    atomic_write_text(save_dir / "optimization_summary.txt", summary_text(study, objectives, best))
    return best
