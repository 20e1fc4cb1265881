"""Trials per hour with 1 worker and with N workers on this machine: same study budget and seed.

Each arm runs the real CLI (`cnn-lstm-hpo optimize --workers K`) on the bundled data, pruning off so
every trial trains its full epoch budget, in a fresh save dir; the arms alternate over repeats so
machine noise hits both. Threads: 1 worker gets all cores, N workers get cores / N each (the
default). Prints trials per hour per arm and the ratio per repeat.

    python benchmarks/worker_scaling.py [--workers 2] [--n-trials 8] [--epochs 3] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCENARIO = """\
scaling:
  n_trials: {n_trials}
  max_epochs_per_trial: {epochs}
  timeout_hours: null
  max_training_time_minutes: null
  seed: 7
  data: {{source: sample, sequence_length: 20, start: 2011-01-01}}
  training: {{early_stopping_patience: {epochs}}}
  pruning: {{enabled: false}}
  search_space:
    cnn_num_filters: {{type: categorical, choices: [16, 32]}}
    cnn_attention_heads: {{type: categorical, choices: [2, 4]}}
    lstm_hidden_dim: {{type: categorical, choices: [16, 32]}}
    lstm_num_layers: {{type: int, low: 1, high: 1}}
    batch_size: {{type: categorical, choices: [64, 128]}}
"""


def run(workers: int, scenario: Path, save_dir: Path) -> float:
    """Wall seconds of one study, the CLI's start-up and final analysis included."""
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "cnn_lstm_hpo.cli", "optimize", "--scenario", str(scenario), "--save-dir", str(save_dir),
         "--workers", str(workers), "--quiet"],
        check=True, stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--n-trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    print(f"{args.n_trials} trials x {args.epochs} epochs, {cores} cores; 1 worker x {cores} threads vs "
          f"{args.workers} workers x {max(1, cores // args.workers)} threads; {args.repeats} repeats")
    with tempfile.TemporaryDirectory() as tmp:
        scenario = Path(tmp) / "scaling.yaml"
        scenario.write_text(SCENARIO.format(n_trials=args.n_trials, epochs=args.epochs))
        rates: dict[int, list[float]] = {1: [], args.workers: []}
        for repeat in range(args.repeats):
            order = [1, args.workers] if repeat % 2 == 0 else [args.workers, 1]
            for k in order:
                seconds = run(k, scenario, Path(tmp) / f"run-{k}-{repeat}")
                rates[k].append(args.n_trials / seconds * 3600)
                print(f"  repeat {repeat}: {k} worker(s) {seconds:.0f} s -> {rates[k][-1]:.0f} trials/h")
    ratios = [n / one for n, one in zip(rates[args.workers], rates[1])]
    print(f"trials/hour: 1 worker {statistics.median(rates[1]):.0f}, {args.workers} workers "
          f"{statistics.median(rates[args.workers]):.0f}; ratio {statistics.median(ratios):.2f}x "
          f"[{min(ratios):.2f} - {max(ratios):.2f}]")


if __name__ == "__main__":
    main()
