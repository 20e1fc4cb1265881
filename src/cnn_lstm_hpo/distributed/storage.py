"""Study storages by URL: SQLite for one process, a journal file for several on one host, any
SQLAlchemy database (PostgreSQL) for several machines, Optuna's gRPC storage proxy for many.

``journal:///abs/path/study.journal`` is our name for Optuna's journal file storage (appends under a
file lock, safe for many processes on one file system). ``grpc://HOST:PORT`` is a proxy started by
``cnn-lstm-hpo storage-proxy`` (:func:`serve_proxy`). Every other URL goes to SQLAlchemy.
"""

from __future__ import annotations

import functools
import random
import re
import socket
import time
import warnings
import weakref
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from sqlalchemy import event

from ..errors import HPOError
from .ports import bindable_port
from .faults import retry_stale_trial

JOURNAL = "journal:///"
GRPC = "grpc://"
GRPC_EXTRA = 'the gRPC storage proxy needs grpcio: pip install -e ".[grpc]"'
PROXY_WAIT_SECONDS = 10.0  # a proxy that does not answer by then is reported, not waited for
SQLITE_FILE = "study.db"
JOURNAL_FILE = "study.journal"


def journal_url(path: Path) -> str:
    return f"{JOURNAL}{Path(path).resolve().as_posix().lstrip('/')}"


def default_url(save_dir: Path, workers: int) -> str:
    """Where a study lives when no --storage is given: the save dir's journal once one exists or
    several workers share the study, its SQLite file otherwise."""
    save_dir = Path(save_dir).resolve()
    journal, sqlite = save_dir / JOURNAL_FILE, save_dir / SQLITE_FILE
    if journal.exists() or (workers > 1 and not sqlite.exists()):
        return journal_url(journal)
    return f"sqlite:///{sqlite}"


def check_url_for_workers(url: str, workers: int) -> None:
    if workers > 1 and url.startswith("sqlite"):
        raise HPOError(
            f"--workers {workers} needs a storage several processes can write: SQLite ({redact(url)}) takes one; "
            "use a new --save-dir (a journal file is made there), --storage journal:///path/study.journal, "
            "or --storage postgresql://..."
        )


def shared_by_processes(url: str) -> bool:
    """Whether other processes may run the study's trials at the same time: a journal or a database
    server may be; SQLite is refused for several workers (:func:`check_url_for_workers`)."""
    return not url.startswith("sqlite")


def is_journal(url: str) -> bool:
    return url.startswith(JOURNAL)


def journal_path(url: str) -> Path:
    return Path("/" + url.removeprefix(JOURNAL).lstrip("/"))


def is_proxy(url: str) -> bool:
    return url.startswith(GRPC)


def proxy_address(url: str) -> tuple[str, int]:
    """``grpc://HOST:PORT`` -> (HOST, PORT); one HPOError line for anything else."""
    host, _, port = url.removeprefix(GRPC).rstrip("/").rpartition(":")
    if not host or not port.isdigit():
        raise HPOError(f"--storage {url} is not a proxy address: write grpc://HOST:PORT (as storage-proxy prints it)")
    return host.strip("[]"), int(port)


def open_proxy(url: str) -> optuna.storages.BaseStorage:
    """A client of a running ``storage-proxy``, checked to answer within PROXY_WAIT_SECONDS (the client
    itself would wait for ever at its first call)."""
    host, port = proxy_address(url)
    try:
        import grpc  # noqa: F401 - Optuna imports it lazily, at the first call: fail here, in one line
    except ImportError:
        raise HPOError(GRPC_EXTRA) from None
    with warnings.catch_warnings():  # Optuna marks the proxy experimental; we use it knowingly
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        proxy = optuna.storages.GrpcStorageProxy(host=host, port=port)
    try:
        proxy.wait_server_ready(timeout=PROXY_WAIT_SECONDS)
    except ConnectionError:
        proxy.close()
        raise HPOError(
            f"no storage proxy answers at {host}:{port} (waited {PROXY_WAIT_SECONDS:g} s); "
            "start one with cnn-lstm-hpo storage-proxy --storage URL"
        ) from None
    return proxy


# Attempts at opening a new RDB storage while other processes create the same tables (16 processes on
# an empty PostgreSQL database collided in 3 of 4 rounds, twice in a row for some of them).
CREATE_ATTEMPTS = 5


def _created_meanwhile(error: sqlalchemy.exc.DBAPIError) -> bool:
    """A unique-key or duplicate-table error: what another process creating the same schema causes."""
    sqlstate = getattr(error.orig, "sqlstate", None)  # PostgreSQL's error code; SQLite and others have none
    return isinstance(error, sqlalchemy.exc.IntegrityError) or sqlstate in ("42P07", "42710")


