"""Studies replayed on recorded learning curves: the project's own trial loop on a simulated clock.

The study machinery is the real one: ``MultiObjectiveOptimizer.optimize`` with its sampler, pruner,
constraints, time limit, early stopping (``train.run_epochs``), storage and callbacks. Only three
hooks are replaced: the model is built on the meta device (its exact size, no memory), an epoch is
read from a curve table instead of trained, and the run's clock is the simulated one. Used by
``cnn-lstm-hpo plan`` and benchmarks/replay.py.

Which curve: a configuration recorded in the table replays its own rows; any other replays the
curve of the nearest recorded configuration (hyperparameters scaled to [0, 1], a categorical
mismatch counting 1), and its epoch time comes from a log-linear cost model fitted on the table's
epoch times (every row, truncated ones included). Past a recorded curve's last epoch the last epoch
repeats. All of that is extrapolation beyond what the table holds. How far it is off for accuracy:
trained for real, 16 small unrecorded configurations differed from their nearest curve's objective
by 0.018 (root mean square; seeds alone move a configuration by 0.0004): benchmarks/replay_fidelity.py.
"""

from __future__ import annotations

import gzip
import json
import statistics
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch

from .config import OptimizationConfig
from .errors import HPOError, TrialDiverged
from .model import HybridCNNLSTM
from .objectives import Evaluation
from .space import Categorical, LogUniform, decode_params
from .study import MultiObjectiveOptimizer
from .train import PROBE_AFTER, EpochStep, TrainResult, run_epochs
from .windows import WindowLoader, WindowedData

CURVES = Path(__file__).resolve().parent / "curves"  # recorded by benchmarks/record_curves.py
# How far an older walk-forward fold moves a configuration's scores (standard deviation): the trial x
# fold interaction of five real 10-trial walk-forward studies, 0.020 - 0.026 (benchmarks/fold_spread.py).
FOLD_SPREAD = 0.024


# --- the table --------------------------------------------------------------------------------------
def load_rows(path: Path) -> list[dict]:
    if not path.is_file():
        raise HPOError(f"no curve table at {path}; record one with benchmarks/record_curves.py")
    rows = []
    with gzip.open(path, "rt") as handle:
        try:
            for line in handle:
                rows.append(json.loads(line))
        except (EOFError, json.JSONDecodeError):  # a row cut short by a killed recording
            pass
    return rows


