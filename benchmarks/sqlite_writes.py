"""What one Optuna storage write costs on SQLite, by journal mode: the floor of P4 (issue 11).

Each trial attribute, parameter and state change is its own transaction in Optuna's RDB storage.
Side by side in one run, alternated: the default (rollback journal, synchronous=FULL) against
synchronous=NORMAL, TRUNCATE and WAL with synchronous=NORMAL.

    python benchmarks/sqlite_writes.py [--writes 40] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import optuna
from sqlalchemy import event

VARIANTS = {
    "default": [],
    "synchronous=NORMAL": ["PRAGMA synchronous=NORMAL"],
    "TRUNCATE + NORMAL": ["PRAGMA journal_mode=TRUNCATE", "PRAGMA synchronous=NORMAL"],
    "WAL + NORMAL": ["PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL"],
}


def storage(path: str, pragmas: list[str]) -> optuna.storages.RDBStorage:
    made = optuna.storages.RDBStorage(f"sqlite:///{path}", engine_kwargs={"connect_args": {"timeout": 30}})

    @event.listens_for(made.engine, "connect")
    def _set(dbapi_connection, _record) -> None:
        for pragma in pragmas:
            dbapi_connection.execute(pragma)

    made.engine.dispose()  # connections made from now on get the pragmas
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    per_write: dict[str, list[float]] = {name: [] for name in VARIANTS}
    with tempfile.TemporaryDirectory() as tmp:
        studies = {name: optuna.create_study(storage=storage(f"{tmp}/{i}.db", pragmas), study_name="writes")
                   for i, (name, pragmas) in enumerate(VARIANTS.items())}
        for _ in range(args.repeats):
            for name, study in studies.items():
                trial = study.ask()
                started = time.perf_counter()
                for i in range(args.writes):
                    trial.set_user_attr(f"a{i}", i)
                per_write[name].append((time.perf_counter() - started) / args.writes * 1000)
    base = statistics.median(per_write["default"])
    for name, times in per_write.items():
        ms = statistics.median(times)
        print(f"{name:20s} {ms:6.2f} ms a write (median of {args.repeats}), {base / ms:.2f}x the default's speed")


if __name__ == "__main__":
    main()
