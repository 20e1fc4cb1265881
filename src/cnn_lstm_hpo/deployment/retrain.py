"""Retrain the top-k configurations of a study, test them once, save them, compare with baselines.

For each of the top-k feasible Pareto trials (ranked by the objective weights, exactly as in
``best_configurations.json``) the configuration is trained ``seeds`` times for an extended epoch
budget with early stopping on validation. Each trained model is scored once on the test split,
which the search never saw. The seed with the lowest validation loss is saved (validation
chooses, never test); the spread over seeds is reported. Baselines are scored on the same test
windows: the majority class of the *training* labels, the zero-return forecast and
previous-direction persistence. The null a model must beat is the strongest naive rule on the test
windows themselves (always predicting one class, for each class, and persistence): chosen after
seeing the test labels, it is conservative on purpose. An exact one-sided binomial test says whether
a model's test accuracy beats that rule's accuracy, Holm-corrected over the k models (the same rule
as the analysis); only a model that passes it may become the registry's champion. A shuffled-label
control (the rank-1 configuration trained on training labels permuted within each symbol,
early-stopped on validation labels permuted the same way) is judged by the same exact test against
the same null; if it beats it, the pipeline leaks.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import torch
from scipy.stats import binomtest

from ..baselines import compute_baselines, holm_adjusted as holm, metric_scores
from .checkpoint import checkpoint_meta, save_checkpoint
from ..config import OptimizationConfig, TrainingConfig, build_config
from ..data import configured_frames, resolve_symbols
from ..errors import HPOError, TrialDiverged
from ..fingerprint import USER_ATTR as FINGERPRINT, fingerprint_differences, study_fingerprint
from ..distributed.storage import close_storage, open_storage, redact
from ..features import direction_classes
from ..model import HybridCNNLSTM, ModelConfig, model_size_mb
from ..objectives import evaluate_predictions
from .predict import class_names
from ..results import ranked_pareto, write_json
from ..train import EpochResult, Trainer, resolve_device
from ..windows import Split, WindowedData, build_windows, frames_digest
from ..verdict import compared, paired_test_name, retrain_signal, write_equity_png

log = logging.getLogger("cnn_lstm_hpo")

DEFAULT_EPOCHS = 100  # the guide's "extended training" stage, sized for a CPU; early stopping ends most runs sooner
DEFAULT_SEEDS = 3
RESULTS_FILE = "retrained_models_results.json"
CHAMPION_ALPHA = 0.05  # champion only if test accuracy beats the null rule at this level, Holm-corrected
# The control is one run judged by one test; a stricter level keeps false leak alarms at 1 in 100.
LEAK_ALPHA = 0.01
# What a saved model's metrics.json holds, from its entry in retrained_models_results.json.
CHECKPOINT_METRICS = ("selected_model", "validation_results", "test_results", "significance", "vs_strongest_baseline",
                      "trading_test", "n_parameters", "model_size_mb", "training_time_minutes")
METRICS = ("accuracy", "balanced_accuracy", "mcc", "composite", "return_mse", "directional_accuracy", "cross_entropy")


@dataclass(frozen=True)
class RetrainSettings:
    top_k: int = 3
    epochs: int = DEFAULT_EPOCHS
    seeds: int = DEFAULT_SEEDS
    register: bool = True
    registry_uri: str | None = None  # default: sqlite:///<save_dir>/mlflow.db

    def __post_init__(self) -> None:
        for name in ("top_k", "epochs", "seeds"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise HPOError(f"retrain {name} must be an integer >= 1, but got {name}={value!r}")


@dataclass
class RetrainReport:
    results: dict[str, Any]  # what retrained_models_results.json holds
    path: Path
    lines: list[str]  # the human-readable summary
    leak: bool
    registry_error: str | None = None


# --- loading a finished study's config, study and data ---------------------------------------------
def load_saved_study(save_dir: Path) -> tuple[OptimizationConfig, optuna.Study]:
    """The config a study ran with (``resolved_config.yaml``) and the study from its storage."""
    save_dir = Path(save_dir)
    resolved = save_dir / "resolved_config.yaml"
    if not resolved.is_file():
        raise HPOError(f"{save_dir}: no resolved_config.yaml (is this the --save-dir of a study?)")
    # The folder may have moved since the study ran: the save dir given now wins.
    config = build_config(str(resolved), {"save_dir": save_dir})
    storage = open_storage(config.resolved_storage, create=False)
    try:
        return config, optuna.load_study(study_name=config.resolved_study_name, storage=storage)
    except KeyError:
        close_storage(storage)
        raise HPOError(f"no study named {config.resolved_study_name!r} in {redact(config.resolved_storage)}") from None


def study_data(config: OptimizationConfig, study: optuna.Study, *, allow_appended_bars: bool = False) -> WindowedData:
    """The study's windows rebuilt from its data source, refused unless its fingerprint still matches.

    Other bars would move the calendar cuts: the test split would overlap the period the search
    chose on. ``allow_appended_bars`` accepts bars after each symbol's last one in the study: its
    bars and cut dates are kept, so training and validation are the search's and only the test
    split grows. Earlier history (back-filled) or edited bars are always refused.
    """
    chosen, _ = resolve_symbols(config.data.source, config.symbols, explicit=False)
    frames = configured_frames(config.data, chosen)
    data = build_windows(frames, config.data)
    stored = study.user_attrs.get(FINGERPRINT)
    if stored is None:  # a study from before fingerprints: nothing to compare with
        return data
    current = study_fingerprint(config, data)
    # The data fields only: the search's other settings do not change the windows retrain tests on.
    differ = [k for k in fingerprint_differences(stored, current) if k.startswith("data.")]
    if not differ:
        return data
    cuts = _appended_cuts(frames, stored) if differ == ["data.digest"] else None
    if cuts is not None and allow_appended_bars:
        log.warning("note: testing on bars appended since study %r ran; its cut dates are kept", study.study_name)
        return build_windows(frames, config.data, cuts=cuts)
    shown = "; ".join(k if k == "data.digest" else f"{k} ({stored.get(k)!r} -> {current.get(k)!r})" for k in differ)
    hint = ("only bars after the study's last ones were added: --allow-appended-bars tests on them too"
            if cuts is not None else "restore the data the study ran on")
    raise HPOError(f"the data of study {study.study_name!r} changed since it ran: {shown}; the test split would not be "
                   f"the one the search never saw: {hint}")


def _appended_cuts(frames: dict[str, pd.DataFrame], stored: dict[str, Any]) -> dict[str, pd.Timestamp] | None:
    """The study's cut dates if ``frames`` are its bars plus bars after each symbol's last one; else None."""
    extent = stored.get("data.extent")
    if not extent or set(extent["last_bars"]) != set(frames):  # a study from before the extent was recorded
        return None
    last = {symbol: pd.Timestamp(date) for symbol, date in extent["last_bars"].items()}
    if frames_digest({s: f[f.index <= last[s]] for s, f in frames.items()}) != stored.get("data.digest"):
        return None
    return {name: pd.Timestamp(date) for name, date in extent["cuts"].items()}


# --- metrics and baselines ------------------------------------------------------------------------
def _evaluate(training: TrainingConfig, y: np.ndarray, pred: np.ndarray, r: np.ndarray, rets: np.ndarray):
    """The search's composite score of class and return predictions, by the study's training settings."""
    return evaluate_predictions(
        loss=float("nan"), y_class=y, pred_class=pred, y_return=r, pred_return=rets,
        metric=training.classification_metric, classification_weight=training.classification_weight,
        regression_weight=training.regression_weight,
    )


def _class_scores(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    return {m: float(metric_scores(y, pred, m)[0]) for m in ("balanced_accuracy", "mcc")}


def split_metrics(probs: np.ndarray, rets: np.ndarray, split: Split, training: TrainingConfig) -> dict[str, float]:
    """Everything reported for one model on one split, from its probabilities and returns."""
    y, r = split.y_class.numpy(), split.y_return.numpy().astype(np.float64)
    pred = probs.argmax(axis=1)
    evaluation = _evaluate(training, y, pred, r, rets.astype(np.float64))
    return {
        "accuracy": evaluation.accuracy,
        **_class_scores(y, pred),
        "composite": evaluation.composite,
        "return_mse": float(np.mean((rets - r) ** 2)),
        # Sign of the return forecast vs the realised sign (0 counts as not up, as in the classes).
        "directional_accuracy": float(np.mean((rets > 0) == (r > 0))),
        "cross_entropy": float(-np.mean(np.log(probs[np.arange(len(y)), y] + 1e-12))),
    }


def accuracy_test(correct: int, n: int, null: dict[str, Any]) -> dict[str, Any]:
    """Exact binomial test of ``correct``/``n`` against the null rule's accuracy (one-sided: better), with a 95 % CI.

    A predictor whose guesses are independent of the labels is right on each window with a
    probability whose mean is at most the best single class's share, which the null rate is at
    least (every "always <class>" rule is a candidate); its count of correct windows is then no
    more spread than a binomial at the null rate, so the test is conservative for it.
    """
    rate = null["rate"]
    one_sided = binomtest(correct, n, rate, alternative="greater")
    ci = binomtest(correct, n, rate).proportion_ci(confidence_level=0.95, method="exact")
    return {
        "test": "exact binomial, H1: accuracy > null rate (the strongest naive rule's accuracy on the same test windows)",
        "correct": correct,
        "n": n,
        "accuracy": correct / n,
        "null_rule": null["rule"],
        "null_rate": rate,
        "p_value": float(one_sided.pvalue),
        "ci95_low": float(ci.low),
        "ci95_high": float(ci.high),
    }


def past_returns(config: OptimizationConfig, split: Split) -> np.ndarray | None:
    """log(close[t] / close[t - horizon]) at each sample's decision bar: what was known at t.

    None when the samples carry no symbols/dates (user-supplied loaders).
    """
    if not split.symbols or not split.dates:
        return None
    h = config.data.horizon
    symbols = np.asarray(split.symbols)
    frames = configured_frames(config.data, sorted(set(split.symbols)))
    out = np.full(len(symbols), np.nan)
    for symbol, frame in frames.items():
        mask = symbols == symbol
        rows = frame.index.get_indexer([d for d, m in zip(split.dates, mask) if m])
        log_close = np.log(frame["close"].to_numpy(dtype=np.float64))
        valid = rows >= h
        values = np.full(len(rows), np.nan)
        values[valid] = log_close[rows[valid]] - log_close[rows[valid] - h]
        out[mask] = values
    return out


def strongest_rule(rules: dict[str, np.ndarray], y: np.ndarray) -> dict[str, Any]:
    """The null: the naive rule with the highest accuracy on these labels (the first listed on a tie)."""
    accuracies = {name: float(np.mean(pred == y)) for name, pred in rules.items()}
    best = max(accuracies, key=accuracies.__getitem__)
    return {
        "rule": best,
        "rate": accuracies[best],
        "candidates": accuracies,
        "chosen": "the naive rule with the highest accuracy on the test windows themselves "
        "(chosen on the test labels: conservative on purpose, a model must beat the strongest naive rule)",
    }


def baselines(config: OptimizationConfig, data: WindowedData) -> dict[str, Any]:
    """Naive forecasts scored on the test windows, and the strongest of them as the null."""
    test = data.test
    y, r = test.y_class.numpy(), test.y_return.numpy().astype(np.float64)
    names = class_names(data.num_classes, config.data.target)  # data.num_classes is 2 or 3 (DataConfig)
    # The candidates for the null, as class predictions on the test windows: a new baseline is one more entry.
    rules = {f"always {name}": np.full(len(y), c) for c, name in enumerate(names)}
    majority = int(torch.bincount(data.train.y_class).argmax())
    constant = _evaluate(config.training, y, np.full(len(y), majority), r, np.zeros(len(y)))
    result: dict[str, Any] = {
        "test_windows": len(y), "training_majority_class": majority, "training_majority_class_name": names[majority],
        "majority_class_rate": constant.accuracy, "zero_return_mse": float(np.mean(r**2)),
        "majority_and_zero_return_composite": constant.composite, "persistence": None,
    }
    past = past_returns(config, test)
    if past is not None and np.isfinite(past).all():
        pred = direction_classes(past, data.num_classes, config.data.direction_threshold)
        rules["persistence"] = pred
        result["persistence"] = {
            "rule": f"predict the direction of the last {config.data.horizon}-bar return",
            "accuracy": float(np.mean(pred == y)), **_class_scores(y, pred),
        }
    result["null"] = strongest_rule(rules, y)
    return result


def _summary(values: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Mean, sample std and standard error of each metric over seeds."""
    out = {}
    for name in METRICS:
        xs = np.array([v[name] for v in values], dtype=np.float64)
        std = float(xs.std(ddof=1)) if len(xs) > 1 else 0.0
        out[name] = {"mean": float(xs.mean()), "std": std, "sem": std / math.sqrt(len(xs))}
    return out


