"""Data sources -> one clean OHLCV frame per symbol (DatetimeIndex, open/high/low/close/volume).

Sources: ``sample`` (real S&P 500 and NASDAQ Composite daily bars shipped by the ``arch``
package, offline), ``synthetic`` (deterministic, with a learnable momentum signal),
``yfinance`` (downloaded once, then read from a Parquet cache), or a path (a folder of
per-symbol CSV/Parquet files, or one long-format file with a symbol column).

Files come as real exports have them (docs/data.md lists every accepted shape): the date in an
unnamed first column (pandas ``to_csv()``), a column under a common name, or the Parquet index;
ISO, US-style or epoch dates; any header case; ``Adj Close``; extra columns ignored. A bar with
a missing value whose neighbours are complete is dropped and reported; everything else that is
wrong is an HPOError naming the file, column and row.
"""

from __future__ import annotations

import datetime as dt
import importlib
import logging
import os
import re
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .config import DataConfig
from .errors import HPOError
from . import synthetic

log = logging.getLogger("cnn_lstm_hpo")

COLUMNS = ("open", "high", "low", "close", "volume")
SAMPLE_SYMBOLS = ("SP500", "NASDAQ")
SYNTHETIC_SYMBOLS = ("SYN_A", "SYN_B")
YFINANCE = "yfinance"
# Date column names of common exports (yfinance, stooq, Alpha Vantage, Polygon "t", Binance
# "open_time", Dukascopy "gmt_time"), compared after lower-casing and spaces -> "_".
DATE_NAMES = ("date", "datetime", "timestamp", "time", "date_time", "trade_date", "gmt_time", "open_time", "t")
SYMBOL_NAMES = ("symbol", "ticker")
_ALIASES = {"o": "open", "h": "high", "l": "low", "c": "close", "v": "volume", "vol": "volume",
            "adjclose": "adj_close", "adjusted_close": "adj_close"}
_SUFFIXES = (".csv", ".csv.gz", ".parquet", ".pq")
# An offset after a time of day: "09:30:00-05:00", "00:00:00+0900", "...Z". Requiring the time
# keeps US dates such as "01-02-2020" intact.
_OFFSET = re.compile(r"(\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)\s*(?:Z|UTC|GMT|[+-]\d{2}(?::?\d{2})?)$")
_TIME_OF_DAY = re.compile(r"^\d{1,2}:\d{2}")
_TICKER = re.compile(r"^[A-Za-z0-9.^=_-]{1,32}$")
# An isolated bar with missing values is dropped, but only while such bars stay rare: past this
# share of a symbol's bars the file is refused (dropping would hide a broken export).
MAX_DROPPED_SHARE = 0.05
_AGG = {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}


# --- bundled and synthetic sources ---------------------------------------------------------------


def synthetic_frame(symbol: str, n_bars: int = 1500, *, momentum: float = 0.5, seed: int = 0) -> pd.DataFrame:
    """Daily bars whose log return follows an AR(1): the sign of today's return predicts tomorrow's."""
    rng = np.random.default_rng(seed + sum(map(ord, symbol)))
    from scipy.signal import lfilter

    returns = lfilter([1.0], [1.0, -momentum], rng.normal(0.0, 0.01, n_bars))  # r[t] = momentum * r[t-1] + noise[t]
    close = 100.0 * np.exp(np.cumsum(returns))
    open_ = np.concatenate([[100.0], close[:-1]])
    spread = np.abs(rng.normal(0.0, 0.004, n_bars)) * close
    volume = rng.integers(1_000_000, 5_000_000, n_bars).astype(float)
    return pd.DataFrame(
        {"open": open_, "high": np.maximum(open_, close) + spread, "low": np.minimum(open_, close) - spread,
         "close": close, "volume": volume},
        index=pd.bdate_range("2010-01-04", periods=n_bars, name="date"),
    )


# --- bar frequency, gaps, resampling --------------------------------------------------------------


@dataclass(frozen=True)
class BarFrequency:
    """A symbol's usual bar spacing: ``interval`` None when there are fewer than two bars."""

    interval: pd.Timedelta | None
    label: str  # "daily", "hourly", "5-minute", "weekly", "monthly", "unknown"


