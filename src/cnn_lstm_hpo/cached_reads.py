"""Reading a study's trials from a database storage in two statements, and not rereading what cannot have changed.

Optuna's RDB storage reads trials with an ORM query per table: the trials, then their parameters, values, user and
system attributes and intermediate values (6-7 statements a read). Its cache wrapper rereads every unfinished trial
at each ``study.get_trials`` (4-5 times a trial with TPE and our pruner) and ``get_trial`` reads a trial 3 times more
(ask, tell, callbacks): about 50 statements a trial, each a round trip on PostgreSQL, plus a BEGIN and a COMMIT a
read. Here a read is outside a transaction, and:

- the trials' rows (id, number, state, times): one statement; the row says whether what is in memory still holds;
- a finished trial, from memory once read: Optuna refuses every write to it, so it cannot change;
- a running trial this process started, from memory: no other process writes its parameters or attributes (another
  may only fail it when its heartbeat goes stale, which its row shows). What this process writes in a held block
  (batched_writes) and the state it tells it are kept value for value; after any other write it is read again;
- the rest (trials of other processes, trials written since), one more statement for all five tables.
"""

from __future__ import annotations

import datetime
import functools
import json
from typing import Any, Container, Sequence

from optuna import distributions
from optuna.storages._rdb import models
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import Float, Integer, String, Text, bindparam, cast, literal_column, null, or_, select, union_all

from .batched_writes import PARAM, SYSTEM_ATTR, USER_ATTR, BatchingRDBStorage

_TRIALS, _STUDIES = models.TrialModel.__table__, models.StudyModel.__table__
_ROW = (_TRIALS.c.trial_id, _TRIALS.c.number, _TRIALS.c.state, _TRIALS.c.datetime_start, _TRIALS.c.datetime_complete)
VALUE, INTERMEDIATE = "value", "intermediate"  # with batched_writes' kinds, those of the rows below
_IDS_PER_STATEMENT = 500  # well under every database's limit on bound parameters
_VALUE_TYPE = models.TrialValueModel.TrialValueType
_INTERMEDIATE_TYPE = models.TrialIntermediateValueModel.TrialIntermediateValueType


@functools.lru_cache(maxsize=4096)
def _distribution(distribution_json: str) -> distributions.BaseDistribution:
    """A stored distribution, parsed once (a study stores the same few thousands of times)."""
    return distributions.json_to_distribution(distribution_json)


def _local_time(stored_utc: datetime.datetime | None) -> datetime.datetime | None:
    # As Optuna's TrialModel: naive UTC in the database, naive local time in a FrozenTrial.
    if stored_utc is None:
        return None
    return stored_utc.replace(tzinfo=datetime.timezone.utc).astimezone().replace(tzinfo=None)


def _children() -> Any:
    """One statement for the parameters, values, attributes and intermediate values of the trials ``ids``
    (a parameter): (kind, trial id, order, name, number, type, text). Built once."""
    trial_ids = bindparam("ids", expanding=True)
    p, v = models.TrialParamModel.__table__, models.TrialValueModel.__table__
    u, s = models.TrialUserAttributeModel.__table__, models.TrialSystemAttributeModel.__table__
    i = models.TrialIntermediateValueModel.__table__
    no_int, no_name, no_number = cast(null(), Integer), cast(null(), String), cast(null(), Float)
    no_type, no_text = cast(null(), String), cast(null(), Text)

    def kind(k: str) -> Any:
        return literal_column(f"'{k}'", String)

    return union_all(
        select(kind(PARAM), p.c.trial_id, p.c.param_id, p.c.param_name, p.c.param_value, no_type, p.c.distribution_json)
        .where(p.c.trial_id.in_(trial_ids)),
        select(kind(VALUE), v.c.trial_id, v.c.objective, no_name, v.c.value, cast(v.c.value_type, String), no_text)
        .where(v.c.trial_id.in_(trial_ids)),
        select(kind(USER_ATTR), u.c.trial_id, no_int, u.c.key, no_number, no_type, u.c.value_json)
        .where(u.c.trial_id.in_(trial_ids)),
        select(kind(SYSTEM_ATTR), s.c.trial_id, no_int, s.c.key, no_number, no_type, s.c.value_json)
        .where(s.c.trial_id.in_(trial_ids)),
        select(kind(INTERMEDIATE), i.c.trial_id, i.c.step, no_name, i.c.intermediate_value,
               cast(i.c.intermediate_value_type, String), no_text)
        .where(i.c.trial_id.in_(trial_ids)),
    )


