"""Chronological train/val/test splits with an embargo, and windows as views over in-memory bars.

Every symbol is cut at the same calendar dates: the fractions are taken over the union of all
symbols' bar dates (after the indicator warm-up), so no training bar of any symbol is later than
a validation or test bar of any other (same-day moves are correlated across markets). Each
validation and test segment then starts ``embargo_bars`` of its symbol's bars after its cut. A
sample at bar t uses features of bars [t-L+1, t] and a label whose outcome comes from bars
t+1..t+h (targets.py); it belongs to a segment only if all of those bars lie inside that segment,
so no window or label straddles a boundary, whatever the embargo (even 0), and windows never cross
symbols. Like the indicators, a label's threshold may look back before its segment (the past
only). The scaler is fitted on the training segments only.

Walk-forward (``evaluation.scheme: walk_forward``) keeps the test split and its cut exactly as
holdout's and cuts the calendar before it into K validation periods back to back, each of the
holdout's validation length, so the last fold validates on holdout's validation split. Each fold is
windowed like holdout from its own cuts (the same code: every symbol cut at the same dates, the
embargo after each cut, the scaler fitted on the fold's own training part) and has no test split.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import pandas as pd
import torch
from sklearn.preprocessing import StandardScaler

from .config import DataConfig, EvaluationConfig
from .data import configured_frames, resolve_symbols
from .errors import HPOError
from .features import FEATURE_NAMES, valid_features
from .targets import compute_targets, label_warmup

SPLITS = ("train", "val", "test")


@dataclass
class Split:
    """One split's samples, each a window into ``rows`` rather than a copy of its L bars.

    rows (M, F) float32: the scaled bars of this split's segments, symbols one after another;
    ends (N,) int64: the row of each sample's decision bar; sample i is rows[ends[i]-L+1 : ends[i]+1].
    """

    rows: torch.Tensor
    ends: torch.Tensor
    length: int
    y_class: torch.Tensor  # (N,) int64
    y_return: torch.Tensor  # (N,) float32
    symbols: list[str] = field(default_factory=list)  # per-sample symbol
    dates: list[pd.Timestamp] = field(default_factory=list)  # per-sample decision bar t

    @classmethod
    def from_windows(cls, x: torch.Tensor, y_class: torch.Tensor, y_return: torch.Tensor,
                     symbols: list[str] | None = None, dates: list[pd.Timestamp] | None = None) -> Split:
        """A split from ready-made (N, L, F) windows (laid end to end as rows)."""
        n, length, n_features = x.shape
        return cls(x.reshape(n * length, n_features), torch.arange(n) * length + length - 1, length,
                   y_class, y_return, symbols or [], dates or [])

    def __len__(self) -> int:
        return len(self.y_class)

    def windows(self, index: torch.Tensor | slice = slice(None)) -> torch.Tensor:
        """(B, L, F) windows of the samples in ``index``; only they are gathered."""
        if len(self.rows) < self.length:  # no sample at all
            return self.rows.new_zeros((0, self.length, self.rows.shape[-1]))
        starts = self.ends[index] - (self.length - 1)
        return self.rows.unfold(0, self.length, 1)[starts].transpose(1, 2)  # unfold: (M-L+1, F, L)

    @property
    def x(self) -> torch.Tensor:
        """All windows, materialised (N, L, F): for users and tests; training gathers per batch."""
        return self.windows().contiguous()

    def take(self, index: torch.Tensor) -> Split:
        """A subset of the samples, sharing ``rows``."""
        picked = index.tolist()
        return Split(self.rows, self.ends[index], self.length, self.y_class[index], self.y_return[index],
                     [self.symbols[i] for i in picked] if self.symbols else [],
                     [self.dates[i] for i in picked] if self.dates else [])

    def to(self, device: torch.device) -> Split:
        return Split(self.rows.to(device), self.ends.to(device), self.length, self.y_class.to(device),
                     self.y_return.to(device), self.symbols, self.dates)

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
    # Shared dates: val_start, test_start; a fold's: train_start (rolling), val_start, val_end (exclusive).
    cuts: dict[str, pd.Timestamp] = field(default_factory=dict)
    source_digest: str | None = None  # frames_digest of the bars these windows were built from
    folds: list[WindowedData] = field(default_factory=list)  # walk-forward folds, oldest first; none: holdout

    @property
    def n_features(self) -> int:
        return self.train.rows.shape[-1]

    def calendar(self) -> dict[str, str] | None:
        """First validation date, first test date and the last bar of the data (ISO dates), which
        tell a prediction's split by its date; None for data given as loaders."""
        if not self.cuts or not self.boundaries:
            return None
        end = max(b["test_end"] for b in self.boundaries.values())
        return {"val_start": self.cuts["val_start"].isoformat(), "test_start": self.cuts["test_start"].isoformat(),
                "data_end": end.isoformat()}

    @property
    def sequence_length(self) -> int:
        return self.train.length

    def samples_digest(self) -> str:
        """SHA-256 of every sample (windows, labels) of every split, for data given as loaders."""
        h = hashlib.sha256()
        for split in (self.train, self.val, self.test):
            for tensor in (split.x, split.y_class, split.y_return):
                h.update(np.ascontiguousarray(tensor.cpu().numpy()).tobytes())
        return h.hexdigest()


