"""One training run of one model: in-memory batches, early stopping, a per-epoch callback.

The callback receives every epoch's validation result; it is the hook pruning uses (raising
``optuna.TrialPruned`` from it stops the run). Wall and CPU time are measured per epoch.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import interrupts
from .config import TrainingConfig, validate_data_config
from .errors import HPOError, TrialDiverged
from .objectives import Evaluation, evaluate_predictions
from .windows import Split, WindowLoader, prepare_windows

EVAL_BATCH = 4096


@dataclass(frozen=True)
class EpochResult:
    epoch: int  # 1-based
    train_loss: float
    val: Evaluation
    wall_seconds: float
    cpu_seconds: float
    last: bool  # no further epoch follows (max_epochs reached or early stopping fires)
    epochs_since_best: int  # 0 when this epoch improved the validation loss


EpochCallback = Callable[[EpochResult], None]
# Called in the first epoch with its projected seconds (training.time_measure: wall or CPU, as the
# limit is measured) and the number of batches timed: after
# the first batch (a rough guess: warm-up included) and after PROBE_BATCHES, so a trial certain to
# break its time limit stops before spending the epoch. A huge model takes 10-20 s a batch here.
ProbeCallback = Callable[[float, int], None]
PROBE_BATCHES = 3
PROBE_AFTER = (1, PROBE_BATCHES)  # batches


@dataclass
class TrainResult:
    epochs: list[EpochResult] = field(default_factory=list)
    best_epoch: int = 0
    stopped_early: bool = False

    @property
    def best(self) -> EpochResult:
        return self.epochs[self.best_epoch - 1]

    @property
    def wall_seconds(self) -> float:
        return sum(e.wall_seconds for e in self.epochs)

    @property
    def cpu_seconds(self) -> float:
        return sum(e.cpu_seconds for e in self.epochs)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise HPOError("training.device is 'cuda' but no CUDA device is available")
    return torch.device(name)


def make_optimizer(model: nn.Module, params: dict[str, Any]) -> torch.optim.Optimizer:
    lr, wd = params["learning_rate"], params["weight_decay"]
    name = params["optimizer"]
    # Fused Adam(W) kernels run ~3x faster per step than the default per-tensor loop on CPU too.
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=wd, fused=True)
    if name == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=wd, fused=True)
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, weight_decay=wd, momentum=0.9, nesterov=True, foreach=True)
    return torch.optim.RMSprop(model.parameters(), lr=lr, weight_decay=wd, foreach=True)


def make_scheduler(optimizer: torch.optim.Optimizer, name: str, max_epochs: int) -> Any:
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max_epochs)
    if name == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(1, max_epochs // 3), gamma=0.5)
    if name == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=2)
    return None


class Trainer:
    """Trains ``model`` on ``train`` and scores it on ``val`` every epoch."""

    def __init__(
        self, model: nn.Module, train: Split, val: Split, params: dict[str, Any], cfg: TrainingConfig, *,
        device: torch.device, seed: int = 0,
    ) -> None:
        self.model = model.to(device)
        self.params = params
        self.cfg = cfg
        self.device = device
        self.seed = seed
        self.amp = device.type == "cuda"
        self.train = train.to(device)  # windows stay views over the bars; batches gather them
        self.val = val.to(device)
        # Returns are ~1e-2: learn them in units of the training std so both losses matter.
        self.return_scale = float(train.y_return.std()) or 1.0
        self.loss_weights = (cfg.classification_weight, cfg.regression_weight)
        self.probe: ProbeCallback | None = None

    def _loss(self, logits: torch.Tensor, ret: torch.Tensor, y: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        cw, rw = self.loss_weights
        return cw * F.cross_entropy(logits.float(), y) + rw * F.mse_loss(ret.float(), r / self.return_scale)

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            return self.model(x)

    def _train_epoch(self, optimizer: torch.optim.Optimizer, generator: torch.Generator) -> float:
        self.model.train()
        n, batch = len(self.train), int(self.params["batch_size"])
        order = torch.randperm(n, generator=generator).to(self.device)
        total = torch.zeros((), device=self.device)
        clock = time.process_time if self.cfg.time_measure == "cpu" else time.perf_counter  # the limit's measure (steady: wall)
        started = clock()
        for step, start in enumerate(range(0, n, batch), start=1):
            interrupts.check()  # a Ctrl-C during the trial stops it here, not inside a storage write
            if self.probe is not None and step - 1 in PROBE_AFTER:
                probe = self.probe
                if step - 1 == PROBE_AFTER[-1]:
                    self.probe = None
                probe((clock() - started) / (step - 1) * -(-n // batch), step - 1)
            idx = order[start : start + batch]
            logits, ret = self._forward(self.train.windows(idx))
            loss = self._loss(logits, ret, self.train.y_class[idx], self.train.y_return[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.gradient_clip)
            optimizer.step()
            total += loss.detach() * len(idx)  # summed on device: one sync per epoch, not per step
        return float(total) / n

    @torch.no_grad()
    def predict(self, data: Split | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Class probabilities (N, C) and forward returns (N,) in return units, of a split or (N, L, F) windows."""
        self.model.eval()
        split = data if isinstance(data, Split) else Split.from_windows(data, torch.zeros(len(data)), torch.zeros(len(data)))
        split = split.to(self.device)
        probs, rets = [], []
        for start in range(0, len(split), EVAL_BATCH):
            interrupts.check()
            logits, ret = self._forward(split.windows(slice(start, start + EVAL_BATCH)))
            probs.append(torch.softmax(logits.float(), dim=-1).cpu())
            rets.append(ret.float().cpu() * self.return_scale)
        return torch.cat(probs).numpy(), torch.cat(rets).numpy()

    def evaluate(self, split: Split) -> Evaluation:
        probs, rets = self.predict(split)
        y, r = split.y_class.cpu().numpy(), split.y_return.cpu().numpy()
        eps = 1e-12
        ce = float(-np.mean(np.log(probs[np.arange(len(y)), y] + eps)))
        mse = float(np.mean((rets / self.return_scale - r / self.return_scale) ** 2))
        cw, rw = self.loss_weights
        return evaluate_predictions(
            loss=cw * ce + rw * mse, y_class=y, pred_class=probs.argmax(axis=1), y_return=r, pred_return=rets,
            metric=self.cfg.classification_metric, classification_weight=cw, regression_weight=rw,
        )

    def fit(
        self, max_epochs: int, on_epoch: EpochCallback | None = None, on_probe: ProbeCallback | None = None
    ) -> TrainResult:
        torch.manual_seed(self.seed)
        self.probe = on_probe
        generator = torch.Generator().manual_seed(self.seed)
        optimizer = make_optimizer(self.model, self.params)
        scheduler = make_scheduler(optimizer, self.params["scheduler"], max_epochs)
        best_state: dict[str, Any] = {}

        def step(epoch: int) -> EpochStep:
            wall0, cpu0 = time.perf_counter(), time.process_time()
            train_loss = self._train_epoch(optimizer, generator)
            if not np.isfinite(train_loss):
                raise TrialDiverged(f"non-finite training loss at epoch {epoch}")
            val = self.evaluate(self.val)
            if not np.isfinite(val.loss):
                raise TrialDiverged(f"non-finite validation loss at epoch {epoch}")
            if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                scheduler.step(val.loss)
            elif scheduler is not None:
                scheduler.step()
            return EpochStep(train_loss, val, time.perf_counter() - wall0, time.process_time() - cpu0)

        def keep_best() -> None:
            best_state["weights"] = copy.deepcopy(self.model.state_dict())

        result = run_epochs(max_epochs, self.cfg.early_stopping_patience, step, on_epoch, keep_best)
        if best_state:
            self.model.load_state_dict(best_state["weights"])
        return result


