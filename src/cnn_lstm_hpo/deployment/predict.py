"""A saved model on new bars: per symbol and decision date, class probabilities and return.

Inputs are built exactly as in training (``features.compute_features``, the indicator warm-up
dropped, the saved scaler's mean_/scale_ applied), but every window the bars allow is predicted,
including the latest ones whose outcome is not known yet. Each row says which split of the model's
study its decision date falls in (train, validation, test, or after: later than the study's data),
from the calendar cuts saved with the model, and, where the bars show it, the realized return and
class (empty where the outcome is not known yet).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .checkpoint import SavedModel, load_checkpoint
from ..config import DataConfig, validate_data_config
from ..data import configured_frames
from ..errors import HPOError
from ..features import valid_features
from ..targets import compute_targets
from ..results import atomic_write_text
from ..train import EVAL_BATCH

FEATURE_INPUTS = ("high", "low", "close", "volume")  # the columns compute_features reads
AFTER_TRAINING = "after-training"  # --start: only the bars after the study's data


def class_names(num_classes: int, target: str = "direction") -> tuple[str, ...]:
    """Names of the classes of ``target``, as targets.compute_targets numbers them."""
    if target == "volatility":  # realized volatility over the horizon below / above its trailing level
        return ("below", "above")
    if target == "triple_barrier" and num_classes == 3:
        return ("stop_loss", "vertical", "profit_take")
    return ("down", "up") if num_classes == 2 else ("down", "flat", "up")


def label_config(saved: SavedModel) -> DataConfig:
    """The label settings the model was trained on (a model saved before targets: direction)."""
    trained = saved.meta.get("origin", {}).get("data")
    if trained:
        return validate_data_config(trained)
    return DataConfig(horizon=int(saved.meta["horizon"]), direction_threshold=float(saved.meta["direction_threshold"]),
                      num_classes=int(saved.meta["num_classes"]))


def symbol_windows(symbol: str, frame: pd.DataFrame, saved: SavedModel) -> tuple[np.ndarray, pd.DatetimeIndex]:
    """Scaled windows (N, L, F) float32 ending at every bar after the warm-up, and their dates."""
    missing = [c for c in FEATURE_INPUTS if c not in frame.columns]
    if missing:
        raise HPOError(f"symbol {symbol}: data lacks column(s) {', '.join(missing)} needed for the model's features")
    features, first_valid = valid_features(symbol, frame)
    length = saved.sequence_length
    rows = len(features) - first_valid
    if rows < length:
        raise HPOError(f"symbol {symbol}: {len(frame)} bars, {max(rows, 0)} after indicator warm-up; "
                       f"the model needs at least {length} for one window")
    # Same arithmetic as StandardScaler.transform: subtract mean_, divide by scale_, in float64.
    scaled = (features[first_valid:] - saved.scaler_mean) / saved.scaler_scale
    view = np.lib.stride_tricks.sliding_window_view(scaled, length, axis=0)  # (N, F, L)
    x = np.ascontiguousarray(view.transpose(0, 2, 1), dtype=np.float32)  # (N, L, F)
    return x, frame.index[first_valid + length - 1 :]


@torch.no_grad()
def predict_windows(saved: SavedModel, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities (N, C) and returns (N,), computed as Trainer.predict does on CPU."""
    model = saved.model.eval()
    probs, rets = [], []
    for start in range(0, len(x), EVAL_BATCH):
        logits, ret = model(x[start : start + EVAL_BATCH])
        probs.append(torch.softmax(logits.float(), dim=-1))
        rets.append(ret.float() * saved.return_scale)
    return torch.cat(probs).numpy(), torch.cat(rets).numpy()


