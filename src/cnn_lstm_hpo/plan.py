"""Before a study: how long it will take here, and how its trials will end.

A handful of configurations drawn from the scenario's space are timed on this machine and data (a
few training batches each, as the time-limit probe does), which scales the cost model fitted on the
shipped curve table to this machine. Then the scenario is replayed (cnn_lstm_hpo.replay): the real
sampler, pruner, limits and early stopping on the recorded curves, on a simulated clock. Several
replays, each with another seed and with the lowest, the median and the highest measured scale
(the extremes widened by half: see WIDEN), give the range.

Each configuration is timed REPEATS times and the fastest kept: what else runs on the machine only
ever slows a run down, so the minimum is the closest to the machine's own speed, and how far the
repeats differ says how sure the timing is.

The curves are of holdout trials. A walk-forward scenario is replayed fold by fold
(replay.ReplayOptimizer): its most recent fold replays the recorded curve, an older fold the curve
moved by FOLD_SPREAD and timed by its share of the training windows, so the fold rungs prune as
they would.
"""

from __future__ import annotations

import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import optuna
import torch
from optuna.trial import TrialState

from .config import OptimizationConfig
from .errors import HPOError
from .model import HybridCNNLSTM, ModelConfig, model_size_mb
from .results import epochs_trained, is_feasible
from .replay import CURVES, FOLD_SPREAD, CurveTable, load_rows, loaders_for, replay
from .space import suggest
from .distributed.storage import journal_url
from .train import PROBE_BATCHES, Trainer, resolve_device
from .windows import WindowedData, prepare_windows


# The timed configurations are a handful; the cost model misses others by up to 2-3x (small models
# of a space unlike the table's), and a shared machine's timing moves between runs. The lowest and
# highest ratios are widened by this factor for the range (a real smoke run fell 25 % below the
# lowest ratio with 5 timed configurations).
WIDEN = 1.5
WHOLE_EPOCHS_BELOW = 10.0  # seconds per epoch
REPEATS = 2
# Repeats further apart than this: the machine was busy while timing, and the plan says so.
STEADY = 1.3


class _Timed(Exception):
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds


def _epoch_seconds(config: OptimizationConfig, data: WindowedData, params: dict, model_cfg: ModelConfig) -> float:
    """One timing of an epoch of the configuration: a few batches, or two whole epochs of a small model."""
    device = resolve_device(config.training.device)
    trainer = Trainer(HybridCNNLSTM(model_cfg), data.train, data.val, params, config.training, device=device)

    def stop(train_seconds: float, batches: int) -> None:
        if batches >= PROBE_BATCHES:  # the first batch alone is mostly warm-up
            raise _Timed(train_seconds)

    try:
        seconds = trainer.fit(1, on_probe=stop).wall_seconds  # an epoch of a few batches: timed whole
    except _Timed as probe:
        # Validation is a forward pass only (about a third of a training step) over its windows.
        seconds = probe.seconds * (1 + len(data.val) / (3 * len(data.train)))
    if seconds < WHOLE_EPOCHS_BELOW:
        # A few batches of a small model are mostly one-off warm-up: time two whole epochs instead.
        again = Trainer(HybridCNNLSTM(model_cfg), data.train, data.val, params, config.training, device=device)
        seconds = again.fit(2).wall_seconds / 2
    return seconds


