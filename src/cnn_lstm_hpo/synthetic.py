"""A synthetic source with a planted direction edge of known strength: ``synthetic:edge=0.55``.

Returns r_t = s_t * m_t. The magnitudes m_t follow a GARCH(1, 1) (volatility clusters, as in real
daily returns); the signs s_t are drawn after them: s_{t+1} = s_t * g_t with probability ``edge``
(else -s_t * g_t), where g_t = +1 after a large move (m_t above c) and -1 after a small one (large
moves continue, small ones revert). Given the past, the next direction is therefore right with
probability exactly ``edge`` by the best rule, and with no rule better: ``edge`` is the
Bayes-optimal direction accuracy (0.5 = no signal). The cut c is the |r|-weighted median of the
magnitudes, which makes the next sign uncorrelated with today's return: no linear rule on the
last bar (the logistic-regression baseline) and no persistence rule sees the edge; a model must
learn the interaction of a move's sign and size.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .errors import HPOError

PREFIX = "synthetic:"
SYMBOLS = ("EDGE_A", "EDGE_B", "EDGE_C", "EDGE_D")
DEFAULTS = {"edge": 0.55, "seed": 0.0, "bars": 2500.0}
# GARCH(1, 1): omega, alpha, beta; unconditional daily volatility about 1 %.
GARCH = (2e-6, 0.08, 0.9)


def parse(source: str) -> dict[str, float]:
    """``synthetic:edge=0.55,seed=3,bars=2500`` -> its parameters (the rest at DEFAULTS)."""
    params = dict(DEFAULTS)
    for item in filter(None, source.removeprefix(PREFIX).split(",")):
        key, _, value = item.partition("=")
        if key not in DEFAULTS:
            raise HPOError(f"data source {source!r}: unknown parameter {key!r}; known: {', '.join(DEFAULTS)}")
        try:
            params[key] = float(value)
        except ValueError:
            raise HPOError(f"data source {source!r}: {key} must be a number, but got {value!r}") from None
    if not 0.5 <= params["edge"] < 1.0:
        raise HPOError(f"data source {source!r}: edge must be in [0.5, 1), but got {params['edge']}")
    if params["bars"] < 200:
        raise HPOError(f"data source {source!r}: bars must be at least 200, but got {params['bars']:g}")
    return params


def planted_returns(n: int, edge: float, rng: np.random.Generator) -> np.ndarray:
    omega, alpha, beta = GARCH
    z = np.abs(rng.standard_normal(n))
    magnitude = np.empty(n)
    variance = omega / (1 - alpha - beta)
    for t in range(n):
        magnitude[t] = np.sqrt(variance) * z[t]
        variance = omega + alpha * magnitude[t] ** 2 + beta * variance  # r^2 = m^2: the sign does not matter
    order = np.argsort(magnitude)
    weights = np.cumsum(magnitude[order])
    cut = magnitude[order][np.searchsorted(weights, weights[-1] / 2)]
    keep = rng.random(n) < edge
    signs = np.empty(n)
    signs[0] = 1.0
    for t in range(n - 1):
        g = 1.0 if magnitude[t] > cut else -1.0
        signs[t + 1] = signs[t] * g * (1.0 if keep[t + 1] else -1.0)
    return signs * magnitude


def edge_frames(source: str) -> dict[str, pd.DataFrame]:
    p = parse(source)
    n = int(p["bars"])
    frames = {}
    for i, symbol in enumerate(SYMBOLS):
        rng = np.random.default_rng([int(p["seed"]), i])
        returns = planted_returns(n, p["edge"], rng)
        close = 100.0 * np.exp(np.cumsum(returns))
        open_ = np.concatenate([[100.0], close[:-1]])
        spread = np.abs(rng.normal(0.0, 0.3, n)) * np.abs(returns) * close + 1e-4 * close
        frames[symbol] = pd.DataFrame(
            {"open": open_, "high": np.maximum(open_, close) + spread, "low": np.minimum(open_, close) - spread,
             "close": close, "volume": rng.integers(1_000_000, 5_000_000, n).astype(float)},
            index=pd.bdate_range("2010-01-04", periods=n, name="date"),
        )
    return frames