def open_storage(url: str, *, heartbeat_seconds: int | None = None, create: bool = True) -> optuna.storages.BaseStorage:
    """The storage behind ``url``; one HPOError line when it cannot be opened.

    ``heartbeat_seconds``: RDB trials record a heartbeat this often, and a trial silent for 3 beats is
    failed by the next worker that starts a trial, and queued again (a killed worker leaves nothing
    RUNNING for good, and costs no trial).
    Not for SQLite on a local disk: only processes of this host open it, and their dead-worker sweep
    (by pid, :func:`.workers.fail_dead_local_trials`) already fails a dead worker's trial; the beats
    would cost ~5 ms a trial for nothing. Not through the gRPC proxy either: its client records no
    heartbeats (Optuna's proxy has no call for them), so there the sweep by pid is what remains.
    ``create=False`` opens read-only: nothing is created where nothing is, and errors say "cannot read".
    """
    if is_proxy(url):
        return open_proxy(url)
    try:
        if is_journal(url) or url.startswith("sqlite:///"):
            path = journal_path(url) if is_journal(url) else Path(url.removeprefix("sqlite:///"))
            if not create and not path.is_file():  # SQLite would silently create an empty file
                raise HPOError(f"no study storage at {path}; pass --storage URL or the --save-dir of a study")
            path.parent.mkdir(parents=True, exist_ok=True)
            if is_journal(url):
                return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
        beat: dict[str, Any] = {}
        if heartbeat_seconds and not local_sqlite(url):
            beat = {"heartbeat_interval": heartbeat_seconds, "grace_period": 3 * heartbeat_seconds,
                    "heartbeat_stale_trial_callback": retry_stale_trial}
        with warnings.catch_warnings():  # Optuna marks heartbeats experimental; we use them knowingly
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            opening = functools.partial(
                optuna.storages.RDBStorage, url, engine_kwargs=_engine_kwargs(url),
                skip_table_creation=not create, **beat,
            )
            for attempt in range(CREATE_ATTEMPTS):
                try:
                    return opening()
                except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError) as error:
                    # Other processes (workers, a reader such as the dashboard) created the new
                    # database's tables or stamped its schema version at the same moment; PostgreSQL
                    # says "duplicate key ... pg_type" or "already exists". Their work stands: open again.
                    if attempt + 1 == CREATE_ATTEMPTS or not _created_meanwhile(error):
                        raise
                    time.sleep(random.uniform(0.05, 0.25))
    except HPOError:
        raise
    except Exception as error:  # noqa: BLE001 - SQLAlchemy, driver, schema and file errors all mean "cannot open"
        raise HPOError(f"cannot {'open' if create else 'read'} storage {redact(url)}: {first_line(error)}") from None


def study_names(url: str) -> tuple[optuna.storages.BaseStorage, list[str]]:
    """The storage opened read-only (nothing created, nothing written) and the names of its studies."""
    store = open_storage(url, create=False)  # HPOError: no such file, not a database, unreachable
    try:
        return store, optuna.study.get_all_study_names(storage=store)
    except Exception as error:  # noqa: BLE001 - SQLAlchemy, driver and schema errors all mean "cannot read"
        raise HPOError(f"cannot read storage {redact(url)}: {first_line(error)}") from None


# Local Linux file systems, where SQLite's write-ahead log (readers and the writer share memory
# through a -shm file) is safe. Not on network file systems (NFS, SMB) nor WSL's Windows drives
# (9p, drvfs), nor where the type cannot be told: there the default rollback journal stays.
WAL_SAFE_FILESYSTEMS = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs", "f2fs", "zfs", "tmpfs", "overlay"})


def filesystem_type(path: Path) -> str | None:
    """The type of the file system holding ``path`` (Linux's mount table), or None where unknown."""
    mounts = _mount_table()
    target, best, kind = Path(path).resolve(), -1, None
    for line in mounts:
        fields = line.split()
        if len(fields) < 3:
            continue
        # The table escapes spaces and tabs in mount points as octal (\040).
        point = Path(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[1]))
        # The deepest mount holding the path; of several at one point, the last (it covers the others).
        if (target == point or point in target.parents) and len(point.parts) >= best:
            best, kind = len(point.parts), fields[2]
    return kind


def _mount_table() -> list[str]:
    try:
        return Path("/proc/self/mounts").read_text().splitlines()
    except OSError:  # not Linux
        return []