def predict_frames(saved: SavedModel, frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per symbol and decision date: prob_<class>..., predicted_class, predicted_direction, predicted_return,
    split, realized_return, realized_class, realized_direction."""
    if not frames:
        raise HPOError("no symbols to predict")
    labels = label_config(saved)
    names = class_names(int(saved.meta["num_classes"]), labels.target)
    tables = []
    for symbol, frame in frames.items():
        x, dates = symbol_windows(symbol, frame, saved)
        probs, rets = predict_windows(saved, torch.from_numpy(x))
        predicted = probs.argmax(axis=1)
        table = pd.DataFrame({"symbol": symbol, "date": dates})
        for j, name in enumerate(names):
            table[f"prob_{name}"] = probs[:, j].astype(np.float64)
        table["predicted_class"] = predicted
        table["predicted_direction"] = [names[c] for c in predicted]
        table["predicted_return"] = rets.astype(np.float64)
        table["split"] = splits_of(dates, saved.meta.get("calendar"))
        # The outcome where the bars show it: the label and regression target of the model's target, as in training.
        classes, values = compute_targets(frame, labels)
        realized, classes = values[-len(dates):], classes[-len(dates):]
        known = np.isfinite(realized)
        realized_class = pd.array(classes, dtype="Int64")
        realized_class[~known] = pd.NA
        table["realized_return"] = realized
        table["realized_class"] = realized_class
        table["realized_direction"] = [names[c] if k else "" for c, k in zip(classes, known)]
        tables.append(table)
    return pd.concat(tables, ignore_index=True)


def data_config(saved: SavedModel, source: str, start: object, end: object) -> DataConfig:
    """The model's own data settings (resample, cache folder, ...) on the given source and dates:
    new bars are shaped as the training bars were."""
    trained = saved.meta.get("origin", {}).get("data") or {}
    return validate_data_config({**trained, "source": source, "start": start, "end": end})


def splits_of(dates: pd.DatetimeIndex, calendar: dict[str, str] | None) -> list[str]:
    """train / validation / test / after, by the decision date and the study's calendar cuts; empty
    strings for a model saved without them."""
    if not calendar:
        return [""] * len(dates)
    cuts = [pd.Timestamp(calendar[k]) for k in ("val_start", "test_start", "data_end")]
    index = np.searchsorted(np.array(cuts[:2], dtype="datetime64[ns]"), dates.to_numpy(), side="right")
    labels = np.array(["train", "validation", "test"])[index]
    # The last bar of the study's data is still a test row.
    return ["after" if d > cuts[2] else label for d, label in zip(dates, labels)]


def predict_to_csv(
    model_dir: Path, source: str, output: Path, *, symbols: list[str] | None = None, start: str | None = None,
    end: dt.date | None = None,
) -> pd.DataFrame:
    """Load a saved model and a data source, predict, write the CSV atomically; returns the table.

    ``start``: None (every row), a YYYY-MM-DD date (rows from it on), or ``after-training`` (rows
    after the study's data). Bars before it are still read, for the indicators' warm-up.
    """
    saved = load_checkpoint(model_dir)
    first = _first_row(start, saved, Path(model_dir))
    frames = configured_frames(data_config(saved, source, None, end), symbols)
    table = predict_frames(saved, frames)
    if first is not None:
        table = table[table["date"] >= first] if start != AFTER_TRAINING else table[table["date"] > first]
        table = table.reset_index(drop=True)
    # repr-precision floats: the CSV round-trips the float64 values exactly.
    atomic_write_text(Path(output), table.to_csv(index=False, float_format="%.17g"))
    return table


def _first_row(start: str | None, saved: SavedModel, model_dir: Path) -> pd.Timestamp | None:
    """The date ``start`` names (for after-training: the study's last bar, itself excluded)."""
    if start is None:
        return None
    if start == AFTER_TRAINING:
        calendar = saved.meta.get("calendar")
        if not calendar:
            raise HPOError(f"model {model_dir} was saved without its data's calendar (before predict knew splits); "
                           "give --start YYYY-MM-DD")
        return pd.Timestamp(calendar["data_end"])
    try:
        return pd.Timestamp(dt.date.fromisoformat(start))
    except ValueError:
        raise HPOError(f"--start must be a date YYYY-MM-DD or {AFTER_TRAINING}, but got {start!r}") from None