_CHILDREN = _children()


class _Parts:
    """What a trial's five child tables hold, as a FrozenTrial has it."""

    def __init__(self) -> None:
        self.params: list[tuple[int, str, float, distributions.BaseDistribution]] = []  # (param id, ...)
        self.values: dict[int, float] = {}
        self.user_attrs: dict[str, Any] = {}
        self.system_attrs: dict[str, Any] = {}
        self.intermediate_values: dict[int, float] = {}

    def add(self, kind: str, order: int | None, name: str | None, number: float | None, type_name: str | None,
            text: str | None) -> None:
        if kind == PARAM:
            self.params.append((order, name, number, _distribution(text)))
        elif kind == VALUE:
            self.values[order] = models.TrialValueModel.stored_repr_to_value(number, _VALUE_TYPE[type_name])
        elif kind == USER_ATTR:
            self.user_attrs[name] = json.loads(text)
        elif kind == SYSTEM_ATTR:
            self.system_attrs[name] = json.loads(text)
        else:
            self.intermediate_values[order] = models.TrialIntermediateValueModel.stored_repr_to_intermediate_value(
                number, _INTERMEDIATE_TYPE[type_name])

    def apply(self, kind: str, name: str, value: Any) -> None:
        """A held write (batched_writes), as reading it back would give it."""
        if kind == PARAM:
            internal, distribution, _previous = value
            after = max((order for order, *_ in self.params), default=0) + 1  # its id is higher than theirs
            self.params.append((after, name, float(internal), distribution))  # the database holds a float
        else:
            attrs = self.user_attrs if kind == USER_ATTR else self.system_attrs
            attrs[name] = json.loads(json.dumps(value))

    def frozen(self, row: Any) -> FrozenTrial:
        """A new FrozenTrial (its dicts its own: Optuna's Trial updates the one it holds)."""
        params = sorted(self.params)
        return FrozenTrial(
            number=row.number, state=row.state, value=None,
            values=[self.values[k] for k in range(len(self.values))] if self.values else None,
            datetime_start=_local_time(row.datetime_start), datetime_complete=_local_time(row.datetime_complete),
            params={name: distribution.to_external_repr(value) for _, name, value, distribution in params},
            distributions={name: distribution for _, name, _, distribution in params},
            user_attrs=dict(self.user_attrs), system_attrs=dict(self.system_attrs),
            intermediate_values=dict(self.intermediate_values), trial_id=row.trial_id,
        )


