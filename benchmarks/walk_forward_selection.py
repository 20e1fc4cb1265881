"""Does walk-forward choose better than one holdout period? Test scores of what each scheme selects.

For each seed, runs the same scenario twice through the CLI, as a user would: holdout, and
walk-forward (``--folds K``) with folds as the fidelity. The holdout study gets ``--cost-ratio``
times the trials (default 1.66, walk-forward's measured wall-time cost in docs/benchmarks.md), so
both spend about the same wall time. Then, for each study, a sample of its complete feasible
trials (always including the one with the best selection score) is retrained exactly as
``retrain`` does (train + validation tail for early stopping, one seed) and tested once on the
test split the search never saw. Prints per seed and scheme:

- the test score (the composite accuracy objective, and balanced accuracy) of the configuration
  with the best selection score (holdout: its validation score; walk-forward: the mean over folds);
- Spearman's correlation between the trials' selection scores and their test scores.

With ``--no-pruning`` every trial trains its folds and epochs in full: fewer trials, but each
with a selection score, which is what the correlation needs (a pruned trial has none).

The goal (issue 29): walk-forward selects a configuration at least as good on test in at least
4 of 5 seeds, with a higher mean correlation. Each seed's result is saved under ``--out``; a run
that stops can be restarted with the same command and skips finished seeds.

    python benchmarks/walk_forward_selection.py --scenario benchmarks/scenarios/signal_volatility.yaml \
        [--data SOURCE] [--seeds 5] [--trials 16] [--folds 4] [--sample 8] [--epochs 30] [--jobs 2] [--out DIR]
        [--no-pruning --cost-ratio 1]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from cnn_lstm_hpo.results import is_feasible
from cnn_lstm_hpo.deployment.retrain import load_saved_study, study_data, train_once
from cnn_lstm_hpo.space import decode_params


def cli(*args: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "cnn_lstm_hpo.cli", *args], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise SystemExit(f"cnn-lstm-hpo {args[0]} failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")


def tested_sample(save_dir: Path, sample: int, epochs: int, seed: int) -> dict:
    """Retrain up to ``sample`` complete feasible trials (the best-scoring one first) and test each once."""
    config, study = load_saved_study(save_dir)
    data = study_data(config, study)
    trials = sorted((t for t in study.get_trials(deepcopy=False) if t.values is not None and is_feasible(t)),
                    key=lambda t: -t.values[0])  # objective 0 is the accuracy objective (maximised)
    rng = np.random.default_rng(seed)
    rest = list(rng.permutation(len(trials) - 1) + 1)[: max(sample - 1, 0)] if len(trials) > 1 else []
    rows = []
    for index in [0, *sorted(rest)] if trials else []:
        trial = trials[index]
        run = train_once(config, data, decode_params(trial.params), config.seed, epochs, torch.device("cpu"),
                         f"trial {trial.number}")
        rows.append({"trial": trial.number, "selection": trial.values[0], "test": run.record["test"]["composite"],
                     "test_balanced_accuracy": run.record["test"]["balanced_accuracy"]})
    rho = spearmanr([r["selection"] for r in rows], [r["test"] for r in rows]).statistic if len(rows) >= 3 else math.nan
    return {"complete_feasible": len(trials), "tested": rows, "selected": rows[0] if rows else None,
            "spearman": float(rho)}


def one_seed(seed: int, args: argparse.Namespace) -> dict:
    done = args.out / f"seed{seed}.json"
    if done.is_file():
        return json.loads(done.read_text())
    result = {"seed": seed}
    holdout_trials = round(args.trials * args.cost_ratio)
    for scheme, extra in (("holdout", ["--n-trials", str(holdout_trials)]),
                          ("walk_forward", ["--n-trials", str(args.trials), "--folds", str(args.folds)])):
        save = args.out / f"seed{seed}_{scheme}"
        data = ["--data", args.data] if args.data else []
        if args.no_pruning:
            extra.append("--no-pruning")
        cli("optimize", "--scenario", args.scenario, *data, "--seed", str(seed), "--save-dir", str(save),
            "--threads", "1", "--quiet", *extra)
        result[scheme] = tested_sample(save, args.sample, args.epochs, seed)
    done.write_text(json.dumps(result, indent=1))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", required=True)
    parser.add_argument("--data", default=None, help="--data for optimize (default: the scenario's)")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--trials", type=int, default=16, help="walk-forward trials per study")
    parser.add_argument("--cost-ratio", type=float, default=1.66, help="holdout trials = ratio x --trials")
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--sample", type=int, default=8, help="trials retrained per study for the correlation")
    parser.add_argument("--epochs", type=int, default=30, help="retrain epoch budget (early stopping on validation)")
    parser.add_argument("--no-pruning", action="store_true", help="train every trial in full (for the correlation)")
    parser.add_argument("--jobs", type=int, default=2, help="seeds at once (one torch thread each)")
    parser.add_argument("--out", type=Path, default=Path("walk_forward_selection"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    # Processes, not threads: torch's global random state (initial weights, dropout) is per process.
    with ProcessPoolExecutor(args.jobs, initializer=torch.set_num_threads, initargs=(1,)) as pool:
        runs = list(pool.map(partial(one_seed, args=args), range(args.seeds)))
    wins = 0
    print("seed | holdout: trials, selected test (balanced acc), Spearman | walk-forward: same")
    for r in runs:
        h, w = r["holdout"], r["walk_forward"]
        if h["selected"] and w["selected"]:
            wins += w["selected"]["test"] >= h["selected"]["test"]
        cells = []
        for s in (h, w):
            sel = s["selected"]
            cells.append(f"{s['complete_feasible']} complete, {sel['test']:.4f} ({sel['test_balanced_accuracy']:.4f}), "
                         f"rho {s['spearman']:.2f}" if sel else "no complete trial")
        print(f"{r['seed']:4d} | {cells[0]} | {cells[1]}")
    rho = {k: float(np.nanmean([r[k]["spearman"] for r in runs])) for k in ("holdout", "walk_forward")}
    print(f"walk-forward's selection at least as good on test in {wins} of {len(runs)} seeds (goal: >= 4 of 5); "
          f"mean Spearman holdout {rho['holdout']:.2f}, walk-forward {rho['walk_forward']:.2f} (goal: higher)")


if __name__ == "__main__":
    main()