def bar_frequency(index: pd.DatetimeIndex) -> BarFrequency:
    """The median spacing, named; daily bars stay daily across weekends and holidays."""
    if len(index) < 2:
        return BarFrequency(None, "unknown")
    step = pd.Timedelta((index[1:] - index[:-1]).median())
    if step >= pd.Timedelta(days=25):
        return BarFrequency(pd.Timedelta(days=30), "monthly")
    if step >= pd.Timedelta(days=5):
        return BarFrequency(pd.Timedelta(days=7), "weekly")
    if step >= pd.Timedelta(hours=20):
        return BarFrequency(pd.Timedelta(days=1), "daily")
    step = step.round("s")
    if step >= pd.Timedelta(hours=1) and step % pd.Timedelta(hours=1) == pd.Timedelta(0):
        hours = step // pd.Timedelta(hours=1)
        return BarFrequency(step, "hourly" if hours == 1 else f"{hours}-hour")
    if step >= pd.Timedelta(minutes=1) and step % pd.Timedelta(minutes=1) == pd.Timedelta(0):
        return BarFrequency(step, f"{step // pd.Timedelta(minutes=1)}-minute")
    return BarFrequency(step, f"{max(int(step.total_seconds()), 1)}-second")


@dataclass(frozen=True)
class Gaps:
    count: int
    largest: pd.Timedelta | None
    largest_after: pd.Timestamp | None  # the bar before the largest gap


def bar_gaps(index: pd.DatetimeIndex, frequency: BarFrequency | None = None) -> Gaps:
    """Spacings longer than the market's usual breaks.

    Daily and coarser bars: longer than the interval plus 3 days (a weekend and a holiday).
    Intraday bars: more than 4 days (whole trading days missing), or, within one calendar day,
    longer than the interval unless that same break recurs on at least a tenth of the days
    (a lunch break is usual, not a gap).
    """
    frequency = frequency or bar_frequency(index)
    if frequency.interval is None:
        return Gaps(0, None, None)
    spacing = pd.Series(index[1:] - index[:-1], index=index[:-1])
    if frequency.interval >= pd.Timedelta(days=1):
        is_gap = spacing > frequency.interval + pd.Timedelta(days=3)
    else:
        same_day = pd.Series(index[1:].normalize() == index[:-1].normalize(), index=index[:-1])
        inside = same_day & (spacing > frequency.interval)
        counts = spacing[inside].value_counts()
        # At least twice: with few days, one missing bar would otherwise count as a recurring break.
        recurring = counts[counts >= max(2, 0.1 * index.normalize().nunique())].index
        is_gap = (inside & ~spacing.isin(recurring)) | (spacing > pd.Timedelta(days=4))
    gaps = spacing[is_gap]
    if gaps.empty:
        return Gaps(0, None, None)
    return Gaps(len(gaps), gaps.max(), gaps.idxmax())


def resample_bars(frame: pd.DataFrame, rule: str) -> pd.DataFrame:
    """OHLCV aggregated to ``rule``: open first, high max, low min, close last, volume summed."""
    out = frame.resample(rule).agg(_AGG)
    # Periods without any bar (nights, weekends, holidays) come out empty: they are not bars.
    return out.dropna(subset=["close"])


def format_span(span: pd.Timedelta) -> str:
    for unit, name in ((pd.Timedelta(days=1), "days"), (pd.Timedelta(hours=1), "hours"), (pd.Timedelta(minutes=1), "minutes")):
        if span >= unit:
            return f"{round(span / unit, 1):g} {name}"
    return f"{span.total_seconds():g} seconds"


@dataclass(frozen=True)
class SymbolSummary:
    """What one symbol's bars are: for the ``data`` command and for summaries elsewhere."""

    symbol: str
    rows: int
    first: pd.Timestamp
    last: pd.Timestamp
    frequency: BarFrequency
    gaps: Gaps

    def line(self) -> str:
        gaps, g = "none", self.gaps
        if g.count and g.largest is not None and g.largest_after is not None:
            gaps = f"{g.count} longer than usual (largest {format_span(g.largest)} after {format_time(g.largest_after)})"
        return (
            f"{self.symbol}: {self.rows} bars, {format_time(self.first)} .. {format_time(self.last)}, "
            f"{self.frequency.label}; gaps: {gaps}"
        )


def summarize(frame: pd.DataFrame, symbol: str) -> SymbolSummary:
    frequency = bar_frequency(frame.index)
    return SymbolSummary(symbol, len(frame), frame.index[0], frame.index[-1], frequency,
                         bar_gaps(frame.index, frequency))


