"""Pruning vs no pruning in multi-objective studies: same sampler seed, same trial count, side by side.

For each data set (synthetic learnable data, bundled real data) and each seed, runs the same
study twice (pruning on, pruning off) and prints total trial-epochs, wall time, best validation
accuracy and the hypervolume of the feasible Pareto front (reference point fixed per data set
and seed: the accuracy objective of the naive majority-class / zero-return model, and 1.1 x the
largest training time and model size seen in either arm), then the medians over seeds and their
ratios. The hypervolume is also compared at equal compute: each arm's front from the trials it
finished within the same cumulative trial-epochs. The training-time objective is CPU time, so the
load of a shared machine does not enter the fronts (moocore computes the hypervolume). Also prints
Spearman's rank correlation between a trial's score at the first rung (epoch 1) and its final
score, from the no-pruning runs.

    python benchmarks/pruning_efficiency.py [--seeds 3] [--n-trials 16] [--max-epochs 12]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import moocore
import numpy as np
import optuna
from optuna.trial import TrialState
from scipy.stats import spearmanr

from cnn_lstm_hpo import MultiObjectiveOptimizer, create_optimization_config
from cnn_lstm_hpo.config import TrainingConfig
from cnn_lstm_hpo.results import is_feasible

SPACE = {
    "cnn_num_filters": {"type": "categorical", "choices": [16, 32, 64]},
    "cnn_attention_heads": {"type": "categorical", "choices": [2, 4, 8]},
    "lstm_hidden_dim": {"type": "categorical", "choices": [16, 32, 64]},
    "lstm_num_layers": {"type": "int", "low": 1, "high": 2},
    "batch_size": {"type": "categorical", "choices": [64, 128, 256]},
}
DATASETS = {
    "synthetic": {"source": "synthetic", "sequence_length": 20, "start": None},  # all 1500 bars
    "bundled": {"source": "sample", "sequence_length": 20, "start": "2011-01-01"},
}


def run_arm(data: dict, seed: int, pruning: bool, args: argparse.Namespace, workdir: Path) -> dict:
    config = create_optimization_config(
        scenario="smoke",
        n_trials=args.n_trials,
        max_epochs_per_trial=args.max_epochs,
        objectives=["accuracy", "training_time", "model_size"],
        search_space=SPACE,
        data=data,
        seed=seed,
        sampler={"n_startup_trials": 5},
        # Epochs differ only by pruning; CPU time: machine load does not move the time objective.
        training={"early_stopping_patience": args.max_epochs, "time_measure": "cpu"},
        pruning={"enabled": pruning},
        timeout_hours=None,  # both arms run all their trials
        max_training_time_minutes=None,
        save_dir=workdir / f"{data['source']}-{seed}-{pruning}",
    )
    started = time.perf_counter()
    optimizer = MultiObjectiveOptimizer(config, progress=False)
    study = optimizer.optimize()
    wall = time.perf_counter() - started
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    spent = np.cumsum([len(t.user_attrs.get("epoch_history", [])) for t in trials])
    return {
        "epochs": int(spent[-1]) if len(spent) else 0,
        "wall": wall,
        "best_acc": max((t.user_attrs["val_metrics"]["accuracy"] for t in complete), default=float("nan")),
        "majority": optimizer.data.val.majority_rate(),
        # (cumulative trial-epochs when the trial ended, objectives) of every feasible complete trial
        "points": [(int(e), list(t.values)) for t, e in zip(trials, spent) if t.state == TrialState.COMPLETE and is_feasible(t)],
        "pruned": sum(t.state == TrialState.PRUNED for t in trials),
        "trials": trials,
    }


def baseline_score(majority_rate: float) -> float:
    """The accuracy objective of the naive model: majority class, zero-return forecast (score 0.5)."""
    cfg = TrainingConfig()
    return (cfg.classification_weight * majority_rate + cfg.regression_weight * 0.5) / (
        cfg.classification_weight + cfg.regression_weight)


MAXIMISE = [True, False, False]  # accuracy, training time, model size


def hypervolume(points: list, reference: np.ndarray, budget: float = float("inf")) -> float:
    """Hypervolume of the trials finished within ``budget`` trial-epochs (dominated points add nothing)."""
    values = np.array([v for spent, v in points if spent <= budget], dtype=float).reshape(-1, 3)
    better = (values[:, 0] > reference[0]) & (values[:, 1:] < reference[1:]).all(axis=1)  # inside the box
    values = values[better]
    return float(moocore.hypervolume(values, ref=reference, maximise=MAXIMISE)) if len(values) else 0.0


def first_rung_correlation(trials: list) -> dict[str, float]:
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    final = [t.values[0] for t in complete]
    at_rung_loss = [-t.user_attrs["epoch_history"][0]["val_loss"] for t in complete]
    at_rung_score = [t.user_attrs["epoch_history"][0]["val_score"] for t in complete]
    return {
        "val_loss": float(spearmanr(at_rung_loss, final).statistic),
        "val_score": float(spearmanr(at_rung_score, final).statistic),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--n-trials", type=int, default=16)
    parser.add_argument("--max-epochs", type=int, default=12)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print(f"{args.n_trials} trials x up to {args.max_epochs} epochs, objectives accuracy/training_time/model_size, "
          f"{args.seeds} seeds")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.datasets:
            rows = []
            correlations = []
            for seed in range(args.seeds):
                # Alternate which arm runs first, so slow phases of a shared machine hit both.
                arms = {flag: None for flag in ((True, False) if seed % 2 == 0 else (False, True))}
                for flag in arms:
                    arms[flag] = run_arm(DATASETS[name], seed, flag, args, Path(tmp))
                on, off = arms[True], arms[False]
                both = [v for _, v in on["points"] + off["points"]]
                # Reference: a model no better than the naive baseline adds nothing.
                reference = np.array([baseline_score(on["majority"]), 1.1 * max((v[1] for v in both), default=1.0),
                                      1.1 * max((v[2] for v in both), default=1.0)])
                on["hv"], off["hv"] = hypervolume(on["points"], reference), hypervolume(off["points"], reference)
                # Equal compute: what the unpruned arm had found after as many trial-epochs as the pruned arm used.
                off["hv_at_equal_epochs"] = hypervolume(off["points"], reference, budget=on["epochs"])
                on["hv_at_equal_epochs"] = on["hv"]
                if len(off["trials"]) and any(t.state == TrialState.COMPLETE for t in off["trials"]):
                    correlations.append(first_rung_correlation(off["trials"]))
                rows.append((on, off))
                print(f"  {name} seed {seed}: epochs {on['epochs']} vs {off['epochs']} | wall {on['wall']:.0f}s vs "
                      f"{off['wall']:.0f}s | best val acc {on['best_acc']:.4f} vs {off['best_acc']:.4f} "
                      f"(majority {on['majority']:.4f}) | HV {on['hv']:.4g} vs {off['hv']:.4g} (none after {on['epochs']} "
                      f"epochs: {off['hv_at_equal_epochs']:.4g}) | pruned {on['pruned']}")
            med = {k: (statistics.median(r[0][k] for r in rows), statistics.median(r[1][k] for r in rows))
                   for k in ("epochs", "wall", "best_acc", "hv")}
            print(f"{name} (medians, pruning vs none):")
            print(f"  trial-epochs {med['epochs'][0]:.0f} vs {med['epochs'][1]:.0f} -> "
                  f"{med['epochs'][1] / med['epochs'][0]:.2f}x fewer")
            print(f"  wall time    {med['wall'][0]:.0f}s vs {med['wall'][1]:.0f}s -> {med['wall'][1] / med['wall'][0]:.2f}x faster")
            print(f"  best val acc {med['best_acc'][0]:.4f} vs {med['best_acc'][1]:.4f}")
            for key, what in (("hv", "at equal trial counts"), ("hv_at_equal_epochs", "at equal trial-epochs")):
                ratios = [r[0][key] / r[1][key] for r in rows if r[1][key] > 0]
                shown = f"{statistics.median(ratios):.3f}" if ratios else "n/a (no front beats the reference in the unpruned arm)"
                print(f"  hypervolume ratio (pruning / none) {what}, median over seeds: {shown}")
            for metric in ("val_loss", "val_score"):
                if not correlations:
                    break
                rho = statistics.median(c[metric] for c in correlations)
                print(f"  Spearman(first-rung {metric}, final accuracy objective), median over seeds: {rho:.3f}")


if __name__ == "__main__":
    main()