def rows_from_study(study: optuna.Study) -> list[dict]:
    """A table made of a real study's trials (their per-epoch history): replaying it must give the same study."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        history = t.user_attrs.get("epoch_history")
        if history:
            rows.append({"params": decode_params(t.params), "epochs": history, "truncated": False})
    return rows


def _key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True)


def shifted(row: dict, offset: float) -> dict:
    """A curve with every validation score moved by ``offset``."""
    return {**row, "epochs": [{**e, "val_score": e["val_score"] + offset} for e in row["epochs"]]}


class CurveTable:
    """Recorded curves, looked up by configuration; epoch time of unrecorded ones from a cost model."""

    def __init__(self, rows: list[dict], space: dict[str, Any], *, time_scale: float | None = None,
                 score_jitter: float = 0.0) -> None:
        """``time_scale``: epoch times of another machine or data set, as a multiple of the cost model's
        (every configuration's time then comes from the model, recorded ones too).

        ``score_jitter``: a sensitivity check. Configurations that differ only where the nearest-curve
        lookup does not look far (learning rate, dropout) replay the same curve, exact twins, so one
        stops at its first epoch when the other completed. With a jitter, each unrecorded
        configuration's validation scores move by its own offset (normal, this standard deviation,
        fixed by the configuration), so twins differ as distinct configurations do (by how much:
        benchmarks/replay_fidelity.py).
        """
        self.space = space
        self.time_scale = time_scale
        self.score_jitter = score_jitter
        self.exact = {_key(r["params"]): r for r in rows}
        self.full = [r for r in rows if not r.get("truncated") and r["epochs"]]
        if not self.full:
            raise HPOError("the curve table has no complete curve to replay; record some first")
        self.full_vectors = np.array([self._vector(r["params"]) for r in self.full])
        timed = [r for r in rows if r["epochs"]]
        features = np.array([self._cost_features(r["params"]) for r in timed])
        seconds = np.log([statistics.median(e["wall_seconds"] for e in r["epochs"]) for r in timed])
        self.cost: np.ndarray | None = None
        if len(timed) > 2 * features.shape[1]:  # fewer rows: nearest recorded configuration's time
            self.cost = np.linalg.lstsq(features, seconds, rcond=None)[0]

    def _vector(self, params: dict[str, Any]) -> list[float]:
        out = []
        for name, spec in self.space.items():
            value = params.get(name)
            if isinstance(spec, Categorical):
                out.extend(float(value == c) for c in spec.choices)  # one-hot: a mismatch is distance 1 (0.5 + 0.5)
            elif isinstance(spec, LogUniform):
                out.append((np.log(value) - np.log(spec.low)) / max(np.log(spec.high / spec.low), 1e-12))
            else:
                span = spec.high - spec.low if spec.high > spec.low else 1.0
                out.append((value - spec.low) / span)
        return out

    @staticmethod
    def _cost_features(p: dict[str, Any]) -> list[float]:
        """What an epoch's time grows with: convolution and LSTM work per window, steps per epoch."""
        directions = 2 if p["lstm_bidirectional"] else 1
        conv = p["cnn_num_filters"] * sum(p["cnn_filter_sizes"])
        width = p["cnn_num_filters"] * len(p["cnn_filter_sizes"])
        lstm = p["lstm_num_layers"] * directions * p["lstm_hidden_dim"] * (p["lstm_hidden_dim"] + width)
        return [1.0, np.log(conv), np.log(lstm), np.log(width), -np.log(p["batch_size"])]

    def curve(self, params: dict[str, Any]) -> dict:
        row = self.exact.get(_key(params))
        if row is not None and not row.get("truncated"):
            return row
        distances = np.abs(self.full_vectors - np.array(self._vector(params))).sum(axis=1)
        nearest = self.full[int(np.argmin(distances))]
        if not self.score_jitter:
            return nearest
        return shifted(nearest, self.score_jitter * np.random.default_rng(zlib.crc32(_key(params).encode())).standard_normal())

    def predicted_seconds(self, params: dict[str, Any]) -> float:
        """Epoch wall seconds on the table's machine: the cost model, or the nearest curve's with too few rows."""
        if self.cost is None:
            return statistics.median(e["wall_seconds"] for e in self.curve(params)["epochs"])
        return float(np.exp(np.dot(self._cost_features(params), self.cost)))

    def epoch_seconds(self, params: dict[str, Any]) -> float | None:
        """Wall seconds per epoch to replay, or None: the recorded curve's own times."""
        if self.time_scale is not None:
            return self.time_scale * self.predicted_seconds(params)
        if _key(params) in self.exact:
            return None
        return self.predicted_seconds(params)


# --- the replayed trial --------------------------------------------------------------------------------
class SimulatedClock:
    def __init__(self) -> None:
        self.now = 0.0


class ReplayTrainer:
    """Trainer.fit's contract, epochs read from a recorded curve; advances the simulated clock."""

    def __init__(
        self, row: dict, seconds: float | None, patience: int, clock: SimulatedClock, batches: int, *,
        measure: str = "wall", time_factor: float = 1.0,
    ) -> None:
        self.row, self.seconds, self.patience, self.clock, self.batches = row, seconds, patience, clock, batches
        self.measure = measure  # training.time_measure: what the probe reports, as Trainer does
        self.time_factor = time_factor  # a walk-forward fold's share of the curve's training windows

    def fit(self, max_epochs: int, on_epoch: Any = None, on_probe: Any = None) -> TrainResult:
        epochs = self.row["epochs"]

        def step(epoch: int) -> EpochStep:
            e = epochs[min(epoch, len(epochs)) - 1]
            diverged = self.row.get("diverged")
            if diverged and epoch >= len(epochs):
                raise TrialDiverged(diverged)
            wall = (e["wall_seconds"] if self.seconds is None else self.seconds) * self.time_factor
            cpu = (e["cpu_seconds"] if self.seconds is None else self.seconds * e["cpu_seconds"] / e["wall_seconds"]) * self.time_factor
            spent = 0.0  # of this epoch, in batches: a trial stopped by the probe costs its timed batches
            if epoch == 1 and on_probe is not None:
                for timed in (t for t in PROBE_AFTER if t < self.batches):  # as Trainer probes
                    self.clock.now += (timed - spent) / self.batches * wall
                    spent = timed
                    on_probe(cpu if self.measure == "cpu" else wall, timed)
            self.clock.now += (self.batches - spent) / self.batches * wall
            val = Evaluation(
                loss=e["val_loss"], accuracy=e.get("val_accuracy", float("nan")), classification_score=float("nan"),
                regression_score=float("nan"), composite=e["val_score"], majority_rate=float("nan"),
            )
            return EpochStep(e.get("train_loss", float("nan")), val, wall, cpu)

        return run_epochs(max_epochs, self.patience, step, on_epoch)


