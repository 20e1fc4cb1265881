"""SQLite studies use the write-ahead log on local file systems only."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import optuna
import pytest
import sqlalchemy

from cnn_lstm_hpo import MultiObjectiveOptimizer, create_optimization_config
from cnn_lstm_hpo.distributed import storage
from cnn_lstm_hpo.errors import HPOError
from cnn_lstm_hpo.distributed.storage import close_storage, filesystem_type, open_storage, write_ahead

MOUNTS = [
    "rootfs / rootfs rw 0 0",  # mounted over by the next line: the later mount at a point is in effect
    "/dev/vda / ext4 rw,relatime 0 0",
    "tmpfs /mnt/data/scratch tmpfs rw 0 0",  # listed before its parent: depth decides, not order
    "server:/export /mnt/data nfs4 rw 0 0",
    r"C:\134 /mnt/c\040drive 9p rw 0 0",
]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/home/me/study.db", "ext4"),
        ("/mnt/data/study.db", "nfs4"),
        ("/mnt/data/scratch/run/study.db", "tmpfs"),  # the deepest mount holding the path
        ("/mnt/database/study.db", "ext4"),  # /mnt/data is a prefix of the name, not a parent
        ("/mnt/c drive/study.db", "9p"),  # the table writes the space as \040
    ],
)
def test_filesystem_type_is_the_deepest_mount_holding_the_path(monkeypatch, path, expected):
    monkeypatch.setattr(storage, "_mount_table", lambda: MOUNTS)
    assert filesystem_type(Path(path)) == expected


def test_filesystem_type_is_unknown_without_a_mount_table(monkeypatch):
    monkeypatch.setattr(storage, "_mount_table", lambda: [])
    assert filesystem_type(Path("/anything")) is None


def _journal_mode(path: Path) -> str:
    with closing(sqlite3.connect(path)) as connection:
        return connection.execute("PRAGMA journal_mode").fetchone()[0]


def test_sqlite_study_on_a_local_disk_writes_ahead_and_leaves_one_file(tmp_path):
    if filesystem_type(tmp_path) not in storage.WAL_SAFE_FILESYSTEMS:
        pytest.skip(f"the test folder is on {filesystem_type(tmp_path)}, where the rollback journal stays")
    path = tmp_path / "study.db"
    opened = open_storage(f"sqlite:///{path}")
    study = optuna.create_study(storage=opened, study_name="s")
    write_ahead(opened, f"sqlite:///{path}")
    study.ask().set_user_attr("a", 1)
    with opened.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
    assert _journal_mode(path) == "wal"
    close_storage(opened)
    # Closed: the log is folded into the database and the file is back in the rollback journal, so
    # study.db alone is the study, readable from a read-only folder too.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.db"]
    assert _journal_mode(path) == "delete"
    reader = open_storage(f"sqlite:///{path}", create=False)
    assert optuna.load_study(study_name="s", storage=reader).trials[0].user_attrs == {"a": 1}
    # Used again after closing (the guide's retrain after optimize): the rollback journal, fully synced.
    study.ask().set_user_attr("b", 2)
    with opened.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    close_storage(opened)
    assert _journal_mode(path) == "delete"


def test_a_study_closed_while_another_process_reads_it_stays_in_wal_and_intact(tmp_path):
    if filesystem_type(tmp_path) not in storage.WAL_SAFE_FILESYSTEMS:
        pytest.skip(f"the test folder is on {filesystem_type(tmp_path)}, where the rollback journal stays")
    path = tmp_path / "study.db"
    opened = open_storage(f"sqlite:///{path}")
    write_ahead(opened, f"sqlite:///{path}")
    optuna.create_study(storage=opened, study_name="s").ask().set_user_attr("a", 1)
    with closing(sqlite3.connect(path)) as dashboard:  # a reader mid-read, as the live view is
        dashboard.execute("BEGIN")
        assert dashboard.execute("SELECT count(*) FROM trials").fetchone() == (1,)
        close_storage(opened)  # neither waits for the reader nor fails
        dashboard.execute("COMMIT")
    assert _journal_mode(path) == "wal"
    reader = open_storage(f"sqlite:///{path}", create=False)
    assert optuna.load_study(study_name="s", storage=reader).trials[0].user_attrs == {"a": 1}


def test_sqlite_study_on_a_network_file_system_keeps_the_rollback_journal(tmp_path, monkeypatch):
    monkeypatch.setattr(storage, "filesystem_type", lambda path: "nfs4")
    path = tmp_path / "study.db"
    opened = open_storage(f"sqlite:///{path}")
    write_ahead(opened, f"sqlite:///{path}")
    optuna.create_study(storage=opened, study_name="s").ask()
    assert _journal_mode(path) == "delete"


def test_an_optimize_run_writes_ahead_and_leaves_the_file_in_the_rollback_journal(tmp_path, monkeypatch):
    from cnn_lstm_hpo import study as study_module

    if filesystem_type(tmp_path) not in storage.WAL_SAFE_FILESYSTEMS:
        pytest.skip(f"the test folder is on {filesystem_type(tmp_path)}, where the rollback journal stays")
    modes = []
    real_objective = study_module.MultiObjectiveOptimizer.objective

    def objective(self, trial):  # the mode while trials are written
        modes.append(_journal_mode(self.save_dir / "study.db"))
        return real_objective(self, trial)

    monkeypatch.setattr(study_module.MultiObjectiveOptimizer, "objective", objective)
    config = create_optimization_config(
        scenario="smoke", n_trials=2, max_epochs_per_trial=1, save_dir=tmp_path / "run",
        data={"source": "synthetic", "sequence_length": 8},
        search_space={"cnn_num_filters": {"type": "categorical", "choices": [4]},
                      "lstm_hidden_dim": {"type": "categorical", "choices": [8]},
                      "batch_size": {"type": "categorical", "choices": [256]}},
    )
    MultiObjectiveOptimizer(config, progress=False).optimize()
    assert modes == ["wal", "wal"]
    assert _journal_mode(tmp_path / "run" / "study.db") == "delete"


def test_a_study_another_process_is_reading_keeps_the_rollback_journal(tmp_path):
    path = tmp_path / "study.db"
    opened = open_storage(f"sqlite:///{path}")
    optuna.create_study(storage=opened, study_name="s").ask()
    with closing(sqlite3.connect(path)) as dashboard:  # mid-read: switching modes needs the file alone
        dashboard.execute("BEGIN")
        dashboard.execute("SELECT count(*) FROM trials").fetchone()
        write_ahead(opened, f"sqlite:///{path}")  # neither waits for the reader nor fails
        dashboard.execute("COMMIT")
    optuna.load_study(study_name="s", storage=opened).ask().set_user_attr("a", 1)  # the run goes on
    with opened.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL: not in WAL mode
    close_storage(opened)
    assert _journal_mode(path) == "delete"


def test_heartbeats_only_where_another_host_can_open_the_study(tmp_path, monkeypatch, postgres_url):
    """On a local disk only this host's processes open a SQLite file, and their pid sweep fails a dead
    worker's trial: no heartbeat there. A network file system or a server: heartbeats."""
    url = f"sqlite:///{tmp_path / 'study.db'}"
    monkeypatch.setattr(storage, "filesystem_type", lambda path: "ext4")
    local = open_storage(url, heartbeat_seconds=60)
    monkeypatch.setattr(storage, "filesystem_type", lambda path: "nfs4")
    network = open_storage(url, heartbeat_seconds=60)
    server = open_storage(postgres_url, heartbeat_seconds=60)
    try:
        assert local.get_heartbeat_interval() is None
        assert network.get_heartbeat_interval() == 60 and server.get_heartbeat_interval() == 60
        assert network.grace_period == 180
    finally:
        for opened in (local, network, server):
            close_storage(opened)


