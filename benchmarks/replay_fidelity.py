"""How far a replayed trial's accuracy is from a real one's: seed noise, and the nearest-curve error.

The replay gives a configuration the table doesn't hold the curve of its nearest recorded
configuration, so all configurations near one recorded configuration replay one curve, exactly
("twins"); ``--score-jitter S`` in benchmarks/replay.py moves each by its own fixed normal offset
of standard deviation S instead. This script measures what S a real study would show, by training
real trials with the study's own training settings (early stopping included) and comparing the
accuracy objective (the composite score of the best epoch by validation loss):

- seed noise: the fastest complete configurations of the table retrained with other seeds (a
  study seeds each trial by its number). Seed 0 is the recorder's own (the row's index), so its
  score must equal the one the table's curve gives: a check that retraining is recording.
- nearest-curve error: configurations drawn at random from the default space (another seed than
  the recorder's, and learning rates are continuous: none is a recorded row) whose epoch the
  table's cost model predicts to be fast, each against the curve the replay would give it. Their
  differences' standard deviation is the jitter a replay should use.

    python benchmarks/replay_fidelity.py [--table src/cnn_lstm_hpo/curves/sample.jsonl.gz]
        [--configs 6] [--seeds 4] [--draws 16] [--fast-seconds 10]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np
import optuna
import torch

from cnn_lstm_hpo.config import OptimizationConfig, TrainingConfig
from cnn_lstm_hpo.model import HybridCNNLSTM, ModelConfig
from cnn_lstm_hpo.replay import CurveTable, ReplayTrainer, SimulatedClock, load_rows
from cnn_lstm_hpo.space import suggest
from cnn_lstm_hpo.train import Trainer
from cnn_lstm_hpo.windows import prepare_windows

from record_curves import DATA

SEED_STRIDE = 1000  # seed s of row i trains with i + s * SEED_STRIDE: seed 0 is the recorder's
DRAW_SEED = 12345  # the random draws' sampler: not the recorder's seed, so no draw is a recorded row


def objective_from_curve(row: dict, patience: int, max_epochs: int) -> float:
    """The accuracy objective a replayed trial of this curve reports (the study's own epoch loop,
    early stopping included)."""
    return ReplayTrainer(row, None, patience, SimulatedClock(), batches=1).fit(max_epochs).best.val.composite


def train(params: dict, seed: int, data, training: TrainingConfig, max_epochs: int) -> tuple[float, float]:
    """(accuracy objective, epoch-1 score) of a configuration trained as the recorder and a study do."""
    torch.manual_seed(seed)  # the recorder's order: weights first, then the trainer's own seeding
    model = HybridCNNLSTM(ModelConfig.from_params(params, n_features=data.n_features, num_classes=data.num_classes))
    result = Trainer(model, data.train, data.val, params, training, device=torch.device("cpu"), seed=seed).fit(max_epochs)
    return result.best.val.composite, result.epochs[0].val.composite


def rms(values: list[float]) -> float:
    return float(np.sqrt(np.mean(np.square(values))))


def seed_noise(rows: list[dict], args: argparse.Namespace, data, training: TrainingConfig) -> None:
    within, within_first = [], []
    for row in sorted(rows, key=lambda r: statistics.mean(e["wall_seconds"] for e in r["epochs"]))[: args.configs]:
        recorded = objective_from_curve(row, training.early_stopping_patience, args.max_epochs)
        scores, firsts = zip(*(train(row["params"], row["index"] + s * SEED_STRIDE, data, training, args.max_epochs)
                               for s in range(args.seeds)))
        within.append(statistics.stdev(scores))
        within_first.append(statistics.stdev(firsts))
        print(f"seed noise, row {row['index']:3d}: objective by seed {', '.join(f'{s:.4f}' for s in scores)} "
              f"(table's curve: {recorded:.4f}); sd {within[-1]:.4f}, epoch-1 score sd {within_first[-1]:.4f}", flush=True)
    if within:
        print(f"seed noise: sd across seeds of one configuration (root mean square over {len(within)}): "
              f"{rms(within):.4f}; epoch-1 score {rms(within_first):.4f}")


def nearest_curve_error(rows: list[dict], args: argparse.Namespace, data, training: TrainingConfig) -> None:
    space = OptimizationConfig().search_space
    table = CurveTable(rows, space)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=DRAW_SEED))
    differences, first_differences, tried = [], [], 0
    while len(differences) < args.draws and tried < 1000 * args.draws:
        tried += 1
        params = suggest(study.ask(), space)
        if table.predicted_seconds(params) > args.fast_seconds:
            continue
        nearest = table.curve(params)
        replayed = objective_from_curve(nearest, training.early_stopping_patience, args.max_epochs)
        real, first = train(params, tried, data, training, args.max_epochs)
        differences.append(real - replayed)
        first_differences.append(first - nearest["epochs"][0]["val_score"])
        print(f"nearest-curve error, draw {tried:4d}: objective {real:.4f}, replayed (row {nearest['index']:3d}) "
              f"{replayed:.4f}, difference {differences[-1]:+.4f}; epoch 1 {first_differences[-1]:+.4f}", flush=True)
    if len(differences) > 1:
        print(f"nearest-curve error over {len(differences)} draws: sd {statistics.stdev(differences):.4f}, "
              f"mean {statistics.mean(differences):+.4f}, root mean square {rms(differences):.4f}; "
              f"epoch-1 score sd {statistics.stdev(first_differences):.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", type=Path, default=Path("src/cnn_lstm_hpo/curves/sample.jsonl.gz"))
    parser.add_argument("--data", default="sample", choices=list(DATA))
    parser.add_argument("--configs", type=int, default=6, help="seed noise: the fastest complete rows (0: skip)")
    parser.add_argument("--seeds", type=int, default=4, help="seed noise: seeds per row, the recorder's included")
    parser.add_argument("--draws", type=int, default=16, help="nearest-curve error: random configurations (0: skip)")
    parser.add_argument("--fast-seconds", type=float, default=10.0,
                        help="nearest-curve error: only draws whose predicted epoch takes at most this")
    parser.add_argument("--max-epochs", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    training = TrainingConfig()  # the study's defaults: early stopping patience 5
    rows = load_rows(args.table)  # truncated rows too: the cost model that picks fast draws fits them
    complete = [r for r in rows if not r["truncated"] and "diverged" not in r]
    objectives = [objective_from_curve(r, training.early_stopping_patience, args.max_epochs) for r in complete]
    print(f"table {args.table.name}: the objective across its {len(complete)} complete configurations: "
          f"sd {statistics.stdev(objectives):.4f}")
    data, _ = prepare_windows(DATA[args.data], None)
    seed_noise(complete, args, data, training)
    nearest_curve_error(rows, args, data, training)


if __name__ == "__main__":
    main()
