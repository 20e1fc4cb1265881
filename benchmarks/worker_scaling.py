"""Trials per hour with 1 worker and with N workers on this machine: same study budget and seed.

Each arm runs the real CLI (`cnn-lstm-hpo optimize --workers K`) on the bundled data, pruning off so
every trial trains its full epoch budget, in a fresh save dir; the arms alternate over repeats so
machine noise hits both. Threads: 1 worker gets all cores, N workers get cores / N each (the
default). Prints trials per hour per arm and their ratio, end to end and over the trials only
(first trial's start to last trial's end: start-up and final analysis are fixed costs that a study
of hours does not feel). With N workers the starting process is worker 0 and runs trials too.

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

import optuna

from cnn_lstm_hpo.distributed.storage import open_storage

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


def run(workers: int, scenario: Path, save_dir: Path) -> tuple[float, float]:
    """Seconds of one study: end to end (the CLI's start-up and final analysis included), and from
    the first trial's start to the last trial's end (what a long study's throughput converges to)."""
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "cnn_lstm_hpo.cli", "optimize", "--scenario", str(scenario), "--save-dir", str(save_dir),
         "--workers", str(workers), "--quiet"],
        check=True, stdout=subprocess.DEVNULL,
    )
    end_to_end = time.perf_counter() - started
    name = "study.journal" if workers > 1 else "study.db"
    url = f"journal:///{save_dir / name}" if workers > 1 else f"sqlite:///{save_dir / name}"
    trials = optuna.load_study(study_name="scaling", storage=open_storage(url, create=False)).get_trials()
    first = min(t.datetime_start for t in trials)
    last = max(t.datetime_complete for t in trials)
    return end_to_end, (last - first).total_seconds()


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
        rates: dict[str, dict[int, list[float]]] = {"end to end": {1: [], args.workers: []}, "trials only": {1: [], args.workers: []}}
        for repeat in range(args.repeats):
            order = [1, args.workers] if repeat % 2 == 0 else [args.workers, 1]
            for k in order:
                seconds = run(k, scenario, Path(tmp) / f"run-{k}-{repeat}")
                for kind, s in zip(rates, seconds):
                    rates[kind][k].append(args.n_trials / s * 3600)
                print(f"  repeat {repeat}: {k} worker(s) {seconds[0]:.0f} s end to end, {seconds[1]:.0f} s of trials")
    for kind, by_workers in rates.items():
        ratios = [n / one for n, one in zip(by_workers[args.workers], by_workers[1])]
        print(f"trials/hour ({kind}): 1 worker {statistics.median(by_workers[1]):.0f}, {args.workers} workers "
              f"{statistics.median(by_workers[args.workers]):.0f}; ratio {statistics.median(ratios):.2f}x "
              f"[{min(ratios):.2f} - {max(ratios):.2f}]")


if __name__ == "__main__":
    main()
