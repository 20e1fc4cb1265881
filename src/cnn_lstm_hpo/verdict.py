"""Signal or no signal: what a study and a retrain record for it, and the one-line verdict.

During a study: the validation baselines (baselines.py) are computed once, when the study starts,
and stored with it (``STUDY_ATTR``) with the validation labels and each baseline's predictions;
every completed trial stores its validation predictions and, for targets that trade, its trading
evaluation (trading.py). ``signal_part`` (in optimization_analysis.json) then compares the
rank-1 trial with the strongest validation baseline by the study's classification metric (a
one-sided paired test on the same windows, baselines.paired_test) and deflates its Sharpe ratio by the number of trials; ``verdict_line`` says it in one line.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .baselines import ALPHA, METRIC_LABELS, Baselines, best_name, compute_baselines, holm, paired_test
from .trading import deflated_sharpe, evaluate_trading

STUDY_ATTR = "signal_baselines"
PREDICTIONS_ATTR = "val_predictions"
TRADING_ATTR = "val_trading"
# Targets whose classes are directions (down / [flat] / up) and so can be traded.
TRADING_TARGETS = ("direction", "triple_barrier")


def target_of(config: Any) -> str:
    return config.data.target


def trades(config: Any) -> bool:
    return target_of(config) in TRADING_TARGETS


def encode(classes: np.ndarray) -> str:
    """Class labels (< 10 classes) as one digit each: compact in the study storage."""
    return "".join(map(str, np.asarray(classes, dtype=np.int64).tolist()))


def decode(text: str) -> np.ndarray:
    return np.frombuffer(text.encode(), dtype=np.uint8).astype(np.int64) - ord("0")


def _round(values: np.ndarray) -> list[float]:
    return [float(f"{v:.6g}") for v in np.asarray(values, dtype=np.float64)]


def trading_record(config: Any, data: Any, split: Any, pred_class: np.ndarray, *, with_returns: bool) -> dict[str, Any]:
    """trading.evaluate_trading on ``split`` as JSON (per-date returns rounded to 6 digits when asked)."""
    result = evaluate_trading(
        pred_class, split.y_return.cpu().numpy(), split.symbols, split.dates, num_classes=data.num_classes,
        mode=config.trading.positions, cost_bps=config.trading.cost_bps, horizon=config.data.horizon,
    )
    record = {k: result[k] for k in ("positions", "cost_bps", "strategy", "buy_and_hold")}
    if with_returns:
        record["returns"] = _round(result["returns"])
        record["buy_and_hold_returns"] = _round(result["buy_and_hold_returns"])
        record["dates"] = [str(d)[:19] for d in result["dates"]]
    return record


def study_baselines(config: Any, data: Any) -> dict[str, Any]:
    """What ``STUDY_ATTR`` holds: the validation baselines, their predictions and the labels."""
    base: Baselines = compute_baselines(data.train, data.val, horizon=config.data.horizon, split_name="validation",
                                        seed=config.seed)
    record = {**base.to_dict(), "labels": encode(data.val.y_class.cpu().numpy()),
              "predictions": {name: encode(pred) for name, pred in base.predictions.items()},
              "target": target_of(config)}
    if trades(config):
        hold = trading_record(config, data, data.val, base.predictions["majority"], with_returns=True)
        record["buy_and_hold"] = {"stats": hold["buy_and_hold"], "returns": hold["buy_and_hold_returns"],
                                  "dates": hold["dates"]}
    return record


# --- the study's verdict ------------------------------------------------------------------------
def _trial_sharpes(trials: list[Any]) -> np.ndarray:
    return np.array([t.user_attrs[TRADING_ATTR]["strategy"]["sharpe_per_period"] for t in trials
                     if isinstance(t.user_attrs.get(TRADING_ATTR), dict)
                     and t.user_attrs[TRADING_ATTR]["strategy"].get("sharpe_per_period") is not None], dtype=float)


def deflate(stats: dict[str, Any], trial_sharpes: np.ndarray) -> dict[str, Any] | None:
    """DSR of a strategy's stats, deflated by the completed trials' per-period Sharpe ratios."""
    if stats.get("sharpe_per_period") is None or not stats.get("n_periods"):
        return None
    n = len(trial_sharpes)
    variance = float(np.var(trial_sharpes, ddof=1)) if n > 1 else 0.0
    return deflated_sharpe(stats["sharpe_per_period"], int(stats["n_periods"]), stats.get("skew") or 0.0,
                           stats.get("kurtosis") or 3.0, n_trials=max(n, 1), trial_sr_variance=variance)


def study_metric(study: Any) -> str:
    """The classification metric the study ranked by (studies from before it was stored: accuracy)."""
    config = study.user_attrs.get("config") or {}
    return (config.get("training") or {}).get("classification_metric", "accuracy")


def signal_part(study: Any, ranked: list[Any], complete: list[Any]) -> dict[str, Any]:
    """The rank-1 trial against the strongest validation baseline by the study's metric; its trading and DSR.

    ``ranked``: the feasible front in rank order; ``complete``: every complete trial (the DSR's N).
    """
    stored = study.user_attrs.get(STUDY_ATTR)
    metric = study_metric(study)
    part: dict[str, Any] = {"split": "validation", "alpha": ALPHA, "metric": metric}
    if not isinstance(stored, dict):
        part["verdict"] = ("no edge found: this study stored no validation baselines (it ran before they were "
                           "recorded); retrain tests the models on the test split")
        return part
    part["baselines"] = {"n_windows": stored["n_windows"], "scores": stored["scores"],
                         "strongest": best_name(stored["scores"], metric),
                         "strongest_rule": f"the highest {METRIC_LABELS[metric]}, the study's classification metric"}
    if "buy_and_hold" in stored:
        part["buy_and_hold"] = stored["buy_and_hold"]["stats"]
    if not ranked:
        part["verdict"] = "no edge found: no feasible complete trial"
        return part
    best = ranked[0]
    strongest = part["baselines"]["strongest"]
    model = {"trial_number": best.number, "val_metrics": best.user_attrs.get("val_metrics")}
    part["rank_1"] = model
    text = best.user_attrs.get(PREDICTIONS_ATTR)
    if text:
        y = decode(stored["labels"])
        model["vs_strongest_baseline"] = paired_test(y, decode(text), decode(stored["predictions"][strongest]), metric)
    trading = best.user_attrs.get(TRADING_ATTR)
    if isinstance(trading, dict):
        model["trading"] = {k: trading[k] for k in ("positions", "cost_bps", "strategy")}
        model["deflated_sharpe"] = deflate(trading["strategy"], _trial_sharpes(complete))
    part["verdict"] = study_verdict(part)
    return part


def _dsr_text(deflated: dict[str, Any] | None) -> str:
    if not deflated or deflated.get("dsr") is None or not math.isfinite(deflated["dsr"]):
        return ""
    return f", DSR={deflated['dsr']:.3f} over {deflated['n_trials']} trial(s)"


def paired_test_name(test: dict[str, Any]) -> str:
    return "one-sided McNemar" if test["metric"] == "accuracy" else "one-sided paired randomization"


def compared(test: dict[str, Any]) -> str:
    """"balanced accuracy 0.6120 vs 0.5000": the model's and the baseline's score by the test's metric."""
    return f"{METRIC_LABELS[test['metric']]} {test['model_score']:.4f} vs {test['baseline_score']:.4f}"


def study_verdict(part: dict[str, Any]) -> str:
    model = part["rank_1"]
    strongest = part["baselines"]["strongest"]
    test = model.get("vs_strongest_baseline")
    if test is None:
        return f"no edge found: trial {model['trial_number']} stored no validation predictions to compare with {strongest}"
    where = "on validation (chosen there, so optimistic; retrain tests it on the test split)"
    edge = test["p_value"] < ALPHA
    trial = model["trial_number"]
    outcome = f"edge: trial {trial} beats" if edge else f"no edge found: trial {trial} does not beat"
    return (f"{outcome} {strongest} {where} "
            f"({compared(test)}, {paired_test_name(test)} p={test['p_value']:.3g}{'' if edge else f' >= {ALPHA}'}"
            f"{_dsr_text(model.get('deflated_sharpe'))})")


def summary_lines(part: dict[str, Any]) -> list[str]:
    """The baselines and the rank-1 trial's trading beside the best configurations (optimization_summary.txt)."""
    lines: list[str] = []
    base = part.get("baselines")
    if base:
        shown = "; ".join(f"{name} {s['accuracy']:.4f} (balanced {s['balanced_accuracy']:.4f})"
                          for name, s in base["scores"].items())
        lines.append(f"Validation baselines on the same {base['n_windows']} windows, accuracy: {shown}; "
                     f"strongest by {METRIC_LABELS[part['metric']]}: {base['strongest']}")
    model = part.get("rank_1") or {}
    trading = model.get("trading")
    if trading and part.get("buy_and_hold"):
        s, h = trading["strategy"], part["buy_and_hold"]
        dsr = model.get("deflated_sharpe") or {}
        lines.append(
            f"Trading rank 1 on validation ({trading['positions']}, {trading['cost_bps']:g} bp per unit turnover): "
            f"Sharpe {_num(s['sharpe'])}, Sortino {_num(s['sortino'])}, max drawdown {_num(s['max_drawdown'])}, "
            f"turnover {_num(s['turnover'])}, hit rate {_num(s['hit_rate'])}; buy-and-hold Sharpe {_num(h['sharpe'])}, "
            f"max drawdown {_num(h['max_drawdown'])}; PSR(0) {_num(dsr.get('psr_vs_zero'))}, DSR {_num(dsr.get('dsr'))} "
            f"(N = {dsr.get('n_trials')} completed trials, counted as independent)"
        )
    return lines


def _num(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) and math.isfinite(value) else "n/a"


# --- retrain: each model against the strongest test baseline ------------------------------------
def retrain_signal(
    config: Any, data: Any, study: Any, test_base: Baselines, tested: list[tuple[dict[str, Any], np.ndarray]],
    *, leak: bool,
) -> dict[str, Any]:
    """A paired test of each retrained model's test predictions against the strongest test baseline by the
    study's classification metric (baselines.paired_test), Holm over the models (adds ``vs_strongest_baseline`` to each entry, the champion's test), their trading
    on test with the DSR over the study's trials, and the verdict line."""
    y = data.test.y_class.cpu().numpy()
    metric = config.training.classification_metric
    strongest = test_base.best(metric)
    for entry, pred in tested:
        test = paired_test(y, pred, test_base.predictions[strongest.name], metric)
        entry["vs_strongest_baseline"] = {**test, "baseline": strongest.name}
    tests = [entry["vs_strongest_baseline"] for entry, _ in tested]
    holm(tests)
    trial_sharpes = _trial_sharpes(study.get_trials(deepcopy=False))
    part: dict[str, Any] = {"split": "test", "alpha": ALPHA, "metric": metric,
                            "baselines": {**test_base.to_dict(), "strongest": strongest.name,
                                          "strongest_rule": f"the highest {METRIC_LABELS[metric]}, the study's classification metric"},
                            "correction": f"Holm over the {len(tests)} retrained model(s)"}
    if trades(config):
        for entry, pred in tested:
            record = trading_record(config, data, data.test, pred, with_returns=True)
            record["deflated_sharpe"] = deflate(record["strategy"], trial_sharpes)
            entry["trading_test"] = record
    part["verdict"] = retrain_verdict([e for e, _ in tested], strongest.name, leak=leak)
    return part


def retrain_verdict(entries: list[dict[str, Any]], baseline: str, *, leak: bool) -> str:
    if not entries:
        return "no edge found: no model was retrained (every seed diverged)"
    if leak:
        return ("no edge found: the shuffled-label control beat the baseline on test, so the pipeline leaks "
                "and no test number can be trusted")
    winners = [e for e in entries if e["vs_strongest_baseline"]["significant"]]
    if winners:
        e, t = winners[0], winners[0]["vs_strongest_baseline"]
        dsr = _dsr_text((e.get("trading_test") or {}).get("deflated_sharpe"))
        return (f"edge: model {e['k']} (trial {e['trial_number']}) beats {baseline} on test "
                f"({compared(t)}, {paired_test_name(t)} p={t['p_value']:.3g}, "
                f"Holm p={t['p_holm']:.3g} over {len(entries)} model(s){dsr})")
    e = min(entries, key=lambda x: x["vs_strongest_baseline"]["p_holm"])
    t = e["vs_strongest_baseline"]
    return (f"no edge found: no retrained model beats {baseline} on test (best: model {e['k']}, "
            f"{compared(t)}, Holm p={t['p_holm']:.3g} >= {ALPHA})")


def write_equity_png(path: Any, entry: dict[str, Any]) -> None:
    """The test equity curve of one retrained model against buy-and-hold (plots/equity_curve_test.png)."""
    import pandas as pd
    from matplotlib.figure import Figure  # no pyplot state, no display (as reporting/plots.py)

    record = entry["trading_test"]
    dates = pd.to_datetime(record["dates"])
    fig = Figure(figsize=(9, 4.5))
    ax = fig.subplots()
    ax.plot(dates, np.cumprod(1 + np.asarray(record["returns"])), label=f"model {entry['k']} (trial {entry['trial_number']}), net of costs")
    ax.plot(dates, np.cumprod(1 + np.asarray(record["buy_and_hold_returns"])), label="buy-and-hold")
    ax.set_ylabel("equity (start = 1)")
    ax.set_title("Test equity curve")
    ax.legend()
    fig.autofmt_xdate()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
