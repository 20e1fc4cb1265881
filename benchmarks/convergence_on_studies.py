"""Where ``convergence.patience`` would have stopped studies that ran to the end, and what it kept.

A sequential study with the rule on is the same study cut short: the rule looks only at trials
finished before each new one starts. So each prefix of a finished study (in completion order)
is checked with the product's own rule (cnn_lstm_hpo.convergence.front_stall), and the prints
give the first stop, the minutes up to it and the hypervolume kept (one reference point: the
full study's). Studies run with several workers are only approximated this way.

    python benchmarks/convergence_on_studies.py STUDY.db [STUDY.db ...] [--patience 5 10 15 20] [--startup 10]
"""

from __future__ import annotations

import argparse

import moocore
import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from cnn_lstm_hpo.reporting.analysis import is_feasible, maximised
from cnn_lstm_hpo.objectives import reference_point
from cnn_lstm_hpo.convergence import front_stall


def feasible_values(trials: list[FrozenTrial], n_objectives: int) -> np.ndarray:
    rows = [t.values for t in trials if t.state == TrialState.COMPLETE and is_feasible(t)]
    return np.array(rows, dtype=float).reshape(-1, n_objectives)


def minutes(trials: list[FrozenTrial]) -> float:
    return (max(t.datetime_complete for t in trials) - min(t.datetime_start for t in trials)).total_seconds() / 60


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("studies", nargs="+", help="SQLite files of finished studies")
    parser.add_argument("--patience", type=int, nargs="+", default=[5, 10, 15, 20])
    parser.add_argument("--min-improvement", type=float, default=0.001)
    parser.add_argument("--startup", type=int, default=10, help="the sampler's random start-up trials (tpe: n_startup_trials)")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for path in args.studies:
        url = f"sqlite:///{path}"
        for name in optuna.get_all_study_names(url):
            study = optuna.load_study(study_name=name, storage=url)
            trials = sorted((t for t in study.trials if t.state.is_finished()), key=lambda t: (t.datetime_complete, t.number))
            maximise = maximised(study)
            full = feasible_values(trials, len(maximise))
            if not len(full):
                print(f"{path} [{name}]: no feasible complete trial")
                continue
            ref = reference_point(full, maximise)
            volume = float(moocore.hypervolume(full, ref=ref, maximise=maximise))
            print(f"{path} [{name}]: {len(trials)} finished trials, {len(full)} feasible complete, {minutes(trials):.1f} min")
            for patience in args.patience:
                stop = next((k for k in range(1, len(trials) + 1)
                             if front_stall(trials[:k], study.directions, patience, args.min_improvement, after=args.startup)), None)
                if stop is None:
                    print(f"  patience {patience}: never stops")
                    continue
                kept = feasible_values(trials[:stop], len(maximise))
                share = float(moocore.hypervolume(kept, ref=ref, maximise=maximise)) / volume if len(kept) else 0.0
                print(f"  patience {patience}: stops after {stop} trials, {minutes(trials[:stop]):.1f} of "
                      f"{minutes(trials):.1f} min, hypervolume {share:.3f} of the full study")


if __name__ == "__main__":
    main()
