"""Trials lost to faults that are not their configuration's (interrupt, lost database connection, full
disk, dead worker) run again once with the same parameters and do not count toward n_trials; a trial
that fails on its own counts and is not retried."""

from __future__ import annotations

import errno
import json
import signal
import sqlite3
import subprocess
import sys
import textwrap

import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState

from cnn_lstm_hpo import MultiObjectiveOptimizer
from cnn_lstm_hpo.distributed.faults import RETRY_OF, RETRY_REASON
from cnn_lstm_hpo.train import Trainer
from test_study import run, tiny_config

SEED = 42  # the smoke scenario's; a trial's training seed is SEED + its number (a retry's: its original's)


def load(config) -> optuna.Study:
    return optuna.load_study(study_name="smoke", storage=f"sqlite:///{config.save_dir / 'study.db'}")


def assert_retried_once(study: optuna.Study, lost: int, reason: str, n_trials: int) -> None:
    """Trial ``lost`` failed for ``reason``; one retry with its params completed; the study has
    ``n_trials`` trials besides the lost one, all complete."""
    trials = study.get_trials()
    assert trials[lost].state == TrialState.FAIL and trials[lost].user_attrs["fail_reason"] == reason
    retries = [t for t in trials if RETRY_OF in t.user_attrs]
    assert [(t.user_attrs[RETRY_OF], t.user_attrs[RETRY_REASON], t.state) for t in retries] == [
        (lost, reason, TrialState.COMPLETE)
    ]
    assert retries[0].params == trials[lost].params
    assert len(trials) == n_trials + 1
    assert [t.number for t in trials if t.state == TrialState.COMPLETE] == [t.number for t in trials if t.number != lost]


def test_an_interrupted_trial_runs_again_on_resume_with_its_params_and_does_not_count(tmp_path, monkeypatch):
    original = Trainer._train_epoch
    interrupted = []

    def interrupt_trial_1(self, optimizer, generator):
        if self.seed == SEED + 1 and not interrupted:
            interrupted.append(True)
            raise KeyboardInterrupt
        return original(self, optimizer, generator)

    monkeypatch.setattr(Trainer, "_train_epoch", interrupt_trial_1)
    config = tiny_config(tmp_path, n_trials=3)
    try:
        with pytest.raises(KeyboardInterrupt):
            run(config)
    finally:  # the interrupt leaves SIGINT and SIGTERM ignored (the result files are being written)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    assert [t.state for t in load(config).trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.WAITING]

    study = run(config)  # the resume
    assert_retried_once(study, 1, "interrupted", 3)
    summary = (config.save_dir / "optimization_summary.txt").read_text()
    assert "    trial 1: interrupted (retried as trial 2)\n" in summary


def _fail_trial_1(monkeypatch, owner, method, is_trial_1):
    original = getattr(owner, method)

    def failing(self, *args):
        if is_trial_1(self, *args):
            raise ValueError("shapes do not match")
        return original(self, *args)

    monkeypatch.setattr(owner, method, failing)


@pytest.mark.parametrize("stage", ["training", "after training"])
def test_a_trial_that_fails_on_its_own_counts_and_is_not_retried(tmp_path, monkeypatch, stage):
    if stage == "training":
        _fail_trial_1(monkeypatch, Trainer, "_train_epoch", lambda trainer, *_: trainer.seed == SEED + 1)
    else:  # recording its signal, after the epochs: the reason is recorded all the same
        _fail_trial_1(monkeypatch, MultiObjectiveOptimizer, "_record_signal", lambda _, trial, __: trial.number == 1)
    study = run(tiny_config(tmp_path, n_trials=3))
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    assert study.trials[1].user_attrs["fail_reason"] == "ValueError: shapes do not match"
    assert not [t for t in study.trials if RETRY_OF in t.user_attrs]


def lost_connection() -> optuna.exceptions.StorageInternalError:
    """What RDBStorage raises when PostgreSQL went away under a write: Optuna's error, raised from
    SQLAlchemy's, raised from the driver's (psycopg's words)."""
    driver = ConnectionError("server closed the connection unexpectedly")
    database = sqlalchemy.exc.OperationalError("UPDATE trial_user_attributes SET ...", {}, driver)
    database.__cause__ = driver
    error = optuna.exceptions.StorageInternalError("An exception is raised during the commit.")
    error.__cause__ = database
    return error


def test_a_trial_that_lost_the_database_connection_records_why_and_runs_again(tmp_path, monkeypatch):
    original = optuna.storages.RDBStorage.set_trial_user_attr
    dropped = []

    def drop_trial_1s_first_epoch(self, trial_id, key, value):
        if key == "epoch_history" and self.get_trial_number_from_id(trial_id) == 1 and not dropped:
            dropped.append(True)
            raise lost_connection()
        return original(self, trial_id, key, value)

    monkeypatch.setattr(optuna.storages.RDBStorage, "set_trial_user_attr", drop_trial_1s_first_epoch)
    config = tiny_config(tmp_path, n_trials=3)
    study = run(config)  # goes on: the next trial slot runs the lost trial again
    assert dropped
    assert_retried_once(study, 1, "storage error: server closed the connection unexpectedly", 3)
    assert json.loads((config.save_dir / "trial_1_result.json").read_text())["fail_reason"] == (
        "storage error: server closed the connection unexpectedly"
    )