def test_a_schema_version_stamped_by_another_process_at_the_same_moment_is_not_an_error(tmp_path, monkeypatch):
    """Optuna stamps a new database's schema version on every open, readers included: a reader (the
    live view, a test polling the study) opening a study as its run creates it can stamp first, and
    the run's own stamp then fails on the unique key. Seen once in CI; made here deterministic."""
    from optuna.storages._rdb.storage import _VersionManager

    path = tmp_path / "study.db"
    stamp, raced = _VersionManager._set_alembic_revision, []

    def other_process_stamps_first(self, revision):
        stamp(self, revision)  # the other process's stamp commits...
        if not raced:  # ...while ours, begun before it, fails on the unique key, as SQLite reports it
            raced.append(True)
            raise sqlalchemy.exc.IntegrityError("INSERT INTO alembic_version", {}, Exception("UNIQUE constraint failed"))

    monkeypatch.setattr(_VersionManager, "_set_alembic_revision", other_process_stamps_first)
    opened = open_storage(f"sqlite:///{path}")
    try:
        assert raced and optuna.create_study(storage=opened, study_name="s").study_name == "s"
    finally:
        close_storage(opened)


class _DriverError(Exception):
    def __init__(self, sqlstate: str, message: str) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate  # as psycopg's errors carry PostgreSQL's error code


@pytest.mark.parametrize(("error", "opens"), [
    (sqlalchemy.exc.IntegrityError("CREATE TABLE studies", {}, _DriverError("23505", "duplicate key ... pg_type")), True),
    (sqlalchemy.exc.ProgrammingError("CREATE TABLE studies", {}, _DriverError("42P07", "already exists")), True),
    (sqlalchemy.exc.ProgrammingError("CREATE TABLE studies", {}, _DriverError("42501", "permission denied")), False),
])
def test_tables_other_processes_create_at_the_same_moment_are_opened_again(tmp_path, monkeypatch, error, opens):
    """Workers starting at once on an empty PostgreSQL database collide creating its tables, some twice
    in a row (16 processes: 3 rounds of 4). The collision is retried; any other error is not."""
    real, calls = optuna.storages.RDBStorage, []

    def collides_twice(*args, **kwargs):
        calls.append(1)
        if len(calls) <= 2:
            raise error
        return real(*args, **kwargs)

    monkeypatch.setattr(optuna.storages, "RDBStorage", collides_twice)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    if opens:
        close_storage(open_storage(url))
        assert len(calls) == 3
    else:
        with pytest.raises(HPOError, match=r"^cannot open storage sqlite:///.*permission denied"):
            open_storage(url)
        assert len(calls) == 1
