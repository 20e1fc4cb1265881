"""Trading evaluation of class predictions, and the Probabilistic and Deflated Sharpe Ratios.

Positions from the predicted class: up -> +1, down -> -1 (0 with ``long_flat``), flat -> 0 (3
classes; with 2 classes class 0 is "down or flat" and counts as down). The position at decision
bar t earns the window's forward return (the label's ``horizon``-bar log return, as a simple
return) and pays ``cost_bps`` basis points per unit of turnover |pos_t - pos_prev| of the same
symbol (the first position of a symbol counts as turnover from flat). For horizon h > 1 the
windows' returns overlap; the per-bar return is the h-bar return / h (the book of h staggered
positions), an approximation that is exact for h = 1. Returns are computed per symbol, then
averaged across the symbols trading on each date (an equal-weight book).

Return statistics are these few textbook formulas, written here rather than taken from a library:
empyrical-reloaded 0.7.1 (the maintained fork) pins peewee < 3.17.4, an ORM this project has no
use for, and quantstats pulls in plotting and web dependencies; tests check each formula against
values computed by hand.

PSR and DSR follow Bailey and Lopez de Prado (2014), "The Deflated Sharpe Ratio": Sharpe ratios
per period (not annualized), kurtosis non-excess (3 for a normal distribution).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy.stats import kurtosis as _kurtosis
from scipy.stats import norm
from scipy.stats import skew as _skew

DEFAULT_PERIODS_PER_YEAR = 252.0


def positions(pred_class: np.ndarray, num_classes: int, mode: str = "long_short") -> np.ndarray:
    up = num_classes - 1
    down = -1.0 if mode == "long_short" else 0.0
    pos = np.where(pred_class == up, 1.0, 0.0)
    return np.where(pred_class == 0, down, pos)


def periods_per_year(dates: list[pd.Timestamp] | pd.DatetimeIndex) -> float:
    """Distinct bar times per year of the span they cover (about 252 for daily bars)."""
    unique = pd.DatetimeIndex(dates).unique().sort_values()
    if len(unique) < 2:
        return DEFAULT_PERIODS_PER_YEAR
    years = (unique[-1] - unique[0]).total_seconds() / (365.25 * 86400)
    return (len(unique) - 1) / years if years > 0 else DEFAULT_PERIODS_PER_YEAR


def book_returns(
    pos: np.ndarray, forward_log_returns: np.ndarray, symbols: list[str], dates: list[pd.Timestamp],
    *, horizon: int = 1, cost_bps: float = 5.0,
) -> pd.Series:
    """Per-date net return of the equal-weight book of every symbol's position (see the module doc)."""
    n = len(pos)
    frame = pd.DataFrame({
        "symbol": symbols if symbols else ["all"] * n, "date": dates if dates else pd.RangeIndex(n),
        "pos": pos.astype(np.float64), "ret": np.expm1(forward_log_returns.astype(np.float64)) / horizon,
    })
    previous = frame.groupby("symbol", sort=False)["pos"].shift(1).fillna(0.0)
    frame["turnover"] = (frame["pos"] - previous).abs()
    frame["net"] = frame["pos"] * frame["ret"] - cost_bps / 1e4 * frame["turnover"]
    return frame.groupby("date", sort=True)["net"].mean()


# --- return statistics ---------------------------------------------------------------------------
def sharpe(returns: np.ndarray) -> float:
    """Per-period Sharpe ratio: mean / sample standard deviation (ddof 1); 0 for a flat series."""
    r = np.asarray(returns, dtype=np.float64)
    if len(r) < 2:
        return 0.0
    sd = r.std(ddof=1)
    return float(r.mean() / sd) if sd > 0 else 0.0


def sortino(returns: np.ndarray) -> float:
    """Per-period Sortino ratio: mean / downside deviation sqrt(mean(min(r, 0)^2)) (target 0)."""
    r = np.asarray(returns, dtype=np.float64)
    if len(r) < 2:
        return 0.0
    downside = math.sqrt(np.mean(np.minimum(r, 0.0) ** 2))
    return float(r.mean() / downside) if downside > 0 else 0.0


def max_drawdown(returns: np.ndarray) -> float:
    """Largest peak-to-trough fall of the compounded equity curve (starting at 1), as a negative fraction."""
    equity = np.concatenate([[1.0], np.cumprod(1.0 + np.asarray(returns, dtype=np.float64))])
    return float(np.min(equity / np.maximum.accumulate(equity) - 1.0))


@dataclass(frozen=True)
class TradingStats:
    n_periods: int
    periods_per_year: float
    sharpe: float  # annualized
    sortino: float  # annualized
    sharpe_per_period: float
    skew: float
    kurtosis: float  # non-excess
    max_drawdown: float
    total_return: float
    turnover: float  # mean |position change| per symbol-bar
    hit_rate: float  # share of bars with a position whose gross return was positive

    def to_dict(self) -> dict[str, float]:
        return {k: (float(v) if v is not None and math.isfinite(v) else None) for k, v in asdict(self).items()}


