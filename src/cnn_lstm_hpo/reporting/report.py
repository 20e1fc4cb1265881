"""``report.html`` (one self-contained page) and the step that writes every analysis output.

The page inlines plotly.js once, so it opens from disk with no server and no network.
``write_analysis_outputs`` is what ``optimize`` calls at its end and what ``analyze`` runs on any
stored study: optimization_analysis.json, plots/, optimization_summary.txt and report.html.
"""

from __future__ import annotations

import html
import logging
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import plotly.graph_objects as go
import plotly.offline
import yaml
from optuna.trial import TrialState

from .analysis import (
    analyze_study, axis_label, complete_trials, feasible_front, history, is_feasible, objective_names, unit,
)
from ..config import DEFAULT_WEIGHTS, OptimizationConfig, validate_config
from ..errors import HPOError
from ..distributed.storage import default_url, redact, study_names
from ..pruning import ParetoRungPruner
from .plots import write_plots
from ..results import atomic_write_text, ranked_pareto, summary_text, write_json
from ..space import decode_params
from ..targets import describe as describe_target
from ..verdict import summary_lines

log = logging.getLogger("cnn_lstm_hpo")
SOURCES = {"sample": "sample (real S&P 500 and NASDAQ Composite daily bars shipped by the arch package)",
           "synthetic": "synthetic (generated series with a planted, learnable signal)"}
_PARETO_STYLE = {
    "front": {"name": "Pareto front (feasible)", "symbol": "diamond", "size": 9},
    "dominated": {"name": "dominated", "symbol": "circle", "size": 5},
    "infeasible": {"name": "infeasible (a limit broken)", "symbol": "x", "size": 5},
}
_NUMBER = re.compile(r'"number": (\d+)')  # a trial's number in Optuna's hover text


# --- the page ---------------------------------------------------------------------------------
def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if math.isfinite(value) else str(value)
    return str(value)


def _table(headers: list[str], rows: list[list[Any]], table_id: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in row) + "</tr>" for row in rows)
    ident = f' id="{table_id}"' if table_id else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _note(text: str | None) -> str:
    return f'<p class="note">{html.escape(text)}</p>' if text else ""


def pareto_figure(study: optuna.Study) -> go.Figure | str:
    """Optuna's Pareto plot (3-D with three objectives); it greys infeasible trials by ``trial.constraints``."""
    objectives = objective_names(study)
    if len(objectives) < 2:
        return "one objective: no trade-off to show"
    if not complete_trials(study):
        return "no complete trial yet"
    fig = optuna.visualization.plot_pareto_front(study, target_names=[axis_label(o) for o in objectives])
    # Optuna's hover text is the whole trial as JSON (epoch histories included) and its traces are
    # unnamed: name each trace by what it holds and hover a short card per trial.
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    front = {t.number for t in feasible_front(study)}
    for trace in fig.data:
        numbers = [int(m.group(1)) for h in (trace.text or ()) if (m := _NUMBER.search(h))]
        if not numbers or len(numbers) != len(trace.text):
            continue
        trials = [by_number[n] for n in numbers]
        kind = ("front" if set(numbers) <= front
                else "infeasible" if not any(map(is_feasible, trials)) else "dominated")
        style = _PARETO_STYLE[kind]
        # One colour bar for every trace (trial number); kinds differ by marker, infeasible ones grey.
        marker = {"symbol": style["symbol"], "size": style["size"], "showscale": False,
                  **({"color": "#bbbbbb"} if kind == "infeasible" else {"color": numbers, "coloraxis": "coloraxis"})}
        trace.update(name=style["name"], showlegend=True, marker=marker,
                     hovertext=[_hover(t, objectives) for t in trials], hovertemplate="%{hovertext}<extra></extra>",
                     # The front's trial numbers written beside the points: readable without hovering.
                     text=[f"#{n}" for n in numbers] if kind == "front" else None,
                     mode="markers+text" if kind == "front" else "markers", textposition="top center")
    fig.update_layout(legend={"x": 0, "y": 1, "bgcolor": "rgba(255,255,255,0.7)"},
                      coloraxis={"colorscale": "Viridis", "colorbar": {"title": "trial number"}},
                      height=700 if len(objectives) == 3 else 500)
    return fig


def _hover(trial: optuna.trial.FrozenTrial, objectives: list[str]) -> str:
    lines = [f"<b>trial {trial.number}</b>"]
    lines += [f"{o}: {v:.4g} ({unit(o)})" for o, v in zip(objectives, trial.values)]
    lines += [f"{k}: {_fmt(v, 3)}" for k, v in decode_params(trial.params).items()]
    return "<br>".join(lines)


