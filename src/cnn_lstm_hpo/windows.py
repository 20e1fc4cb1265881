"""Chronological train/val/test splits with an embargo, and windows as in-memory tensors.

Per symbol, the bars after the indicator warm-up are cut into three consecutive segments
separated by ``embargo_bars``. A sample at bar t uses features of bars [t-L+1, t] and the label
from bar t+h; it belongs to a segment only if all of those bars lie inside that segment, so no
window or label straddles a boundary and windows never cross symbols. The scaler is fitted on
the training segments only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import pandas as pd
import torch
from sklearn.preprocessing import StandardScaler

from .config import DataConfig
from .data import load_frames, resolve_symbols
from .errors import HPOError
from .features import FEATURE_NAMES, compute_features, direction_classes, forward_returns

SPLITS = ("train", "val", "test")


@dataclass
class Split:
    """One split's samples: x (N, L, F) float32, y_class (N,) int64, y_return (N,) float32."""

    x: torch.Tensor
    y_class: torch.Tensor
    y_return: torch.Tensor
    symbols: list[str] = field(default_factory=list)  # per-sample symbol
    dates: list[pd.Timestamp] = field(default_factory=list)  # per-sample decision bar t

    def __len__(self) -> int:
        return len(self.y_class)

    def majority_rate(self) -> float:
        """Accuracy of always predicting the most frequent class of this split."""
        counts = torch.bincount(self.y_class)
        return float(counts.max()) / max(len(self), 1)


@dataclass
class WindowedData:
    train: Split
    val: Split
    test: Split
    scaler: StandardScaler | None  # None when the user supplied ready-made loaders
    num_classes: int
    feature_names: tuple[str, ...] = FEATURE_NAMES
    boundaries: dict[str, dict[str, pd.Timestamp]] = field(default_factory=dict)

    @property
    def n_features(self) -> int:
        return self.train.x.shape[-1]

    @property
    def sequence_length(self) -> int:
        return self.train.x.shape[1]


@dataclass
class _SymbolRows:
    features: np.ndarray  # (n, F), warm-up rows removed
    returns: np.ndarray  # (n,)
    dates: pd.DatetimeIndex
    segments: dict[str, tuple[int, int]]  # split -> [start, end) row range


def segment_bounds(n_rows: int, cfg: DataConfig) -> dict[str, tuple[int, int]]:
    n_test = int(n_rows * cfg.test_fraction)
    n_val = int(n_rows * cfg.val_fraction)
    n_train = n_rows - n_val - n_test - 2 * cfg.embargo_bars
    val_start = n_train + cfg.embargo_bars
    test_start = val_start + n_val + cfg.embargo_bars
    return {"train": (0, n_train), "val": (val_start, val_start + n_val), "test": (test_start, n_rows)}


def sample_rows(start: int, end: int, cfg: DataConfig) -> np.ndarray:
    """Bars t whose window [t-L+1, t] and label bar t+h all lie in [start, end)."""
    first, last = start + cfg.sequence_length - 1, end - 1 - cfg.horizon
    return np.arange(first, last + 1) if last >= first else np.arange(0)


def _symbol_rows(symbol: str, frame: pd.DataFrame, cfg: DataConfig) -> _SymbolRows:
    features = compute_features(frame).to_numpy()
    returns = forward_returns(frame, cfg.horizon)
    finite = np.isfinite(features).all(axis=1)
    # Indicators are NaN only during their warm-up; anything later means bad input data.
    first_valid = int(np.argmax(finite)) if finite.any() else len(finite)
    if not finite[first_valid:].all():
        bad = frame.index[first_valid + int(np.argmin(finite[first_valid:]))]
        raise HPOError(f"symbol {symbol}: indicators are not finite at {bad:%Y-%m-%d} (check the bars there)")
    features, returns, dates = features[first_valid:], returns[first_valid:], frame.index[first_valid:]
    segments = segment_bounds(len(features), cfg)
    # Each split needs at least one full window plus its label.
    need = cfg.sequence_length + cfg.horizon
    for split, (start, end) in segments.items():
        if end - start < need:
            raise HPOError(
                f"symbol {symbol}: too few rows ({len(frame)} bars, {len(features)} after indicator "
                f"warm-up) for a {split} split with sequence_length={cfg.sequence_length} and "
                f"horizon={cfg.horizon}; use a longer date range"
            )
    return _SymbolRows(features, returns, dates, segments)


