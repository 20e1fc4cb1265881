"""Power and false alarms of the verdict: a planted edge must be found, no edge must not be claimed.

For each planted edge (``synthetic:edge=E``, E the Bayes-optimal direction accuracy; 0.50 = no
signal; synthetic.py) and each seed, runs a smoke-sized study on a fresh draw of the data
(``seed=S`` in the source, ``--seed S`` for the search) and then ``retrain --top-k 1``, exactly
as a user would (the CLI, in a subprocess), and reads the retrain's verdict line: "edge: ..."
counts as a detection. Prints per edge the detection rate with its 95 % Wilson interval and
checks the issue's targets: >= 80 % at edge 0.55, <= 10 % at 0.50.

    python benchmarks/signal_power.py [--seeds 10] [--edges 0.55,0.50] [--bars 4000] [--jobs 1] [--focused]
        [--search-epochs 3] [--retrain-seeds 3] [--out DIR]

With ``--out DIR`` each finished run is kept (DIR/edgeE_seedS/run.json) and a rerun with the same
DIR skips it: a long recording resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml
from statsmodels.stats.proportion import proportion_confint

# The smoke scenario's search (6 trials, 3 epochs), without its start date: the synthetic bars begin in 2010.
SCENARIO = {
    "signal_power": {
        "n_trials": 6,
        "max_epochs_per_trial": 3,
        "objectives": ["accuracy", "training_time", "model_size"],
        "timeout_hours": 0.5,
        "data": {"sequence_length": 20},
        "sampler": {"n_startup_trials": 3},
        "search_space": {
            "cnn_num_filters": {"type": "categorical", "choices": [8, 16]},
            "cnn_filter_sizes": {"type": "categorical", "choices": [[3, 5], [2, 3, 5]]},
            "cnn_attention_heads": {"type": "categorical", "choices": [2, 4]},
            "lstm_hidden_dim": {"type": "categorical", "choices": [16, 32]},
            "lstm_num_layers": {"type": "int", "low": 1, "high": 2},
            "batch_size": {"type": "categorical", "choices": [128, 256]},
        },
    }
}
# --focused: the training ranges a practitioner sets for a six-trial run. The guide's ranges (learning
# rate 1e-5 - 1e-2 for every optimizer, SGD and RMSprop among them) put most of six trials where
# nothing is learned in three epochs (on 16,000 bars a symbol, 9 of 12 trials of two studies were
# SGD, every one at validation composite score 0.495-0.503).
FOCUSED = {
    "learning_rate": {"type": "loguniform", "low": 3e-4, "high": 3e-3},
    "optimizer": {"type": "categorical", "choices": ["adam", "adamw"]},
    "scheduler": {"type": "categorical", "choices": ["none", "cosine"]},
}
TARGETS = {0.55: (">=", 0.80), 0.50: ("<=", 0.10)}


def cli(*args: str, threads: int) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run([sys.executable, "-m", "cnn_lstm_hpo.cli", *args], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise SystemExit(f"cnn-lstm-hpo {args[0]} failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")


def one_run(edge: float, seed: int, bars: int, epochs: int, retrain_seeds: int, root: Path, scenario: Path,
            threads: int) -> dict:
    save = root / f"edge{edge}_seed{seed}"
    done = save / "run.json"
    if done.exists():
        return json.loads(done.read_text())
    if save.exists():  # an interrupted run: start it again
        shutil.rmtree(save)
    started = time.perf_counter()
    source = f"synthetic:edge={edge},seed={seed},bars={bars}"
    cli("optimize", "--scenario", str(scenario), "--data", source, "--seed", str(seed), "--save-dir", str(save),
        "--threads", str(threads), "--quiet", threads=threads)
    study_verdict = json.loads((save / "optimization_analysis.json").read_text())["verdict"]
    try:
        cli("retrain", "--save-dir", str(save), "--top-k", "1", "--seeds", str(retrain_seeds), "--epochs", str(epochs),
            "--no-registry", "--quiet", threads=threads)
        verdict = json.loads((save / "retrained_models_results.json").read_text())["verdict"]
    except SystemExit as failed:  # nothing to retrain (no complete trial): the user gets no edge either
        verdict = str(failed)
    run = {"edge": edge, "seed": seed, "detected": verdict.startswith("edge:"),
           "verdict": verdict, "study_verdict": study_verdict, "seconds": time.perf_counter() - started}
    done.write_text(json.dumps(run))
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--edges", default="0.55,0.50")
    parser.add_argument("--bars", type=int, default=4000, help="bars per symbol (4 symbols)")
    parser.add_argument("--epochs", type=int, default=10, help="retrain epoch budget (early stopping on validation)")
    parser.add_argument("--search-epochs", type=int, default=SCENARIO["signal_power"]["max_epochs_per_trial"],
                        help="the study's max_epochs_per_trial (3, the smoke scenario's)")
    parser.add_argument("--retrain-seeds", type=int, default=3,
                        help="retrain --seeds (3, the product's default: validation keeps the best of them)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (one torch thread each when > 1)")
    parser.add_argument("--focused", action="store_true", help="the search's training ranges narrowed (FOCUSED)")
    parser.add_argument("--out", type=Path, help="keep finished runs here and skip them when run again")
    args = parser.parse_args()
    edges = [float(e) for e in args.edges.split(",")]
    threads = 1 if args.jobs > 1 else max(os.cpu_count() or 1, 1)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.out or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        scenario = root / "signal_power.yaml"
        # The budget grows with the search's epochs, so that its derived per-trial limit (timeout / trials)
        # stops no trial: with 8 epochs under the 3-epoch budget, on a busy machine, it stopped 15 of 18 trials.
        settings = {**SCENARIO["signal_power"], "max_epochs_per_trial": args.search_epochs,
                    "timeout_hours": SCENARIO["signal_power"]["timeout_hours"] * max(1.0, args.search_epochs / 3)}
        if args.focused:
            settings = {**settings, "search_space": {**settings["search_space"], **FOCUSED}}
        scenario.write_text(yaml.safe_dump({"signal_power": settings}))
        jobs = [(e, s) for e in edges for s in range(args.seeds)]
        with ThreadPoolExecutor(args.jobs) as pool:
            runs = list(pool.map(lambda job: one_run(*job, args.bars, args.epochs, args.retrain_seeds, root, scenario, threads), jobs))
    for run in runs:
        print(f"edge {run['edge']:.2f} seed {run['seed']:2d} ({run['seconds']:.0f} s): {run['verdict']}")
    print()
    failed = False
    for edge in edges:
        hits = sum(r["detected"] for r in runs if r["edge"] == edge)
        low, high = proportion_confint(hits, args.seeds, alpha=0.05, method="wilson")
        line = f"edge {edge:.2f}: edge reported in {hits}/{args.seeds} seeds = {hits / args.seeds:.0%} (95% Wilson CI {low:.0%}-{high:.0%})"
        if edge in TARGETS:
            op, bound = TARGETS[edge]
            ok = hits / args.seeds >= bound if op == ">=" else hits / args.seeds <= bound
            failed |= not ok
            line += f"; target {op} {bound:.0%}: {'met' if ok else 'NOT met'}"
        print(line)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