# --- reading files --------------------------------------------------------------------------------


def format_time(ts: pd.Timestamp) -> str:
    """A date for daily bars, a time as well for intraday ones."""
    if ts == ts.normalize():
        return f"{ts:%Y-%m-%d}"
    return f"{ts:%Y-%m-%d %H:%M}" if ts.second == 0 else f"{ts:%Y-%m-%d %H:%M:%S}"


def _normalise_names(frame: pd.DataFrame) -> pd.DataFrame:
    def name(column: object) -> str:
        text = re.sub(r"[\s.\-]+", "_", str(column).replace("\ufeff", "").strip().lower())
        return text.strip("_") if text.strip("_") else text

    frame = frame.rename(columns=name)
    present = set(frame.columns)
    return frame.rename(columns={a: c for a, c in _ALIASES.items() if a in present and c not in present})


def _adjusted(frame: pd.DataFrame) -> pd.DataFrame:
    # Prefer adjusted prices where a file carries an adjusted close (splits and dividends): scale
    # open/high/low by the same factor so every price of a bar is on one basis.
    if "adj_close" not in frame.columns:
        return frame
    if "close" in frame.columns:
        factor = pd.to_numeric(frame["adj_close"], errors="coerce") / pd.to_numeric(frame["close"], errors="coerce")
        frame = frame.copy()
        for column in ("open", "high", "low"):
            if column in frame.columns:
                numbers = pd.to_numeric(frame[column], errors="coerce")
                # Keep cells that are not numbers as they are, so the check below can name them.
                frame[column] = (numbers * factor).where(numbers.notna(), frame[column])
        frame = frame.drop(columns=["close"])
    return frame.rename(columns={"adj_close": "close"})


def _date_values(frame: pd.DataFrame, source: str) -> tuple[pd.DataFrame, pd.Series, str]:
    """Split off the dates: a named column, an unnamed first column, or the (Parquet) index."""
    columns = list(frame.columns)
    if "date" in columns and "time" in columns:
        first = frame["time"].dropna().astype(str).head(1)
        if len(first) and _TIME_OF_DAY.match(first.iloc[0].strip()):
            # Separate date and time-of-day columns (MetaTrader, FirstRate exports).
            values = frame["date"].astype(str).str.strip() + " " + frame["time"].astype(str).str.strip()
            return frame.drop(columns=["date", "time"]), values, "date + time"
    name = next((c for c in DATE_NAMES if c in columns), None)
    if name is not None:
        return frame.drop(columns=name), frame[name], name
    # pandas writes the index of to_csv() under an empty header, read back as "Unnamed: 0".
    if columns and columns[0] in ("", "unnamed:_0", "index"):
        return frame.drop(columns=columns[0]), frame[columns[0]], "first (unnamed) column"
    index_name = str(frame.index.name).lower()
    if isinstance(frame.index, pd.DatetimeIndex) or index_name in DATE_NAMES:
        values = frame.index.to_series(index=pd.RangeIndex(len(frame)))
        return frame.reset_index(drop=True), values, "index"
    raise HPOError(f"{source}: no date column (expected an unnamed first column or one named "
                   f"{', '.join(DATE_NAMES)}; have: {', '.join(map(str, columns))})")


def _row(values: pd.Series, position: int) -> str:
    """The data row (1-based, after the header) of a position, as a spreadsheet user counts."""
    label = values.index[position]
    return f"data row {label + 1}" if isinstance(label, (int, np.integer)) else f"row {label}"


def _epoch_unit(value: float) -> str | None:
    # Epoch seconds/milliseconds/... of dates between 1973 and 5138.
    units = (("s", 1e11), ("ms", 1e14), ("us", 1e17), ("ns", 1e20))
    return next((unit for unit, limit in units if 1e8 <= value < limit), None)


