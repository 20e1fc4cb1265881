"""Record learning curves of configurations sampled from the default search space (the replay's input).

For each data set, configuration i (drawn by Optuna's RandomSampler from the default search space
with a fixed seed, so index i is the same configuration on every run) is trained with the project's
Trainer for up to ``--max-epochs`` epochs with early stopping off, recording per epoch the
validation score, accuracy and loss, the training loss, and the epoch's wall and CPU seconds; plus
the model size. A configuration whose first epoch projects past ``--hopeless-minutes`` for the whole
budget keeps only that epoch (``"truncated": true``): under the default time limit it could never
be feasible, so the replay needs its epoch time, not its curve.

Resumable: rows are appended to ``src/cnn_lstm_hpo/curves/<data>.jsonl.gz`` as each configuration ends
(one gzip member per row), and a rerun skips the indices already there. Safe to stop at any time; do not pause it
(SIGSTOP): the pause would count in the wall time of the epoch it falls in.

    python benchmarks/record_curves.py [--data sample synthetic] [--configs 300] [--max-epochs 50]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import time
from pathlib import Path

import optuna
import torch

from cnn_lstm_hpo.config import DataConfig, OptimizationConfig, TrainingConfig
from cnn_lstm_hpo.errors import TrialDiverged
from cnn_lstm_hpo.model import HybridCNNLSTM, ModelConfig, model_size_mb
from cnn_lstm_hpo.space import suggest
from cnn_lstm_hpo.train import EpochResult, Trainer
from cnn_lstm_hpo.windows import prepare_windows

OUT = Path(__file__).resolve().parents[1] / "src" / "cnn_lstm_hpo" / "curves"  # ships with the package: `plan` reads it
DATA = {
    "sample": DataConfig(source="sample", start="2011-01-01"),
    "synthetic": DataConfig(source="synthetic"),
}


class Hopeless(Exception):
    pass


def configurations(n: int, seed: int) -> list[dict]:
    """The first n draws of a seeded RandomSampler over the default space: index i is stable."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    space = OptimizationConfig().search_space  # the guide's default ranges, validated
    return [suggest(study.ask(), space) for _ in range(n)]


def done_indices(path: Path) -> set[int]:
    if not path.exists():
        return set()
    done = set()
    try:
        with gzip.open(path, "rt") as handle:
            for line in handle:
                done.add(json.loads(line)["index"])
    except (EOFError, gzip.BadGzipFile, json.JSONDecodeError):  # a row cut short by a kill: redo it
        pass
    return done


def record(index: int, params: dict, data, max_epochs: int, hopeless_minutes: float) -> dict:
    cfg = TrainingConfig(early_stopping_patience=max_epochs)
    torch.manual_seed(index)
    model = HybridCNNLSTM(ModelConfig.from_params(params, n_features=data.n_features, num_classes=data.num_classes))
    row = {"index": index, "params": params, "model_size_mb": model_size_mb(model), "epochs": [], "truncated": False}

    def on_epoch(e: EpochResult) -> None:
        row["epochs"].append({
            "epoch": e.epoch, "val_score": e.val.composite, "val_accuracy": e.val.accuracy, "val_loss": e.val.loss,
            "train_loss": e.train_loss, "wall_seconds": e.wall_seconds, "cpu_seconds": e.cpu_seconds,
        })
        if e.epoch == 1 and e.wall_seconds * max_epochs / 60 > hopeless_minutes:
            raise Hopeless

    trainer = Trainer(model, data.train, data.val, params, cfg, device=torch.device("cpu"), seed=index)
    try:
        trainer.fit(max_epochs, on_epoch=on_epoch)
    except Hopeless:
        row["truncated"] = True
    except TrialDiverged as error:
        row["diverged"] = str(error)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", default=list(DATA), choices=list(DATA))
    parser.add_argument("--configs", type=int, default=300)
    parser.add_argument("--max-epochs", type=int, default=50)
    parser.add_argument("--hopeless-minutes", type=float, default=120.0, help="the default time limit")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    OUT.mkdir(exist_ok=True)
    meta = OUT / "README.json"  # per data set: the command and machine that recorded its table
    recorded = json.loads(meta.read_text()) if meta.exists() else {}
    command = "python benchmarks/record_curves.py " + " ".join(
        f"--{k.replace('_', '-')} {' '.join(v) if isinstance(v, list) else v}" for k, v in vars(args).items())
    machine = f"{platform.machine()} {os.cpu_count()} cores, {platform.python_version()}, torch {torch.__version__}"
    recorded.update({name: {"command": command, "machine": machine} for name in args.data})
    meta.write_text(json.dumps(recorded, indent=2, sort_keys=True) + "\n")
    configs = configurations(args.configs, args.seed)
    for name in args.data:
        data, _ = prepare_windows(DATA[name], None)
        path = OUT / f"{name}.jsonl.gz"
        done = done_indices(path)
        for index, params in enumerate(configs):
            if index in done:
                continue
            started = time.perf_counter()
            row = record(index, params, data, args.max_epochs, args.hopeless_minutes)
            with gzip.open(path, "at") as handle:  # one gzip member per row: a kill loses at most this row
                handle.write(json.dumps(row) + "\n")
            print(f"{name} {index}: {len(row['epochs'])} epochs, {row['model_size_mb']:.2f} MB, "
                  f"{time.perf_counter() - started:.0f} s{' (truncated)' if row['truncated'] else ''}", flush=True)


if __name__ == "__main__":
    main()
