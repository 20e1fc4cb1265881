"""Which classification metric tells a constant predictor from a model that learned something?

Smoke-sized models (the smoke scenario's search space, random configurations, its epoch budget)
on the bundled data, for the direction and the volatility target; each model's validation
predictions scored by accuracy, balanced accuracy and (MCC + 1) / 2, beside the constant
(training-majority) predictor. For each metric: the constant predictor's score, and each model's
distance from it in units of that metric's spread under a permutation of its predictions (how
clearly the metric separates a model from chance). Usage:

    PYTHONPATH=src python benchmarks/metric_choice.py [--trials 6]
"""

from __future__ import annotations

import argparse

import numpy as np
import optuna
import torch

from cnn_lstm_hpo.config import build_config
from cnn_lstm_hpo.model import HybridCNNLSTM, ModelConfig
from cnn_lstm_hpo.objectives import classification_score
from cnn_lstm_hpo.space import suggest
from cnn_lstm_hpo.train import Trainer
from cnn_lstm_hpo.windows import prepare_windows

METRICS = ("accuracy", "balanced_accuracy", "mcc")


def spread(y: np.ndarray, pred: np.ndarray, metric: str, rng: np.random.Generator, n: int = 200) -> float:
    return float(np.std([classification_score(y, rng.permutation(pred), metric) for _ in range(n)]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=6)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    for target, horizon in (("direction", 1), ("volatility", 5)):
        config = build_config("smoke", {"data": {"target": target, "horizon": horizon}})
        data, _ = prepare_windows(config.data, None)
        y = data.val.y_class.numpy()
        constant = np.full(len(y), int(torch.bincount(data.train.y_class).argmax()))
        print(f"{target}: {len(y)} validation windows, majority rate {data.val.majority_rate():.3f}")
        print("  constant predictor: " + ", ".join(f"{m} {classification_score(y, constant, m):.3f}" for m in METRICS))
        sampler = optuna.samplers.RandomSampler(seed=1)
        study = optuna.create_study(sampler=sampler)
        for i in range(args.trials):
            trial = study.ask()
            params = suggest(trial, config.search_space)
            torch.manual_seed(i)
            model = HybridCNNLSTM(ModelConfig.from_params(params, n_features=data.n_features, num_classes=data.num_classes))
            trainer = Trainer(model, data.train, data.val, params, config.training, device=torch.device("cpu"), seed=i)
            trainer.fit(config.max_epochs_per_trial)
            pred = trainer.predict(data.val)[0].argmax(axis=1)
            share = np.bincount(pred).max() / len(pred)
            cells = []
            for m in METRICS:
                score, sd = classification_score(y, pred, m), spread(y, pred, m, rng)
                z = f"{(score - classification_score(y, constant, m)) / sd:+.1f}" if sd > 0 else "-"  # one class: no spread
                cells.append(f"{m} {score:.3f} (z {z})")
            print(f"  model {i}: top-class share {share:.3f}; " + ", ".join(cells))
            study.tell(trial, 0.0)


if __name__ == "__main__":
    main()
