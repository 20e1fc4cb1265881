"""A trial's writes held for a block go to the database in one transaction, and nothing else changes:
the same trial afterwards, this process reads them at once, other processes see them when the block
ends, and bad values fail where they did. On SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import inspect
import re
import uuid
import warnings
from datetime import timedelta

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.storages._rdb import models
from optuna.trial import TrialState
from sqlalchemy import event, select, update

from cnn_lstm_hpo.batched_writes import FLUSH_FIRST, NOT_HELD, BatchingRDBStorage, batched_writes
from cnn_lstm_hpo.storage import open_storage


def _study(storage) -> optuna.Study:
    return optuna.create_study(storage=storage, study_name=f"s-{uuid.uuid4().hex}", directions=["maximize", "minimize"])


def _write_transactions(storage: BatchingRDBStorage) -> list[int]:
    """A counter of the committed transactions that wrote something (reads commit too)."""
    count, wrote = [0], [False]

    def statement(conn, cursor, sql, *args):
        wrote[0] = wrote[0] or sql.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))

    def commit(conn):
        count[0] += wrote[0]
        wrote[0] = False

    event.listen(storage.engine, "before_cursor_execute", statement)
    event.listen(storage.engine, "commit", commit)
    return count


def _trial_writes(trial: optuna.Trial) -> None:
    """What a trial writes when it starts: parameters of each kind, attributes, one set twice, a constraint."""
    for i in range(4):
        trial.suggest_float(f"f{i}", 0.0, 1.0)
        trial.suggest_int(f"i{i}", 1, 64, log=True)
        trial.suggest_categorical(f"c{i}", ["a", "b", None])
    trial.set_user_attr("worker", "host:1")
    trial.set_user_attr("size", 1.5)
    trial.set_user_attr("size", 2.5)  # the last value is the one kept, as unheld
    trial.storage.set_trial_system_attr(trial._trial_id, "constraints:size", -1.0)


def _as_written(trial: optuna.frozen.FrozenTrial) -> tuple:
    return trial.params, trial.distributions, trial.user_attrs, trial.system_attrs, trial.state


def test_held_writes_make_the_same_trial_in_one_commit(opened):
    study = _study(opened)
    writes = _write_transactions(opened)
    first = study.ask()
    before = writes[0]
    _trial_writes(first)
    assert writes[0] - before == 16  # unheld: 12 parameters and 4 attribute writes, one commit each
    study.sampler = optuna.samplers.RandomSampler(seed=3)
    held = study.ask()
    before = writes[0]
    with batched_writes(held):
        _trial_writes(held)
        assert writes[0] == before  # nothing yet
    assert writes[0] == before + 1
    # Value for value what unheld writes make: a trial with the same draws, unheld.
    study.sampler = optuna.samplers.RandomSampler(seed=3)
    unheld = study.ask()
    _trial_writes(unheld)
    assert _as_written(opened.get_trial(held._trial_id)) == _as_written(opened.get_trial(unheld._trial_id))
    assert opened.get_trial(held._trial_id).user_attrs["size"] == 2.5


def _second_trial_of_a_study_with_x(opened) -> tuple[optuna.Study, optuna.Trial]:
    study = _study(opened)
    # A parameter new to this process is written at once (it is checked against the study's): not held.
    study.ask().suggest_float("x", 0.0, 1.0)
    return study, study.ask()


def test_this_process_reads_held_writes_at_once_and_others_when_the_block_ends(opened, other):
    study, trial = _second_trial_of_a_study_with_x(opened)
    with batched_writes(trial):
        trial.suggest_float("x", 0.0, 1.0)
        trial.set_user_attr("worker", "host:1")
        assert other.get_trial(trial._trial_id).user_attrs == {}  # held
        # Any read here writes what is held first: this process never reads around it.
        assert study.trials[-1].user_attrs == {"worker": "host:1"}
        assert "x" in study.trials[-1].params
        trial.set_user_attr("size", 3.0)
        assert "size" not in other.get_trial(trial._trial_id).user_attrs
    seen = other.get_trial(trial._trial_id)
    assert seen.user_attrs == {"worker": "host:1", "size": 3.0} and "x" in seen.params


def test_an_exception_in_the_block_still_writes_what_was_held(opened):
    study = _study(opened)
    trial = study.ask()
    with pytest.raises(optuna.TrialPruned):
        with batched_writes(trial):
            trial.set_user_attr("stop_reason", "model too big")
            raise optuna.TrialPruned()
    assert opened.get_trial(trial._trial_id).user_attrs == {"stop_reason": "model too big"}


def test_bad_values_fail_where_they_did_unheld(opened):
    study = _study(opened)
    study.ask().suggest_int("n", 1, 8)
    trial = study.ask()
    with batched_writes(trial):
        with pytest.raises(TypeError, match="is not JSON serializable"):
            trial.set_user_attr("model", object())
        with pytest.raises(ValueError, match="Cannot set different distribution kind to the same parameter name"):
            trial.suggest_float("n", 1.0, 8.0)  # the study has n as an int
        trial.set_user_attr("fine", 1)
    assert opened.get_trial(trial._trial_id).user_attrs == {"fine": 1}


def test_held_writes_to_a_trial_finished_meanwhile_fail_as_unheld(opened, other):
    study = _study(opened)
    trial = study.ask()
    with pytest.raises(RuntimeError, match="has already finished and can not be updated"):
        with batched_writes(trial):
            trial.set_user_attr("late", 1)
            other.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
    assert opened.get_trial(trial._trial_id).user_attrs == {}
    with batched_writes(trial):  # nothing is left held from the failed block
        pass


def test_every_rdb_method_that_opens_a_session_is_held_or_writes_what_is_held_first():
    held = {"_set_trial_param", "set_trial_user_attr", "set_trial_system_attr"}
    opening = {
        name for name, member in vars(optuna.storages.RDBStorage).items()
        if inspect.isfunction(member) and re.search(r"_create_scoped_session\(", inspect.getsource(member))
    }
    assert opening - held - set(NOT_HELD) <= set(FLUSH_FIRST), "an RDBStorage method reads or writes around held writes"
    for name in FLUSH_FIRST:
        assert vars(BatchingRDBStorage)[name] is not vars(optuna.storages.RDBStorage).get(name)


def test_outside_a_block_each_write_commits_at_once(opened, other):
    trial = _study(opened).ask()
    trial.set_user_attr("worker", "host:1")
    assert other.get_trial(trial._trial_id).user_attrs == {"worker": "host:1"}


def test_journal_and_in_memory_studies_write_as_before(tmp_path):
    journal = open_storage(f"journal:///{tmp_path / 'study.journal'}")
    for storage in (journal, optuna.storages.InMemoryStorage()):
        trial = optuna.create_study(storage=storage).ask()
        with batched_writes(trial):
            trial.set_user_attr("worker", "host:1")
            assert trial.study.trials[-1].user_attrs == {"worker": "host:1"}


def test_a_parameter_another_process_wrote_first_is_skipped_and_the_rest_written(opened, other):
    _, trial = _second_trial_of_a_study_with_x(opened)
    with batched_writes(trial):
        trial.suggest_float("x", 0.0, 1.0)
        trial.set_user_attr("worker", "host:1")
        other.set_trial_param(trial._trial_id, "x", 0.25, FloatDistribution(0.0, 1.0))
    # As unheld: Optuna ignores the second write of a parameter (a unique key), keeps the rest.
    written = opened.get_trial(trial._trial_id)
    assert written.params == {"x": 0.25} and written.user_attrs == {"worker": "host:1"}


def test_heartbeats_and_stale_trials_are_what_optuna_records_and_finds(rdb_url):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        ours = BatchingRDBStorage(rdb_url, heartbeat_interval=1, grace_period=5)
        optunas = optuna.storages.RDBStorage(rdb_url, heartbeat_interval=1, grace_period=5)
    study_id = ours.create_new_study([optuna.study.StudyDirection.MAXIMIZE], f"s-{uuid.uuid4().hex}")
    dead, failed, alive, _never_beat = (ours.create_new_trial(study_id) for _ in range(4))
    for trial_id in (dead, failed, alive):
        ours.record_heartbeat(trial_id)
    beats = models.TrialHeartbeatModel.__table__
    with ours.engine.begin() as connection:  # their processes stopped beating 10 s ago
        mine = select(beats.c.trial_id, beats.c.heartbeat).where(beats.c.trial_id.in_([dead, failed, alive]))
        for trial_id, beat in connection.execute(mine).all():
            connection.execute(update(beats).where(beats.c.trial_id == trial_id).values(heartbeat=beat - timedelta(seconds=10)))
    ours.record_heartbeat(alive)  # beats again: its one row is updated
    ours.set_trial_state_values(failed, TrialState.FAIL)
    assert ours._get_stale_trial_ids(study_id) == optunas._get_stale_trial_ids(study_id) == [dead]
    with ours.engine.connect() as connection:
        assert connection.execute(select(beats.c.trial_id).where(beats.c.trial_id == alive)).all() == [(alive,)]
    for storage in (ours, optunas):
        storage.engine.dispose()
