#!/usr/bin/env python
"""The guide's script: ``python scripts/run_hyperparameter_optimization.py --n_trials 50 ...``."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _shim import run  # noqa: E402

if __name__ == "__main__":
    run("CNN+LSTM multi-objective hyperparameter optimization.", default_scenario="default")
