"""Many replay workers on one PostgreSQL study: each straight to the database, or all through
Optuna's gRPC storage proxy (`cnn-lstm-hpo storage-proxy`).

Each worker is its own process running the real trial loop (``ReplayOptimizer``: sampler, pruner,
constraints, storage, result files) on the recorded curves, with its own save dir as a worker on
another machine would have; training costs nothing, so the numbers are the framework's and the
storage's. Per arm (workers x {direct, proxy}), on a fresh study:
- trials per second, from the first trial's start to the last one's end (process start-up left out);
- database connections: client backends of the database in pg_stat_activity, sampled every 0.2 s
  (the sampler's own left out), the most seen;
- statements per trial: pg_stat_statements calls (BEGIN and COMMIT count) when the server preloads
  it, else transactions per trial (pg_stat_database xact_commit + xact_rollback); the output says which.

    python benchmarks/grpc_proxy.py [--workers 4 16 32] [--n-trials 96] [--postgres-url URL]

Without --postgres-url a throwaway server is started from the system's binaries (as the tests do),
with pg_stat_statements preloaded. ``python benchmarks/grpc_proxy.py worker ...`` runs one replay
worker (tests/test_grpc_proxy.py drives it too).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import optuna

from cnn_lstm_hpo.distributed.storage import close_storage, open_storage

ROOT = Path(__file__).resolve().parents[1]
STUDY = "grpc_bench"


# --- one worker ------------------------------------------------------------------------------------------
def run_worker(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="grpc_proxy.py worker")
    parser.add_argument("--storage", required=True)
    parser.add_argument("--study-name", required=True)
    parser.add_argument("--save-dir", type=Path, required=True)
    parser.add_argument("--worker-id", type=int, required=True)
    parser.add_argument("--n-trials", type=int, required=True)
    parser.add_argument("--max-epochs", type=int, default=20)
    args = parser.parse_args(argv)

    from cnn_lstm_hpo import create_optimization_config
    from cnn_lstm_hpo.errors import HPOError
    from cnn_lstm_hpo.replay import CURVES, CurveTable, ReplayOptimizer, SimulatedClock, load_rows, loaders_for
    from cnn_lstm_hpo.windows import prepare_windows

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    config = create_optimization_config(
        scenario="default", n_trials=args.n_trials, max_epochs_per_trial=args.max_epochs, seed=0,
        data={"source": "synthetic"}, save_dir=args.save_dir, storage=args.storage, study_name=args.study_name,
        timeout_hours=None,
    )
    table = CurveTable(load_rows(CURVES / "synthetic.jsonl.gz"), config.search_space)
    loaders = loaders_for(prepare_windows(config.data, None)[0])
    optimizer = ReplayOptimizer(config, table, loaders, SimulatedClock())
    optimizer.worker_id = args.worker_id  # each its own sampler stream, as `cnn-lstm-hpo worker` has
    try:
        optimizer.optimize()
    except HPOError as error:
        sys.exit(f"error: {error}")


def worker_command(storage: str, study: str, save_dir: Path, worker_id: int, n_trials: int) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "worker", "--storage", storage, "--study-name", study,
            "--save-dir", str(save_dir), "--worker-id", str(worker_id), "--n-trials", str(n_trials)]


# --- the proxy ------------------------------------------------------------------------------------------
def start_proxy(database_url: str) -> tuple[subprocess.Popen, str]:
    """`cnn-lstm-hpo storage-proxy` on a free port; its process and the grpc:// URL it prints."""
    process = subprocess.Popen(
        [sys.executable, "-m", "cnn_lstm_hpo.cli", "storage-proxy", "--storage", database_url, "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    line = process.stdout.readline()  # type: ignore[union-attr]
    if "--storage grpc://" not in line:
        process.kill()
        raise RuntimeError(f"storage-proxy did not start: {line}{process.stderr.read()}")  # type: ignore[union-attr]
    return process, line.split("--storage ", 1)[1].split()[0]


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    process.communicate(timeout=30)


# --- the database's view ----------------------------------------------------------------------------------
class Counters:
    """Connections (sampled in a thread) and statements of one database, over one arm."""

    def __init__(self, url: str) -> None:
        import psycopg

        self.connection = psycopg.connect(url, autocommit=True)
        self.statements = self._has_pg_stat_statements()
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _has_pg_stat_statements(self) -> bool:
        try:
            self.connection.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            self.connection.execute("SELECT pg_stat_statements_reset()")
            return True
        except Exception:  # noqa: BLE001 - not preloaded: the fallback counts transactions
            return False

    @property
    def unit(self) -> str:
        return "statements (pg_stat_statements calls)" if self.statements else "transactions (pg_stat_database xact_commit + xact_rollback)"

    def _count(self) -> int:
        if self.statements:
            query = "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements WHERE query NOT ILIKE '%pg_stat%'"
        else:
            self.connection.execute("SELECT pg_stat_clear_snapshot()")
            query = "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()"
        return int(self.connection.execute(query).fetchone()[0])

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            self.connection.execute("SELECT pg_stat_clear_snapshot()")
            self.samples.append(int(self.connection.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
            ).fetchone()[0]))

    def start(self) -> None:
        self.samples, self._stop = [], threading.Event()
        self.before = self._count()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def finish(self) -> tuple[int, int]:
        """(most connections seen, statements or transactions since start)."""
        self._stop.set()
        assert self._thread is not None
        self._thread.join()
        time.sleep(1.0)  # the statistics collector reports a backend's counts when it goes idle
        return max(self.samples, default=0), self._count() - self.before


# --- an arm -----------------------------------------------------------------------------------------------
def run_arm(database_url: str, mode: str, workers: int, n_trials: int, counters: Counters, tmp: Path) -> dict:
    study = f"{STUDY}_{mode}_{workers}_{time.time_ns()}"
    proxy = None
    url = database_url
    if mode == "proxy":
        proxy, url = start_proxy(database_url)
    counters.start()
    started = time.perf_counter()
    try:
        processes = [subprocess.Popen(worker_command(url, study, tmp / study / f"w{i}", i, n_trials),
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                     for i in range(1, workers + 1)]
        errors = [p.communicate()[1] for p in processes]
        wall = time.perf_counter() - started
        connections, statements = counters.finish()
    finally:
        if proxy is not None:
            stop(proxy)
    failed = [e for p, e in zip(processes, errors) if p.returncode != 0]
    if failed:
        raise RuntimeError(f"{len(failed)} worker(s) failed: {failed[0][-2000:]}")
    trials = optuna.load_study(study_name=study, storage=database_url).get_trials()
    span = (max(t.datetime_complete for t in trials) - min(t.datetime_start for t in trials)).total_seconds()
    return {"trials": len(trials), "per_second": len(trials) / span, "wall": wall, "connections": connections,
            "per_trial": statements / len(trials), "running": sum(t.state.name == "RUNNING" for t in trials)}


def start_server(tmp: Path) -> tuple[str, callable]:
    """A throwaway server (tests/postgres.py), restarted with pg_stat_statements preloaded; (url, stopper)."""
    sys.path.insert(0, str(ROOT / "tests"))
    import postgres

    bin_dir = postgres._bin_dir()
    if bin_dir is None:
        sys.exit("error: no PostgreSQL server binaries; pass --postgres-url")
    base = Path(tempfile.mkdtemp(prefix="hpo-pg-bench-"))
    import os
    import shutil

    if os.geteuid() == 0:
        import pwd

        owner = pwd.getpwnam("postgres")
        os.chown(base, owner.pw_uid, owner.pw_gid)
    server = postgres._start(bin_dir, base)
    conf = server.data_dir / "postgresql.conf"
    postgres._run(["sh", "-c", f"echo \"shared_preload_libraries = 'pg_stat_statements'\" >> {conf}"])
    # With its log file: a server started with our pipes as its output would hold them open.
    postgres._run([str(bin_dir / "pg_ctl"), "-D", str(server.data_dir), "-l", str(base / "server.log"), "-w", "restart",
                   "-m", "fast"])

    def stopper() -> None:
        postgres._run([str(bin_dir / "pg_ctl"), "-D", str(server.data_dir), "-m", "fast", "-w", "stop"])
        shutil.rmtree(base, ignore_errors=True)

    return server.url, stopper


def main(argv: list[str]) -> None:
    if argv[:1] == ["worker"]:
        run_worker(argv[1:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[4, 16, 32])
    parser.add_argument("--n-trials", type=int, default=96)
    parser.add_argument("--postgres-url")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        url, stopper = (args.postgres_url, lambda: None) if args.postgres_url else start_server(Path(tmp))
        try:
            # Optuna's tables first, as `optimize` makes them before workers join: many workers creating
            # them at once on an empty database collide (duplicate key in pg_type).
            close_storage(open_storage(url))
            counters = Counters(url)
            print(f"{args.n_trials} replayed trials per arm; per trial: {counters.unit}")
            print("| workers | storage | trials | trials/s | wall s (start-up included) | DB connections (max) | per trial |")
            print("|---|---|---|---|---|---|---|")
            for workers in args.workers:
                for mode in ("direct", "proxy"):
                    r = run_arm(url, mode, workers, args.n_trials, counters, Path(tmp))
                    assert r["running"] == 0, r
                    print(f"| {workers} | {mode} | {r['trials']} | {r['per_second']:.1f} | {r['wall']:.0f} | "
                          f"{r['connections']} | {r['per_trial']:.0f} |", flush=True)
        finally:
            stopper()


if __name__ == "__main__":
    main(sys.argv[1:])
