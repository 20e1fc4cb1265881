"""Training throughput: the project's loop vs a plain PyTorch DataLoader loop, side by side.

Same windows (bundled sample data), same model, same batch size, same optimizer (Adam) and loss;
each measured epoch trains on the training windows and then scores the validation windows, as a
trial does. The two arms alternate within one run so machine noise hits both. Prints training
samples per second of wall time (validation included) and the ratio.

    python benchmarks/training_throughput.py [--epochs 3] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from cnn_lstm_hpo.config import DataConfig, TrainingConfig
from cnn_lstm_hpo.model import HybridCNNLSTM, ModelConfig
from cnn_lstm_hpo.train import Trainer
from cnn_lstm_hpo.windows import prepare_windows

PARAMS = {"learning_rate": 1e-3, "weight_decay": 1e-5, "optimizer": "adam", "scheduler": "none"}
MODELS = {
    "small (16 filters x [3,5], 32 hidden)": dict(
        cnn_num_filters=16, cnn_filter_sizes=(3, 5), cnn_attention_heads=2, lstm_hidden_dim=32, lstm_num_layers=1
    ),
    "medium (64 filters x [3,5,7], 128 hidden)": dict(
        cnn_num_filters=64, cnn_filter_sizes=(3, 5, 7), cnn_attention_heads=4, lstm_hidden_dim=128, lstm_num_layers=1
    ),
}


def plain_epoch(model: nn.Module, train: DataLoader, val: DataLoader, optimizer: torch.optim.Optimizer,
                scale: float, cfg: TrainingConfig) -> float:
    """What a user writes by hand: DataLoaders over TensorDatasets, train then validate."""
    def loss_of(x: torch.Tensor, y: torch.Tensor, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, ret = model(x)
        loss = cfg.classification_weight * F.cross_entropy(logits, y) + cfg.regression_weight * F.mse_loss(ret, r / scale)
        return loss, logits

    model.train()
    for x, y, r in train:
        loss, _ = loss_of(x, y, r)
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), cfg.gradient_clip)
        optimizer.step()
    model.eval()
    correct = 0
    with torch.no_grad():
        for x, y, r in val:
            _, logits = loss_of(x, y, r)
            correct += int((logits.argmax(1) == y).sum())
    return correct / len(val.dataset)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()

    data, _ = prepare_windows(DataConfig(source="sample"), None)
    train, val = data.train, data.val
    cfg = TrainingConfig()
    params = {**PARAMS, "batch_size": args.batch_size}
    n = len(train) * args.epochs
    print(f"{len(train)} training windows {tuple(train.x.shape[1:])}, batch {args.batch_size}, "
          f"{args.epochs} epochs per measurement, {args.repeats} repeats, torch threads {torch.get_num_threads()}")
    for label, arch in MODELS.items():
        model_cfg = ModelConfig(
            n_features=data.n_features, num_classes=2, lstm_bidirectional=False, dropout_rate=0.2, **arch
        )
        ours, plain = [], []
        for repeat in range(args.repeats):
            torch.manual_seed(repeat)
            trainer = Trainer(HybridCNNLSTM(model_cfg), train, val, params, cfg, device=torch.device("cpu"), seed=repeat)
            t0 = time.perf_counter()
            trainer.fit(args.epochs)  # train + validate every epoch + early-stopping bookkeeping
            ours.append(n / (time.perf_counter() - t0))

            torch.manual_seed(repeat)
            model = HybridCNNLSTM(model_cfg)
            optimizer = torch.optim.Adam(model.parameters(), lr=params["learning_rate"], weight_decay=params["weight_decay"])
            train_loader = DataLoader(TensorDataset(train.x, train.y_class, train.y_return), batch_size=args.batch_size, shuffle=True)
            val_loader = DataLoader(TensorDataset(val.x, val.y_class, val.y_return), batch_size=args.batch_size)
            t0 = time.perf_counter()
            for _ in range(args.epochs):
                plain_epoch(model, train_loader, val_loader, optimizer, trainer.return_scale, cfg)
            plain.append(n / (time.perf_counter() - t0))
        ours_med, plain_med = statistics.median(ours), statistics.median(plain)
        print(f"{label}: ours {ours_med:,.0f} samples/s | plain DataLoader {plain_med:,.0f} samples/s | "
              f"ratio {ours_med / plain_med:.2f}x")


if __name__ == "__main__":
    main()