def time_configurations(config: OptimizationConfig, data: WindowedData, count: int,
                        progress: Callable[[str], None] | None = None) -> tuple[list[tuple[dict, float]], float]:
    """(params, epoch seconds) of ``count`` configurations of the space, each the fastest of REPEATS
    timings, and the largest ratio slowest / fastest repeat of any of them (1: steady)."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=config.seed))
    timed, spread = [], 1.0
    for i in range(1, count + 1):
        params = suggest(study.ask(), config.search_space)
        model_cfg = ModelConfig.from_params(params, n_features=data.n_features, num_classes=data.num_classes)
        with torch.device("meta"):
            size = model_size_mb(HybridCNNLSTM(model_cfg))
        if config.max_model_size_mb is not None and size > config.max_model_size_mb:
            if progress:
                progress(f"timing {i}/{count}: {size:.1f} MB model over max_model_size_mb, never trained")
            continue  # never trained: costs nothing
        repeats = [_epoch_seconds(config, data, params, model_cfg) for _ in range(REPEATS)]
        spread = max(spread, max(repeats) / min(repeats))
        timed.append((params, min(repeats)))
        if progress:
            progress(f"timing {i}/{count}: {size:.2f} MB model, {min(repeats):.2f} s per epoch "
                     f"(repeats {', '.join(f'{r:.2f}' for r in repeats)} s)")
    if not timed:
        raise HPOError("every timed configuration exceeds max_model_size_mb: nothing in the space can train")
    return timed, spread


@dataclass
class Outcome:
    hours: float
    trials: int
    complete: int
    pruned: int
    infeasible: int  # stopped by max_model_size_mb or max_training_time_minutes
    failed: int
    epochs: int
    feasible_complete: int = 0  # complete within every limit: what the front is made of
    pareto: int = 0  # feasible Pareto-optimal trials: the configurations the user gets to choose from


def outcome(study: optuna.Study, seconds: float) -> Outcome:
    trials = study.get_trials(deepcopy=False)
    # Stopped by a limit: the size or time constraint the trial recorded is violated.
    infeasible = sum(t.state == TrialState.PRUNED and not is_feasible(t) for t in trials)
    return Outcome(
        hours=seconds / 3600,
        trials=len(trials),
        complete=sum(t.state == TrialState.COMPLETE for t in trials),
        pruned=sum(t.state == TrialState.PRUNED for t in trials) - infeasible,
        infeasible=infeasible,
        failed=sum(t.state == TrialState.FAIL for t in trials),
        epochs=epochs_trained(trials),
        feasible_complete=sum(t.state == TrialState.COMPLETE and is_feasible(t) for t in trials),
        pareto=sum(is_feasible(t) for t in study.best_trials) if any(t.state == TrialState.COMPLETE for t in trials) else 0,
    )


# A recorded curve holds validation scores, not predictions: nothing to trade, so no Sharpe ratio.
SHARPE_NOTE = ("note: the recorded learning curves hold validation scores, not predictions: the replay stands "
               "the accuracy objective in for sharpe (times and trial outcomes hold; the Pareto size is accuracy's)")


def replayable(objectives: list[str]) -> list[str]:
    """The objectives a replay can score: ``sharpe`` becomes ``accuracy`` (once)."""
    return list(dict.fromkeys("accuracy" if o == "sharpe" else o for o in objectives))


def simulate(config: OptimizationConfig, data: WindowedData, scales: list[float], table_path: Path) -> list[Outcome]:
    """One replay of the scenario per scale (each with its own seed)."""
    rows = load_rows(table_path)
    loaders = loaders_for(data)
    outcomes = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, scale in enumerate(scales):
            table = CurveTable(rows, config.search_space, time_scale=scale)
            run = config.model_copy(update={
                "objectives": replayable(config.objectives),
                # A journal file: its framework cost per trial is a fraction of SQLite's (docs/benchmarks.md, P4).
                "seed": config.seed + i, "save_dir": Path(tmp) / str(i), "study_name": "plan",
                "storage": journal_url(Path(tmp) / str(i) / "study.journal"),
                "workers": 1,
            })
            study, seconds, _ = replay(run, table, loaders, fold_spread=FOLD_SPREAD)
            outcomes.append(outcome(study, seconds))
    return outcomes


@dataclass
class Plan:
    config: OptimizationConfig
    timed: list[tuple[dict, float]]  # (params, epoch seconds here)
    ratios: list[float]  # epoch seconds here / the cost model's, per timed configuration (sorted)
    outcomes: list[Outcome]  # one replay per scale: lowest, median, highest ratio
    table: str  # the file of learning curves replayed
    spread: float = 1.0  # slowest / fastest repeat of a timing, the worst over the configurations

    def span(self, field: str) -> tuple[float, float, float]:
        values = [getattr(o, field) for o in self.outcomes]
        return statistics.median(values), min(values), max(values)

    def lines(self) -> list[str]:
        config = self.config

        def show(field: str, fmt: str, factor: float = 1.0) -> str:
            mid, low, high = (v * factor for v in self.span(field))
            return f"{mid:{fmt}} [{low:{fmt}} - {high:{fmt}}]"

        epoch_times = sorted(s for _, s in self.timed)
        ratio = f"{statistics.median(self.ratios):.2f} [{self.ratios[0]:.2f} - {self.ratios[-1]:.2f}]"
        per = "fold" if config.evaluation.scheme == "walk_forward" else "trial"
        lines = [
            f"plan for scenario {config.scenario!r}: {config.n_trials} trials x up to {config.max_epochs_per_trial} "
            f"epochs, timeout {config.timeout_hours} h, time limit per {per} {config.max_training_time_minutes} min",
            f"  timed here: {len(self.timed)} configurations, {epoch_times[0]:.1f} - {epoch_times[-1]:.1f} s per epoch "
            f"({ratio} x the recorded table); {self.sureness()}",
            f"  expected wall time  {show('hours', '.1f', 60)} min of training (add about 15 s for start-up and "
            "the final analysis)",
            f"  trials finished     {show('trials', '.0f')}",
            f"    complete          {show('complete', '.0f')} ({show('feasible_complete', '.0f')} within every limit)",
            f"    pruned            {show('pruned', '.0f')}",
            f"    infeasible        {show('infeasible', '.0f')} (over max_model_size_mb or max_training_time_minutes)",
            f"    failed            {show('failed', '.0f')}",
            f"  epochs trained      {show('epochs', '.0f')}",
            f"  Pareto front        {show('pareto', '.0f')} configurations to choose from",
        ]
        lines += self.verdict()
        lines.append(
            f"  (ranges: one replay each with the lowest timing ratio / {WIDEN}, the median, and the highest x {WIDEN}, "
            f"each with another seed; learning curves from the shipped table {self.table}, "
            "extrapolated to unrecorded configurations)"
        )
        return lines

    def sureness(self) -> str:
        if self.spread <= STEADY:
            return f"each the fastest of {REPEATS} timings, which agreed within {100 * (self.spread - 1):.0f} %"
        return (f"each the fastest of {REPEATS} timings, which differed up to {self.spread:.1f}x: the machine was busy, "
                "so times may be too long; plan again when it is idle")

    def verdict(self) -> list[str]:
        """What the user gets, judged by the median replay: complete trials within the limits first."""
        config = self.config
        complete, trials, infeasible = (self.span(field)[0] for field in ("feasible_complete", "trials", "infeasible"))
        limit = config.max_training_time_minutes
        # A median configuration's full budget here, for the advice.
        full = statistics.median(s for _, s in self.timed) * config.max_epochs_per_trial / 60
        lines = []
        if complete < 1:
            lines.append(
                f"  does not fit: no trial is expected to complete within the limits, so the study will have no "
                f"Pareto front; {self._advice(full)}"
            )
        elif limit is not None and infeasible > trials / 2:
            lines.append(
                f"  mostly stopped: about {infeasible:.0f} of {trials:.0f} trials will be stopped by the per-trial "
                f"time limit (max_training_time_minutes {limit}); {self._advice(full)}"
            )
        cut = [o for o in self.outcomes if o.trials < config.n_trials]
        if cut:
            lines.append(
                f"  does not fit: timeout_hours {config.timeout_hours} ends {len(cut)} of {len(self.outcomes)} replays "
                f"after {min(o.trials for o in cut)} - {max(o.trials for o in cut)} trials; to fit, lower "
                "max_epochs_per_trial or max_training_time_minutes, narrow the search space, or raise timeout_hours"
            )
        if not lines:
            pareto, _, _ = self.span("pareto")
            lines.append(f"  fits: all {config.n_trials} trials within timeout_hours in every replay; expect about "
                         f"{complete:.0f} complete trials within the limits and a Pareto front of {pareto:.0f}")
        return lines

    def _advice(self, full_minutes: float) -> str:
        limit = self.config.max_training_time_minutes
        if limit is not None:
            return (f"a median configuration needs about {full_minutes:.2g} min for {self.config.max_epochs_per_trial} "
                    f"epochs here: raise max_training_time_minutes (now {limit}) above that, lower "
                    "max_epochs_per_trial, or narrow the search space to smaller models")
        return "lower max_epochs_per_trial, narrow the search space, or raise timeout_hours"


def table_for(config: OptimizationConfig) -> Path:
    """The curves recorded on the scenario's data (the bundled sample), else those on synthetic data."""
    path = CURVES / "sample.jsonl.gz"
    return path if config.data.source == "sample" and path.is_file() else CURVES / "synthetic.jsonl.gz"


def make_plan(config: OptimizationConfig, *, timed_configs: int = 5, table_path: Path | None = None,
              progress: Callable[[str], None] | None = None) -> Plan:
    """``progress`` gets a line per step (the symbol replacement note, each configuration timed)."""
    table_path = table_path or table_for(config)
    if config.torch_threads:  # time the configurations as the study will train them
        torch.set_num_threads(config.torch_threads)
    data, notice = prepare_windows(config.data, config.symbols, evaluation=config.evaluation)
    if notice and progress:
        progress(f"note: {notice}")
    if "sharpe" in config.objectives and progress:
        progress(SHARPE_NOTE)
    timed, spread = time_configurations(config, data, timed_configs, progress)
    reference = CurveTable(load_rows(table_path), config.search_space)
    ratios = sorted(seconds / reference.predicted_seconds(params) for params, seconds in timed)
    scales = [ratios[0] / WIDEN, statistics.median(ratios), ratios[-1] * WIDEN]
    if progress:
        progress(f"replaying the scenario {len(scales)} times on the recorded learning curves")
    outcomes = simulate(config, data, scales, table_path)
    return Plan(config, timed, ratios, outcomes, table_path.name, spread)
