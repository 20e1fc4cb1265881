"""What walk-forward costs against holdout, trained for real: the same scenario run both ways, side by side.

Starts ``cnn-lstm-hpo optimize --scenario S --threads 1`` and the same with ``--folds K`` at the
same moment (one core each on a two-core machine, so both see the same load), then prints each
run's wall time, its trials by how they ended and the folds it trained, and the ratio of the wall
times (issue 29's goal: at most 1.6x for the same trials).

Each run's result is saved under ``--out`` once it ends; a command restarted after an interruption
skips a run whose result is there and starts the other afresh (a half-run study is moved aside,
so its time is not counted twice). Timing a pair again needs a new ``--out``.

    python benchmarks/walk_forward_cost.py [--scenario quick_test] [--folds 4] [--out wf_cost]
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import optuna


def run(scenario: str, folds: int | None, out: Path) -> dict:
    name = f"walk_forward_{folds}" if folds else "holdout"
    result = out / f"{name}.json"
    if result.is_file():
        return json.loads(result.read_text())
    folder = out / name
    if folder.exists():  # a run cut short: start afresh, keep it for a look
        shutil.move(folder, out / f"{name}.interrupted.{int(time.time())}")
    command = ["cnn-lstm-hpo", "optimize", "--scenario", scenario, "--threads", "1", "--quiet", "--save-dir", str(folder)]
    command += ["--folds", str(folds)] if folds else []
    started = time.monotonic()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    seconds = time.monotonic() - started
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{folder / 'study.db'}")
    trials = study.get_trials(deepcopy=False)
    ended = collections.Counter(
        t.state.name if "stop_reason" not in t.user_attrs else t.user_attrs["stop_reason"].split(" by ")[0].split(":")[0]
        for t in trials
    )
    record = {"run": name, "command": " ".join(command), "wall_minutes": seconds / 60, "trials": len(trials),
              "ended": dict(ended), "folds_trained": sum(len(t.user_attrs.get("fold_scores", ())) for t in trials)}
    result.write_text(json.dumps(record, indent=1))
    return record


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="quick_test")
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--out", type=Path, default=Path("wf_cost"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(2) as pool:
        holdout, walk_forward = pool.map(lambda folds: run(args.scenario, folds, args.out), [None, args.folds])
    for record in (holdout, walk_forward):
        ended = ", ".join(f"{n} {reason}" for reason, n in sorted(record["ended"].items(), key=lambda kv: -kv[1]))
        print(f"{record['run']}: {record['wall_minutes']:.1f} min wall, {record['trials']} trials ({ended}), "
              f"{record['folds_trained']} folds trained")
    print(f"walk-forward ({args.folds} folds) / holdout, scenario {args.scenario}, side by side: "
          f"{walk_forward['wall_minutes'] / holdout['wall_minutes']:.2f}x the wall time (goal <= 1.6x)")


if __name__ == "__main__":
    sys.exit(main())