# --- training ---------------------------------------------------------------------------------------
@dataclass
class TrainedRun:
    seed: int
    trainer: Trainer
    record: dict[str, Any]
    val_loss: float
    test_probs: np.ndarray


def _epoch_logger(label: str, epochs: int):
    def on_epoch(e: EpochResult) -> None:
        log.info(
            "%s epoch %d/%d: train loss %.4f, val loss %.4f, val accuracy %.4f%s", label, e.epoch, epochs, e.train_loss,
            e.val.loss, e.val.accuracy, " (early stop)" if e.last and e.epoch < epochs else "",
        )

    return on_epoch


def train_once(
    config: OptimizationConfig, data: WindowedData, params: dict[str, Any], seed: int, epochs: int,
    device: torch.device, label: str, train: Split | None = None, val: Split | None = None,
) -> TrainedRun:
    """One configuration trained on ``train`` (early stopping on ``val``) and scored once on the test split."""
    torch.manual_seed(seed)  # the initial weights
    model_config = ModelConfig.from_params(params, n_features=data.n_features, num_classes=data.num_classes)
    model = HybridCNNLSTM(model_config)
    # ``val`` (the control's shuffled validation labels) steers early stopping only; metrics use data.val.
    trainer = Trainer(model, train or data.train, val or data.val, params, config.training, device=device, seed=seed)
    result = trainer.fit(epochs, on_epoch=_epoch_logger(label, epochs))  # ends with the best-validation weights
    val_probs, val_rets = trainer.predict(data.val)
    test_probs, test_rets = trainer.predict(data.test)  # the one look at the test split for this model
    record = {
        "seed": seed,
        "epochs_trained": len(result.epochs),
        "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early,
        "best_val_loss": result.best.val.loss,  # what early stopping and the seed choice minimise
        "wall_seconds": result.wall_seconds,
        "cpu_seconds": result.cpu_seconds,
        "validation": split_metrics(val_probs, val_rets, data.val, config.training),
        "test": split_metrics(test_probs, test_rets, data.test, config.training),
    }
    return TrainedRun(seed, trainer, record, result.best.val.loss, test_probs)


