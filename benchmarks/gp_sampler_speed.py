"""GPSampler's time per suggestion with and without ``greenlet`` (batched vs sequential L-BFGS-B).

Optuna's GPSampler optimises its acquisition function with L-BFGS-B batched over starting points
when ``greenlet`` is importable, and one start at a time otherwise (with a warning). Each arm runs
in its own process (greenlet is hidden from one of them) on the project's default search space,
two objectives, a cheap synthetic objective: only the sampler's own time is measured.

    python benchmarks/gp_sampler_speed.py [--trials 40] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

ARM = r"""
import json, sys, time
if sys.argv[1] == "without":
    sys.modules["greenlet"] = None  # import greenlet now fails, as where it is not installed
import warnings
warnings.filterwarnings("ignore")
import optuna
from cnn_lstm_hpo.config import OptimizationConfig
from cnn_lstm_hpo.space import suggest
optuna.logging.set_verbosity(optuna.logging.ERROR)
space = OptimizationConfig().search_space
study = optuna.create_study(directions=["maximize", "minimize"],
                            sampler=optuna.samplers.GPSampler(seed=int(sys.argv[3]), n_startup_trials=10))
seconds = []
for _ in range(int(sys.argv[2])):
    started = time.perf_counter()
    trial = study.ask()
    p = suggest(trial, space)
    seconds.append(time.perf_counter() - started)
    study.tell(trial, [-abs(p["learning_rate"] - 1e-3) * 100 - p["dropout_rate"], p["lstm_hidden_dim"] * p["lstm_num_layers"] / 512])
print(json.dumps(seconds))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    late: dict[str, list[float]] = {"with": [], "without": []}
    for seed in range(args.repeats):
        for arm in ("with", "without"):  # alternated: both arms see the same machine load
            out = subprocess.run([sys.executable, "-c", ARM, arm, str(args.trials), str(seed)],
                                 check=True, capture_output=True, text=True).stdout
            seconds = json.loads(out.strip().splitlines()[-1])[10:]  # after the 10 random start-up trials
            late[arm].append(statistics.mean(seconds))
            print(f"seed {seed} {arm:7s} greenlet: {late[arm][-1]:.2f} s a suggestion (trials 11-{args.trials})")
    w, wo = statistics.median(late["with"]), statistics.median(late["without"])
    print(f"GPSampler: {wo / w:.2f}x faster with greenlet ({w:.2f} vs {wo:.2f} s a suggestion, median of {args.repeats})")


if __name__ == "__main__":
    main()
