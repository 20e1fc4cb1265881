"""The per-epoch hook of one trial: history into storage, the training-time limit, pruning."""

from __future__ import annotations

import time

import optuna
from optuna.trial import FrozenTrial

from .config import OptimizationConfig
from .pruning import BRACKET_ATTR, DominanceCheck, ParetoRungPruner, fitted_min_resource
from .train import PROBE_BATCHES, EpochResult


class TimeLimitExceeded(optuna.TrialPruned):
    """The trial passed ``max_training_time_minutes``, or the epochs it will surely train will."""

    def __init__(self, projected_minutes: float, limit: float) -> None:
        super().__init__(f"training time {projected_minutes:.2f} min > max_training_time_minutes {limit}")
        self.projected_minutes = projected_minutes


def single_objective_pruner(config: OptimizationConfig) -> optuna.pruners.BasePruner:
    """Optuna's HyperbandPruner (or SuccessiveHalvingPruner, ``pruning.strategy: asha``), unchanged,
    where Optuna supports pruning (one objective: accuracy)."""
    if not config.pruning.enabled or config.objectives != ["accuracy"]:
        return optuna.pruners.NopPruner()
    p = config.pruning
    min_resource = fitted_min_resource(config.max_epochs_per_trial, p.min_resource, p.reduction_factor, config.pruning_warmup_steps)
    if p.strategy == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=min_resource, reduction_factor=p.reduction_factor)
    return optuna.pruners.HyperbandPruner(
        min_resource=min_resource, max_resource=config.max_epochs_per_trial, reduction_factor=p.reduction_factor
    )


def multi_objective_pruner(config: OptimizationConfig) -> ParetoRungPruner | None:
    if not config.pruning.enabled or len(config.objectives) < 2:
        return None
    pruner = ParetoRungPruner(config)
    return pruner if pruner.active else None


def dominance_check(config: OptimizationConfig) -> DominanceCheck | None:
    """The rule that stops a trial which can no longer reach the front, where it is on (several objectives)."""
    return DominanceCheck(config) if config.dominance_check_on else None


ROUGH_PROBE_MARGIN = 3.0  # after one batch, only a trial this many times over the limit stops
LIVE_VIEW_SECONDS = 5.0  # between two saves of a running trial's history, for the live view