def _shuffled_within_symbol(split: Split, seed: int) -> Split:
    """The same windows with (class, return) labels permuted among each symbol's samples."""
    rng = np.random.default_rng(seed)
    groups = np.asarray(split.symbols) if split.symbols else np.zeros(len(split), dtype=int)
    order = np.arange(len(split))
    for group in np.unique(groups):
        idx = np.flatnonzero(groups == group)
        order[idx] = rng.permutation(idx)
    index = torch.from_numpy(order)
    return dataclasses.replace(split, y_class=split.y_class[index], y_return=split.y_return[index])


def judge_control(pred: np.ndarray, y: np.ndarray, null: dict[str, Any]) -> dict[str, Any]:
    """The control's verdict: the exact test of its test accuracy against the null rule's, at LEAK_ALPHA."""
    test = accuracy_test(int((pred == y).sum()), len(y), null)
    leak = test["p_value"] < LEAK_ALPHA
    versus = f"accuracy {test['accuracy']:.4f} vs {null['rate']:.4f} of the strongest naive rule ({null['rule']})"
    verdict = (
        f"LEAK: trained on shuffled labels the model still beats the strongest naive rule on test "
        f"({versus}, p={test['p_value']:.2g} < {LEAK_ALPHA}); "
        "the pipeline leaks information into the test split and its test numbers cannot be trusted"
        if leak
        else f"at baseline: {versus} (p={test['p_value']:.2g}, not below {LEAK_ALPHA})"
    )
    return {"significance": test, "leak": leak, "verdict": verdict}