def frames_digest(frames: dict[str, pd.DataFrame]) -> str:
    """SHA-256 of the bars loaded (symbols, dates, OHLCV): the same input on any machine, the same digest."""
    h = hashlib.sha256()
    for symbol, frame in frames.items():
        h.update(symbol.encode())
        h.update(np.ascontiguousarray(frame.index.asi8).tobytes())
        h.update(np.ascontiguousarray(frame.to_numpy(dtype=np.float64)).tobytes())
    return h.hexdigest()


@dataclass
class _SymbolRows:
    features: np.ndarray  # (n, F), warm-up rows removed
    classes: np.ndarray  # (n,) labels of data.target (meaningless where returns is NaN)
    returns: np.ndarray  # (n,) what the regression head learns
    dates: pd.DatetimeIndex


def _union(dates: list[pd.DatetimeIndex], cfg: DataConfig) -> tuple[pd.DatetimeIndex, int, int]:
    """Every symbol's dates, and the test and validation dates in them by the split fractions."""
    union = pd.DatetimeIndex(np.unique(np.concatenate([d.to_numpy() for d in dates])))
    n_test, n_val = int(len(union) * cfg.test_fraction), int(len(union) * cfg.val_fraction)
    if n_test < 1 or n_val < 1:
        raise HPOError(f"too few bars ({len(union)} dates) to cut validation and test splits; use a longer date range")
    return union, n_test, n_val


def calendar_cuts(dates: list[pd.DatetimeIndex], cfg: DataConfig) -> dict[str, pd.Timestamp]:
    """First validation date and first test date, by the split fractions of the union of dates."""
    union, n_test, n_val = _union(dates, cfg)
    return {"val_start": union[-n_test - n_val], "test_start": union[-n_test]}


def fold_cuts(dates: list[pd.DatetimeIndex], cfg: DataConfig, evaluation: EvaluationConfig) -> list[dict[str, pd.Timestamp]]:
    """Each walk-forward fold's dates, oldest first: K validation periods of the holdout's validation
    length back to back, the last ending at the test cut; training before each (rolling: as many
    dates as the oldest fold's training part)."""
    union, n_test, n_val = _union(dates, cfg)  # the holdout's checks first
    k = evaluation.folds
    first_train = len(union) - n_test - k * n_val  # dates before the oldest validation period
    if first_train < n_val:
        raise HPOError(
            f"walk-forward with {k} folds leaves the oldest fold {max(first_train, 0)} dates to train on, fewer than "
            f"one validation period ({n_val} dates); use fewer folds, a smaller data.val_fraction or a longer date range"
        )
    cuts = []
    for i in range(k):
        val_start = first_train + i * n_val
        fold = {"val_start": union[val_start], "val_end": union[val_start + n_val]}
        if evaluation.window == "rolling":
            fold["train_start"] = union[i * n_val]
        cuts.append(fold)
    return cuts


def segment_bounds(dates: pd.DatetimeIndex, cuts: dict[str, pd.Timestamp], embargo: int) -> dict[str, tuple[int, int]]:
    """[start, end) rows of each split for one symbol: cut at the shared dates, embargo after each cut.
    A fold's cuts (val_end, no test_start) give no test split: nothing of it reaches past val_end."""
    at = {key: int(dates.searchsorted(date)) for key, date in cuts.items()}
    val_end = at["test_start"] if "test_start" in at else at["val_end"]
    bounds = {"train": (at.get("train_start", 0), at["val_start"]), "val": (at["val_start"] + embargo, val_end)}
    if "test_start" in at:
        bounds["test"] = (at["test_start"] + embargo, len(dates))
    return bounds


def sample_rows(start: int, end: int, cfg: DataConfig) -> np.ndarray:
    """Bars t whose window [t-L+1, t] and label bar t+h all lie in [start, end)."""
    first, last = start + cfg.sequence_length - 1, end - 1 - cfg.horizon
    return np.arange(first, last + 1) if last >= first else np.arange(0)


def _symbol_rows(symbol: str, frame: pd.DataFrame, cfg: DataConfig) -> _SymbolRows:
    features, first_valid = valid_features(symbol, frame, label_warmup(cfg))  # no label threshold yet: warm-up
    classes, returns = compute_targets(frame, cfg)
    if first_valid >= len(features):
        raise HPOError(f"symbol {symbol}: too few rows ({len(frame)} bars) to compute the indicators; use a longer date range")
    return _SymbolRows(features[first_valid:], classes[first_valid:], returns[first_valid:], frame.index[first_valid:])