def importance_figure(analysis: dict[str, Any]) -> go.Figure | str:
    parts = dict(analysis["importance"]["complete_trials"])
    rung = analysis["importance"]["first_rung"]
    if "epoch" in rung:
        parts[f"val score at epoch {rung['epoch']} (pruned incl.)"] = rung
    fig = go.Figure()
    for name, part in parts.items():
        importances = part.get("importances") or {}
        if importances and sum(importances.values()) > 0:
            fig.add_bar(name=name, y=list(importances), x=list(importances.values()), orientation="h")
    if not fig.data:
        return "no importances yet: " + "; ".join(f"{k}: {v.get('note', '')}" for k, v in parts.items())
    fig.update_layout(barmode="group", xaxis_title="importance (normalised, sums to 1 per target)",
                      title=analysis["importance"]["evaluator"], height=150 + 60 * len(fig.data[0].y))
    return fig


def correlation_figure(analysis: dict[str, Any]) -> go.Figure | str:
    part = analysis["correlations"]
    cells = part["cells"]
    if not cells:
        return part.get("note") or "no parameter could be tested"
    objectives = [o["name"] for o in analysis["objectives"]]
    params = sorted({c["param"] for c in cells})
    significant = [[None] * len(objectives) for _ in params]
    grey = [[None] * len(objectives) for _ in params]
    text = [[""] * len(objectives) for _ in params]
    for c in cells:
        r, k = params.index(c["param"]), objectives.index(c["objective"])
        # Only a significant effect gets a colour: a strong colour on noise reads as a finding.
        if c["significant"]:
            significant[r][k] = c["effect"]
        else:
            grey[r][k] = 0
        effect = "–" if c["effect"] is None else f"{c['effect']:.2f}"
        text[r][k] = f"{effect} ({'rho' if c['test'] == 'spearman' else 'eps²'}, p={c['p_adjusted']:.2g})"
    x = [axis_label(o) for o in objectives]
    fig = go.Figure([
        go.Heatmap(z=grey, x=x, y=params, text=text, texttemplate="%{text}", colorscale=[[0, "#eeeeee"], [1, "#eeeeee"]],
                   showscale=False, textfont={"color": "#888888"}, name="not significant", hoverinfo="text"),
        go.Heatmap(z=significant, x=x, y=params, text=text, texttemplate="%{text}", colorscale="RdBu", reversescale=True,
                   zmin=-1, zmax=1, name="significant", colorbar={"title": "effect"}, hoverinfo="text"),
    ])
    fig.update_layout(title=f"coloured: significant at {part['alpha']} after Benjamini-Hochberg; grey: not; "
                      "rho = Spearman, eps² = Kruskal-Wallis effect", height=150 + 45 * len(params))
    return fig


def learning_figure(study: optuna.Study, rungs: list[int]) -> go.Figure | str:
    fig = go.Figure()
    shown: set[str] = set()
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
        h = history(t)
        if h:
            group = "pruned / stopped" if t.state == TrialState.PRUNED else "complete"
            # One legend entry per kind (the first curve of it); hovering a curve names its trial.
            fig.add_scatter(x=[e["epoch"] for e in h], y=[e["val_score"] for e in h], mode="lines",
                            name=group, legendgroup=group, showlegend=group not in shown,
                            hovertemplate=f"trial {t.number}: epoch %{{x}}, score %{{y:.3f}}<extra></extra>",
                            opacity=0.3 if group != "complete" else 0.9,
                            line={"color": "gray" if group != "complete" else "#1f77b4"})
            shown.add(group)
    if not fig.data:
        return "no trial stored an epoch history"
    for rung in rungs:
        fig.add_vline(x=rung, line_dash="dot", line_color="red")
    if rungs:
        fig.add_scatter(x=[None], y=[None], mode="lines", name="pruning rung", line={"color": "red", "dash": "dot"})
    fig.update_layout(xaxis_title="epoch", yaxis_title="validation score (composite accuracy, 0-1)",
                      title="Learning curves", showlegend=True)
    return fig