def _numeric_dates(values: pd.Series, source: str, label: str) -> pd.DatetimeIndex:
    numbers = pd.to_numeric(values, errors="coerce")
    if numbers.isna().any():
        raise HPOError(f"{source}: column {label!r} {_row(values, int(numbers.isna().argmax()))}: empty date")
    lo, hi = float(numbers.min()), float(numbers.max())
    if 19000101 <= lo and hi <= 21001231 and (numbers == numbers.round()).all():
        try:  # YYYYMMDD integers (some vendors, Excel exports)
            return pd.DatetimeIndex(pd.to_datetime(numbers.astype(np.int64).astype(str), format="%Y%m%d"))
        except ValueError:
            pass
    unit = _epoch_unit(lo)
    if unit is None or unit != _epoch_unit(hi):
        raise HPOError(f"{source}: column {label!r}: numbers from {lo:g} to {hi:g} are neither epoch seconds, "
                       "epoch milliseconds nor YYYYMMDD dates")
    return pd.DatetimeIndex(pd.to_datetime(numbers, unit=unit))


def _text_dates(text: pd.Series) -> pd.Series | None:
    """ISO first; then the US month-first reading; then day-first. None when no reading fits all."""
    with warnings.catch_warnings():
        # pandas warns when it infers day-first on its own; we decide the order ourselves.
        warnings.simplefilter("ignore", UserWarning)
        for options in ({"format": "ISO8601"}, {"dayfirst": False}, {"dayfirst": True}):
            try:
                return pd.to_datetime(text, **options)  # type: ignore[call-overload]
            except (ValueError, TypeError, OverflowError):
                continue
    return None


def _wall_or_utc(wall: pd.DatetimeIndex, instants: pd.DatetimeIndex) -> tuple[pd.DatetimeIndex, list[str]]:
    """Local wall time keeps each bar on its own calendar day (a daily bar at +09:00 stays on its
    date). Only when the local clock repeats (intraday bars across a daylight-saving fall-back)
    while the instants do not, UTC keeps the bars distinct and in order."""
    if wall.has_duplicates and not instants.has_duplicates:
        return instants.tz_convert(None), ["timestamps kept in UTC: the local clock repeats at a daylight-saving change"]
    return wall, []