def local_sqlite(url: str) -> bool:
    """A SQLite file on a local Linux file system (not a network one, where other hosts may open it)."""
    return url.startswith("sqlite:///") and filesystem_type(Path(url.removeprefix("sqlite:///"))) in WAL_SAFE_FILESYSTEMS


def write_ahead(storage: optuna.storages.BaseStorage, url: str) -> None:
    """A SQLite study on a local disk: WAL with synchronous=NORMAL until ``close_storage``, which
    turns the file back to the rollback journal. A commit costs 2.5x less than in the rollback
    journal (benchmarks/sqlite_writes.py), and readers (the dashboard, report) no longer block the
    study; a power cut may lose the last commits, never the database. Called once the run is sure
    to write: switching modes rewrites the file's header, and a refused resume changes nothing."""
    if not local_sqlite(url) or not _journal_mode(storage.engine, "WAL"):
        return

    @event.listens_for(storage.engine, "connect")
    def _pragmas(connection: Any, _record: Any) -> None:
        # NORMAL is safe in WAL mode only; a storage used again after close_storage is not.
        if connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
            connection.execute("PRAGMA synchronous=NORMAL")

    storage.engine.dispose()  # the connections so far had no pragmas
    _WRITE_AHEAD.add(storage.engine)


# Engines whose file is in WAL mode while open: at rest it goes back to the rollback journal, since
# a WAL file cannot be read from a read-only folder (an archived study) nor copied alone mid-run.
_WRITE_AHEAD: weakref.WeakSet = weakref.WeakSet()


def _journal_mode(engine: Any, mode: str) -> bool:
    """Switch the file's journal mode at once, or not at all (False) while another process reads it."""
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA busy_timeout=0")
            connection.exec_driver_sql(f"PRAGMA journal_mode={mode}")
    except sqlalchemy.exc.SQLAlchemyError:
        return False
    return True


def optuna_cli_storage(url: str) -> str:
    """The storage as Optuna's own CLI takes it (``optuna trials --storage ...``): a journal file is its
    path with the backend named; our ``journal:///`` is not a URL Optuna knows."""
    if is_journal(url):
        return f"--storage {journal_path(url)} --storage-class JournalFileBackend"
    return f"--storage {redact(url)}"


def close_storage(storage: optuna.storages.BaseStorage) -> None:
    """Close pooled database connections; the engine reconnects if the storage is used again."""
    engine = getattr(storage, "engine", None)
    if engine in _WRITE_AHEAD:
        engine.dispose()  # leaving WAL needs the only connection; a reader still there (the dashboard): it stays WAL
        _journal_mode(engine, "DELETE")
    if engine is not None:
        engine.dispose()


def first_line(error: BaseException) -> str:
    """The first line of the innermost error: Optuna and SQLAlchemy wrap the driver's words."""
    root: BaseException = error
    while root.__cause__ is not None or root.__context__ is not None:
        root = root.__cause__ or root.__context__  # type: ignore[assignment]
    return (str(root).splitlines() or [type(root).__name__])[0]


def _engine_kwargs(url: str) -> dict[str, Any]:
    # SQLite waits for a lock instead of failing at once when a reader (e.g. the dashboard) holds it.
    return {"connect_args": {"timeout": 30}} if url.startswith("sqlite") else {}


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def serve_proxy(url: str, *, host: str, port: int) -> None:
    """Run Optuna's gRPC storage proxy over the database at ``url`` until interrupted: workers on any
    machine then reach the study through this one process, which holds the database connections and
    caches the study's finished trials. Ctrl-C or SIGTERM raise KeyboardInterrupt out of here."""
    if is_proxy(url) or is_journal(url):
        raise HPOError(
            f"storage-proxy serves a database, not {redact(url)}: pass --storage postgresql://... "
            "(or sqlite:///... when every worker runs on this host)"
        )
    try:
        import grpc  # noqa: F401 - see open_proxy
    except ImportError:
        raise HPOError(GRPC_EXTRA) from None
    port = bindable_port(host, port)
    database = open_storage(url)
    write_ahead(database, url)
    # Optuna's docs: serve get_storage's wrapper, which caches finished trials, not the bare RDBStorage.
    served = optuna.storages.get_storage(database)
    reachable = socket.gethostname() if host in ("0.0.0.0", "::", "") else host
    print(f"storage proxy for {redact(url)} listening on {host}:{port}; workers use --storage grpc://{reachable}:{port} "
          "(Ctrl-C to stop)", flush=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.run_grpc_proxy_server(served, host=host, port=port)
    finally:
        close_storage(database)