def shuffled_label_control(
    config: OptimizationConfig, data: WindowedData, params: dict[str, Any], *, epochs: int,
    device: torch.device, null: dict[str, Any],
) -> dict[str, Any]:
    seed = config.seed
    # Early stopping on the real validation labels would let the control pick, among its epochs, the
    # noise model that happens to fit validation best: a little real signal. Its validation labels are
    # shuffled too, so nothing it learns or selects has seen a true label.
    run = train_once(
        config, data, params, seed, epochs, device, "control (shuffled labels)",
        train=_shuffled_within_symbol(data.train, seed), val=_shuffled_within_symbol(data.val, seed + 1),
    )
    return {"params_of": "rank 1", **run.record, **judge_control(run.test_probs.argmax(axis=1), data.test.y_class.numpy(), null)}


def apply_holm(models: list[dict[str, Any]]) -> None:
    """Holm over the k models' p-values (the analysis's rule for its top configurations): ``p_holm``
    and ``significant`` (may become champion) in each tested model's significance."""
    tested = [m["significance"] for m in models if "significance" in m]
    if not tested:
        return
    adjusted, reject = holm([t["p_value"] for t in tested], alpha=CHAMPION_ALPHA)
    for test, adj, sig in zip(tested, adjusted, reject):
        test.update(alpha=CHAMPION_ALPHA, p_holm=adj, significant=sig)


