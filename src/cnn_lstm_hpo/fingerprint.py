"""What makes two trials comparable, stored with the study so that a resume cannot mix incomparable ones.

Trials are comparable when they were trained on the same samples (data source, the symbols actually
loaded, dates, window and split settings, the bars themselves), drew from the same search space, had
the same epoch budget, pruning rule and rungs, the same per-trial time limit (it decides which trials
are stopped and which are feasible), and scored the same way (training settings, evaluation scheme).
The size limit (checked before any training) and where trials run (device, workers) may change between runs.
"""

from __future__ import annotations

from typing import Any

from .config import OptimizationConfig, validate_config
from .errors import HPOError
from .pruning import study_brackets
from .windows import WindowedData

USER_ATTR = "fingerprint"
# Settings added after studies already existed, with the value that matches what those studies did:
# left out at that value, so an older study's stored fingerprint still matches.
ADDED_LATER = {
    "pruning.strategy": "hyperband", "pruning.dominance_quantile": None,
    "data.target": "direction", "data.vol_window": 20, "data.profit_take": 1.0, "data.stop_loss": 1.0,
    "trading.positions": "long_short", "trading.cost_bps": 5.0,
    "evaluation.scheme": "holdout",
}
# The label settings each target reads (targets.py); the others must not block a resume.
TARGET_FIELDS = {
    "direction": (), "volatility": ("vol_window",), "triple_barrier": ("vol_window", "profit_take", "stop_loss"),
}
# Recorded, never compared: where each symbol's bars end and the split cut dates, so that retrain can
# tell bars appended since the study from changed ones. When both sides have it, data.digest differs
# whenever it does; an older study without it must still resume.
RECORDED_ONLY = ("data.extent",)
# Settings added later that older studies ran with many values: an older study's is read from the
# configuration stored with it (the one it last ran with; see :func:`completed`).
FROM_STORED_CONFIG = ("max_training_time_minutes", "pruning.brackets")
TIME_LIMIT = "max_training_time_minutes"


def study_fingerprint(config: OptimizationConfig, data: WindowedData) -> dict[str, Any]:
    """A flat mapping of dotted field names to JSON values."""
    cfg = config.model_dump(mode="json")
    fields: dict[str, Any] = {f"data.{k}": v for k, v in cfg["data"].items() if k != "cache_dir"}
    # Loaders give samples, not bars: their digest is of the samples; files and sources, of the bars.
    for name in {"vol_window", "profit_take", "stop_loss"} - set(TARGET_FIELDS[config.data.target]):
        fields[f"data.{name}"] = ADDED_LATER[f"data.{name}"]
    fields["data.symbols_loaded"] = sorted(data.boundaries) or None
    fields["data.digest"] = data.source_digest or data.samples_digest()
    fields["data.extent"] = data_extent(data)
    fields.update(_config_fields(config))
    return {k: v for k, v in fields.items() if ADDED_LATER.get(k, object()) != v}


def _config_fields(config: OptimizationConfig) -> dict[str, Any]:
    cfg = config.model_dump(mode="json")
    fields: dict[str, Any] = {"search_space": cfg["search_space"], "max_epochs_per_trial": cfg["max_epochs_per_trial"]}
    fields[TIME_LIMIT] = cfg[TIME_LIMIT]
    fields.update({f"pruning.{k}": v for k, v in cfg["pruning"].items()})
    if not config.dominance_check_on:  # a quantile the study never reads must not block its resume
        fields["pruning.dominance_quantile"] = ADDED_LATER["pruning.dominance_quantile"]
    # The rungs themselves: pruning_warmup_steps and pruning_interval_steps move them too. One
    # objective: Optuna's pruner, from the same fitted minimum (it takes no interval); off: none.
    prunes = config.pruning.enabled and (len(config.objectives) > 1 or config.objectives == ["accuracy"])
    if len(config.objectives) == 1:
        config = config.model_copy(update={"pruning_interval_steps": 1})
    fields["pruning.brackets"] = study_brackets(config) if prunes else None
    fields.update({f"training.{k}": v for k, v in cfg["training"].items() if k != "device"})
    fields.update({f"trading.{k}": v for k, v in cfg["trading"].items()})  # how the sharpe objective scores
    # Folds and window only mean something under walk-forward: a holdout study ignores them.
    fields["evaluation.scheme"] = config.evaluation.scheme
    if config.evaluation.scheme == "walk_forward":
        fields.update({f"evaluation.{k}": v for k, v in cfg["evaluation"].items() if k != "scheme"})
    return fields


def completed(stored: dict[str, Any], stored_config: Any, current: dict[str, Any]) -> dict[str, Any]:
    """An older study's stored fingerprint with the FROM_STORED_CONFIG fields it lacks, as the
    configuration stored with it gives them; where it has none (or one no longer valid), the
    current values: there is nothing to compare them with."""
    missing = [k for k in FROM_STORED_CONFIG if k not in stored]
    if not missing:
        return stored
    known = current
    if isinstance(stored_config, dict):
        try:
            known = _config_fields(validate_config(stored_config, "stored config"))
        except HPOError:
            pass
    return {**stored, **{k: known.get(k) for k in missing}}


def data_extent(data: WindowedData) -> dict[str, Any] | None:
    """Each symbol's last bar and the split cut dates (ISO); None for data given as loaders."""
    if not data.cuts:
        return None
    return {
        "last_bars": {symbol: bounds["test_end"].isoformat() for symbol, bounds in data.boundaries.items()},
        "cuts": {name: date.isoformat() for name, date in data.cuts.items()},
    }


def fingerprint_differences(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """The dotted names of the fields whose values differ (or exist on one side only), sorted."""
    keys = (set(stored) | set(current)) - set(RECORDED_ONLY)
    return sorted(k for k in keys if stored.get(k, "<absent>") != current.get(k, "<absent>"))