@dataclass(frozen=True)
class EpochStep:
    """What one epoch of training gives: trained on the training split, scored on validation."""

    train_loss: float
    val: Evaluation
    wall_seconds: float
    cpu_seconds: float


def run_epochs(
    max_epochs: int, patience: int, step: Callable[[int], EpochStep], on_epoch: EpochCallback | None = None,
    keep_best: Callable[[], None] | None = None,
) -> TrainResult:
    """The epoch loop of every trial: early stopping on validation loss, the callback after each epoch.

    ``step(epoch)`` trains one epoch (or, in benchmarks/replay.py, replays a recorded one);
    ``keep_best`` is called whenever the validation loss improves.
    """
    result = TrainResult()
    best_loss, stale = float("inf"), 0
    for epoch in range(1, max_epochs + 1):
        done = step(epoch)
        if done.val.loss < best_loss:
            best_loss, stale, result.best_epoch = done.val.loss, 0, epoch
            if keep_best is not None:
                keep_best()
        else:
            stale += 1
        result.stopped_early = stale >= patience
        record = EpochResult(
            epoch, done.train_loss, done.val, done.wall_seconds, done.cpu_seconds,
            last=result.stopped_early or epoch == max_epochs, epochs_since_best=stale,
        )
        result.epochs.append(record)
        if on_epoch is not None:
            on_epoch(record)
        if result.stopped_early:
            break
    return result


class CNNLSTMTrainer:
    """The guide's trainer entry point: ``prepare_data(symbols, dates)`` -> (train, val, test) loaders."""

    def __init__(self, config: Any, save_dir: str | None = None, device: str = "auto") -> None:
        self.config = config
        self.save_dir = save_dir
        self.device = resolve_device(device)
        self.data: Any = None

    def prepare_data(
        self, symbols: list[str] | None = None, dates: tuple[Any, Any] | None = None, *, batch_size: int = 64
    ) -> tuple[Any, Any, Any]:
        data_cfg = self.config.data
        if dates is not None:
            data_cfg = validate_data_config({**data_cfg.model_dump(), "start": dates[0], "end": dates[1]})
        self.data, _ = prepare_windows(data_cfg, symbols, explicit_symbols=symbols is not None)
        return (
            WindowLoader(self.data.train, batch_size=batch_size, shuffle=True, seed=self.config.seed),
            WindowLoader(self.data.val, batch_size=batch_size),
            WindowLoader(self.data.test, batch_size=batch_size),
        )


IntegratedCNNLSTMTrainer = CNNLSTMTrainer  # the guide's name
