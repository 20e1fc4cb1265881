"""The label of each bar (``data.target``) and what the regression head learns beside it.

Every label at decision bar t takes its outcome from the closes of bars t+1..t+horizon only and its
threshold from the closes of bars up to t only. Reach, in closes:

- ``direction``: [t, t+h]. Class from the forward log return log(c[t+h]/c[t]) (2 classes: up if
  > direction_threshold; 3: down / flat / up); regression: that return.
- ``triple_barrier`` (Lopez de Prado, AFML ch. 3): [t - vol_window, t+h]. Barriers at
  +profit_take x sigma and -stop_loss x sigma of log(c[t+j]/c[t]), sigma the trailing volatility
  below; the vertical barrier at j = h. Class: the barrier touched first, 0 stop-loss, 2
  profit-take, 1 vertical (3 classes), or with 2 classes 1 when up (profit-take, or vertical with
  a positive return) else 0. Barriers are checked at closes, as in AFML; a close touches both
  only when sigma is 0 (both barriers at a zero return), and then the stop-loss wins
  (conservative). Regression: the log return at exit.
- ``volatility``: [t - vol_window, t+h]. Class 1 if the realized volatility of bars t+1..t+h
  exceeds the trailing volatility at t, else 0. Regression: log(future / trailing volatility),
  log realized volatility measured from its trailing level, so that the zero forecast is
  persistence and the regression score (1/(1 + MSE/MSE_zero)) keeps its meaning.

Volatility here is the sample standard deviation (ddof=1) of one-bar log returns; the trailing
level at t is over the ``vol_window`` returns ending at bar t (a fixed window rather than an EWM,
so a label's reach into the past is finite and testable).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from .features import direction_classes, forward_returns

# A flat stretch (stale quotes) has zero volatility: floored so that its log stays finite.
MIN_VOLATILITY = 1e-8


def log_closes(frame: pd.DataFrame) -> np.ndarray:
    return np.log(frame["close"].to_numpy(dtype=np.float64))


def trailing_volatility(log_close: np.ndarray, window: int) -> np.ndarray:
    """Std (ddof=1) of the ``window`` one-bar log returns ending at each bar t; NaN while fewer exist."""
    out = np.full(len(log_close), np.nan)
    if len(log_close) > window:
        # Each window on its own (not pandas' running sums, whose rounding carries a change to one
        # bar into every later value): a label depends on the bars of its window and no others.
        out[window:] = sliding_window_view(np.diff(log_close), window).std(axis=1, ddof=1)
    return out


def _future_paths(log_close: np.ndarray, horizon: int) -> np.ndarray:
    """(n, h): log(c[t+j]/c[t]) for j = 1..h; NaN past the series' end."""
    n = len(log_close)
    padded = np.concatenate([log_close, np.full(horizon, np.nan)])
    return np.stack([padded[j : j + n] - log_close for j in range(1, horizon + 1)], axis=1)


def triple_barrier(
    log_close: np.ndarray, horizon: int, sigma: np.ndarray, profit_take: float, stop_loss: float, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Classes and log returns at exit; the return is NaN where sigma or the path is undefined."""
    paths = _future_paths(log_close, horizon)
    upper, lower = (profit_take * sigma)[:, None], (-stop_loss * sigma)[:, None]
    down, up = paths <= lower, paths >= upper  # NaN compares False: no touch past the end
    touched = down | up
    hit = touched.any(axis=1)
    exit_step = np.where(hit, touched.argmax(axis=1), horizon - 1)
    rows = np.arange(len(log_close))
    exit_return = paths[rows, exit_step]
    first_down = down[rows, exit_step]  # checked first: on a tie the stop-loss wins
    if num_classes == 3:
        classes = np.where(~hit, 1, np.where(first_down, 0, 2))
    else:
        classes = np.where(hit, ~first_down, exit_return > 0)
    valid = np.isfinite(sigma) & np.isfinite(paths[:, -1])
    return classes.astype(np.int64), np.where(valid, exit_return, np.nan)


def volatility_regime(log_close: np.ndarray, horizon: int, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Classes (future volatility above the trailing level) and log(future / trailing volatility)."""
    trailing = trailing_volatility(log_close, window)
    paths = _future_paths(log_close, horizon)
    steps = np.diff(np.concatenate([np.zeros((len(paths), 1)), paths], axis=1), axis=1)  # returns of t+1..t+h
    future = steps.std(axis=1, ddof=1)
    classes = (future > trailing).astype(np.int64)
    ratio = np.log(np.maximum(future, MIN_VOLATILITY)) - np.log(np.maximum(trailing, MIN_VOLATILITY))
    return classes, ratio  # NaN (from NaN volatility) where undefined


def compute_targets(frame: pd.DataFrame, cfg) -> tuple[np.ndarray, np.ndarray]:
    """(classes, regression values) per bar of ``frame`` for ``cfg`` (a DataConfig). Values are NaN
    where the label is undefined: the last ``horizon`` bars, and for the volatility-scaled targets
    the first ``vol_window`` bars (no trailing level yet); classes there are meaningless."""
    log_close = log_closes(frame)
    if cfg.target == "triple_barrier":
        sigma = trailing_volatility(log_close, cfg.vol_window)
        return triple_barrier(log_close, cfg.horizon, sigma, cfg.profit_take, cfg.stop_loss, cfg.num_classes)
    if cfg.target == "volatility":
        return volatility_regime(log_close, cfg.horizon, cfg.vol_window)
    returns = forward_returns(frame, cfg.horizon)
    return direction_classes(returns, cfg.num_classes, cfg.direction_threshold), returns


def label_warmup(cfg) -> int:
    """Bars at a series' start without a label threshold yet."""
    return cfg.vol_window if cfg.target in ("triple_barrier", "volatility") else 0


def describe(cfg) -> str:
    """The target in words, for the summary and the report."""
    h = f"{cfg.horizon} bar(s) ahead"
    if cfg.target == "triple_barrier":
        vertical = "up/down/vertical" if cfg.num_classes == 3 else "up/down (vertical barrier by sign)"
        return (f"triple barrier, {vertical}: profit-take {cfg.profit_take:g} / stop-loss {cfg.stop_loss:g} x the "
                f"trailing {cfg.vol_window}-bar volatility, vertical barrier {h}; regression: log return at exit")
    if cfg.target == "volatility":
        return (f"volatility: realized volatility of the next {cfg.horizon} bars above the trailing {cfg.vol_window}-bar "
                "level; regression: log(future / trailing volatility)")
    return f"{cfg.num_classes}-class direction {h}; regression: the forward log return"
