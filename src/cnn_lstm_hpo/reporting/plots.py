"""The guide's PNG plots, drawn from a stored study and its analysis (``analysis.analyze_study``).

Matplotlib's object API (``Figure``, Agg canvas): no pyplot state, no display, no browser. The
importance and correlation plots draw the numbers of ``optimization_analysis.json`` rather than
letting Optuna's plot helpers recompute them, so picture and file always agree.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from optuna.trial import TrialState

from .analysis import axis_label, complete_trials, feasible_front, history, is_feasible, maximised, objective_names

DPI = 100


def _save(fig: Figure, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    return "written"


def optimization_history(study: optuna.Study, analysis: dict[str, Any]) -> Figure | str:
    """Each objective per trial with the best feasible value so far; then the hypervolume."""
    trials = complete_trials(study)
    if not trials:
        return "no complete trial yet"
    objectives = objective_names(study)
    hv = analysis["hypervolume"].get("history", [])
    rows = len(objectives) + (1 if hv and len(objectives) > 1 else 0)
    fig = Figure(figsize=(10, 2.8 * rows))
    axes = fig.subplots(rows, 1, squeeze=False)[:, 0]
    numbers = np.array([t.number for t in trials])
    feasible = np.array([is_feasible(t) for t in trials])
    for i, (ax, name, maxi) in enumerate(zip(axes, objectives, maximised(study))):
        values = np.array([t.values[i] for t in trials])
        ax.scatter(numbers[feasible], values[feasible], s=18, color="tab:blue", label="feasible trial")
        if (~feasible).any():
            ax.scatter(numbers[~feasible], values[~feasible], s=30, marker="x", color="tab:red", label="infeasible")
        order = np.argsort(numbers)
        best = np.where(feasible[order], values[order], np.nan)
        running = (np.fmax if maxi else np.fmin).accumulate(best)
        ax.step(numbers[order], running, where="post", color="black", lw=1.2, label=f"best so far ({'max' if maxi else 'min'})")
        ax.set(ylabel=axis_label(name), xlabel="trial number")
        ax.legend(loc="best", fontsize=8)
        ax.grid(alpha=0.3)
    if rows > len(objectives):
        ax = axes[-1]
        ax.plot([h["trial_number"] for h in hv], [h["hypervolume"] for h in hv], marker="o", ms=3, color="tab:green")
        ax.set_ylabel(f"hypervolume\n({analysis['hypervolume']['units']})")
        ax.set_xlabel("trial number (feasible complete trials)")
        ax.grid(alpha=0.3)
    fig.suptitle(f"Optimization history: {study.study_name}")
    return fig


def parameter_importance(part: dict[str, Any], title: str) -> Figure | str:
    importances = part.get("importances")
    if not importances or sum(importances.values()) == 0:
        return part.get("note", "no importances")
    names = sorted(importances, key=importances.get)
    fig = Figure(figsize=(8, 1.0 + 0.45 * len(names)))
    ax = fig.subplots()
    ax.barh(names, [importances[n] for n in names], color="tab:blue")
    ax.set(xlabel="importance (normalised, sums to 1)", title=f"{title} ({part['n_trials']} trials)")
    ax.grid(axis="x", alpha=0.3)
    return fig


def pareto_front_2d(study: optuna.Study) -> Figure | str:
    """Every pair of objectives: all complete trials, the feasible Pareto front (all objectives) highlighted."""
    objectives = objective_names(study)
    if len(objectives) < 2:
        return "one objective: no Pareto front to draw"
    trials = complete_trials(study)
    if not trials:
        return "no complete trial yet"
    front = {t.number for t in feasible_front(study)}
    values = np.array([t.values for t in trials])
    on_front = np.array([t.number in front for t in trials])
    infeasible = np.array([not is_feasible(t) for t in trials])
    rest = ~on_front & ~infeasible
    pairs = list(itertools.combinations(range(len(objectives)), 2))
    fig = Figure(figsize=(5.5 * len(pairs), 4.8))
    for ax, (i, j) in zip(fig.subplots(1, len(pairs), squeeze=False)[0], pairs):
        ax.scatter(values[rest, i], values[rest, j], s=18, color="tab:gray", alpha=0.6, label="dominated")
        if infeasible.any():
            ax.scatter(values[infeasible, i], values[infeasible, j], s=34, marker="x", color="tab:red", label="infeasible")
        ax.scatter(values[on_front, i], values[on_front, j], s=48, color="tab:orange", edgecolor="black", label="Pareto front")
        for t, v in zip(trials, values):
            if t.number in front:
                ax.annotate(str(t.number), (v[i], v[j]), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set(xlabel=axis_label(objectives[i]), ylabel=axis_label(objectives[j]))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Pareto front (feasible, non-dominated over all objectives; labels are trial numbers)")
    return fig


def correlation_heatmap(part: dict[str, Any], objectives: list[str]) -> Figure | str:
    cells = part.get("cells") or []
    if not cells:
        return part.get("note") or "no parameter could be tested"
    params = sorted({c["param"] for c in cells})
    grid = np.full((len(params), len(objectives)), np.nan)
    significant = np.zeros(grid.shape, dtype=bool)
    tested = np.zeros(grid.shape, dtype=bool)
    text = [["" for _ in objectives] for _ in params]
    kinds = {}
    for c in cells:
        r, k = params.index(c["param"]), objectives.index(c["objective"])
        grid[r, k] = c["effect"] if c["effect"] is not None else np.nan
        significant[r, k], tested[r, k] = bool(c["significant"]), True
        text[r][k] = f"{grid[r, k]:.2f}{'*' if c['significant'] else ''}\np={c['p_adjusted']:.2g}"
        kinds[c["param"]] = "rho" if c["test"] == "spearman" else "eps²"
    fig = Figure(figsize=(2.2 * len(objectives) + 4, 0.6 * len(params) + 2))
    ax = fig.subplots()
    # Only significant effects are coloured (a strong colour on noise reads as a finding); the rest grey.
    ax.imshow(np.where(tested & ~significant, 0.0, np.nan), cmap=ListedColormap(["#eeeeee"]), aspect="auto")
    image = ax.imshow(np.where(significant, grid, np.nan), cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
    ax.set_xticks(range(len(objectives)), [axis_label(o) for o in objectives])
    ax.set_yticks(range(len(params)), [f"{p} ({kinds[p]})" for p in params])
    for r, row in enumerate(text):
        for k, label in enumerate(row):
            dark = significant[r, k] and abs(grid[r, k]) > 0.6  # white text on the deep colours
            colour = "white" if dark else "black" if significant[r, k] else "#888888"
            ax.text(k, r, label, ha="center", va="center", fontsize=8, color=colour,
                    fontweight="bold" if label.split("\n")[0].endswith("*") else "normal")
    fig.colorbar(image, ax=ax, label="Spearman rho (-1..1) or Kruskal-Wallis epsilon² (0..1)")
    ax.set_title(f"Hyperparameter vs objective; coloured (*): significant at {part['alpha']} after Benjamini-Hochberg, grey: not "
                 f"({part['n_trials']} trials)", fontsize=9)
    return fig


def learning_curves(study: optuna.Study, rungs: list[int]) -> Figure | str:
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    curves = [(t, history(t)) for t in trials if history(t)]
    if not curves:
        return "no trial stored an epoch history"
    fig = Figure(figsize=(10, 5))
    ax = fig.subplots()
    for t, h in curves:
        pruned = t.state == TrialState.PRUNED
        ax.plot([e["epoch"] for e in h], [e["val_score"] for e in h], color="tab:gray" if pruned else "tab:blue",
                alpha=0.3 if pruned else 0.8, lw=1 if pruned else 1.2)
    for rung in rungs:
        ax.axvline(rung, color="tab:red", ls=":", lw=1)
    ax.plot([], [], color="tab:blue", label="complete")
    ax.plot([], [], color="tab:gray", alpha=0.4, label="pruned / stopped")
    if rungs:
        ax.plot([], [], color="tab:red", ls=":", label="pruning rung")
    ax.set(xlabel="epoch", ylabel="validation score (composite accuracy, 0-1)", title=f"Learning curves of {len(curves)} trials")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def fold_scores_plot(part: dict[str, Any]) -> Figure:
    """Walk-forward: the rank-1 configuration's score, accuracy and each fold's majority-class rate, by fold."""
    folds = part["top_configurations"][0]["folds"]
    x = np.arange(len(folds))
    fig = Figure(figsize=(8, 4))
    ax = fig.subplots()
    ax.plot(x, [f["score"] for f in folds], marker="o", label="rank-1 composite score (the objective)")
    ax.plot(x, [f["accuracy"] for f in folds], marker="s", label="rank-1 accuracy")
    ax.plot(x, [f["majority_rate"] for f in folds], marker="_", ms=14, ls="--", color="black",
            label="majority-class rate of the fold's validation")
    ax.set_xticks(x, [f"fold {f['fold']}\n{f['val_start']}" for f in folds], fontsize=8)
    ax.set_ylabel("validation (0-1)")
    pbo = part.get("pbo")
    ax.set_title("Score by fold" + (f" (probability of backtest overfitting {pbo:.2f})" if pbo is not None else ""))
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def write_plots(study: optuna.Study, analysis: dict[str, Any], plots_dir: Path) -> dict[str, str]:
    """Write every plot the study supports; returns file name -> "written" or the note why not."""
    objectives = objective_names(study)
    importance = analysis["importance"]
    rungs = [r["epoch"] for r in analysis["pruning"].get("rungs", [])]
    figures: dict[str, Figure | str] = {
        "optimization_history.png": optimization_history(study, analysis),
        "pareto_front_2d.png": pareto_front_2d(study),
        "hyperparameter_correlations.png": correlation_heatmap(analysis["correlations"], objectives),
        "learning_curves.png": learning_curves(study, rungs),
    }
    for name in objectives:
        figures[f"parameter_importance_{name}.png"] = parameter_importance(
            importance["complete_trials"][name], f"Importance for {name} ({importance['evaluator'].split(' (')[0]})")
    folds = analysis.get("backtest_overfitting")
    if folds is not None:  # walk-forward
        figures["fold_scores.png"] = fold_scores_plot(folds) if folds["top_configurations"] else "no feasible complete trial yet"
    rung = importance["first_rung"]
    if "epoch" in rung:
        figures["parameter_importance_first_rung.png"] = parameter_importance(
            rung, f"Importance for the validation score at epoch {rung['epoch']} (pruned trials included)")
    return {name: fig if isinstance(fig, str) else _save(fig, plots_dir / name) for name, fig in figures.items()}