# --- a full disk: one line naming it and the command that resumes, exit 2 ----------------------

FAST = ["--scenario", "smoke", "--n-trials", "3", "--max-epochs-per-trial", "1", "--start", "2016-01-01", "--quiet"]


def invoke(*args: str):
    from typer.testing import CliRunner

    from cnn_lstm_hpo.cli import app

    return CliRunner().invoke(app, list(args))


def resume_line(reason: str, where: str) -> str:
    return f"error: {reason} ({where}); free space, then run the same command again to resume study 'smoke'\n"


def test_a_full_disk_under_a_result_file_ends_with_one_line_and_exit_2(tmp_path, monkeypatch):
    from cnn_lstm_hpo import study as study_module

    original = study_module.write_json

    def full(path, data):
        if path.name == "trial_1_result.json":
            raise OSError(errno.ENOSPC, "No space left on device")
        original(path, data)

    monkeypatch.setattr(study_module, "write_json", full)
    save = tmp_path / "run"
    result = invoke("optimize", *FAST, "--save-dir", str(save))
    assert result.exit_code == 2
    assert result.stderr == resume_line("disk full: [Errno 28] No space left on device", f"save dir {save}")
    assert "Traceback" not in result.output

    monkeypatch.setattr(study_module, "write_json", original)
    assert invoke("optimize", *FAST, "--save-dir", str(save)).exit_code == 0  # space freed: the study completes
    states = [t.state for t in optuna.load_study(study_name="smoke", storage=f"sqlite:///{save / 'study.db'}").trials]
    assert states == [TrialState.COMPLETE] * 3  # trial 1 was complete before its file failed: nothing lost


def test_a_full_database_disk_mid_trial_records_the_trial_and_ends_with_one_line(tmp_path, monkeypatch):
    """The epoch history (the trial's largest write) no longer fits; smaller writes still do."""
    original = optuna.storages.RDBStorage.set_trial_user_attr

    def full(self, trial_id, key, value):
        if key == "epoch_history" and self.get_trial_number_from_id(trial_id) == 1:
            raise sqlalchemy.exc.OperationalError("INSERT INTO trial_user_attributes ...", {}, sqlite3.OperationalError(
                "database or disk is full"))
        return original(self, trial_id, key, value)

    monkeypatch.setattr(optuna.storages.RDBStorage, "set_trial_user_attr", full)
    save = tmp_path / "run"
    url = f"sqlite:///{save / 'study.db'}"
    result = invoke("optimize", *FAST, "--save-dir", str(save))
    assert result.exit_code == 2
    assert result.stderr == resume_line("disk full: database or disk is full", f"storage {url}")
    trials = optuna.load_study(study_name="smoke", storage=url).trials
    assert [(t.state, t.user_attrs.get("fail_reason")) for t in trials] == [
        (TrialState.COMPLETE, None), (TrialState.FAIL, "disk full: database or disk is full"), (TrialState.WAITING, None),
    ]

    monkeypatch.setattr(optuna.storages.RDBStorage, "set_trial_user_attr", original)
    assert invoke("optimize", *FAST, "--save-dir", str(save)).exit_code == 0
    study = optuna.load_study(study_name="smoke", storage=url)
    assert_retried_once(study, 1, "disk full: database or disk is full", 3)


# Runs the CLI with a SQLite file whose disk fills up at trial 1's first epoch: every write fails.
FILLS_UP = textwrap.dedent("""
    import sqlite3, sys
    import optuna, sqlalchemy
    from cnn_lstm_hpo.cli import main

    full = []
    original = optuna.storages.RDBStorage.set_trial_user_attr

    def set_trial_user_attr(self, trial_id, key, value):
        if key == "epoch_history" and self.get_trial_number_from_id(trial_id) == 1:
            full.append(True)
        return original(self, trial_id, key, value)

    optuna.storages.RDBStorage.set_trial_user_attr = set_trial_user_attr

    @sqlalchemy.event.listens_for(sqlalchemy.engine.Engine, "before_cursor_execute")
    def write(conn, cursor, statement, *args):
        if full and not statement.lstrip().upper().startswith(("SELECT", "PRAGMA")):
            raise sqlite3.OperationalError("database or disk is full")

    main(sys.argv[1:])
""")


def test_a_disk_that_fills_up_mid_trial_ends_with_one_line_and_the_resume_retries_the_trial(tmp_path):
    """As a 40 MB tmpfs did: SQLite full, then Optuna's StorageInternalError, then its "Should not
    reach" (385 lines, exit 1, the trial left RUNNING)."""
    save = tmp_path / "run"
    url = f"sqlite:///{save / 'study.db'}"
    args = ["optimize", *FAST, "--save-dir", str(save)]
    full = subprocess.run([sys.executable, "-c", FILLS_UP, *args], capture_output=True, text=True, timeout=600)
    assert full.returncode == 2, full.stderr
    assert full.stderr == resume_line("disk full: database or disk is full", f"storage {url}")
    trials = optuna.load_study(study_name="smoke", storage=url).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.RUNNING]  # nothing could be written

    again = subprocess.run([sys.executable, "-m", "cnn_lstm_hpo.cli", *args], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    study = optuna.load_study(study_name="smoke", storage=url)
    assert_retried_once(study, 1, f"worker {trials[1].user_attrs['worker']} died", 3)
