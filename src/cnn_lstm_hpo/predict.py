"""A saved model on new bars: per symbol and decision date, class probabilities and return.

Inputs are built exactly as in training (``features.compute_features``, the indicator warm-up
dropped, the saved scaler's mean_/scale_ applied), but every window the bars allow is predicted,
including the latest ones whose outcome is not known yet.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .checkpoint import SavedModel, load_checkpoint
from .config import DataConfig, validate_data_config
from .data import configured_frames
from .errors import HPOError
from .features import compute_features
from .results import atomic_write_text
from .train import EVAL_BATCH

FEATURE_INPUTS = ("high", "low", "close", "volume")  # the columns compute_features reads


def class_names(num_classes: int) -> tuple[str, ...]:
    """Names of the direction classes, as features.direction_classes numbers them."""
    return ("down", "up") if num_classes == 2 else ("down", "flat", "up")


def symbol_windows(symbol: str, frame: pd.DataFrame, saved: SavedModel) -> tuple[np.ndarray, pd.DatetimeIndex]:
    """Scaled windows (N, L, F) float32 ending at every bar after the warm-up, and their dates."""
    missing = [c for c in FEATURE_INPUTS if c not in frame.columns]
    if missing:
        raise HPOError(f"symbol {symbol}: data lacks column(s) {', '.join(missing)} needed for the model's features")
    features = compute_features(frame).to_numpy()
    finite = np.isfinite(features).all(axis=1)
    first_valid = int(np.argmax(finite)) if finite.any() else len(finite)
    if not finite[first_valid:].all():
        bad = frame.index[first_valid + int(np.argmin(finite[first_valid:]))]
        raise HPOError(f"symbol {symbol}: indicators are not finite at {bad:%Y-%m-%d} (check the bars there)")
    length = saved.sequence_length
    rows = len(features) - first_valid
    if rows < length:
        raise HPOError(
            f"symbol {symbol}: {len(frame)} bars, {max(rows, 0)} after indicator warm-up; "
            f"the model needs at least {length} for one window"
        )
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
    """One row per symbol and decision date: prob_<class>..., predicted_class, predicted_direction, predicted_return."""
    if not frames:
        raise HPOError("no symbols to predict")
    names = class_names(int(saved.meta["num_classes"]))
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
        tables.append(table)
    return pd.concat(tables, ignore_index=True)


def data_config(saved: SavedModel, source: str, start: object, end: object) -> DataConfig:
    """The model's own data settings (resample, cache folder, ...) on the given source and dates:
    new bars are shaped as the training bars were."""
    trained = saved.meta.get("origin", {}).get("data") or {}
    return validate_data_config({**trained, "source": source, "start": start, "end": end})


def predict_to_csv(
    model_dir: Path,
    source: str,
    output: Path,
    *,
    symbols: list[str] | None = None,
    start: object = None,
    end: object = None,
) -> pd.DataFrame:
    """Load a saved model and a data source, predict, write the CSV atomically; returns the table."""
    saved = load_checkpoint(model_dir)
    frames = configured_frames(data_config(saved, source, start, end), symbols)
    table = predict_frames(saved, frames)
    # repr-precision floats: the CSV round-trips the float64 values exactly.
    atomic_write_text(Path(output), table.to_csv(index=False, float_format="%.17g"))
    return table
