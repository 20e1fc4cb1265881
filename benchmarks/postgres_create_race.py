"""Many processes opening one empty PostgreSQL database at once: how many fail to open it.

Starts a throwaway PostgreSQL server (tests/postgres.py: Debian's binaries, a temp dir, a free port),
then, per round, creates an empty database and lets ``--processes`` fresh processes call
``open_storage`` and ``optuna.create_study(load_if_exists=True)`` on it at the same moment, as the
workers of a new multi-machine study do. Prints each round's failures and the rounds with any.

    python benchmarks/postgres_create_race.py [--rounds 6] [--processes 16]
"""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from multiprocessing import get_context
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import postgres  # noqa: E402 - the tests' server helpers


def open_one(url: str) -> str:
    import optuna

    from cnn_lstm_hpo.distributed.storage import open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        optuna.create_study(study_name="race", storage=open_storage(url), directions=["maximize"], load_if_exists=True)
        return "ok"
    except Exception as error:  # noqa: BLE001 - what failed is the result
        return f"{type(error).__name__}: {str(error).splitlines()[0][:160]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--processes", type=int, default=16)
    args = parser.parse_args()
    bin_dir = postgres._bin_dir()
    if bin_dir is None:
        raise SystemExit("PostgreSQL server binaries not found (apt-get install postgresql)")
    base = Path(tempfile.mkdtemp(prefix="hpo-pg-"))
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(base, owner.pw_uid, owner.pw_gid)
    server = postgres._start(bin_dir, base)
    psql = [str(bin_dir / "psql"), "-h", "127.0.0.1", "-p", str(server.port), "-U", "postgres", "-v", "ON_ERROR_STOP=1"]
    try:
        failed_rounds = 0
        for round_ in range(args.rounds):
            postgres._run([*psql, "-d", "postgres", "-c", f"CREATE DATABASE race{round_}"])
            url = f"postgresql://postgres@127.0.0.1:{server.port}/race{round_}"
            with get_context("spawn").Pool(args.processes) as pool:
                errors = [o for o in pool.map(open_one, [url] * args.processes) if o != "ok"]
            failed_rounds += bool(errors)
            print(f"round {round_}: {len(errors)} of {args.processes} failed {errors[:1]}", flush=True)
        print(f"rounds with a failure: {failed_rounds} of {args.rounds}")
    finally:
        subprocess.run(postgres._as_owner([str(bin_dir / "pg_ctl"), "-D", str(base / "data"), "-m", "fast", "-w", "stop"]),
                       capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
