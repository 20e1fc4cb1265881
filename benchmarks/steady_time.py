"""The same configuration and seed trained twice, alone and beside busy neighbours: how far apart
its training time comes out by wall time, CPU time and the steady-state measure
(``training.time_measure: steady``, objectives.steady_minutes: the median CPU time of the epochs
after the warm-up one), with one torch thread (as a study runs the steady measure) and with one
per core (the default for the others).

    python benchmarks/steady_time.py [--epochs 6] [--busy N]

The neighbours are N processes spinning on the CPU (default: one per core) for the second run only.
The issue's goal: the same configuration measured twice differs by at most 1.5x.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os

import torch

from cnn_lstm_hpo.config import DataConfig, TrainingConfig
from cnn_lstm_hpo.model import HybridCNNLSTM, ModelConfig
from cnn_lstm_hpo.objectives import steady_minutes
from cnn_lstm_hpo.train import Trainer
from cnn_lstm_hpo.windows import prepare_windows

PARAMS = {
    "learning_rate": 3e-3, "weight_decay": 0.0, "optimizer": "adam", "scheduler": "none", "batch_size": 128,
    "cnn_num_filters": 8, "cnn_filter_sizes": [2, 3], "cnn_attention_heads": 2, "lstm_hidden_dim": 16,
    "lstm_num_layers": 1, "lstm_bidirectional": False, "dropout_rate": 0.1,
}


def spin() -> None:
    while True:
        pass


def measure(data, epochs: int) -> dict[str, float]:
    torch.manual_seed(0)
    model = HybridCNNLSTM(ModelConfig.from_params(PARAMS, n_features=data.n_features, num_classes=data.num_classes))
    history = []
    trainer = Trainer(model, data.train, data.val, PARAMS, TrainingConfig(early_stopping_patience=epochs),
                      device=torch.device("cpu"), seed=0)
    trainer.fit(epochs, on_epoch=lambda e: history.append({"wall_seconds": e.wall_seconds, "cpu_seconds": e.cpu_seconds}))
    return {"wall": sum(h["wall_seconds"] for h in history) / 60, "cpu": sum(h["cpu_seconds"] for h in history) / 60,
            "steady": steady_minutes(history)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--busy", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    data, _ = prepare_windows(DataConfig(source="synthetic", sequence_length=20), None)
    for threads in sorted({1, os.cpu_count() or 1}):
        torch.set_num_threads(threads)
        alone = measure(data, args.epochs)
        neighbours = [multiprocessing.Process(target=spin, daemon=True) for _ in range(args.busy)]
        for p in neighbours:
            p.start()
        try:
            busy = measure(data, args.epochs)
        finally:
            for p in neighbours:
                p.terminate()
        for key in ("wall", "cpu", "steady"):
            ratio = max(alone[key], busy[key]) / min(alone[key], busy[key])
            print(f"{threads} thread(s) {key:>6}: alone {alone[key]:.4f} min, beside {args.busy} busy processes "
                  f"{busy[key]:.4f} min, ratio {ratio:.2f}x")

if __name__ == "__main__":
    main()