def return_stats(returns: np.ndarray, ppy: float, *, turnover: float = 0.0, hit_rate: float = float("nan")) -> TradingStats:
    r = np.asarray(returns, dtype=np.float64)
    sr = sharpe(r)
    flat = len(r) < 3 or r.std() == 0
    return TradingStats(
        n_periods=len(r), periods_per_year=ppy, sharpe=sr * math.sqrt(ppy), sortino=sortino(r) * math.sqrt(ppy),
        sharpe_per_period=sr, skew=0.0 if flat else float(_skew(r)),
        kurtosis=3.0 if flat else float(_kurtosis(r, fisher=False)), max_drawdown=max_drawdown(r),
        total_return=float(np.prod(1.0 + r) - 1.0), turnover=turnover, hit_rate=hit_rate,
    )


def evaluate_trading(
    pred_class: np.ndarray, forward_log_returns: np.ndarray, symbols: list[str], dates: list[pd.Timestamp],
    *, num_classes: int, mode: str = "long_short", cost_bps: float = 5.0, horizon: int = 1,
) -> dict:
    """The strategy and buy-and-hold on the same dates: stats and per-date net returns."""
    pos = positions(pred_class, num_classes, mode)
    strategy = book_returns(pos, forward_log_returns, symbols, dates, horizon=horizon, cost_bps=cost_bps)
    # Buy-and-hold: always long every symbol, no costs (a position held throughout), on the same dates.
    hold = book_returns(np.ones(len(forward_log_returns)), forward_log_returns, symbols, dates, horizon=horizon,
                        cost_bps=0.0)
    ppy = periods_per_year(list(strategy.index)) if dates else DEFAULT_PERIODS_PER_YEAR
    previous = pd.Series(pos).groupby(np.asarray(symbols) if symbols else np.zeros(len(pos))).shift(1).fillna(0.0)
    turnover = float(np.mean(np.abs(pos - previous.to_numpy()))) if len(pos) else 0.0
    active = pos != 0
    hit = float(np.mean(pos[active] * forward_log_returns[active] > 0)) if active.any() else float("nan")
    return {
        "positions": mode,
        "cost_bps": cost_bps,
        "strategy": return_stats(strategy.to_numpy(), ppy, turnover=turnover, hit_rate=hit).to_dict(),
        "buy_and_hold": return_stats(hold.to_numpy(), ppy, turnover=0.0,
                                     hit_rate=float(np.mean(forward_log_returns > 0)) if len(pos) else float("nan")).to_dict(),
        "returns": strategy.to_numpy(),
        "buy_and_hold_returns": hold.to_numpy(),
        "dates": list(strategy.index),
    }


# --- Probabilistic and Deflated Sharpe Ratio -----------------------------------------------------
def probabilistic_sharpe(sr: float, benchmark: float, n_obs: int, skew: float, kurtosis: float) -> float:
    """PSR(SR*) = Phi((SR - SR*) sqrt(T - 1) / sqrt(1 - skew SR + (kurtosis - 1) / 4 SR^2)), per-period SRs."""
    if n_obs < 2:
        return float("nan")
    denom = 1.0 - skew * sr + (kurtosis - 1.0) / 4.0 * sr**2
    if denom <= 0:
        return float("nan")
    return float(norm.cdf((sr - benchmark) * math.sqrt(n_obs - 1) / math.sqrt(denom)))


def expected_max_sharpe(n_trials: int, variance: float) -> float:
    """E[max SR] of ``n_trials`` independent trials with true SR 0 and this variance of SR estimates:
    sqrt(V) ((1 - gamma) Phi^-1(1 - 1/N) + gamma Phi^-1(1 - 1/(N e))), gamma Euler-Mascheroni."""
    if n_trials < 2 or variance <= 0:
        return 0.0
    g = np.euler_gamma
    return float(math.sqrt(variance) * ((1 - g) * norm.ppf(1 - 1 / n_trials) + g * norm.ppf(1 - 1 / (n_trials * math.e))))


def deflated_sharpe(sr: float, n_obs: int, skew: float, kurtosis: float, *, n_trials: int, trial_sr_variance: float) -> dict:
    """DSR = PSR(SR0), SR0 the expected maximum Sharpe of the trials under no skill."""
    sr0 = expected_max_sharpe(n_trials, trial_sr_variance)
    return {
        "dsr": probabilistic_sharpe(sr, sr0, n_obs, skew, kurtosis),
        "psr_vs_zero": probabilistic_sharpe(sr, 0.0, n_obs, skew, kurtosis),
        "expected_max_sharpe_per_period": sr0,
        "n_trials": n_trials,
        "trial_sharpe_variance_per_period": trial_sr_variance,
        "trials_counted": "every completed trial of the study counted as independent (N = completed trials); "
        "correlated trials make the effective N smaller, so this overstates the expected maximum and "
        "understates the DSR: conservative",
    }