def hypervolume_figure(analysis: dict[str, Any]) -> go.Figure | str:
    part = analysis["hypervolume"]
    if not part.get("history"):
        return part.get("note", "no hypervolume")
    fig = go.Figure(go.Scatter(x=[h["trial_number"] for h in part["history"]],
                               y=[h["hypervolume"] for h in part["history"]], mode="lines+markers"))
    reference = ", ".join(f"{k} {v:.3g}" for k, v in part["reference_point"].items())
    fig.update_layout(xaxis_title="trial number", yaxis_title=f"hypervolume ({part['units']})",
                      title={"text": f"Hypervolume of the feasible front (reference point: {reference})", "y": 0.97},
                      margin={"t": 80})
    fig.data[0].update(name="hypervolume", hovertemplate="trial %{x}: %{y:.4g}<extra></extra>")
    return fig


def equity_figure(study: optuna.Study, analysis: dict[str, Any]) -> go.Figure | str:
    """Compounded validation equity of the rank-1 trial (net of costs) against buy-and-hold, same dates."""
    signal = analysis.get("signal") or {}
    stored = study.user_attrs.get("signal_baselines") or {}
    rank_1 = (signal.get("rank_1") or {}).get("trial_number")
    hold = stored.get("buy_and_hold")
    if rank_1 is None or not hold:
        return "no trading evaluation: the target does not trade, or no trial completed"
    trial = next(t for t in study.get_trials(deepcopy=False) if t.number == rank_1)
    trading = trial.user_attrs.get("val_trading") or {}
    if not trading.get("returns"):
        return f"trial {rank_1} stored no trading returns"
    fig = go.Figure()
    for name, returns, dates in ((f"rank 1 (trial {rank_1}), net of costs", trading["returns"], trading["dates"]),
                                 ("buy-and-hold", hold["returns"], hold["dates"])):
        fig.add_scatter(x=dates, y=np.cumprod(1.0 + np.asarray(returns, dtype=float)), mode="lines", name=name)
    fig.update_layout(yaxis_title="equity (start = 1)", title="Validation equity curve (the split that chose the model)")
    return fig


def _section(title: str, body: str, section_id: str) -> str:
    return f'<section id="{section_id}"><h2>{html.escape(title)}</h2>{body}</section>'


def _plot_or_note(fig: go.Figure | str, div_id: str) -> str:
    if isinstance(fig, str):
        return _note(fig)
    top = max(50, fig.layout.margin.t or 0)  # a figure with a long title asks for more
    fig.update_layout(template="plotly_white", margin={"l": 60, "r": 20, "t": top, "b": 50})
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id)


def _walk_forward_section(part: dict[str, Any] | None) -> list[str]:
    """Walk-forward studies: the probability of backtest overfitting and the top configurations by fold."""
    if part is None:
        return []
    rows = [[r["rank"], r["trial_number"], f["fold"], f"{f['val_start']} .. {f['val_end']}", f["score"], f["accuracy"],
             f["majority_rate"], f["epochs"]] for r in part["top_configurations"] for f in r["folds"]]
    pbo = f"Probability of backtest overfitting: {part['pbo']:.3f} ({part['n_splits']} splits, {part['trials']} complete trials; " \
          f"{part['method']})." if "pbo" in part else part["note"]
    return [_section(f"Walk-forward folds ({part['folds']})", f"<p>{html.escape(pbo)}</p>" + _table(
        ["rank", "trial", "fold", "validation period (end exclusive)", "score", "accuracy", "majority-class rate", "epochs"],
        rows, "fold-scores"), "folds")]