class CachedReadsRDBStorage(BatchingRDBStorage):
    """Optuna's RDB storage with batched writes, whose trial reads skip what cannot have changed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._forget()

    def _forget(self) -> None:
        # trial id -> (its row when read, or the state it must have where it is not read yet; its parts)
        self._known: dict[int, tuple[Any, _Parts]] = {}
        self._started_here: set[int] = set()  # running trials this process started

    def __setstate__(self, state: dict[Any, Any]) -> None:  # another process: the trials it runs are not ours
        super().__setstate__(state)
        self._forget()

    def _get_trials(self, study_id: int, states: Container[TrialState] | None, included_trial_ids: set[int],
                    trial_id_greater_than: int) -> list[FrozenTrial]:
        # The same trials as Optuna's: those in ``states``, and if ``trial_id_greater_than`` > -1 only those
        # above it or in ``included_trial_ids``.
        included = [t for t in included_trial_ids if t <= trial_id_greater_than]
        query = select(*_ROW).where(_TRIALS.c.study_id == study_id)
        if states is not None:
            query = query.where(_TRIALS.c.state.in_(list(states)))  # type: ignore[call-overload]
        if trial_id_greater_than > -1:
            newer = _TRIALS.c.trial_id > trial_id_greater_than
            query = query.where(or_(newer, _TRIALS.c.trial_id.in_(included)) if included else newer)
        with self._lock:
            self.flush()
            with self._autocommit() as connection:
                rows = connection.execute(query.order_by(_TRIALS.c.trial_id)).all()
                if not rows and connection.execute(select(_STUDIES.c.study_id).where(_STUDIES.c.study_id == study_id)).first() is None:
                    raise KeyError(models.NOT_FOUND_MSG)  # as Optuna's
                return self._frozen(connection, rows)

    def get_trial(self, trial_id: int) -> FrozenTrial:
        with self._lock:
            self.flush()
            with self._autocommit() as connection:
                rows = connection.execute(select(*_ROW).where(_TRIALS.c.trial_id == trial_id)).all()
                if not rows:
                    raise KeyError(models.NOT_FOUND_MSG)
                return self._frozen(connection, rows)[0]

    def _frozen(self, connection: Any, rows: Sequence[Any]) -> list[FrozenTrial]:
        parts: dict[int, _Parts] = {}
        # What was read under a row still holds while the row is the same (a trial finished since, or an id
        # SQLite gave again after its study was deleted, is read anew).
        for row in rows:
            known = self._known.get(row.trial_id)
            if known is not None and (known[0] == row or known[0] == row.state):
                parts[row.trial_id] = known[1]
        missing = [row.trial_id for row in rows if row.trial_id not in parts]
        for start in range(0, len(missing), _IDS_PER_STATEMENT):
            chunk = missing[start:start + _IDS_PER_STATEMENT]
            parts.update((trial_id, _Parts()) for trial_id in chunk)
            for kind, trial_id, *child in connection.execute(_CHILDREN, {"ids": chunk}):
                parts[trial_id].add(kind, *child)
        for row in rows:
            if row.state.is_finished() or row.trial_id in self._started_here:
                self._known[row.trial_id] = (row, parts[row.trial_id])
        return [parts[row.trial_id].frozen(row) for row in rows]

    def _wrote(self, trial_id: int) -> None:
        with self._lock:
            self._known.pop(trial_id, None)  # read it again next time

    def _wrote_held(self, held: dict[tuple[str, int, str], Any]) -> None:
        for (kind, trial_id, name), value in held.items():
            known = self._known.get(trial_id)
            if known is not None:
                known[1].apply(kind, name, value)

    def _create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> FrozenTrial:
        trial = super()._create_new_trial(study_id, template_trial)
        if template_trial is None:  # started here, running, nothing written yet (a template's is enqueued or finished)
            with self._lock:
                self._started_here.add(trial._trial_id)
                self._known[trial._trial_id] = (TrialState.RUNNING, _Parts())
        return trial

    def set_trial_state_values(self, trial_id: int, state: TrialState, values: Sequence[float] | None = None) -> bool:
        try:
            taken = super().set_trial_state_values(trial_id, state, values)
        except BaseException:
            self._wrote(trial_id)
            raise
        with self._lock:
            known = self._known.pop(trial_id, None)
            if taken and known is not None:  # the rest as it was; values as written
                if values is not None:
                    known[1].values = {objective: float(value) for objective, value in enumerate(values)}
                self._known[trial_id] = (state, known[1])
            if state == TrialState.RUNNING and taken:  # an enqueued trial this process now runs
                self._started_here.add(trial_id)
            elif state.is_finished():
                self._started_here.discard(trial_id)
        return taken

    def set_trial_intermediate_value(self, trial_id: int, step: int, intermediate_value: float) -> None:
        try:
            super().set_trial_intermediate_value(trial_id, step, intermediate_value)
        finally:
            self._wrote(trial_id)