def _windows(values: np.ndarray, rows: np.ndarray, length: int) -> np.ndarray:
    # (n_rows - L + 1, F, L) view -> the windows ending at each row in `rows`, as (N, L, F).
    view = np.lib.stride_tricks.sliding_window_view(values, length, axis=0)
    return np.ascontiguousarray(view[rows - length + 1].transpose(0, 2, 1), dtype=np.float32)


def build_windows(frames: dict[str, pd.DataFrame], cfg: DataConfig) -> WindowedData:
    if not frames:
        raise HPOError("no symbols to train on")
    per_symbol = {symbol: _symbol_rows(symbol, frame, cfg) for symbol, frame in frames.items()}
    scaler = StandardScaler().fit(
        np.concatenate([r.features[slice(*r.segments["train"])] for r in per_symbol.values()])
    )
    parts: dict[str, list[tuple]] = {split: [] for split in SPLITS}
    boundaries: dict[str, dict[str, pd.Timestamp]] = {}
    for symbol, r in per_symbol.items():
        scaled = scaler.transform(r.features)
        boundaries[symbol] = {}
        for split, (start, end) in r.segments.items():
            rows = sample_rows(start, end, cfg)
            returns = r.returns[rows]
            parts[split].append(
                (
                    _windows(scaled, rows, cfg.sequence_length),
                    direction_classes(returns, cfg.num_classes, cfg.direction_threshold),
                    returns.astype(np.float32),
                    [symbol] * len(rows),
                    list(r.dates[rows]),
                )
            )
            boundaries[symbol][f"{split}_start"] = r.dates[start]
            boundaries[symbol][f"{split}_end"] = r.dates[end - 1]
    splits = {split: _concat(parts[split]) for split in SPLITS}
    return WindowedData(**splits, scaler=scaler, num_classes=cfg.num_classes, boundaries=boundaries)


def prepare_windows(
    cfg: DataConfig, symbols: list[str] | None, *, explicit_symbols: bool = False
) -> tuple[WindowedData, str | None]:
    """Load the configured source and window it; also returns the symbol-fallback notice, if any."""
    chosen, notice = resolve_symbols(cfg.source, symbols, explicit=explicit_symbols)
    frames = load_frames(cfg.source, chosen, start=cfg.start, end=cfg.end)
    return build_windows(frames, cfg), notice


def _concat(parts: list[tuple]) -> Split:
    return Split(
        x=torch.from_numpy(np.concatenate([p[0] for p in parts])),
        y_class=torch.from_numpy(np.concatenate([p[1] for p in parts])),
        y_return=torch.from_numpy(np.concatenate([p[2] for p in parts])),
        symbols=[s for p in parts for s in p[3]],
        dates=[d for p in parts for d in p[4]],
    )


class WindowLoader:
    """A loader over one in-memory split: iterates (x, y_class, y_return) batches.

    The trainer reads ``.split`` directly (no per-sample collation); iteration is for users who
    want DataLoader-like access, as the guide's ``prepare_data`` promises.
    """

    def __init__(self, split: Split, *, batch_size: int = 64, shuffle: bool = False, seed: int = 0) -> None:
        self.split = split
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed

    def __len__(self) -> int:
        return -(-len(self.split) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        n = len(self.split)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed)) if self.shuffle else torch.arange(n)
        for i in range(0, n, self.batch_size):
            idx = order[i : i + self.batch_size]
            yield self.split.x[idx], self.split.y_class[idx], self.split.y_return[idx]


def split_from_loader(loader: object) -> Split:
    """Accept our WindowLoader or any iterable of (x, y_class, y_return) batches (e.g. a DataLoader)."""
    if isinstance(loader, WindowLoader):
        return loader.split
    try:
        batches = list(loader)  # type: ignore[call-overload]
        xs, ys, rs = zip(*batches)
    except (TypeError, ValueError):
        raise HPOError("data_loaders must yield (x, y_class, y_return) batches") from None
    return Split(torch.cat(xs).float(), torch.cat(ys).long(), torch.cat(rs).float().reshape(-1))
