"""The study's sampler: Optuna's own (``sampler.type``), seeded; TPE with a per-trial cache."""

from __future__ import annotations

from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial

from .config import SamplerConfig


def make_sampler(cfg: SamplerConfig, seed: int, *, shared: bool = True) -> optuna.samplers.BaseSampler:
    """``shared``: other processes may run trials of the study at the same time (journal, database)."""
    if cfg.type == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=cfg.n_startup_trials)
    if cfg.type == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=cfg.population_size)
    if cfg.type == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    # Constant liar: concurrent workers must not all propose the same point. Alone it changes no
    # decision (there is no other running trial) but rereads every trial at each sample (Optuna's
    # per-trial cache is off with it): with one-by-one sampling 12 reads a trial, 0.2 s at 100 trials.
    return CachedTPESampler(
        seed=seed, n_startup_trials=cfg.n_startup_trials, constant_liar=shared, multivariate=cfg.multivariate
    )


def pruning_caveat(cfg: SamplerConfig, pruning_enabled: bool) -> str | None:
    """Why GP or NSGA-II may sample at random for most of a pruned study, or None: both learn from
    completed trials only (Optuna's), and pruning ends most trials early. TPE models from its
    start-up trials on; pruned trials enter it, but all scored alike (no ``Trial.report`` with
    several objectives), so it learns only that they are worse than complete ones (README,
    "Samplers"). In the replay, 30 of 478 trials completed in 2 hours, so NSGA-II (50 a generation)
    drew exactly what random search drew (docs/benchmarks.md)."""
    if not pruning_enabled:
        return None
    if cfg.type == "nsga2":
        return (f"sampler.type nsga2 breeds only from completed trials ({cfg.population_size} a generation) and "
                f"pruning ends most trials early: it samples at random until {cfg.population_size} trials complete; "
                "use sampler.type tpe, a smaller population_size, or pruning.enabled: false")
    if cfg.type == "gp":
        return (f"sampler.type gp fits completed trials only and pruning ends most trials early: it samples at "
                f"random until {cfg.n_startup_trials} trials complete and learns nothing from pruned ones; "
                "use sampler.type tpe or pruning.enabled: false")
    return None


def startup_trials(cfg: SamplerConfig) -> int:
    """Trials the sampler draws at random before its model takes over."""
    return {"tpe": cfg.n_startup_trials, "gp": cfg.n_startup_trials, "nsga2": cfg.population_size}.get(cfg.type, 0)


class CachedTPESampler(optuna.samplers.TPESampler):
    """Optuna's TPE, drawing the same points, with each finished trial's parameters converted once.

    Optuna converts every trial's parameters to its internal floats again at every sample, in
    Python: about 5 of the 39 ms a sample takes by 1000 trials (12 parameters, timed without a
    profiler). A finished trial's parameters never change, so their conversion is kept, per search
    space.
    tests/test_samplers.py checks the draws against Optuna's own TPE.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # (search space items) -> trial id -> internal values in the space's order, or None when
        # the trial lacks one of the space's parameters (Optuna then leaves it out).
        self._converted: dict[tuple, dict[int, tuple[float, ...] | None]] = {}

    def _get_internal_repr(
        self, trials: list[FrozenTrial], search_space: dict[str, BaseDistribution], study: optuna.Study
    ) -> dict[str, np.ndarray]:
        space = tuple(search_space.items())
        cache = self._converted.setdefault(space, {})
        rows = []
        for trial in trials:
            row = cache.get(trial._trial_id, False) if trial.state.is_finished() else False
            if row is False:
                params = self._get_params(trial, study)
                row = None
                if search_space.keys() <= params.keys():
                    row = tuple(dist.to_internal_repr(params[name]) for name, dist in space)
                if trial.state.is_finished():
                    cache[trial._trial_id] = row
            if row is not None:
                rows.append(row)
        columns = list(zip(*rows)) if rows else [() for _ in space]
        return {name: np.asarray(column) for (name, _), column in zip(space, columns)}
