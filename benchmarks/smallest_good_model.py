"""The smallest retrained Pareto model whose test accuracy is within one standard error of the best.

The guide claims multi-objective search finds models 40-60 % smaller at (nearly) the same accuracy.
This reads ``retrained_models_results.json`` of a study's save dir (written by ``retrain`` or
``optimize --retrain-top-k K``), takes the model with the highest mean test accuracy over seeds as
the best, and among the retrained models whose mean test accuracy is at least the best's mean minus
the best's standard error (over seeds: the one-standard-error rule) picks the one with the fewest
parameters. It prints every model, the choice, and its parameter count as a fraction of the best's.
It also prints the majority-class rate and each model's p-value against it: when no model beats the
majority class, "as accurate as the best" means "as uninformative as the best", and the size ratio
says nothing about the guide's claim.

    python benchmarks/smallest_good_model.py SAVE_DIR
    python benchmarks/smallest_good_model.py SAVE_DIR --run smoke [--data synthetic] [--top-k 3] [--epochs N] [--seeds 3]

With ``--run SCENARIO`` it first runs the study and the retrain stage into SAVE_DIR (no registry);
``--data SOURCE`` replaces the scenario's data source and start date.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

RESULTS_FILE = "retrained_models_results.json"


def run_study(save_dir: Path, scenario: str, data: str | None, top_k: int, epochs: int | None, seeds: int) -> None:
    from cnn_lstm_hpo import MultiObjectiveOptimizer, create_optimization_config

    overrides: dict[str, Any] = {"save_dir": save_dir}
    if data:  # the whole series of the other source: the scenario's start date is for the bundled data
        overrides["data"] = {"source": data, "start": None}
    config = create_optimization_config(scenario=scenario, **overrides)
    optimizer = MultiObjectiveOptimizer(config, progress=False)
    started = time.perf_counter()
    optimizer.optimize()
    searched = time.perf_counter()
    optimizer.retrain_best_models(top_k=top_k, epochs=epochs, seeds=seeds, register=False)
    print(f"study {searched - started:.0f} s, retrain {time.perf_counter() - searched:.0f} s")


def smallest_within_one_se(models: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any], float]:
    """(best, chosen, threshold): best = highest mean test accuracy; chosen = fewest parameters within 1 SE."""
    best = max(models, key=lambda m: (m["test_results"]["accuracy"]["mean"], -m["n_parameters"]))
    threshold = best["test_results"]["accuracy"]["mean"] - best["test_results"]["accuracy"]["sem"]
    eligible = [m for m in models if m["test_results"]["accuracy"]["mean"] >= threshold]
    chosen = min(eligible, key=lambda m: (m["n_parameters"], -m["test_results"]["accuracy"]["mean"]))
    return best, chosen, threshold


def report(save_dir: Path) -> dict[str, Any]:
    path = save_dir / RESULTS_FILE
    if not path.is_file():
        sys.exit(f"error: {path} not found (run `cnn-lstm-hpo retrain --save-dir {save_dir}` first, or pass --run)")
    results = json.loads(path.read_text())
    models = [m for m in results["models"] if m.get("model_path")]
    if not models:
        sys.exit(f"error: {path}: no retrained model was saved")
    pareto = save_dir / "best_configurations.json"
    n_pareto = len(json.loads(pareto.read_text())) if pareto.is_file() else None
    majority = results["baselines"]["majority_class_rate"]
    settings = results["settings"]
    print(f"study {results['study_name']}: {len(models)} retrained of {n_pareto} feasible Pareto configurations; "
          f"{settings['seeds']} seed(s), up to {settings['epochs']} epochs; "
          f"{results['baselines']['test_windows']} test windows, majority-class rate {majority:.4f}")
    print(f"{'k':>2} {'trial':>5} {'params':>8} {'MB':>7} {'test acc mean':>13} {'sem':>7} {'std':>7} {'p(saved)':>9}")
    for m in models:
        acc = m["test_results"]["accuracy"]
        print(f"{m['k']:>2} {m['trial_number']:>5} {m['n_parameters']:>8,} {m['model_size_mb']:>7.4f} "
              f"{acc['mean']:>13.4f} {acc['sem']:>7.4f} {acc['std']:>7.4f} {m['significance']['p_value']:>9.3g}")
    best, chosen, threshold = smallest_within_one_se(models)
    fraction = chosen["n_parameters"] / best["n_parameters"]
    print(f"best: model {best['k']} (trial {best['trial_number']}), test accuracy "
          f"{best['test_results']['accuracy']['mean']:.4f} ± {best['test_results']['accuracy']['sem']:.4f} (sem), "
          f"{best['n_parameters']:,} parameters")
    print(f"smallest within one SE (accuracy >= {threshold:.4f}): model {chosen['k']} (trial {chosen['trial_number']}), "
          f"test accuracy {chosen['test_results']['accuracy']['mean']:.4f}, {chosen['n_parameters']:,} parameters "
          f"= {fraction:.1%} of the best's ({1 - fraction:.1%} smaller)")
    beats = [m["k"] for m in models if m["significance"]["significant"]]
    if not beats:
        print("caveat: no retrained model's test accuracy beats the strongest naive rule (Holm-adjusted p < 0.05); "
              "the size ratio compares models that learned nothing")
    return {"best": best["k"], "chosen": chosen["k"], "fraction": fraction, "significant": beats}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("save_dir", type=Path)
    parser.add_argument("--run", metavar="SCENARIO", help="run this scenario and retrain into SAVE_DIR first")
    parser.add_argument("--data", help="data source override for --run (e.g. synthetic)")
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=None, help="retrain epoch budget (default: retrain's)")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    if args.run:
        run_study(args.save_dir, args.run, args.data, args.top_k, args.epochs, args.seeds)
    report(args.save_dir)


if __name__ == "__main__":
    main()