def _check_segments(symbol: str, r: _SymbolRows, segments: dict[str, tuple[int, int]], cfg: DataConfig) -> None:
    # Each split needs at least one full window plus its label.
    need = cfg.sequence_length + cfg.horizon
    for split, (start, end) in segments.items():
        if end - start < need:
            raise HPOError(
                f"symbol {symbol}: too few rows in the {split} split ({max(end - start, 0)} bars; "
                f"the symbol has {len(r.dates)} bars after indicator warm-up, {r.dates[0]:%Y-%m-%d} .. "
                f"{r.dates[-1]:%Y-%m-%d}) for sequence_length={cfg.sequence_length} and horizon={cfg.horizon}; "
                "use a longer date range"
            )


def build_windows(frames: dict[str, pd.DataFrame], cfg: DataConfig, evaluation: EvaluationConfig | None = None, *,
                  cuts: dict[str, pd.Timestamp] | None = None) -> WindowedData:
    """The holdout splits; under walk-forward ``evaluation`` also its folds (``.folds``). ``cuts`` (a
    study's, for bars appended since it ran) replace the fractions' cut dates."""
    if not frames:
        raise HPOError("no symbols to train on")
    per_symbol = {symbol: _symbol_rows(symbol, frame, cfg) for symbol, frame in frames.items()}
    dates = [r.dates for r in per_symbol.values()]
    data = _windowed(per_symbol, cuts or calendar_cuts(dates, cfg), cfg)
    data.source_digest = frames_digest(frames)
    if evaluation is not None and evaluation.scheme == "walk_forward":
        for i, fold in enumerate(fold_cuts(dates, cfg, evaluation)):
            try:
                data.folds.append(_windowed(per_symbol, fold, cfg))
            except HPOError as error:
                raise HPOError(f"walk-forward fold {i}: {error}") from None
    return data


def _windowed(per_symbol: dict[str, _SymbolRows], cuts: dict[str, pd.Timestamp], cfg: DataConfig) -> WindowedData:
    segments = {symbol: segment_bounds(r.dates, cuts, cfg.embargo_bars) for symbol, r in per_symbol.items()}
    for symbol, r in per_symbol.items():
        _check_segments(symbol, r, segments[symbol], cfg)
    scaler = StandardScaler().fit(
        np.concatenate([r.features[slice(*segments[s]["train"])] for s, r in per_symbol.items()])
    )
    parts: dict[str, list[tuple]] = {split: [] for split in segments[next(iter(per_symbol))]}
    boundaries: dict[str, dict[str, pd.Timestamp]] = {}
    for symbol, r in per_symbol.items():
        boundaries[symbol] = {}
        for split, (start, end) in segments[symbol].items():
            rows = sample_rows(start, end, cfg)
            parts[split].append((
                scaler.transform(r.features[start:end]).astype(np.float32),
                rows - start,  # decision bars, relative to the segment
                r.classes[rows], r.returns[rows].astype(np.float32), [symbol] * len(rows), list(r.dates[rows]),
            ))
            boundaries[symbol][f"{split}_start"] = r.dates[start]
            boundaries[symbol][f"{split}_end"] = r.dates[end - 1]
    splits = {split: _concat(parts[split], cfg.sequence_length) for split in parts}
    if "test" not in splits:  # a fold: its test split is holdout's, never read here
        n_features = splits["train"].rows.shape[-1]
        splits["test"] = Split.from_windows(torch.zeros((0, cfg.sequence_length, n_features)),
                                            torch.zeros(0, dtype=torch.int64), torch.zeros(0))
    return WindowedData(**splits, scaler=scaler, num_classes=cfg.num_classes, boundaries=boundaries, cuts=cuts)


def prepare_windows(cfg: DataConfig, symbols: list[str] | None, *, explicit_symbols: bool = False,
                    evaluation: EvaluationConfig | None = None) -> tuple[WindowedData, str | None]:
    """Load the configured source and window it; also returns the symbol-fallback notice, if any."""
    chosen, notice = resolve_symbols(cfg.source, symbols, explicit=explicit_symbols)
    return build_windows(configured_frames(cfg, chosen), cfg, evaluation), notice


def _concat(parts: list[tuple], length: int) -> Split:
    offsets = np.cumsum([0] + [len(p[0]) for p in parts[:-1]])
    ends = np.concatenate([p[1] + offset for p, offset in zip(parts, offsets)]).astype(np.int64)
    rows, y_class, y_return = (torch.from_numpy(np.concatenate([p[i] for p in parts])) for i in (0, 2, 3))
    return Split(rows, torch.from_numpy(ends), length, y_class, y_return,
                 symbols=[s for p in parts for s in p[4]], dates=[d for p in parts for d in p[5]])


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
            yield self.split.windows(idx), self.split.y_class[idx], self.split.y_return[idx]


def split_from_loader(loader: object) -> Split:
    """Accept our WindowLoader or any iterable of (x, y_class, y_return) batches (e.g. a DataLoader)."""
    if isinstance(loader, WindowLoader):
        return loader.split
    try:
        batches = list(loader)  # type: ignore[call-overload]
        xs, ys, rs = zip(*batches)
    except (TypeError, ValueError):
        raise HPOError("data_loaders must yield (x, y_class, y_return) batches") from None
    return Split.from_windows(torch.cat(xs).float(), torch.cat(ys).long(), torch.cat(rs).float().reshape(-1))
