"""Replay whole studies on recorded learning curves (src/cnn_lstm_hpo/curves): the goals of issue 11.

The replay (src/cnn_lstm_hpo/replay.py) is the project's own study loop with epochs read from the
table on a simulated clock; unrecorded configurations get the nearest recorded curve and a fitted
epoch time, which is extrapolation: the table covers what src/cnn_lstm_hpo/curves/README.json says.

Prints, over seeds:
- P1: trial-epochs and hypervolume with pruning vs without, same trial count;
- P2: hypervolume of the default (TPE + pruning + constraints) vs random search at the same
  simulated time budget, and how often the default wins;
- samplers: Optuna's samplers (``sampler.type``: tpe, gp, nsga2, random) at the same simulated
  time budget, hypervolume against random search;
- convergence: stopping when the front stalls (``convergence.patience``) against running every
  trial: trials, simulated time and hypervolume;
- walk-forward: the cost of walk-forward K folds (folds as the fidelity) against holdout for the
  same trials, and against every trial paying every fold (pruning off), with its hypervolume
  (no curves per fold are recorded: ReplayOptimizer's docstring says how folds are replayed);
- P4: the framework's own cost per trial (real seconds: sampler, pruner, storage, callbacks) as the
  study grows, per storage, as a share of 5-second trials, beside a hand-written Optuna script's.

P1 also counts the dominance stops on "twins" (a configuration replaying its dominator's own
curve); ``--score-jitter`` makes twins differ. P2 also prints its ceiling on the table (a long
random search without a budget, ``--reachable-trials``).

    python benchmarks/replay.py [--table src/cnn_lstm_hpo/curves/synthetic.jsonl.gz] [--seeds 5] [--n-trials 300]
        [--budget-hours 2] [--samplers tpe tpe-independent gp nsga2] [--overhead-trials 100 1000]
        [--p1-arms [rungs plain ...]] [--score-jitter 0.005] [--reachable-trials 2000]
        [--storages sqlite journal] [--postgres-url URL] [--folds 4] [--fold-spread 0.024]
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import moocore
import numpy as np
import optuna
from optuna.trial import TrialState

from cnn_lstm_hpo import study as study_module
from cnn_lstm_hpo.config import OptimizationConfig, create_optimization_config
from cnn_lstm_hpo.objectives import directions
from cnn_lstm_hpo.replay import CURVES, FOLD_SPREAD, CurveTable, load_rows, loaders_for, replay
from cnn_lstm_hpo.results import epochs_trained, is_feasible
from cnn_lstm_hpo.samplers import make_sampler
from cnn_lstm_hpo.space import decode_params, suggest
from cnn_lstm_hpo.distributed.storage import close_storage, is_journal, journal_url, open_storage, write_ahead
from cnn_lstm_hpo.windows import prepare_windows

DATA = {"synthetic": {"source": "synthetic"}, "sample": {"source": "sample", "start": "2011-01-01"}}


# --- the goals ----------------------------------------------------------------------------------------
def front_points(study: optuna.Study) -> np.ndarray:
    done = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE and is_feasible(t)]
    return np.array([t.values for t in done], dtype=float).reshape(-1, len(study.directions))


def hypervolumes(*points: np.ndarray) -> list[float]:
    """Hypervolumes against one reference: the worst accuracy seen, 1.1 x the largest of each other
    objective (accuracy first, then objectives to minimise, as every scenario orders them)."""
    both = np.vstack(points)
    if not len(both):
        return [0.0 for _ in points]
    ref = np.concatenate([[both[:, 0].min()], 1.1 * both[:, 1:].max(axis=0) + 1e-9])
    maximise = [True] + [False] * (both.shape[1] - 1)
    out = []
    for p in points:
        inside = p[(p[:, 0] > ref[0]) & (p[:, 1:] < ref[1:]).all(axis=1)]
        out.append(float(moocore.hypervolume(inside, ref=ref, maximise=maximise)) if len(inside) else 0.0)
    return out


def base_config(args: argparse.Namespace, seed: int, save_dir: Path, **overrides: Any) -> OptimizationConfig:
    settings: dict[str, Any] = dict(
        scenario="default", n_trials=args.n_trials, max_epochs_per_trial=args.max_epochs, seed=seed,
        data=DATA[args.data], save_dir=save_dir, timeout_hours=None, max_training_time_minutes=args.time_limit,
        study_name="replay", pruning_warmup_steps=args.pruning_warmup,
    )
    return create_optimization_config(**{**settings, **overrides})


def goal_p1(args: argparse.Namespace, table: CurveTable, loaders: tuple, tmp: Path) -> None:
    # "pruning": the default (rungs and the dominance check). "rungs": the rungs alone (the default
    # before pruning.dominance_quantile). "plain": what a hand-written Optuna script does, every trial
    # to the epoch budget (no pruning, no early stopping): where the savings of the whole policy come
    # from. "eager": the rungs alone, earliest (epoch 1, eta 4): how much more rungs could save.
    rungs_only = {"dominance_quantile": None}
    specs = {"pruning": {}, "none": {"pruning": {"enabled": False}}, "rungs": {"pruning": rungs_only},
             "plain": {"pruning": {"enabled": False}, "training": {"early_stopping_patience": args.max_epochs}},
             "eager": {"pruning": {**rungs_only, "min_resource": 1, "reduction_factor": 4}, "pruning_warmup_steps": 0}}
    # "asha-N": the most aggressive bracket alone (pruning.strategy: asha), rungs from epoch 1, eta N.
    for eta in args.asha_eta:
        specs[f"asha-{eta}"] = {"pruning": {**rungs_only, "strategy": "asha", "min_resource": 1, "reduction_factor": eta},
                                "pruning_warmup_steps": 0}
    # "dominance-Q": the default rungs with pruning.dominance_quantile Q instead of the default's.
    for q in args.dominance_quantile:
        specs[f"dominance-{q}"] = {"pruning": {"dominance_quantile": q}}
    pairs = [("pruning", "none"), ("pruning", "plain"), ("rungs", "none"), ("eager", "none"),
             *((f"asha-{eta}", "none") for eta in args.asha_eta), *((f"dominance-{q}", "none") for q in args.dominance_quantile)]
    if args.p1_arms is not None:  # fewer arms: a 1000-trial study takes minutes an arm
        specs = {k: v for k, v in specs.items() if k in {"pruning", "none", *args.p1_arms}}
        pairs = [pair for pair in pairs if set(pair) <= specs.keys()]
    ratios: dict[tuple, list[float]] = {pair: [] for pair in pairs}
    hv_ratios: dict[tuple, list[float]] = {pair: [] for pair in pairs}
    ceilings: list[float] = []
    twins: list[tuple[int, int]] = []
    for seed in range(args.seeds):
        arms = {name: replay(base_config(args, seed, tmp / f"p1-{seed}-{name}", **extra), table, loaders)[0]
                for name, extra in specs.items()}
        epochs = {k: epochs_trained(s.trials) for k, s in arms.items()}
        # The most any rung rule could save against "none": every trial that trained stops after one epoch.
        ceilings.append(epochs["none"] / max(1, sum(bool(t.user_attrs.get("epoch_history")) for t in arms["none"].trials)))
        hv = dict(zip(arms, hypervolumes(*(front_points(s) for s in arms.values()))))
        twins.append(twin_stops(arms["pruning"], table))
        for a, b in pairs:
            ratios[a, b].append(epochs[b] / max(epochs[a], 1))
            hv_ratios[a, b].append(hv[a] / hv[b] if hv[b] else float("nan"))
        print(f"  P1 seed {seed}: trial-epochs " + ", ".join(f"{k} {v}" for k, v in epochs.items()) + "; "
              + "; ".join(f"{a} vs {b}: {ratios[a, b][-1]:.2f}x fewer, hypervolume ratio {hv_ratios[a, b][-1]:.3f}"
                          for a, b in pairs))
    med = {pair: (statistics.median(ratios[pair]), statistics.median(hv_ratios[pair])) for pair in pairs}
    print(f"P1: {med['pruning', 'none'][0]:.2f}x fewer trial-epochs with pruning (goal >= 5x), hypervolume "
          f"{med['pruning', 'none'][1]:.3f} of the unpruned study (goal >= 0.95); medians over {args.seeds} seeds")
    print(f"    ceiling for any pruning rule against early stopping alone: {statistics.median(ceilings):.2f}x "
          "(every trial that trained stopped after its first epoch)")
    print(f"    trials the dominance check stopped that replayed their dominator's own curve: "
          f"{sum(t[0] for t in twins)} of {sum(t[1] for t in twins)} (--score-jitter makes such twins differ)")
    labels = {"plain": "against plain trials (no pruning, no early stopping)",
              "rungs": "the rungs alone (no dominance check) against none",
              "eager": "eager rungs (epoch 1, eta 4) against none",
              **{f"asha-{eta}": f"asha (one bracket, rungs from epoch 1, eta {eta}) against none" for eta in args.asha_eta},
              **{f"dominance-{q}": f"dominance check at quantile {q} against none" for q in args.dominance_quantile}}
    for a, b in pairs[1:]:
        print(f"    {labels[b if b == 'plain' else a]}: {med[a, b][0]:.2f}x fewer, hypervolume {med[a, b][1]:.3f}")


def twin_stops(study: optuna.Study, table: CurveTable) -> tuple[int, int]:
    """(trials stopped by the dominance check whose curve is their dominator's, all it stopped)."""
    by_number = {t.number: t for t in study.trials}
    curve_of = lambda t: table.curve(decode_params(t.params))["params"]  # noqa: E731
    twins = stopped = 0
    for t in study.trials:
        found = re.match(r"dominated at epoch \d+ by trial (\d+)", t.user_attrs.get("stop_reason", ""))
        if found:
            stopped += 1
            twins += curve_of(t) == curve_of(by_number[int(found.group(1))])
    return twins, stopped


def at_budget(args: argparse.Namespace, arms: dict[str, dict], table: CurveTable, loaders: tuple, tmp: Path,
              tag: str, reachable: np.ndarray | None = None) -> list[dict[str, float]]:
    """Per seed, each arm's hypervolume (one reference per seed) after the same simulated time budget;
    with ``reachable`` (points found without a budget) also "reachable": that and every arm's front."""
    per_seed = []
    for seed in range(args.seeds):
        studies = {}
        for name, extra in arms.items():
            cfg = base_config(args, seed, tmp / f"{tag}-{seed}-{name}", n_trials=100_000,
                              timeout_hours=args.budget_hours, **extra)
            studies[name] = replay(cfg, table, loaders)[0]
        fronts = {name: front_points(s) for name, s in studies.items()}
        if reachable is not None:
            fronts["reachable"] = np.vstack([reachable, *fronts.values()])
        hv = dict(zip(fronts, hypervolumes(*fronts.values())))
        per_seed.append(hv)
        shown = ", ".join(f"{k} {v:.4g}" + (f" ({len(studies[k].trials)} trials)" if k in studies else "") for k, v in hv.items())
        print(f"  {tag} seed {seed}: hypervolume after {args.budget_hours} h: {shown}")
    return per_seed


def ratio(a: float, b: float) -> float:
    return a / b if b else (1.0 if a == b else float("inf"))


def goal_p2(args: argparse.Namespace, table: CurveTable, loaders: tuple, tmp: Path) -> None:
    arms = {"default": {}, "random": {"sampler": {"type": "random"}, "pruning": {"enabled": False}}}
    for q in args.dominance_quantile:  # the default with another pruning.dominance_quantile
        arms[f"dominance-{q}"] = {"pruning": {"dominance_quantile": q}}
    # What any sampler could reach on this table: a long random search without a time budget.
    reachable = None
    if args.reachable_trials:
        cfg = base_config(args, 10_000, tmp / "P2-reachable", n_trials=args.reachable_trials, **arms["random"])
        reachable = front_points(replay(cfg, table, loaders)[0])
    per_seed = at_budget(args, arms, table, loaders, tmp, "P2", reachable)
    ratios = [ratio(hv["default"], hv["random"]) for hv in per_seed]
    wins = sum(r > 1 for r in ratios)
    print(f"P2: default / random hypervolume at {args.budget_hours} simulated hours: median "
          f"{statistics.median(ratios):.3f}x (goal >= 1.10), default wins {wins} of {len(ratios)} seeds (goal >= 80 %)")
    if reachable is not None:
        ceilings = [ratio(hv["reachable"], hv["random"]) for hv in per_seed]
        print(f"    ceiling: the front reachable on this table (random search, {args.reachable_trials} trials, no "
              f"budget, with every arm's front) / random at the budget: median {statistics.median(ceilings):.3f}x "
              f"(seeds: {', '.join(f'{c:.3f}' for c in ceilings)}); the default reaches a median "
              f"{statistics.median(hv['default'] / hv['reachable'] for hv in per_seed):.3f} of it")
    for q in args.dominance_quantile:
        ratios = [ratio(hv[f"dominance-{q}"], hv["random"]) for hv in per_seed]
        print(f"    with pruning.dominance_quantile {q}: median {statistics.median(ratios):.3f}x, "
              f"wins {sum(r > 1 for r in ratios)} of {len(ratios)} seeds")


def goal_samplers(args: argparse.Namespace, table: CurveTable, loaders: tuple, tmp: Path) -> None:
    """Optuna's samplers (sampler.type) against each other, each with the default pruning and limits."""
    choices = {kind: {"sampler": {"type": kind}} for kind in ("tpe", "gp", "nsga2", "random")}
    choices["tpe-joint"] = {"sampler": {"type": "tpe", "multivariate": True}}
    choices["tpe-independent"] = {"sampler": {"type": "tpe", "multivariate": False}}
    arms = {kind: choices[kind] for kind in dict.fromkeys([*args.samplers, "random"])}
    per_seed = at_budget(args, arms, table, loaders, tmp, "samplers")
    for kind in arms:
        ratios = [ratio(hv[kind], hv["random"]) for hv in per_seed]
        best = sum(hv[kind] == max(hv.values()) for hv in per_seed)
        print(f"samplers: {kind:6s} / random hypervolume median {statistics.median(ratios):.3f}x, "
              f"best (ties included) in {best} of {len(per_seed)} seeds")


def goal_convergence(args: argparse.Namespace, table: CurveTable, loaders: tuple, tmp: Path) -> None:
    """Stopping when the front stalls (convergence.patience) against running every trial."""
    arms = {"all": {}, **{f"patience {p}": {"convergence": {"patience": p, "min_improvement": args.min_improvement}}
                          for p in args.patience}}
    rows = []
    for seed in range(args.seeds):
        runs = {name: replay(base_config(args, seed, tmp / f"conv-{seed}-{i}", **extra), table, loaders)
                for i, (name, extra) in enumerate(arms.items())}
        hv = dict(zip(runs, hypervolumes(*(front_points(r[0]) for r in runs.values()))))
        rows.append({name: (len(r[0].trials), r[1] / 3600, hv[name]) for name, r in runs.items()})
        print(f"  convergence seed {seed}: " + " | ".join(
            f"{name}: {n} trials, {hours:.1f} simulated h, HV {h:.4g}" for name, (n, hours, h) in rows[-1].items()))
    for name in list(arms)[1:]:
        trials = statistics.median(r[name][0] / r["all"][0] for r in rows)
        hours = statistics.median(r[name][1] / r["all"][1] for r in rows)
        quality = statistics.median(ratio(r[name][2], r["all"][2]) for r in rows)
        print(f"convergence {name} (min_improvement {args.min_improvement}): {trials:.2f} of the trials, {hours:.2f} of the "
              f"simulated time, hypervolume {quality:.3f} of running all {args.n_trials}; medians over {args.seeds} seeds")


COUNTS_TO_COMPLETION = study_module.TrialMonitor


class CountsToNextRung(COUNTS_TO_COMPLETION):
    """The time-limit policy before 2026-11-29: only epochs up to the next pruning rung were certain."""

    def completes_at(self, done: int, epochs_since_best: int) -> int:
        through = super().completes_at(done, epochs_since_best)
        if self.pruner is not None:
            later = [r for r in self.pruner.brackets[self.bracket] if r > done]
            if later:
                return max(done + 1, min(through, later[0]))
        return through


def goal_walk_forward(args: argparse.Namespace, table: CurveTable, loaders: tuple, tmp: Path) -> None:
    """Walk-forward with its fold rungs against holdout (the cost goal: at most 1.6x for the same
    trials) and against walk-forward without pruning (what the fold rungs save, at what hypervolume)."""
    folds = {"evaluation": {"scheme": "walk_forward", "folds": args.folds}}
    arms = {"holdout": {}, "walk-forward": folds, "walk-forward, no pruning": {**folds, "pruning": {"enabled": False}}}
    rows = []
    for seed in range(args.seeds):
        out = {}
        for name, extra in arms.items():
            study, seconds, _ = replay(base_config(args, seed, tmp / f"wf-{seed}-{len(out)}", **extra), table, loaders,
                                       fold_spread=args.fold_spread)
            trials = study.get_trials(deepcopy=False)
            out[name] = {"hours": seconds / 3600, "complete": sum(t.state == TrialState.COMPLETE for t in trials),
                         "folds": sum(len(t.user_attrs.get("fold_scores", ())) for t in trials), "front": front_points(study)}
        hv = hypervolumes(out["walk-forward"]["front"], out["walk-forward, no pruning"]["front"])
        rows.append({"cost": out["walk-forward"]["hours"] / out["holdout"]["hours"],
                     "saved": out["walk-forward, no pruning"]["hours"] / out["walk-forward"]["hours"],
                     "hv": ratio(*hv)})
        print(f"  seed {seed}: " + " | ".join(
            f"{name}: {o['hours']:.2f} simulated h, {o['complete']} complete" + (f", {o['folds']} folds trained" if o["folds"] else "")
            for name, o in out.items()) + f" | walk-forward / holdout {rows[-1]['cost']:.2f}x", flush=True)
    print(f"walk-forward ({args.folds} folds, fold spread {args.fold_spread}) / holdout, {args.n_trials} trials, "
          f"{args.seeds} seeds: median {statistics.median(r['cost'] for r in rows):.2f}x the simulated time (goal <= 1.6x); "
          f"its pruning saves {statistics.median(r['saved'] for r in rows):.2f}x of every fold paid in full at hypervolume "
          f"{statistics.median(r['hv'] for r in rows):.3f} of it (medians; replayed)")


def goal_time_limit(args: argparse.Namespace, table: CurveTable, loaders: tuple, tmp: Path) -> None:
    """The time limit counting epochs to completion (now) vs to the next rung (before), on quick_test."""
    rows = []
    for seed in range(args.seeds):
        arms = {}
        for name, monitor in (("to completion", COUNTS_TO_COMPLETION), ("to next rung", CountsToNextRung)):
            study_module.TrialMonitor = monitor  # the real optimizer, with the old policy swapped in
            try:
                # Without the dominance check: its projection uses completes_at too, which the arms change.
                cfg = create_optimization_config(scenario="quick_test", seed=seed, data=DATA[args.data],
                                                 save_dir=tmp / f"tl-{seed}-{len(arms)}", study_name="replay",
                                                 pruning={"dominance_quantile": None})
                arms[name] = replay(cfg, table, loaders)
            finally:
                study_module.TrialMonitor = COUNTS_TO_COMPLETION
        hv = hypervolumes(*(front_points(a[0]) for a in arms.values()))
        rows.append([(a[1] / 3600, epochs_trained(a[0].trials), h, len(a[0].trials)) for a, h in zip(arms.values(), hv)])
        print(f"  seed {seed}: " + " | ".join(f"{name}: {hours:.2f} h, {n} trials, {epochs} epochs, HV {h:.4g}"
                                              for name, (hours, epochs, h, n) in zip(arms, rows[-1])))
    for i, name in enumerate(("to completion", "to next rung")):
        print(f"  {name}: median {statistics.median(r[i][0] for r in rows):.2f} simulated h, "
              f"{statistics.median(r[i][1] for r in rows):.0f} trial-epochs")
    speed = [r[1][0] / r[0][0] for r in rows if r[0][0] > 0]
    quality = [r[0][2] / r[1][2] for r in rows if r[1][2] > 0]
    print(f"time limit to completion vs to next rung (quick_test, {args.seeds} seeds): "
          f"{statistics.median(speed):.2f}x less simulated time, hypervolume ratio "
          f"{statistics.median(quality) if quality else float('nan'):.3f}")


def goal_time_limit_real(args: argparse.Namespace, table: CurveTable, loaders: tuple, tmp: Path) -> None:
    """The same two policies on real studies (bundled data, a space where some models reach the first
    rung within the limit but cannot complete in it); arms alternate per seed."""
    space = {"cnn_num_filters": {"type": "categorical", "choices": [16, 64]},
             "lstm_hidden_dim": {"type": "categorical", "choices": [32, 256]},
             "lstm_num_layers": {"type": "int", "low": 1, "high": 3},
             "lstm_bidirectional": {"type": "categorical", "choices": [False, True]},
             "batch_size": {"type": "categorical", "choices": [64, 256]}}
    arms_all = (("to completion", COUNTS_TO_COMPLETION), ("to next rung", CountsToNextRung))
    rows = []
    for seed in range(args.seeds):
        arms = {}
        for name, monitor in (arms_all if seed % 2 == 0 else arms_all[::-1]):
            study_module.TrialMonitor = monitor
            try:
                cfg = create_optimization_config(
                    scenario="smoke", n_trials=args.real_trials, max_epochs_per_trial=9, seed=seed, search_space=space,
                    data={"source": "sample", "start": "2011-01-01", "sequence_length": 20},
                    objectives=["accuracy", "training_time"], timeout_hours=None,
                    max_training_time_minutes=args.real_limit, training={"early_stopping_patience": 3},
                    pruning={"enabled": True, "min_resource": 1, "reduction_factor": 3, "dominance_quantile": None},
                    pruning_warmup_steps=0,
                    save_dir=tmp / f"real-{seed}-{name.replace(' ', '-')}")
                started = time.perf_counter()
                study = study_module.MultiObjectiveOptimizer(cfg, progress=False).optimize()
                arms[name] = (study, time.perf_counter() - started)
            finally:
                study_module.TrialMonitor = COUNTS_TO_COMPLETION
        names = [n for n, _ in arms_all]
        hv = dict(zip(names, hypervolumes(*(front_points(arms[n][0]) for n in names))))
        rows.append({n: (arms[n][1], epochs_trained(arms[n][0].trials), hv[n]) for n in names})
        print(f"  real seed {seed}: " + " | ".join(f"{n}: {w:.0f} s, {e} epochs, HV {h:.4g}" for n, (w, e, h) in rows[-1].items()))
    speed = statistics.median(r["to next rung"][0] / r["to completion"][0] for r in rows)
    quality = [r["to completion"][2] / r["to next rung"][2] for r in rows if r["to next rung"][2] > 0]
    print(f"real runs ({args.real_trials} trials, limit {args.real_limit} min, {args.seeds} seeds): to completion is "
          f"{speed:.2f}x faster than to next rung, hypervolume ratio {statistics.median(quality) if quality else float('nan'):.3f}")


def storage_url(kind: str, folder: Path, postgres_url: str | None) -> str | None:
    if kind == "sqlite":
        return f"sqlite:///{folder / 'study.db'}"
    if kind == "journal":
        return journal_url(folder / "study.journal")
    return postgres_url


def optuna_alone(cfg: OptimizationConfig, url: str, name: str) -> float:
    """Real seconds of what a hand-written Optuna script does for the same study, and no more: the
    same database (Optuna's own storage on it; SQLite in WAL mode, as ours), sampler, search space,
    objectives and two constraints a trial, values drawn at random. No pruner, history, attributes or
    result files: Optuna's own floor."""
    storage = open_storage(url) if is_journal(url) else optuna.storages.RDBStorage(url)
    try:
        study = optuna.create_study(storage=storage, study_name=name, directions=directions(cfg.objectives),
                                    sampler=make_sampler(cfg.sampler, cfg.seed, shared=not url.startswith("sqlite")))
        write_ahead(storage, url)
        rng = np.random.default_rng(cfg.seed)

        def objective(trial: optuna.Trial) -> list[float]:
            suggest(trial, cfg.search_space)
            for key in ("training_time", "model_size"):
                trial.set_constraint(key, rng.uniform(-1, 0.2))
            return [rng.uniform(0.4, 0.6)] + list(rng.uniform(0.01, 10, len(cfg.objectives) - 1))

        started = time.perf_counter()
        study.optimize(objective, n_trials=cfg.n_trials)
        return time.perf_counter() - started
    finally:
        close_storage(storage)


def goal_p4(args: argparse.Namespace, table: CurveTable, loaders: tuple, tmp: Path) -> None:
    print("P4: the framework's real seconds per trial (trials replayed, so training costs nothing; the replay's "
          "stand-ins for building the model and finding its curve are the trial's work, left out), "
          "as a share of 5-second trials; beside it, a hand-written Optuna script's on the same storage")
    for kind in args.storages:
        for n in args.overhead_trials:
            folder = tmp / f"p4-{kind}-{n}"
            url = storage_url(kind, folder, args.postgres_url)
            if url is None:
                print(f"  {kind}: skipped (pass --postgres-url)")
                break
            folder.mkdir(parents=True, exist_ok=True)
            name = f"p4_{kind}_{n}_{time.time_ns()}"  # a fresh study on a shared server
            cfg = base_config(args, 0, folder, n_trials=n, storage=url, study_name=name)
            # Its own file, so that neither study runs in a file the other has filled (on a server: its own study).
            alone_url = storage_url(kind, folder / "optuna-alone", args.postgres_url)
            (folder / "optuna-alone").mkdir(exist_ok=True)
            alone = optuna_alone(cfg, alone_url, name + "_optuna_alone")
            study, _, framework = replay(cfg, table, loaders)
            late = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)[-max(1, n // 10):]
            late_ms = statistics.mean((t.datetime_complete - t.datetime_start).total_seconds() for t in late) * 1000
            print(f"  {kind:10s} {n:5d} trials: {framework / n * 1000:6.1f} ms/trial overall "
                  f"({framework / n / 5 * 100:.2f} % of 5 s), last tenth's trials {late_ms:.1f} ms in the objective "
                  f"(stand-ins included); Optuna alone {alone / n * 1000:.1f} ms/trial "
                  f"({alone / n / 5 * 100:.2f} %), ours / Optuna's {framework / alone:.2f}x")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", type=Path, default=CURVES / "synthetic.jsonl.gz")
    parser.add_argument("--data", choices=list(DATA), default=None, help="default: from the table's file name")
    parser.add_argument("--goals", nargs="+", default=["P1", "P2", "P4"], choices=["P1", "P2", "P4", "samplers", "convergence", "time-limit", "time-limit-real", "walk-forward"])
    parser.add_argument("--real-trials", type=int, default=12)
    parser.add_argument("--real-limit", type=float, default=0.5, help="max_training_time_minutes of the real runs")
    parser.add_argument("--time-scale", type=float, default=None,
                        help="epoch times as this multiple of the table's cost model (from `cnn-lstm-hpo plan`)")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--n-trials", type=int, default=300)
    parser.add_argument("--max-epochs", type=int, default=50)
    parser.add_argument("--time-limit", type=float, default=120.0,
                        help="max_training_time_minutes (120: the guide's; the default scenario now derives 2.88 from its budget)")
    parser.add_argument("--pruning-warmup", type=int, default=OptimizationConfig().pruning_warmup_steps,
                        help="pruning_warmup_steps: epochs before the first rung (a policy candidate)")
    parser.add_argument("--asha-eta", type=int, nargs="*", default=[3, 4], help="--goals P1: asha arms, one per reduction factor")
    parser.add_argument("--p1-arms", nargs="*", default=None,
                        help="--goals P1: only these arms besides pruning and none (rungs plain eager asha-N dominance-Q)")
    parser.add_argument("--score-jitter", type=float, default=0.0,
                        help="each unrecorded configuration's scores move by its own normal offset of this standard deviation "
                             "(benchmarks/replay_fidelity.py measured 0.017 on the sample table)")
    parser.add_argument("--dominance-quantile", type=float, nargs="*", default=[],
                        help="--goals P1 P2: more arms, the default with this pruning.dominance_quantile (0.5 is the default's)")
    parser.add_argument("--budget-hours", type=float, default=2.0)
    parser.add_argument("--reachable-trials", type=int, default=2000,
                        help="--goals P2: trials of the long random search that gives P2's ceiling (0: none)")
    parser.add_argument("--samplers", nargs="+", default=["tpe", "tpe-independent", "gp", "nsga2"],
                        choices=["tpe", "tpe-joint", "tpe-independent", "gp", "nsga2"],
                        help="--goals samplers: the arms besides random search (tpe: the default, which samples jointly)")
    parser.add_argument("--patience", type=int, nargs="+", default=[100, 200], help="--goals convergence: convergence.patience arms")
    parser.add_argument("--min-improvement", type=float, default=0.001, help="--goals convergence: convergence.min_improvement")
    parser.add_argument("--folds", type=int, default=4, help="--goals walk-forward: evaluation.folds")
    parser.add_argument("--fold-spread", type=float, default=FOLD_SPREAD,
                        help="--goals walk-forward: how far an older fold moves a configuration's scores (standard deviation; "
                             "default: replay.FOLD_SPREAD, measured on real walk-forward studies)")
    parser.add_argument("--overhead-trials", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--storages", nargs="+", default=["sqlite", "journal"], choices=["sqlite", "journal", "postgresql"])
    parser.add_argument("--postgres-url")
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # a line per replayed trial would bury the results
    args.data = args.data or args.table.name.split(".")[0]
    if args.data not in DATA:
        sys.exit(f"error: cannot tell the table's data set from {args.table.name}; pass --data")
    rows = load_rows(args.table)
    table = CurveTable(rows, OptimizationConfig().search_space, time_scale=args.time_scale, score_jitter=args.score_jitter)
    full = len(table.full)
    print(f"table {args.table.name}: {len(rows)} configurations, {full} with complete curves, "
          f"{len(rows) - full} with their first epoch only; cost model: {'fitted' if table.cost is not None else 'nearest row'}")
    windows, _ = prepare_windows(create_optimization_config(scenario="smoke", data=DATA[args.data]).data, None)
    loaders = loaders_for(windows)
    with tempfile.TemporaryDirectory() as tmp:
        for goal in args.goals:
            {"P1": goal_p1, "P2": goal_p2, "P4": goal_p4, "samplers": goal_samplers, "convergence": goal_convergence,
             "time-limit": goal_time_limit, "walk-forward": goal_walk_forward,
             "time-limit-real": goal_time_limit_real}[goal](args, table, loaders, Path(tmp))


if __name__ == "__main__":
    main()
