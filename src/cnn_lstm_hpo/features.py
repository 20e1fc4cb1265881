"""Per-bar features from TA-Lib indicators and forward-looking targets.

Every feature at bar t uses bars <= t only (TA-Lib indicators are trailing); the targets at bar
t look ``horizon`` bars ahead, which is why windows.py keeps every label inside its own split.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import talib

from .errors import HPOError

FEATURE_NAMES = (
    "log_return_1",
    "log_return_5",
    "rsi_14",
    "macd_hist",
    "atr_14",
    "bollinger_pct_b",
    "adx_14",
    "stoch_k",
    "high_low_range",
    "volume_ratio",
)


def compute_features(frame: pd.DataFrame) -> pd.DataFrame:
    """(n_bars, n_features), NaN during each indicator's warm-up at the start of the series."""
    h, low, c, v = (frame[col].to_numpy(dtype=np.float64) for col in ("high", "low", "close", "volume"))
    _, _, macd_hist = talib.MACD(c, fastperiod=12, slowperiod=26, signalperiod=9)
    upper, _, lower = talib.BBANDS(c, timeperiod=20)
    stoch_k, _ = talib.STOCH(h, low, c)
    log_volume = np.log1p(v)
    features = {
        "log_return_1": np.log(talib.ROCR(c, timeperiod=1)),
        "log_return_5": np.log(talib.ROCR(c, timeperiod=5)),
        "rsi_14": talib.RSI(c, timeperiod=14) / 100.0 - 0.5,
        "macd_hist": macd_hist / c,
        "atr_14": talib.ATR(h, low, c, timeperiod=14) / c,
        "bollinger_pct_b": (c - lower) / np.where(upper > lower, upper - lower, np.nan),
        "adx_14": talib.ADX(h, low, c, timeperiod=14) / 100.0,
        "stoch_k": stoch_k / 100.0 - 0.5,
        "high_low_range": (h - low) / c,
        "volume_ratio": log_volume - talib.SMA(log_volume, timeperiod=20),
    }
    return pd.DataFrame(features, index=frame.index, columns=list(FEATURE_NAMES))


def valid_features(symbol: str, frame: pd.DataFrame, warmup: int = 0) -> tuple[np.ndarray, int]:
    """compute_features as an array, and its first row that is finite and past ``warmup`` rows.
    Indicators are NaN only during their warm-up; anything later means bad input data."""
    features = compute_features(frame).to_numpy()
    finite = np.isfinite(features).all(axis=1)
    finite[:warmup] = False
    first_valid = int(np.argmax(finite)) if finite.any() else len(finite)
    if not finite[first_valid:].all():
        bad = frame.index[first_valid + int(np.argmin(finite[first_valid:]))]
        raise HPOError(f"symbol {symbol}: indicators are not finite at {bad:%Y-%m-%d} (check the bars there)")
    return features, first_valid


def forward_returns(frame: pd.DataFrame, horizon: int) -> np.ndarray:
    """log(close[t + horizon] / close[t]); NaN for the last ``horizon`` bars."""
    log_close = np.log(frame["close"].to_numpy(dtype=np.float64))
    out = np.full(len(log_close), np.nan)
    out[:-horizon] = log_close[horizon:] - log_close[:-horizon]
    return out


def direction_classes(returns: np.ndarray, num_classes: int, threshold: float) -> np.ndarray:
    """2 classes: 0 = down/flat, 1 = up (return > threshold). 3 classes: 0 down, 1 flat, 2 up."""
    if num_classes == 2:
        return (returns > threshold).astype(np.int64)
    classes = np.ones(len(returns), dtype=np.int64)
    classes[returns > threshold] = 2
    classes[returns < -threshold] = 0
    return classes