def _parse_dates(values: pd.Series, source: str, label: str) -> tuple[pd.DatetimeIndex, list[str]]:
    """Naive timestamps in the data's own local time (offsets dropped), plus repair notes."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        aware = pd.DatetimeIndex(values)
        return _wall_or_utc(aware.tz_localize(None), aware)
    if pd.api.types.is_datetime64_dtype(values.dtype):
        return pd.DatetimeIndex(values), []
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        return _numeric_dates(values, source, label), []
    text = values.astype("string").str.strip()
    empty = text.isna() | (text == "")
    if empty.any():
        raise HPOError(f"{source}: column {label!r} {_row(values, int(empty.to_numpy().argmax()))}: empty date")
    wall = text.str.replace(_OFFSET, r"\1", regex=True)
    with_offset = wall != text
    parsed = _text_dates(wall)
    if parsed is None:
        coerced = pd.to_datetime(wall, errors="coerce", format="mixed")
        bad = int(coerced.isna().to_numpy().argmax())  # the first date no reading parses; 0 when each parses alone
        raise HPOError(f"{source}: column {label!r} {_row(values, bad)}: cannot parse date {text.iloc[bad]!r}")
    index = pd.DatetimeIndex(parsed)
    if index.tz is not None:  # e.g. a bare "Z" after a date without a time
        index = index.tz_localize(None)
    if with_offset.any() and index.has_duplicates:
        instants = pd.DatetimeIndex(pd.to_datetime(text, utc=True, format="ISO8601", errors="coerce"))
        if not instants.isna().any():
            return _wall_or_utc(index, instants)
    return index, []


def _missing_runs(missing: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) runs of consecutive True."""
    edges = np.diff(np.concatenate([[0], missing.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)))


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _clean(raw: pd.DataFrame, source: str) -> tuple[pd.DataFrame, list[str]]:
    """Checked, typed, time-ordered OHLCV, and notes on what was repaired."""
    if raw.empty:
        raise HPOError(f"{source}: no rows")
    frame = _adjusted(_normalise_names(raw))
    first = str(raw.columns[0]).strip() if len(raw.columns) else ""
    if not set(frame.columns) & {*COLUMNS, *DATE_NAMES} and first[:1].isdigit() and _text_dates(pd.Series([first])) is not None:
        raise HPOError(f"{source}: no header row (the first line holds data); expected e.g. Date,Open,High,Low,Close,Volume")
    frame, date_values, date_label = _date_values(frame, source)
    missing_columns = [c for c in COLUMNS if c not in frame.columns]
    if missing_columns:
        raise HPOError(f"{source}: missing column {missing_columns[0]!r} (have: {', '.join(map(str, raw.columns))})")
    index, notes = _parse_dates(date_values, source, date_label)
    frame = frame[list(COLUMNS)].copy()
    frame.index = index.rename("date")
    for column in COLUMNS:
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = values.isna() & frame[column].notna()
        if bad.any():
            row = frame.index[bad.to_numpy().argmax()]
            raise HPOError(f"{source}: column {column!r} row {format_time(row)}: not a number ({frame[column][bad].iloc[0]!r})")
        if np.isinf(values).any():
            row = frame.index[np.isinf(values).to_numpy().argmax()]
            raise HPOError(f"{source}: column {column!r} row {format_time(row)}: infinite value")
        frame[column] = values.astype(float)
    if not frame.index.is_monotonic_increasing:
        frame = frame.sort_index(kind="stable")
        notes.append("rows were not in time order: sorted")
    # Repeated identical rows (overlapping downloads pasted together) carry no conflict: keep one.
    repeated = frame.reset_index().duplicated().to_numpy()
    if repeated.any():
        frame = frame[~repeated]
        notes.append(f"dropped {_plural(int(repeated.sum()), 'repeated identical row')}")
    if frame.index.has_duplicates:
        row = frame.index[frame.index.duplicated()][0]
        raise HPOError(f"{source}: duplicate date {format_time(row)} with different values")
    missing = frame.isna().to_numpy().any(axis=1)
    if missing.any():
        for start, end in _missing_runs(missing):
            if end - start > 1:
                column = frame.columns[frame.iloc[start].isna().to_numpy().argmax()]
                raise HPOError(
                    f"{source}: column {column!r} rows {format_time(frame.index[start])} .. "
                    f"{format_time(frame.index[end - 1])}: {end - start} consecutive bars with a missing value "
                    "(NaN); fill or remove them (only an isolated bar is dropped)"
                )
        n_missing = int(missing.sum())
        if n_missing > MAX_DROPPED_SHARE * len(frame):
            first = frame.index[missing.argmax()]
            raise HPOError(f"{source}: {n_missing} of {len(frame)} bars have a missing value (NaN), first at "
                           f"{format_time(first)}; more than {MAX_DROPPED_SHARE:.0%} of the bars, so none is dropped")
        dates = [format_time(d) for d in frame.index[missing][:3]]
        more = ", ..." if n_missing > 3 else ""
        notes.append(f"dropped {_plural(n_missing, 'bar')} with a missing value (NaN): {', '.join(dates)}{more}")
        frame = frame[~missing]
    if frame.empty:
        raise HPOError(f"{source}: no complete bars")
    for bad, where, problem in (
        (frame["high"] < frame["low"], "row", "high < low"),
        ((frame[["open", "high", "low", "close"]] <= 0).any(axis=1), "row", "prices must be > 0"),
        (frame["volume"] < 0, "column 'volume' row", "negative volume"),
    ):
        if bad.any():
            raise HPOError(f"{source}: {where} {format_time(frame.index[bad.to_numpy().argmax()])}: {problem}")
    return frame, notes


