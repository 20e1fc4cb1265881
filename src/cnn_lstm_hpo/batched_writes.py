"""A trial's writes in one transaction on a database storage.

Optuna's RDB storage commits every write on its own: when a trial starts, its 12 parameters, size,
bracket and size constraint are 15 transactions, and when it ends its results, history and
constraint 4 more (1-2.5 ms each on SQLite in WAL mode or a local PostgreSQL, more across a
network). Inside ``batched_writes(trial)`` those writes are held and go to the database in one
transaction when the block ends, whether it ends normally or by an exception. Any other call on
the storage (a read, the trial's state, a study attribute) first writes what is held, so this
process never reads around its own writes. Other processes (workers, the live view) see them when
the block ends: before the trial trains and when it has ended, as they did before.

Outside a block an attribute write, or a parameter the study already has, is a block of its own.
A block is a few Core statements: the trials' states, the parameters, an upsert per attribute kind (none read first).
The heartbeat (kept where other hosts can open the study) is one statement outside a transaction,
not four in one.
"""

from __future__ import annotations

import functools
import json
import threading
from contextlib import contextmanager, nullcontext
from datetime import timedelta
from typing import Any, ContextManager, Iterator

import optuna
from optuna import distributions
from optuna.storages._rdb import models
from optuna.storages._rdb.storage import _create_scoped_session
from optuna.trial import TrialState
from sqlalchemy import exc as sqlalchemy_exc
from sqlalchemy import func, insert, select
from sqlalchemy.dialects import mysql, postgresql, sqlite

PARAM, USER_ATTR, SYSTEM_ATTR = "param", "user_attr", "system_attr"
_ATTR_MODELS = {USER_ATTR: models.TrialUserAttributeModel, SYSTEM_ATTR: models.TrialSystemAttributeModel}
_TRIALS = models.TrialModel.__table__
_HEARTBEATS = models.TrialHeartbeatModel.__table__


UPSERT_DIALECTS = ("sqlite", "postgresql", "mysql")


@functools.lru_cache(maxsize=None)
def upsert(dialect: str, table: Any, unique: tuple[str, ...], replaced: tuple[str, ...]) -> Any:
    """An INSERT that, where a row with the same ``unique`` columns exists, replaces its ``replaced``
    columns instead: one statement however many rows, none read first."""
    if dialect == "mysql":
        statement = mysql.insert(table)
        return statement.on_duplicate_key_update({c: statement.inserted[c] for c in replaced})
    statement = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}[dialect](table)
    return statement.on_conflict_do_update(index_elements=list(unique), set_={c: statement.excluded[c] for c in replaced})


# RDBStorage's methods that open a session and are not held: each writes what is held first.
# (The heartbeat's two touch only the heartbeat table and run on their own thread.)
FLUSH_FIRST = (
    "create_new_study", "delete_study", "set_study_user_attr", "set_study_system_attr", "get_study_id_from_name",
    "get_study_name_from_id", "get_study_directions", "get_study_user_attrs", "get_study_system_attrs",
    "get_trial_user_attrs", "get_trial_system_attrs", "get_all_studies", "create_new_trial", "_create_new_trial",
    "get_trial_param", "set_trial_state_values", "set_trial_intermediate_value",
    "get_trial_id_from_study_id_trial_number", "get_trial", "get_all_trials", "_get_trials", "get_best_trial",
    "_get_best_trial_id",
)
NOT_HELD = ("record_heartbeat", "_get_stale_trial_ids")


