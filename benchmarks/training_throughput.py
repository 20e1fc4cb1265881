"""Training throughput: the project's loop vs a plain PyTorch DataLoader loop, side by side.

Same windows (bundled sample data), same model, same batch size, same loss, same validation batch
size; each measured epoch trains on the training windows and then scores the validation windows,
as a trial does. Three arms:

  ours          Trainer.fit (fused Adam, batches gathered from window views)
  plain fused   DataLoader over TensorDatasets, the same fused Adam: the loop compared fairly
  plain         DataLoader, Adam's default implementation: what a hand-written script gets

Every arm trains one untimed warm-up epoch first; the arms' order rotates each repeat so machine
noise hits all of them; ratios are taken within a repeat and printed as median [min - max].

    python benchmarks/training_throughput.py [--epochs 2] [--repeats 5]
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
from cnn_lstm_hpo.train import EVAL_BATCH, Trainer
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


def plain_arm(model_cfg: ModelConfig, data, params: dict, cfg: TrainingConfig, scale: float, seed: int,
              batch_size: int, fused: bool):
    """A ready-to-run plain loop: model, optimizer and loaders made outside the timed region."""
    torch.manual_seed(seed)
    model = HybridCNNLSTM(model_cfg)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=params["learning_rate"], weight_decay=params["weight_decay"], fused=fused or None
    )
    train, val = data.train, data.val
    train_loader = DataLoader(TensorDataset(train.x, train.y_class, train.y_return), batch_size=batch_size, shuffle=True)
    val_loader = DataLoader(TensorDataset(val.x, val.y_class, val.y_return), batch_size=EVAL_BATCH)
    return lambda epochs: [plain_epoch(model, train_loader, val_loader, optimizer, scale, cfg) for _ in range(epochs)]


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f}x [{min(values):.2f} - {max(values):.2f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()

    data, _ = prepare_windows(DataConfig(source="sample"), None)
    cfg = TrainingConfig()
    params = {**PARAMS, "batch_size": args.batch_size}
    n = len(data.train) * args.epochs
    print(f"{len(data.train)} training windows {tuple(data.train.x.shape[1:])}, batch {args.batch_size}, "
          f"validation batch {EVAL_BATCH}, {args.epochs} epochs per measurement after 1 warm-up epoch, "
          f"{args.repeats} repeats, torch threads {torch.get_num_threads()}")
    for label, arch in MODELS.items():
        model_cfg = ModelConfig(
            n_features=data.n_features, num_classes=2, lstm_bidirectional=False, dropout_rate=0.2, **arch
        )
        rates: dict[str, list[float]] = {"ours": [], "plain fused": [], "plain": []}
        for repeat in range(args.repeats):
            torch.manual_seed(repeat)
            trainer = Trainer(HybridCNNLSTM(model_cfg), data.train, data.val, params, cfg, device=torch.device("cpu"), seed=repeat)
            arms = {
                "ours": trainer.fit,  # train + validate every epoch + early-stopping bookkeeping
                "plain fused": plain_arm(model_cfg, data, params, cfg, trainer.return_scale, repeat, args.batch_size, True),
                "plain": plain_arm(model_cfg, data, params, cfg, trainer.return_scale, repeat, args.batch_size, False),
            }
            names = list(arms)
            for name in names[repeat % 3:] + names[: repeat % 3]:  # rotate the order
                arms[name](1)  # warm-up: allocator, kernels, first-touch of the data
                t0 = time.perf_counter()
                arms[name](args.epochs)
                rates[name].append(n / (time.perf_counter() - t0))
        med = {name: statistics.median(r) for name, r in rates.items()}
        loop = [a / b for a, b in zip(rates["ours"], rates["plain fused"])]
        fused = [a / b for a, b in zip(rates["plain fused"], rates["plain"])]
        total = [a / b for a, b in zip(rates["ours"], rates["plain"])]
        print(f"{label}: samples/s ours {med['ours']:,.0f} | plain fused {med['plain fused']:,.0f} | "
              f"plain {med['plain']:,.0f}")
        print(f"  ours / plain fused (the loop) {spread(loop)}; plain fused / plain (fused Adam) {spread(fused)}; "
              f"ours / plain {spread(total)}")


if __name__ == "__main__":
    main()