def _model_line(entry: dict[str, Any]) -> str:
    head = f"model {entry['k']} (trial {entry['trial_number']}"
    if not entry["model_path"]:
        return f"{head}): every seed diverged; nothing saved"
    acc, sig = entry["test_results"]["accuracy"], entry["significance"]
    return (
        f"{head}, rank {entry['rank']}): test accuracy {acc['mean']:.4f} ± {acc['std']:.4f} over "
        f"{len(entry['seeds'])} seed(s); saved seed {entry['selected_seed']}: {sig['accuracy']:.4f} vs "
        f"{sig['null_rate']:.4f} ({sig['null_rule']}), p={sig['p_value']:.3g}, Holm-adjusted p={sig['p_holm']:.3g}, "
        f"95% CI [{sig['ci95_low']:.4f}, {sig['ci95_high']:.4f}]; {entry['n_parameters']:,} parameters -> "
        f"{Path(entry['model_path']).name}/"
    )


# --- the whole stage --------------------------------------------------------------------------------
def tested_period(data: WindowedData) -> dict[str, Any]:
    """The test split retrain scores on: its first date, the data's last bar, its windows."""
    calendar = data.calendar()
    period: dict[str, Any] = {"windows": len(data.test)}
    if calendar is not None:
        period.update(start=calendar["test_start"], end=calendar["data_end"])
    return period