class BatchingRDBStorage(optuna.storages.RDBStorage):
    """Optuna's RDB storage, whose trial parameter and attribute writes can be held for a block."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._held: dict[tuple[str, int, str], Any] = {}  # (kind, trial id, name) -> the latest value
        self._depth = 0
        self._lock = threading.RLock()
        self._can_hold = self.engine.dialect.name in UPSERT_DIALECTS  # elsewhere each write commits on its own, as Optuna's

    def __getstate__(self) -> dict[Any, Any]:  # RDBStorage pickles for Optuna's process pools; a lock cannot
        state = super().__getstate__()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[Any, Any]) -> None:
        super().__setstate__(state)
        self._lock = threading.RLock()

    @contextmanager
    def batch(self) -> Iterator[None]:
        with self._lock:
            self._depth += 1
        try:
            yield
        finally:
            with self._lock:
                self._depth -= 1
                if self._depth == 0:
                    self.flush()

    def flush(self) -> None:
        """Write what is held, in one transaction."""
        with self._lock:
            held, self._held = self._held, {}
            if not held:
                return
            try:
                with _create_scoped_session(self.scoped_session) as session, session.no_autoflush:
                    self._write(session, held)
            except sqlalchemy_exc.IntegrityError:
                # A parameter or attribute another process wrote first: as Optuna writes them, one by one
                # (it ignores a parameter written twice).
                try:
                    for (kind, trial_id, name), value in held.items():
                        if kind == PARAM:
                            super()._set_trial_param(trial_id, name, *value)
                        elif kind == USER_ATTR:
                            super().set_trial_user_attr(trial_id, name, value)
                        else:
                            super().set_trial_system_attr(trial_id, name, value)
                finally:
                    for trial_id in {trial_id for _, trial_id, _ in held}:
                        self._wrote(trial_id)
            else:
                self._wrote_held(held)

    # What a subclass that keeps trials in memory is told (under the lock, after the database has it).
    def _wrote(self, trial_id: int) -> None:
        """A write to the trial, not known value for value."""

    def _wrote_held(self, held: dict[tuple[str, int, str], Any]) -> None:
        """These writes (kind, trial id, name) -> value, all of them."""

    def _write(self, session: Any, held: dict[tuple[str, int, str], Any]) -> None:
        """What is held, in a few statements: the trials' states, the parameters, and an upsert per attribute kind."""
        trials = {trial_id for _, trial_id, _ in held}
        states = dict(session.execute(select(_TRIALS.c.trial_id, _TRIALS.c.state).where(_TRIALS.c.trial_id.in_(trials))).all())
        for trial_id in trials:
            if trial_id not in states:
                raise KeyError(models.NOT_FOUND_MSG)
            self.check_trial_is_updatable(trial_id, states[trial_id])
        rows: dict[str, list[dict[str, Any]]] = {PARAM: [], USER_ATTR: [], SYSTEM_ATTR: []}
        for (kind, trial_id, name), value in held.items():
            if kind == PARAM:
                internal, distribution, _previous = value
                rows[PARAM].append({"trial_id": trial_id, "param_name": name, "param_value": internal,
                                    "distribution_json": distributions.distribution_to_json(distribution)})
            else:
                rows[kind].append({"trial_id": trial_id, "key": name, "value_json": json.dumps(value)})
        if rows[PARAM]:
            session.execute(insert(models.TrialParamModel.__table__), rows[PARAM])
        for kind, model in _ATTR_MODELS.items():
            if rows[kind]:
                session.execute(upsert(self.engine.dialect.name, model.__table__, ("trial_id", "key"), ("value_json",)), rows[kind])

    # The heartbeat, where it is on (a storage other hosts can open): Optuna's reads before it writes
    # (4 statements a trial) and reads the stale trials in 3; one each here, in the database's own time.
    def record_heartbeat(self, trial_id: int) -> None:
        if self.engine.dialect.name not in UPSERT_DIALECTS:
            return super().record_heartbeat(trial_id)
        beat = upsert(self.engine.dialect.name, _HEARTBEATS, ("trial_id",), ("heartbeat",))
        with self._autocommit() as connection:
            connection.execute(beat.values(trial_id=trial_id, heartbeat=func.now()))

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        assert self.heartbeat_interval is not None
        grace = timedelta(seconds=2 * self.heartbeat_interval if self.grace_period is None else self.grace_period)
        beats = (select(_HEARTBEATS.c.trial_id, _HEARTBEATS.c.heartbeat, func.now())
                 .join(_TRIALS, _TRIALS.c.trial_id == _HEARTBEATS.c.trial_id)
                 .where(_TRIALS.c.study_id == study_id, _TRIALS.c.state == TrialState.RUNNING)
                 .order_by(_HEARTBEATS.c.trial_id))
        with self._autocommit() as connection:
            rows = connection.execute(beats).all()
        # As Optuna: the database's time without its zone, as the heartbeat column stores it.
        return [trial_id for trial_id, beat, now in rows if now.replace(tzinfo=None) - beat > grace]

    @contextmanager
    def _autocommit(self) -> Iterator[Any]:
        """A connection for single statements, outside a transaction: one round trip each, none to begin
        and commit (on PostgreSQL a statement reads what is committed when it starts, in a transaction or not)."""
        try:
            with self.engine.connect() as connection:
                yield connection.execution_options(isolation_level="AUTOCOMMIT")
        except sqlalchemy_exc.SQLAlchemyError as error:  # as Optuna's storage reports a database error
            raise optuna.exceptions.StorageInternalError(f"the study's database failed: {error}") from error

    def _hold(self, key: tuple[str, int, str], value: Any) -> None:
        """Held until this process's block ends; outside one, a block of its own (one transaction now)."""
        with self.batch(), self._lock:
            self._held[key] = value

    # The writes that can be held (what ``_CachedStorage``, Optuna's wrapper, calls for them).
    def _set_trial_param(
        self, trial_id: int, param_name: str, param_value_internal: float,
        distribution: distributions.BaseDistribution, previous_distribution: distributions.BaseDistribution | None,
    ) -> None:
        if previous_distribution is not None and self._can_hold:
            distributions.check_distribution_compatibility(previous_distribution, distribution)  # raises here, as unheld
            self._hold((PARAM, trial_id, param_name), (param_value_internal, distribution, previous_distribution))
            return
        # Without a previous distribution the study's stored one must be read to check against: Optuna's write.
        self.flush()
        try:
            super()._set_trial_param(trial_id, param_name, param_value_internal, distribution, previous_distribution)
        finally:
            self._wrote(trial_id)

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        json.dumps(value)  # a value that cannot be stored raises here, as unheld
        if self._can_hold:
            self._hold((USER_ATTR, trial_id, key), value)
        else:
            super().set_trial_user_attr(trial_id, key, value)

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        json.dumps(value)
        if self._can_hold:
            self._hold((SYSTEM_ATTR, trial_id, key), value)
        else:
            super().set_trial_system_attr(trial_id, key, value)


def _flushed_first(name: str) -> Any:
    unheld = getattr(optuna.storages.RDBStorage, name)

    def method(self: BatchingRDBStorage, *args: Any, **kwargs: Any) -> Any:
        if self._held:
            self.flush()
        return unheld(self, *args, **kwargs)

    method.__name__ = name
    method.__doc__ = unheld.__doc__
    return method


for _name in FLUSH_FIRST:
    setattr(BatchingRDBStorage, _name, _flushed_first(_name))


def batched_writes(trial: optuna.Trial) -> ContextManager[None]:
    """Hold ``trial``'s storage writes until the block ends, where its storage can (RDB); else nothing."""
    storage = trial.storage
    backend = getattr(storage, "_backend", storage)  # Optuna wraps an RDBStorage in its cache
    return backend.batch() if isinstance(backend, BatchingRDBStorage) else nullcontext()