class ReplayOptimizer(MultiObjectiveOptimizer):
    """The real optimizer; model, training and clock replaced (see the module docstring).

    Walk-forward (``config.evaluation``): the folds are cut from the bars of ``config.data`` (the
    table's data set), and no curves per fold are recorded. The most recent fold, whose training and
    validation periods are the holdout's, replays the table's curve; an older fold replays the same
    curve with every validation score moved by an offset of its own (normal, standard deviation
    ``fold_spread``, fixed by configuration and fold: how differently configurations rank from fold
    to fold) and its epochs timed by its share of the training windows.
    """

    def __init__(self, config: OptimizationConfig, table: CurveTable, loaders: tuple, clock: SimulatedClock,
                 *, fold_spread: float = 0.0) -> None:
        walk_forward = config.evaluation.scheme == "walk_forward"
        super().__init__(config, data_loaders=None if walk_forward else loaders, progress=False, write_outputs=False)
        self.table, self.simulated, self.fold_spread = table, clock, fold_spread
        self.stand_in_seconds = 0.0  # real time in the stand-ins for a trial's own work: model and curve

    def build_model(self, params: dict[str, Any]) -> torch.nn.Module:
        started = time.perf_counter()
        with torch.device("meta"):  # parameters without memory: the exact size in microseconds
            model = HybridCNNLSTM(self.create_model_config(params))
        self.stand_in_seconds += time.perf_counter() - started
        return model

    def make_trainer(
        self, model: torch.nn.Module, params: dict[str, Any], seed: int, data: WindowedData | None = None
    ) -> ReplayTrainer:
        started = time.perf_counter()
        patience = self.config.training.early_stopping_patience
        data = self.data if data is None else data
        batches = -(-len(data.train) // int(params["batch_size"]))
        curve, time_factor = self.table.curve(params), 1.0
        folds = self.data.folds
        if folds and data is not folds[-1]:  # an older walk-forward fold (see the class docstring)
            index = next(i for i, fold in enumerate(folds) if fold is data)
            time_factor = len(data.train) / len(folds[-1].train)
            rng = np.random.default_rng(zlib.crc32(f"{_key(params)} fold {index}".encode()))
            curve = shifted(curve, self.fold_spread * rng.standard_normal())
        trainer = ReplayTrainer(
            curve, self.table.epoch_seconds(params), patience, self.simulated, batches,
            measure=self.config.training.time_measure, time_factor=time_factor,
        )
        self.stand_in_seconds += time.perf_counter() - started
        return trainer

    def _record_signal(self, trial: optuna.Trial, trainer: Any) -> dict[str, float]:
        # A recorded curve has scores, not predictions: no paired test or trading record in a replay.
        return {}

    def clock(self) -> float:
        return self.simulated.now


def loaders_for(windows: WindowedData) -> tuple:
    """The data as loaders: the replayed optimizer needs its shape (features, classes), not its bars."""
    return tuple(WindowLoader(s, batch_size=256) for s in (windows.train, windows.val, windows.test))


def replay(
    config: OptimizationConfig, table: CurveTable, loaders: tuple, *, fold_spread: float = 0.0
) -> tuple[optuna.Study, float, float]:
    """(study, simulated seconds, the framework's real seconds) of one replayed study.

    The framework's seconds are the run's real time less the stand-ins for each trial's own work
    (building the model on the meta device, looking up its curve): a real trial builds its model
    too, so that time is the trial's, not the sampler's, pruner's or storage's.
    """
    clock = SimulatedClock()
    started = time.perf_counter()
    optimizer = ReplayOptimizer(config, table, loaders, clock, fold_spread=fold_spread)
    study = optimizer.optimize()
    return study, clock.now, time.perf_counter() - started - optimizer.stand_in_seconds