def validate_ohlcv(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """Checked, typed OHLCV; the first problem found is raised with its column and row."""
    return _clean(frame, source)[0]


def _csv_layout(path: Path) -> tuple[str, tuple[int, int] | None]:
    """The separator, and (header row of the field names, header row of the tickers) when the CSV has two
    header rows, as ``yfinance.download(...).to_csv()`` writes (Price / Ticker rows, then a Date row), also
    with the levels swapped (``group_by="ticker"``) or without the Date row; None for one header row."""
    import csv
    import gzip

    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rt", errors="replace", newline="") as handle:  # type: ignore[operator]
        # Comma, semicolon (European spreadsheets) or tab: whichever the header line uses most.
        sep = max((",", ";", "\t"), key=handle.readline().count)
        handle.seek(0)
        rows = [row for _, row in zip(range(2), csv.reader(handle, delimiter=sep))]
    if len(rows) < 2:
        return sep, None
    fields = [{str(c).strip().lower().replace(" ", "_") for c in row[1:]} for row in rows]
    for level in (0, 1):
        other = rows[1 - level][1:]
        tickers_look_so = other and all(c.strip() and not c.strip().lstrip("-").replace(".", "").isdigit() for c in other)
        if "close" in fields[level] and "close" not in fields[1 - level] and tickers_look_so:
            return sep, (level, 1 - level)
    return sep, None


def _read_table(path: Path) -> pd.DataFrame:
    name = path.name.lower()
    if not name.endswith(_SUFFIXES):
        raise HPOError(f"{path}: unsupported file type (expected {', '.join(_SUFFIXES)})")
    try:
        if name.endswith((".csv", ".csv.gz")):
            sep, levels = _csv_layout(path)
            if levels is None:
                return pd.read_csv(path, sep=sep)
            # Two header rows: one long table, a symbol column from the tickers (pandas reads a
            # following Date row as the index's name).
            wide = pd.read_csv(path, sep=sep, header=[0, 1], index_col=0)
            ticker_level = levels[1]
            parts = []
            for ticker in dict.fromkeys(wide.columns.get_level_values(ticker_level)):
                part = wide.xs(ticker, axis=1, level=ticker_level)  # the field names are its columns
                part.columns = [str(c) for c in part.columns]
                parts.append(part.rename_axis("date").reset_index().assign(symbol=str(ticker).strip()))
            return pd.concat(parts, ignore_index=True)
        return pd.read_parquet(path)
    except Exception as error:  # pandas/pyarrow raise many types for a malformed file
        raise HPOError(f"{path}: cannot read file ({(str(error).splitlines() or [type(error).__name__])[0]})") from None


def _symbol_of(path: Path) -> str:
    name = path.name
    suffix = next(s for s in _SUFFIXES if name.lower().endswith(s))
    return name[: -len(suffix)].upper()


@dataclass
class LoadedBars:
    """Frames per symbol, with notes on what was repaired (dropped rows, sorting, resampling)."""

    frames: dict[str, pd.DataFrame]
    repairs: dict[str, list[str]] = field(default_factory=dict)


def _from_file(path: Path) -> LoadedBars:
    table = _read_table(path)
    columns = {str(c).strip().lower(): c for c in table.columns}
    symbol_column = next((columns[n] for n in SYMBOL_NAMES if n in columns), None)
    if symbol_column is None:
        # One file without a symbol column is one symbol, named after the file.
        frame, notes = _clean(table, str(path))
        return LoadedBars({_symbol_of(path): frame}, {_symbol_of(path): notes})
    if table.empty:
        raise HPOError(f"{path}: no rows")
    symbols = table[symbol_column].astype("string").str.strip().str.upper()
    empty = (symbols.isna() | (symbols == "")).to_numpy()
    if empty.any():
        raise HPOError(f"{path}: column {str(symbol_column)!r} data row {int(empty.argmax()) + 1}: empty symbol")
    loaded = LoadedBars({})
    for symbol, group in table.drop(columns=symbol_column).groupby(symbols.to_numpy(), sort=True):
        frame, notes = _clean(group, f"{path} symbol {symbol}")
        loaded.frames[str(symbol)], loaded.repairs[str(symbol)] = frame, notes
    return loaded


def _from_path(path: Path) -> LoadedBars:
    if not path.exists():
        raise HPOError(f"data path not found: {path}")
    if not path.is_dir():
        return _from_file(path)
    try:
        files = sorted(p for p in path.iterdir() if p.name.lower().endswith(_SUFFIXES) and not p.name.startswith("."))
    except OSError as error:
        raise HPOError(f"{path}: cannot list folder ({error.strerror})") from None
    files = [p for p in files if p.is_file()]
    if not files:
        raise HPOError(f"{path}: no .csv or .parquet files")
    stems = [_symbol_of(p) for p in files]
    clash = next((s for s in stems if stems.count(s) > 1), None)
    if clash:
        raise HPOError(f"{path}: more than one file for symbol {clash}")
    loaded = LoadedBars({})
    for file in files:
        part = _from_file(file)
        twice = next((s for s in part.frames if s in loaded.frames), None)
        if twice:
            raise HPOError(f"{path}: more than one file for symbol {twice} ({file.name} has it too)")
        loaded.frames.update(part.frames)
        loaded.repairs.update(part.repairs)
    return loaded


# --- yfinance -------------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """Where ``--data yfinance`` keeps its Parquet files: $XDG_CACHE_HOME or ~/.cache."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cnn-lstm-hpo" / "yfinance"


def _download(symbol: str, path: Path) -> None:
    """One symbol's full daily history from Yahoo Finance, validated, then cached atomically."""
    try:
        import yfinance
    except ImportError:
        raise HPOError(f"no cached bars for {symbol} in {path.parent}, and yfinance is not installed: "
                       "pip install 'cnn-lstm-hpo[yfinance]'") from None
    try:
        table = yfinance.download(symbol, period="max", interval="1d", auto_adjust=False, progress=False, threads=False)
    except Exception as error:  # network failures arrive as many types (requests, curl_cffi, rate limits)
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise HPOError(f"cannot download {symbol} from Yahoo Finance ({first_line}); check the network") from None
    if table is None or table.empty:
        raise HPOError(f"Yahoo Finance returned no bars for {symbol} (no network, or an unknown ticker)")
    if isinstance(table.columns, pd.MultiIndex):  # newer yfinance: (field, ticker) columns
        table.columns = table.columns.get_level_values(0)
    _clean(table, f"yfinance {symbol}")  # never cache a download we could not use
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        table.to_parquet(tmp)
        os.replace(tmp, path)
    except OSError as error:
        raise HPOError(f"cannot write the yfinance cache {path}: {error.strerror}") from None


def _from_yfinance(symbols: list[str] | None, cache_dir: Path | None) -> LoadedBars:
    if not symbols:
        raise HPOError("--data yfinance needs the symbols to download (--symbols AAPL MSFT, or symbols: in the scenario)")
    folder = Path(cache_dir) if cache_dir else default_cache_dir()
    if folder.exists() and not folder.is_dir():
        raise HPOError(f"yfinance cache {folder} is a file, not a folder")
    loaded = LoadedBars({})
    for symbol in (s.upper() for s in symbols):
        if not _TICKER.match(symbol):
            raise HPOError(f"{symbol!r} is not a ticker Yahoo Finance knows (letters, digits, . ^ = - _)")
        path = folder / f"{symbol}.parquet"
        if not path.is_file():
            log.info("downloading %s from Yahoo Finance into %s", symbol, folder)
            _download(symbol, path)
        frame, notes = _clean(_read_table(path), str(path))
        loaded.frames[symbol], loaded.repairs[symbol] = frame, notes
    return loaded


# --- the entry points -----------------------------------------------------------------------------


def available_symbols(source: str, *, cache_dir: Path | None = None) -> tuple[str, ...]:
    if source == "sample":
        return SAMPLE_SYMBOLS
    if source == "synthetic":
        return SYNTHETIC_SYMBOLS
    if source.startswith(synthetic.PREFIX):
        return synthetic.SYMBOLS
    if source == YFINANCE:
        folder = Path(cache_dir) if cache_dir else default_cache_dir()
        return tuple(sorted(p.name.removesuffix(".parquet") for p in folder.glob("*.parquet"))) if folder.is_dir() else ()
    return tuple(_from_path(Path(source)).frames)


def _pool_frequencies(loaded: LoadedBars, resample: str | None) -> LoadedBars:
    """Refuse to pool bars of different frequencies; with ``resample`` aggregate them all to it."""
    frequencies = {s: bar_frequency(f.index) for s, f in loaded.frames.items()}
    if resample is None:
        labels = {f.label for f in frequencies.values() if f.interval is not None}
        if len(labels) > 1:
            listing = ", ".join(f"{s} {f.label}" for s, f in frequencies.items() if f.interval is not None)
            raise HPOError(f"symbols have different bar frequencies ({listing}); set data.resample "
                           "(e.g. '1D') to aggregate them to one")
        return loaded
    target = pd.Timedelta(resample)
    for symbol, frame in loaded.frames.items():
        frequency = frequencies[symbol]
        if frequency.interval is not None and frequency.interval > target:
            raise HPOError(f"symbol {symbol}: cannot resample {frequency.label} bars to {resample} "
                           "(data.resample must be at least as coarse as every symbol's bars)")
        resampled = resample_bars(frame, resample)
        if len(resampled) != len(frame):
            loaded.repairs.setdefault(symbol, []).append(
                f"resampled from {frequency.label} bars to {resample}: {len(frame)} -> {len(resampled)} bars"
            )
        loaded.frames[symbol] = resampled
    return loaded


def load_bars(
    source: str,
    symbols: list[str] | None = None,
    *,
    start: dt.date | None = None,
    end: dt.date | None = None,
    resample: str | None = None,
    cache_dir: Path | None = None,
) -> LoadedBars:
    """Load, validate, check frequencies (or resample) and date-filter; repairs are returned."""
    if source == "sample":
        loaded = LoadedBars({s: validate_ohlcv(importlib.import_module(f"arch.data.{s.lower()}").load(), f"bundled {s}")
                             for s in SAMPLE_SYMBOLS})  # arch.data.sp500, arch.data.nasdaq
    elif source == "synthetic":
        loaded = LoadedBars({s: synthetic_frame(s) for s in SYNTHETIC_SYMBOLS})
    elif source.startswith(synthetic.PREFIX):  # a planted edge of known strength (synthetic.py)
        loaded = LoadedBars(synthetic.edge_frames(source))
    elif source == YFINANCE:
        loaded = _from_yfinance(symbols, cache_dir)
    else:
        loaded = _from_path(Path(source))
    if symbols:
        wanted = list(dict.fromkeys(s.upper() for s in symbols))
        unknown = [s for s in wanted if s not in loaded.frames]
        if unknown:
            raise HPOError(f"symbol {unknown[0]} is not in data source {source!r}; it has: {', '.join(loaded.frames)}")
        loaded = LoadedBars({s: loaded.frames[s] for s in wanted}, {s: loaded.repairs.get(s, []) for s in wanted})
    loaded = _pool_frequencies(loaded, resample)
    if start or end:
        lo = pd.Timestamp(start) if start else pd.Timestamp.min
        # The whole end day: intraday bars on the end date are inside the range.
        hi = pd.Timestamp(end) + pd.Timedelta(days=1) if end else pd.Timestamp.max
        for symbol, frame in loaded.frames.items():
            keep = (frame.index >= lo) & (frame.index < hi)
            if not keep.any():
                raise HPOError(f"symbol {symbol} has no bars from {start or 'its start'} to {end or 'its end'}; "
                               f"its data runs from {format_time(frame.index[0])} to {format_time(frame.index[-1])}")
            loaded.frames[symbol] = frame[keep]
    return loaded


def load_frames(source: str, symbols: list[str] | None = None, **options: Any) -> dict[str, pd.DataFrame]:
    """``load_bars``'s frames (``options``: start, end, resample, cache_dir), its repairs logged as one note per symbol."""
    return _logged(load_bars(source, symbols, **options))


def _logged(loaded: LoadedBars) -> dict[str, pd.DataFrame]:
    for symbol, notes in loaded.repairs.items():
        for note in notes:
            log.warning("note: %s: %s", symbol, note)
    return loaded.frames


def load_configured(cfg: DataConfig, symbols: list[str] | None) -> LoadedBars:
    """The bars a data configuration names, with every one of its data settings applied.

    Every path that loads bars for a config (windows, retrain, predict, plan, the ``data``
    command) comes through here, so a setting added to DataConfig reaches all of them at once.
    """
    return load_bars(cfg.source, symbols, start=cfg.start, end=cfg.end, resample=cfg.resample, cache_dir=cfg.cache_dir)


def configured_frames(cfg: DataConfig, symbols: list[str] | None) -> dict[str, pd.DataFrame]:
    """``load_configured``'s frames, its repairs logged as one note per symbol."""
    return _logged(load_configured(cfg, symbols))


def resolve_symbols(source: str, symbols: list[str] | None, *, explicit: bool) -> tuple[list[str] | None, str | None]:
    """Symbols to load, plus a one-line notice when a scenario's list was swapped for the source's.

    The guide's scenarios name tickers (AAPL, ...) that the offline sources do not carry: a
    scenario's list falls back to what the source has, while an explicit ``--symbols`` must exist.
    """
    if not symbols or explicit or not (source in ("sample", "synthetic") or source.startswith(synthetic.PREFIX)):
        return symbols, None
    have = available_symbols(source)
    if all(s.upper() in have for s in symbols):
        return symbols, None
    notice = (
        f"the scenario's symbols ({', '.join(symbols)}) are not in the {source} data; "
        f"using {', '.join(have)} instead (pass --data PATH for your own files)"
    )
    return None, notice
