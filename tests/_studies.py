"""Small in-memory studies with known structure, built with ``ask``/``tell`` for the analysis tests."""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import optuna
from optuna.trial import TrialState

OBJECTIVES = ["accuracy", "training_time", "model_size"]
DIRECTIONS = ["maximize", "minimize", "minimize"]


def planted_study(n_complete: int = 40, *, n_pruned: int = 6, seed: int = 0, storage: str | None = None,
                  name: str = "planted") -> optuna.Study:
    """``learning_rate`` drives accuracy (planted, monotone), ``lstm_hidden_dim`` drives size and time,
    ``dropout_rate`` drives nothing. One failed trial, one complete trial over the size limit, some
    trials pruned at epoch 2 with their epoch history, validation accuracy near a 0.55 majority rate."""
    rng = np.random.default_rng(seed)
    study = optuna.create_study(directions=DIRECTIONS, study_name=name, storage=storage,
                                sampler=optuna.samplers.RandomSampler(seed=seed))
    study.set_user_attr("objectives", OBJECTIVES)
    for i in range(n_complete + n_pruned + 1):
        trial = study.ask()
        lr = trial.suggest_float("learning_rate", 1e-5, 1e-2, log=True)
        hidden = trial.suggest_categorical("lstm_hidden_dim", [64, 128, 256, 512])
        dropout = trial.suggest_float("dropout_rate", 0.1, 0.5)
        trial.suggest_categorical("lstm_bidirectional", [True, False])
        trial.suggest_categorical("cnn_filter_sizes", ["3,5,7", "2,3,5,8"])
        del dropout  # drawn, never used: the independent parameter
        size = hidden / 64 + rng.normal(0, 0.05)
        trial.set_user_attr("model_size_mb", size)
        over_size = 1.0 if i == 3 else -1.0  # trial 3 breaks the size limit but completes
        trial.set_constraint("model_size_mb", over_size)
        trial.set_constraint("training_time_minutes", -1.0)
        skill = (math.log10(lr) + 5) / 3  # 0..1, rises with the learning rate
        curve = [0.5 + 0.1 * skill * (1 - 0.5**e) + rng.normal(0, 0.002) for e in range(1, 6)]
        if i == n_complete + n_pruned:
            trial.set_user_attr("fail_reason", "TrialDiverged: loss became nan at epoch 1")
            study.tell(trial, state=TrialState.FAIL)
            continue
        pruned = i >= n_complete
        epochs = 2 if pruned else 5
        trial.set_user_attr("epoch_history", [
            {"epoch": e, "val_score": curve[e - 1], "val_loss": 0.7, "wall_seconds": 1.0, "cpu_seconds": 1.0}
            for e in range(1, epochs + 1)
        ])
        if pruned:
            trial.set_user_attr("stop_reason", "pruned at epoch 2")
            study.tell(trial, state=TrialState.PRUNED)
            continue
        accuracy = max(curve)
        n = 500
        val_accuracy = 0.55 + 0.1 * skill
        trial.set_user_attr("val_metrics", {"accuracy": val_accuracy, "majority_rate": 0.55,
                                            "regression_score": 0.49, "composite": accuracy, "n_samples": n})
        study.tell(trial, [accuracy, size * 0.3 + rng.normal(0, 0.01), size])
    return study


def brute_force_front(points: list[tuple[float, ...]], maximise: list[bool]) -> set[int]:
    """Indices of points no other point dominates, by the definition, pair by pair."""
    signs = [-1.0 if m else 1.0 for m in maximise]  # turn everything into minimisation
    q = [[s * v for s, v in zip(signs, p)] for p in points]
    front = set()
    for i, a in enumerate(q):
        dominated = any(
            all(b_k <= a_k for a_k, b_k in zip(a, b)) and any(b_k < a_k for a_k, b_k in zip(a, b))
            for j, b in enumerate(q) if j != i
        )
        if not dominated:
            front.add(i)
    return front


def told(study: optuna.Study, values: list[float] | None, *, feasible: bool = True, state: TrialState = TrialState.COMPLETE,
         attrs: dict | None = None, x: float | None = None) -> None:
    """One trial with a parameter ``x`` (fixed at ``x`` when given), a size constraint, and these attrs."""
    trial = study.ask()
    trial.suggest_float("x", 0, 1) if x is None else trial.suggest_float("x", x, x)
    trial.set_constraint("model_size_mb", -1.0 if feasible else 1.0)
    for key, value in (attrs or {}).items():
        trial.set_user_attr(key, value)
    study.tell(trial, values, state=state) if state == TrialState.COMPLETE else study.tell(trial, state=state)


DEGENERATE = ["empty", "one complete", "one objective", "only pruned and failed", "constant parameter"]


def degenerate_studies(storage: Callable[[str], str] | None = None) -> dict[str, optuna.Study]:
    """Studies too small for some part of the analysis, by the names in DEGENERATE; in memory, or
    each in the storage ``storage(name)`` gives."""
    def create(name: str, **directions: Any) -> optuna.Study:
        return optuna.create_study(study_name=name.replace(" ", "-"), storage=storage and storage(name), **directions)

    empty = create("empty", directions=["maximize", "minimize"])
    one = create("one complete", directions=["maximize", "minimize"])
    told(one, [0.5, 1.0])
    single = create("one objective", direction="maximize")
    for v in (0.5, 0.6, 0.7):
        told(single, [v])
    stopped = create("only pruned and failed", directions=["maximize", "minimize"])
    told(stopped, None, state=TrialState.PRUNED, attrs={"stop_reason": "pruned at epoch 1",
                                                        "epoch_history": [{"epoch": 1, "val_score": 0.5}]})
    told(stopped, None, state=TrialState.FAIL, attrs={"fail_reason": "RuntimeError: out of memory"})
    constant = create("constant parameter", directions=["maximize", "minimize"])
    for v in (0.5, 0.6, 0.7, 0.8):
        told(constant, [v, 1 - v], x=0.3)
    return dict(zip(DEGENERATE, [empty, one, single, stopped, constant]))

