"""The study's sampler: Optuna's own (``sampler.type``), seeded."""

from __future__ import annotations

import optuna

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
    return optuna.samplers.TPESampler(
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