class TrialMonitor:
    """Called by the trainer after every epoch of one trial.

    The epoch history is kept in storage, where it survives restarts and is shared by workers. It
    is saved at each pruning rung of the trial's bracket (peers are compared there), when the trial
    ends (:meth:`save`, by the objective) and otherwise at most every ``LIVE_VIEW_SECONDS``: each
    save is a committed write, 5-10 ms of framework time, which every epoch would pay for nothing.
    """

    def __init__(
        self, trial: optuna.Trial, config: OptimizationConfig, model_size: float, pruner: ParetoRungPruner | None,
        dominance: DominanceCheck | None = None, *, others_may_finish: bool = True,
    ) -> None:
        self.trial = trial
        # Whether other processes may complete trials while this one trains (a shared storage). If
        # not, the completed trials the dominance check compares against are read once a trial.
        self.others_may_finish = others_may_finish
        self.completed: list[FrozenTrial] | None = None
        self.stop_reason: str | None = None  # written by save(), with the history
        self.config = config
        self.model_size = model_size
        self.pruner = pruner
        self.dominance = dominance
        self.time_key = "cpu_seconds" if config.training.time_measure == "cpu" else "wall_seconds"
        self.history: list[dict[str, float]] = []
        self.projected = 0.0  # training time projected to completion after the last epoch (minutes)
        self.saved_epochs = 0
        self.saved_at = -float("inf")
        self.bracket = -1
        if pruner is not None:
            self.bracket = pruner.bracket_of(trial.number)
            trial.set_user_attr(BRACKET_ATTR, self.bracket)

    def minutes(self) -> float:
        """Training time so far, by the configured measure (wall by default)."""
        return sum(h[self.time_key] for h in self.history) / 60

    def __call__(self, epoch: EpochResult) -> None:
        self.history.append({
            "epoch": epoch.epoch, "val_score": epoch.val.composite, "val_loss": epoch.val.loss,
            "wall_seconds": epoch.wall_seconds, "cpu_seconds": epoch.cpu_seconds,
        })
        # Before any check: a trial pruned at a rung is judged feasible or not by this projection.
        self.projected = self.projected_minutes(epoch)
        if not epoch.last:
            self._check_pruning(epoch)
        # The limit before the dominance check: a trial over it is infeasible, whatever dominates it.
        self._check_time(self.projected)
        if epoch.last:
            return
        self._check_dominance(epoch)
        # It trains on: its history at a rung (other workers' pruners compare with it there), or for the live
        # view. A trial stopped here or at its last epoch has it saved by the objective, with its other last writes.
        at_rung = self.pruner is not None and self.pruner.is_rung(self.bracket, epoch.epoch)
        if at_rung or time.monotonic() - self.saved_at >= LIVE_VIEW_SECONDS:
            self.save()

    def projected_minutes(self, epoch: EpochResult) -> float:
        """Training time so far plus the epochs it will surely train before it can complete, each
        as fast as its fastest epoch so far."""
        fastest = min(h[self.time_key] for h in self.history) / 60
        more = 0 if epoch.last else self.completes_at(epoch.epoch, epoch.epochs_since_best) - epoch.epoch
        return self.minutes() + more * fastest

    def save(self) -> None:
        """The history into storage, if it has epochs not saved yet, and why the trial was stopped, if it was
        (the objective calls it however the trial ends, with the trial's other last writes)."""
        if len(self.history) > self.saved_epochs:
            self.trial.set_user_attr("epoch_history", list(self.history))  # a snapshot: in-memory storage keeps the object
            self.saved_epochs, self.saved_at = len(self.history), time.monotonic()
        if self.stop_reason is not None:
            self.trial.set_user_attr("stop_reason", self.stop_reason)

    def probe(self, first_epoch_seconds: float, batches: int) -> None:
        """Early in epoch 1: stop now if the trial cannot complete within the limit (``first_epoch_seconds``:
        by ``training.time_measure``, as the trainer measures it). After fewer than
        PROBE_BATCHES batches the guess includes warm-up (up to 1.6x slow here): only a trial
        ROUGH_PROBE_MARGIN times over the limit stops then; the rest wait for the full probe."""
        margin = 1.0 if batches >= PROBE_BATCHES else ROUGH_PROBE_MARGIN
        self._check_time(self.completes_at(0, 0) * first_epoch_seconds / 60, margin)

    def completes_at(self, done: int, epochs_since_best: int) -> int:
        """The first epoch at which this trial can complete, when ``done`` epochs have passed every check.

        It completes at the epoch budget or when early stopping fires, whichever comes first. A
        pruning rung may end it sooner, but then it is pruned: either way a trial that cannot
        complete within the time limit adds nothing to the front, so the limit counts every epoch
        up to completion (benchmarks/replay.py measures what this saves; it used to count only up
        to the next rung).
        """
        patience = self.config.training.early_stopping_patience
        # Epoch 1 always improves on nothing, so early stopping counts from it at the earliest.
        early_stop = 1 + patience if done == 0 else done + patience - epochs_since_best
        return max(done + 1, min(self.config.max_epochs_per_trial, early_stop))

    def _check_time(self, projected_minutes: float, margin: float = 1.0) -> None:
        """Stop once the projected training time (spent plus certain) breaks the limit (x ``margin``)."""
        limit = self.config.max_training_time_minutes
        if limit is not None and projected_minutes > limit * margin:
            self.stop_reason = f"time limit: {projected_minutes:.2f} min projected > {limit} min"
            raise TimeLimitExceeded(projected_minutes, limit)

    def _check_dominance(self, epoch: EpochResult) -> None:
        if self.dominance is None:
            return
        if self.completed is None or self.others_may_finish:
            self.completed = self.dominance.completed(self.trial.study)
        better = self.dominance.dominator(self.trial.study, self.history, self.projected, self.model_size, self.completed)
        if better is not None:
            fold = " on the first fold" if self.dominance.first_fold else ""
            self.stop_reason = f"dominated at epoch {epoch.epoch} by trial {better.number}{fold}"
            raise optuna.TrialPruned(self.stop_reason)

    def _check_pruning(self, epoch: EpochResult) -> None:
        if self.pruner is not None:
            pruned = self.pruner.should_prune(
                self.trial.study, self.trial.number, self.bracket, self.history, self.model_size
            )
        elif isinstance(self.trial.study.pruner, (optuna.pruners.HyperbandPruner, optuna.pruners.SuccessiveHalvingPruner)):
            score = epoch.val.composite if self.config.pruning.metric == "val_score" else -epoch.val.loss
            self.trial.report(score, epoch.epoch)  # oriented like the study: higher is better
            pruned = self.trial.should_prune()
        else:
            return
        if pruned:
            self.stop_reason = f"pruned at epoch {epoch.epoch}"
            raise optuna.TrialPruned(self.stop_reason)