def render_report(study: optuna.Study, analysis: dict[str, Any], summary: str) -> str:
    objectives = [o["name"] for o in analysis["objectives"]]
    base = analysis["baselines"]
    alerts = [a for a in (base.get("leakage_warning"),
                          base.get("note") if base.get("nothing_beats_baseline") else None) if a]
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    best_rows = [
        [r["rank"], r["trial_number"], *[r["objectives"][o] for o in objectives], r["val_accuracy"], r["majority_rate"],
         r.get("n_val_samples"), r.get("p_holm"), r.get("ci95") and f"{r['ci95'][0]:.3f}–{r['ci95'][1]:.3f}",
         r.get("beats_majority"), r.get("classification_score"), r.get("constant_predictor"), r["regression_score"],
         ", ".join(f"{k}={_fmt(v, 3)}" for k, v in decode_params(by_number[r["trial_number"]].params).items())]
        for r in base["configurations"]
    ]
    best_table = _table(
        ["rank", "trial", *[axis_label(o) for o in objectives], "val accuracy", "majority-class rate", "n val",
         "p (Holm)", "95% CI", "beats majority?", "classification score", "constant predictor? (ranked last)",
         "regression score (zero forecast = 0.5)", "params"],
        best_rows, "best-configs",
    )
    states = analysis["trials"]
    stopped = [[s["trial_number"], s["state"], s["reason"], s["epochs_trained"]] for s in states["stopped"]]
    pruning_rows = [[r["epoch"], r["reached"], r["continued"], r["pruned_here"], r["stopped_here"], r["finished"],
                     r.get("spearman_rho"), r.get("p_value")] for r in analysis["pruning"]["rungs"]]
    rungs = [r["epoch"] for r in analysis["pruning"]["rungs"]]
    signal = analysis.get("signal") or {}
    sections = [
        _section("Summary", "".join(f'<p class="alert">{html.escape(a)}</p>' for a in alerts)
                 + f"<pre>{html.escape(summary)}</pre>", "summary"),
        _section("Pareto front", _plot_or_note(pareto_figure(study), "pareto-plot")
                 + _note(analysis["pareto_front"].get("note")), "pareto"),
        _section("Best configurations against the baselines",
                 f"<p>{html.escape(base['test'])}.</p>" + best_table + _note(base.get("note")), "best"),
        _section("Trading on validation", _plot_or_note(equity_figure(study, analysis), "equity-plot")
                 + f"<pre>{html.escape(chr(10).join(summary_lines(signal)))}</pre>", "trading"),
        _section("Hypervolume", _plot_or_note(hypervolume_figure(analysis), "hypervolume-plot"), "hypervolume"),
        _section("Parameter importance", _plot_or_note(importance_figure(analysis), "importance-plot"), "importance"),
        _section("Hyperparameter correlations", _plot_or_note(correlation_figure(analysis), "correlation-plot")
                 + "".join(_note(n) for n in analysis["correlations"].get("notes", [])), "correlations"),
        _section("Learning curves", _plot_or_note(learning_figure(study, rungs), "learning-plot"), "learning"),
        _section("Pruning rungs", _table(["epoch", "reached", "continued", "pruned here", "ended here otherwise", "finished",
                                          "Spearman rho (rung vs final)", "p"], pruning_rows)
                 + _note(analysis["pruning"].get("note")), "pruning"),
        *_walk_forward_section(analysis.get("backtest_overfitting")),
        _section("Stopped and failed trials",
                 _table(["reason", "trials"], [[k, v] for k, v in states["stop_reasons"].items()])
                 + _table(["trial", "state", "reason", "epochs trained"], stopped, "stopped-trials"), "stopped"),
    ]
    title = f"cnn-lstm-hpo report: {study.study_name}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.85em; }}
