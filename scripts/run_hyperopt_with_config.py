#!/usr/bin/env python
"""The guide's script: ``python scripts/run_hyperopt_with_config.py --scenario quick_test``."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _shim import run  # noqa: E402

if __name__ == "__main__":
    run("Run a hyperparameter optimization scenario.", default_scenario="default")