def retrain_top_k(
    config: OptimizationConfig, study: optuna.Study, data: WindowedData, settings: RetrainSettings,
) -> RetrainReport:
    """Retrain, test once, save ``retrained_model_<k>/`` and ``retrained_models_results.json``, register."""
    save_dir = Path(config.save_dir)
    ranked = ranked_pareto(study, config.objectives, config.objective_weights)
    if not ranked:
        raise HPOError(f"study {study.study_name!r} has no feasible Pareto-optimal trials to retrain")
    chosen = ranked[: settings.top_k]
    device = resolve_device(config.training.device)
    base = baselines(config, data)
    null = base["null"]
    y_test = data.test.y_class.numpy()
    fingerprint = study.user_attrs.get("fingerprint")  # recorded by the study when it has one
    test_base = compute_baselines(data.train, data.test, horizon=config.data.horizon, split_name="test", seed=config.seed)
    tested: list[tuple[dict[str, Any], np.ndarray]] = []  # (entry, selected seed's test classes)
    models: list[dict[str, Any]] = []
    # Saved once the Holm correction and the paired tests have been written into their entries.
    to_save: list[tuple[Path, torch.nn.Module, dict[str, Any], dict[str, Any]]] = []
    for k, best in enumerate(chosen, start=1):
        params = best["params"]
        runs: list[TrainedRun] = []
        failures: list[dict[str, Any]] = []
        for j in range(settings.seeds):
            seed = config.seed + j
            label = f"model {k}/{len(chosen)} (trial {best['trial_number']}) seed {j + 1}/{settings.seeds}"
            try:
                runs.append(train_once(config, data, params, seed, settings.epochs, device, label))
            except TrialDiverged as error:  # one diverged seed is a result, not a crash
                failures.append({"seed": seed, "error": str(error)})
                log.warning("%s diverged: %s", label, error)
        if not runs:
            models.append({"k": k, "rank": best["rank"], "trial_number": best["trial_number"],
                           "hyperparameters": params, "failed_seeds": failures, "model_path": None})
            continue
        selected = min(runs, key=lambda run: run.val_loss)  # validation picks the seed to keep
        model = selected.trainer.model.cpu()
        selected_pred = selected.test_probs.argmax(axis=1)
        folder = save_dir / f"retrained_model_{k}"
        entry: dict[str, Any] = {
            "k": k, "rank": best["rank"], "trial_number": best["trial_number"], "study_objectives": best["objectives"],
            "hyperparameters": params, "model_path": str(folder), "selected_seed": selected.seed,
            "validation_results": _summary([r.record["validation"] for r in runs]),
            "test_results": _summary([r.record["test"] for r in runs]),
            "selected_model": {"validation": selected.record["validation"], "test": selected.record["test"]},
            "significance": accuracy_test(int((selected_pred == y_test).sum()), len(y_test), null),
            "n_parameters": sum(p.numel() for p in model.parameters()), "model_size_mb": model_size_mb(model),
            "training_time_minutes": float(np.mean([r.record["wall_seconds"] for r in runs])) / 60,
            "training_cpu_minutes": float(np.mean([r.record["cpu_seconds"] for r in runs])) / 60,
            "seeds": [r.record for r in runs], "failed_seeds": failures,
        }
        model_config = ModelConfig.from_params(params, n_features=data.n_features, num_classes=data.num_classes)
        meta = checkpoint_meta(
            model_config, hyperparameters=params, feature_names=data.feature_names,
            sequence_length=data.sequence_length, horizon=config.data.horizon,
            direction_threshold=config.data.direction_threshold, scaler=data.scaler,
            return_scale=selected.trainer.return_scale, fingerprint=fingerprint, calendar=data.calendar(),
            origin={"study_name": study.study_name, "trial_number": best["trial_number"], "rank": best["rank"],
                    "seed": selected.seed, "data": config.data.model_dump(mode="json"), "symbols": sorted(set(data.train.symbols))},
        )
        to_save.append((folder, model, meta, entry))
        models.append(entry)
        tested.append((entry, selected_pred))
    apply_holm(models)
    persistence = base["persistence"]
    period = tested_period(data)
    lines = [
        f"baselines on {base['test_windows']} test windows"
        + (f" ({period['start'][:10]} to {period['end'][:10]})" if "start" in period else "")
        + f": majority class ({base['training_majority_class_name']}, "
        f"from training labels) {base['majority_class_rate']:.4f}"
        + (f"; persistence {persistence['accuracy']:.4f}" if persistence else "")
        + f"; zero-return MSE {base['zero_return_mse']:.3g}; "
        f"null (strongest naive rule on the test windows): {null['rule']} {null['rate']:.4f}",
        *map(_model_line, models),
    ]
    control = shuffled_label_control(
        config, data, chosen[0]["params"], epochs=settings.epochs, device=device, null=null
    )
    lines.append(f"shuffled-label control: {control['verdict']}")
    signal = retrain_signal(config, data, study, test_base, tested, leak=control["leak"])
    for folder, model, meta, entry in to_save:  # with the Holm correction and the paired test against the strongest baseline
        save_checkpoint(folder, model, meta, {key: entry[key] for key in CHECKPOINT_METRICS if key in entry})
    for entry, _ in tested:
        vs = entry["vs_strongest_baseline"]
        lines.append(f"model {entry['k']} vs {vs['baseline']} on test: {compared(vs)}, {paired_test_name(vs)} "
                     f"p={vs['p_value']:.3g}, Holm p={vs['p_holm']:.3g}")
        if "trading_test" in entry:
            strat, hold = entry["trading_test"]["strategy"], entry["trading_test"]["buy_and_hold"]
            dsr = entry["trading_test"]["deflated_sharpe"] or {}
            lines.append(f"model {entry['k']} trading on test: Sharpe {strat['sharpe']:.3f} (buy-and-hold {hold['sharpe']:.3f}), "
                         f"max drawdown {strat['max_drawdown']:.3f}, DSR {dsr.get('dsr', float('nan')):.3f} over {dsr.get('n_trials')} trials")
    if tested and "trading_test" in tested[0][0]:
        write_equity_png(save_dir / "plots" / "equity_curve_test.png", tested[0][0])
    if config.evaluation.scheme == "walk_forward":
        lines.insert(0, f"chosen by walk-forward over {config.evaluation.folds} folds ({config.evaluation.window}); "
                        "retrained on the bars before the test split, early stopping on their validation tail")
    lines.insert(0, signal["verdict"])
    results: dict[str, Any] = {
        "study_name": study.study_name,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "fingerprint": fingerprint,
        # How the study chose the models; whatever the scheme, retraining uses the holdout splits:
        # the bars before the test split, their validation tail for early stopping, the test split once.
        "evaluation": config.evaluation.model_dump(mode="json")
        if config.evaluation.scheme == "walk_forward" else {"scheme": "holdout"},
        "settings": {
            "top_k": settings.top_k, "epochs": settings.epochs, "seeds": settings.seeds,
            "early_stopping_patience": config.training.early_stopping_patience,
            "classification_metric": config.training.classification_metric, "device": str(device),
            "champion_alpha": CHAMPION_ALPHA, "champion_correction": "Holm over the retrained models (statsmodels)",
            "leak_alpha": LEAK_ALPHA,
        },
        "tested_period": period,  # grows with bars appended since the study (--allow-appended-bars)
        "baselines": base,
        "models": models,
        "shuffled_label_control": control,
        "pipeline_leaks": control["leak"],
        "verdict": signal["verdict"],
        "signal": signal,  # the strongest test baseline and the models' paired tests against it
        "registry": None,
    }
    path = save_dir / RESULTS_FILE
    write_json(path, results)
    report = RetrainReport(results=results, path=path, lines=lines, leak=control["leak"])
    if settings.register:
        _register(report, config, study.study_name, settings)
    return report


def _register(report: RetrainReport, config: OptimizationConfig, study_name: str, settings: RetrainSettings) -> None:
    """Log and register the saved models; the local files are kept whatever happens here."""
    from .registry import RegistryError, RegistryNotInstalled, register_retrained

    uri = settings.registry_uri or f"sqlite:///{(Path(config.save_dir) / 'mlflow.db').resolve()}"
    try:
        outcome = register_retrained(report.results["models"], name=study_name, tracking_uri=uri, pipeline_leaks=report.leak)
    except RegistryNotInstalled as missing:
        registry, line = {"uri": uri, "registered": False, "reason": str(missing)}, f"not used ({missing})"
    except RegistryError as error:
        report.registry_error = f"model registry at {redact(uri)} unreachable ({error}); local models kept in {config.save_dir}"
        registry, line = {"uri": redact(uri), "registered": False, "reason": str(error)}, report.registry_error
    else:
        registry, line = {"uri": redact(uri), "registered": True, **outcome}, outcome["message"]
    report.results["registry"] = registry
    report.lines.append(f"registry: {line}")
    write_json(report.path, report.results)