th, td {{ border: 1px solid #ccc; padding: 3px 6px; text-align: left; vertical-align: top; }}
th {{ background: #f0f0f0; }}
pre {{ background: #f7f7f7; padding: 1em; white-space: pre-wrap; overflow-wrap: anywhere; font-size: 0.85em; }}
.note {{ color: #555; font-style: italic; }}
.alert {{ background: #fff3cd; border-left: 4px solid #d39e00; padding: 0.5em 1em; }}
</style>
<script>{plotly.offline.get_plotlyjs()}</script>
</head><body>
<h1>{html.escape(title)}</h1>
<p class="verdict" id="verdict"><b>{html.escape(analysis.get("verdict") or "")}</b></p>
<p>Generated {html.escape(analysis["generated_at"])} from the study storage. Objectives:
{html.escape(", ".join(f"{o['label']} ({o['direction']}, {o['unit']})" for o in analysis["objectives"]))}.
The numbers behind every plot are in optimization_analysis.json.</p>
{"".join(sections)}
</body></html>
"""


# --- writing everything -----------------------------------------------------------------------
def stored_config(save_dir: Path) -> OptimizationConfig | None:
    """The resolved config ``optimize`` wrote beside the study, if it is there and still valid."""
    path = save_dir / "resolved_config.yaml"
    try:
        return validate_config(yaml.safe_load(path.read_text()), str(path))
    except (OSError, yaml.YAMLError, HPOError, TypeError):
        return None


def run_context(study: optuna.Study, config: OptimizationConfig | None) -> dict[str, Any]:
    """What ran, on what data, for how long: for the summary."""
    trials = [t for t in study.get_trials(deepcopy=False) if t.datetime_start]
    context: dict[str, Any] = {}
    if trials:
        start = min(t.datetime_start for t in trials)
        end = max((t.datetime_complete or t.datetime_start) for t in trials)
        context["first_trial_start"] = f"{start:%Y-%m-%d %H:%M}"
        context["elapsed_minutes"] = (end - start).total_seconds() / 60
        context["trial_minutes"] = sum(t.duration.total_seconds() for t in trials if t.duration) / 60
    if config is not None:
        data = config.data
        # The symbols the data actually gave, where the study recorded them (its fingerprint).
        fingerprint = study.user_attrs.get("fingerprint")
        loaded = fingerprint.get("data.symbols_loaded") if isinstance(fingerprint, dict) else None
        context.update(
            scenario=config.scenario,
            data=SOURCES.get(data.source, data.source)
            + (f" from {data.start}" if data.start else "") + (f" to {data.end}" if data.end else ""),
            symbols=", ".join(loaded or config.symbols or []) or "all in the source",
            budget=f"{config.n_trials} trials, up to {config.max_epochs_per_trial} epochs each, "
            f"timeout {config.timeout_hours} h, max model {config.max_model_size_mb} MB, "
            f"max training {config.max_training_time_minutes} min per trial",
            target=f"{describe_target(data)}; windows of {data.sequence_length} bars; "
            f"classification metric {config.training.classification_metric}",
        )
    return context


def planned_rungs(config: OptimizationConfig | None) -> list[int]:
    """Decision epochs of our multi-objective pruner (Optuna's single-objective Hyperband ones are
    found from the trials it pruned)."""
    if config is None or not config.pruning.enabled or len(config.objectives) < 2:
        return []
    return sorted({r for bracket in ParetoRungPruner(config).brackets for r in bracket})


def write_analysis_outputs(study: optuna.Study, save_dir: Path, *, config: OptimizationConfig | None = None,
                           evaluator: str = "ped_anova") -> list[str]:
    """Write optimization_analysis.json, plots/, optimization_summary.txt and report.html.

    Never raises: the study and the files written before stay whatever goes wrong here; the
    problems are logged and returned (empty list: everything written).
    """
    save_dir = Path(save_dir)
    problems: list[str] = []
    try:
        objectives = objective_names(study)
        if config is not None and config.objectives != objectives:
            config = None  # a resolved_config.yaml of some other study
        weights = config.objective_weights if config is not None else DEFAULT_WEIGHTS
        weights = {o: weights.get(o, 1.0) for o in objectives}
        analysis = analyze_study(study, weights=weights, rungs=planned_rungs(config), evaluator=evaluator)
    except Exception as error:  # noqa: BLE001 - the study's results must survive any analysis bug
        problems.append(f"analysis failed ({type(error).__name__}: {error}); the study results are kept")
        log.warning("warning: %s", problems[-1])
        return problems
    steps = {
        "plots": lambda: analysis.__setitem__("plots", write_plots(study, analysis, save_dir / "plots")),
        "optimization_analysis.json": lambda: write_json(save_dir / "optimization_analysis.json", analysis),
        "optimization_summary.txt": lambda: atomic_write_text(
            save_dir / "optimization_summary.txt", _summary(study, objectives, weights, analysis, config)),
        "report.html": lambda: atomic_write_text(
            save_dir / "report.html", render_report(study, analysis, _summary(study, objectives, weights, analysis, config))),
    }
    for name, step in steps.items():
        try:
            step()
        except Exception as error:  # noqa: BLE001 - one broken part must not stop the others
            problems.append(f"{name} not written ({type(error).__name__}: {error})")
            log.warning("warning: %s", problems[-1])
    return problems


def open_stored_study(save_dir: Path, storage: str | None = None, study_name: str | None = None) -> optuna.Study:
    """Load a study for reading only: no table creation, no sampler state, nothing written, so
    workers still running on the same storage are undisturbed."""
    url = storage or default_url(Path(save_dir), workers=1)
    store, names = study_names(url)
    if study_name is None:
        if len(names) != 1:
            raise HPOError(f"storage {redact(url)} holds {len(names)} studies ({', '.join(names) or 'none'}); pass --study-name")
        study_name = names[0]
    if study_name not in names:
        raise HPOError(f"no study {study_name!r} in {redact(url)}; it holds: {', '.join(names) or 'none'}")
    return optuna.load_study(study_name=study_name, storage=store, sampler=optuna.samplers.RandomSampler())


def _summary(study: optuna.Study, objectives: list[str], weights: dict[str, float], analysis: dict[str, Any],
             config: OptimizationConfig | None) -> str:
    best = ranked_pareto(study, objectives, weights) if all(o in DEFAULT_WEIGHTS for o in objectives) else []
    return summary_text(study, objectives, best, analysis=analysis, context=run_context(study, config))


