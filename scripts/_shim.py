"""Shared by the guide's two scripts: translate the guide's flags into ``cnn-lstm-hpo optimize``."""

from __future__ import annotations

import argparse

from cnn_lstm_hpo.cli import app


def run(description: str, default_scenario: str) -> None:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--scenario", default=default_scenario, help="scenario name or YAML file")
    parser.add_argument("--n_trials", type=int)
    parser.add_argument("--max_epochs_per_trial", type=int)
    parser.add_argument("--timeout_hours", type=float)
    parser.add_argument("--symbols", nargs="+")
    parser.add_argument("--objectives", nargs="+")
    parser.add_argument("--data")
    parser.add_argument("--save_dir")
    parser.add_argument("--storage")
    parser.add_argument("--study_name")
    parser.add_argument("--seed", type=int)
    args = parser.parse_args()
    argv = ["optimize", "--scenario", args.scenario]
    for name, value in vars(args).items():
        if name == "scenario" or value is None:
            continue
        flag = "--" + name.replace("_", "-")
        argv += [flag, ",".join(value) if isinstance(value, list) else str(value)]
    app(argv)
