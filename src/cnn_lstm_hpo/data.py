"""Data sources -> one clean OHLCV frame per symbol (DatetimeIndex, open/high/low/close/volume).

Sources: ``sample`` (real S&P 500 and NASDAQ Composite daily bars shipped by the ``arch``
package, offline), ``synthetic`` (deterministic, with a learnable momentum signal), or a path
(a folder of per-symbol CSV/Parquet files, or one long-format file with a symbol column).
Every problem with a file is an HPOError naming the file, column and row.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import HPOError

COLUMNS = ("open", "high", "low", "close", "volume")
SAMPLE_SYMBOLS = ("SP500", "NASDAQ")
SYNTHETIC_SYMBOLS = ("SYN_A", "SYN_B")
_DATE_NAMES = ("date", "datetime", "timestamp", "time")
_FILE_SUFFIXES = (".csv", ".parquet", ".pq")


def _bundled(symbol: str) -> pd.DataFrame:
    if symbol == "SP500":
        from arch.data import sp500 as module
    else:
        from arch.data import nasdaq as module
    return module.load()


def synthetic_frame(symbol: str, n_bars: int = 1500, *, momentum: float = 0.5, seed: int = 0) -> pd.DataFrame:
    """Daily bars whose log return follows an AR(1): the sign of today's return predicts tomorrow's."""
    rng = np.random.default_rng(seed + sum(map(ord, symbol)))
    noise = rng.normal(0.0, 0.01, n_bars)
    returns = np.empty(n_bars)
    returns[0] = noise[0]
    for t in range(1, n_bars):
        returns[t] = momentum * returns[t - 1] + noise[t]
    close = 100.0 * np.exp(np.cumsum(returns))
    open_ = np.concatenate([[100.0], close[:-1]])
    spread = np.abs(rng.normal(0.0, 0.004, n_bars)) * close
    frame = pd.DataFrame(
        {
            "open": open_,
            "high": np.maximum(open_, close) + spread,
            "low": np.minimum(open_, close) - spread,
            "close": close,
            "volume": rng.integers(1_000_000, 5_000_000, n_bars).astype(float),
        },
        index=pd.bdate_range("2010-01-04", periods=n_bars, name="date"),
    )
    return frame


def _normalise_columns(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    frame = frame.rename(columns=lambda c: str(c).strip().lower().replace(" ", "_"))
    # Prefer adjusted prices where a file carries an adjusted close (splits and dividends): scale
    # open/high/low by the same factor so every price of a bar is on one basis.
    if "adj_close" in frame.columns and "close" in frame.columns:
        factor = pd.to_numeric(frame["adj_close"], errors="coerce") / pd.to_numeric(frame["close"], errors="coerce")
        for column in ("open", "high", "low"):
            if column in frame.columns:
                frame[column] = pd.to_numeric(frame[column], errors="coerce") * factor
        frame = frame.drop(columns=["close"]).rename(columns={"adj_close": "close"})
    elif "adj_close" in frame.columns:
        frame = frame.rename(columns={"adj_close": "close"})
    date_col = next((c for c in _DATE_NAMES if c in frame.columns), None)
    if date_col is not None:
        frame = frame.set_index(date_col)
    elif not isinstance(frame.index, pd.DatetimeIndex):
        if str(frame.index.name).lower() not in _DATE_NAMES:
            raise HPOError(f"{source}: no date column (expected one of {', '.join(_DATE_NAMES)})")
    try:
        # utc=True: vendors write offsets that change across daylight saving (-05:00 / -04:00).
        index = pd.to_datetime(frame.index, utc=True).tz_convert(None)
    except (ValueError, TypeError) as error:
        raise HPOError(f"{source}: column date: cannot parse dates ({error})") from None
    if index.isna().any():
        raise HPOError(f"{source}: column date: empty date in data row {int(index.isna().argmax()) + 1}")
    frame.index = index.rename("date")
    return frame


def validate_ohlcv(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """Checked, typed OHLCV; the first problem found is raised with its column and row."""
    frame = _normalise_columns(frame, source)
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise HPOError(f"{source}: missing column {missing[0]!r} (have: {', '.join(map(str, frame.columns))})")
    frame = frame[list(COLUMNS)]
    for column in COLUMNS:
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = values.isna() & frame[column].notna()
        if bad.any():
            row = frame.index[bad.argmax()]
            raise HPOError(f"{source}: column {column!r} row {row:%Y-%m-%d}: not a number ({frame[column][bad].iloc[0]!r})")
        if values.isna().any():
            row = frame.index[values.isna().argmax()]
            raise HPOError(f"{source}: column {column!r} row {row:%Y-%m-%d}: missing value (NaN)")
        frame = frame.assign(**{column: values.astype(float)})
    if frame.index.has_duplicates:
        row = frame.index[frame.index.duplicated()][0]
        raise HPOError(f"{source}: duplicate date {row:%Y-%m-%d}")
    frame = frame.sort_index()
    bad_range = frame["high"] < frame["low"]
    if bad_range.any():
        raise HPOError(f"{source}: row {frame.index[bad_range.argmax()]:%Y-%m-%d}: high < low")
    non_positive = (frame[["open", "high", "low", "close"]] <= 0).any(axis=1)
    if non_positive.any():
        raise HPOError(f"{source}: row {frame.index[non_positive.argmax()]:%Y-%m-%d}: prices must be > 0")
    return frame


def _read_table(path: Path) -> pd.DataFrame:
    try:
        if path.suffix.lower() == ".csv":
            return pd.read_csv(path)
        return pd.read_parquet(path)
    except Exception as error:  # pandas/pyarrow raise many types for a malformed file
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise HPOError(f"{path}: cannot read file ({first_line})") from None


def _from_path(path: Path) -> dict[str, pd.DataFrame]:
    if not path.exists():
        raise HPOError(f"data path not found: {path}")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in _FILE_SUFFIXES)
        if not files:
            raise HPOError(f"{path}: no .csv or .parquet files")
        stems = [p.stem.upper() for p in files]
        clash = next((s for s in stems if stems.count(s) > 1), None)
        if clash:
            raise HPOError(f"{path}: more than one file for symbol {clash}")
        return {p.stem.upper(): validate_ohlcv(_read_table(p), str(p)) for p in files}
    table = _read_table(path)
    table.columns = [str(c).strip().lower() for c in table.columns]
    if "symbol" not in table.columns:
        # One file without a symbol column is one symbol, named after the file.
        return {path.stem.upper(): validate_ohlcv(table, str(path))}
    if table.empty:
        raise HPOError(f"{path}: no rows")
    return {
        str(symbol).upper(): validate_ohlcv(group.drop(columns="symbol"), f"{path} symbol {symbol}")
        for symbol, group in table.groupby("symbol", sort=True)
    }


def available_symbols(source: str) -> tuple[str, ...]:
    if source == "sample":
        return SAMPLE_SYMBOLS
    if source == "synthetic":
        return SYNTHETIC_SYMBOLS
    return tuple(_from_path(Path(source)))


def load_frames(
    source: str,
    symbols: list[str] | None = None,
    *,
    start: dt.date | None = None,
    end: dt.date | None = None,
) -> dict[str, pd.DataFrame]:
    """Load, validate and date-filter the requested symbols (all of the source's when None)."""
    if source == "sample":
        frames = {s: validate_ohlcv(_bundled(s), f"bundled {s}") for s in SAMPLE_SYMBOLS}
    elif source == "synthetic":
        frames = {s: synthetic_frame(s) for s in SYNTHETIC_SYMBOLS}
    else:
        frames = _from_path(Path(source))
    if symbols:
        wanted = [s.upper() for s in symbols]
        unknown = [s for s in wanted if s not in frames]
        if unknown:
            raise HPOError(
                f"symbol {unknown[0]} is not in data source {source!r}; it has: {', '.join(frames)}"
            )
        frames = {s: frames[s] for s in wanted}
    if start or end:
        lo = pd.Timestamp(start) if start else None
        hi = pd.Timestamp(end) if end else None
        frames = {s: f.loc[lo:hi] for s, f in frames.items()}
    return frames


def resolve_symbols(source: str, symbols: list[str] | None, *, explicit: bool) -> tuple[list[str] | None, str | None]:
    """Symbols to load, plus a one-line notice when a scenario's list was swapped for the source's.

    The guide's scenarios name tickers (AAPL, ...) that the offline sources do not carry: a
    scenario's list falls back to what the source has, while an explicit ``--symbols`` must exist.
    """
    if not symbols or explicit or source not in ("sample", "synthetic"):
        return symbols, None
    have = available_symbols(source)
    if all(s.upper() in have for s in symbols):
        return symbols, None
    notice = (
        f"the scenario's symbols ({', '.join(symbols)}) are not in the {source} data; "
        f"using {', '.join(have)} instead (pass --data PATH for your own files)"
    )
    return None, notice
