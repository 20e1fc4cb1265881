"""The database storage's trial reads give what Optuna's own RDB storage reads, whatever was written
before, by this process or another, and skip only what cannot have changed. On SQLite and on a real
PostgreSQL server."""

from __future__ import annotations

import math
import pickle
import random
import uuid
from typing import Any

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import event

from cnn_lstm_hpo import cached_reads
from cnn_lstm_hpo.batched_writes import batched_writes

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
DISTRIBUTIONS = {
    "lr": FloatDistribution(1e-5, 1e-1, log=True), "dropout": FloatDistribution(0.0, 0.5, step=0.1),
    "layers": IntDistribution(1, 4), "filters": IntDistribution(8, 128, log=True),
    "cell": CategoricalDistribution(["lstm", None, 1.5, True]),
}
ODD_FLOATS = (float("nan"), float("inf"), -float("inf"), 0.0, -1e-300, 1e300)


def _comparable(x: Any) -> Any:
    """Value for value, with NaN equal to NaN (a FrozenTrial's == is not)."""
    if isinstance(x, float) and math.isnan(x):
        return "NaN"
    if isinstance(x, FrozenTrial):  # parameters in the order they were written, as Optuna reads them
        return {**_comparable(vars(x)), "parameter order": list(x.params)}
    if isinstance(x, dict):
        return {k: _comparable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):  # a tuple stays a tuple: an attribute's reads back as a list
        return type(x)(_comparable(v) for v in x)
    return x


@pytest.fixture
def optunas(rdb_url):
    """Optuna's own RDB storage on the same database: the independent reading."""
    storage = optuna.storages.RDBStorage(rdb_url)
    yield storage
    storage.remove_session()
    storage.engine.dispose()


def _new_study(storage) -> int:
    return storage.create_new_study([optuna.study.StudyDirection.MAXIMIZE] * 2, f"s-{uuid.uuid4().hex}")


def _statements(storage) -> list[int]:
    count = [0]
    event.listen(storage.engine, "before_cursor_execute", lambda *args: count.__setitem__(0, count[0] + 1))
    return count


def _random_write(rng: random.Random, ours, elsewhere, study_id: int) -> None:
    """One write of the kinds a study sees: by this process, or by another to its own trials or to ours."""
    trials = ours.get_all_trials(study_id, deepcopy=False)
    running = [t for t in trials if t.state == TrialState.RUNNING]
    action = rng.choice(["create", "create", "enqueue", "add finished", "param", "attr", "attr", "system attr",
                         "intermediate", "finish", "start waiting", "other process", "other fails ours"])
    if action == "create" or (not running and action not in ("enqueue", "add finished", "other process")):
        ours.create_new_trial(study_id)
    elif action in ("enqueue", "add finished"):
        state = TrialState.WAITING if action == "enqueue" else rng.choice(FINISHED)
        values = [rng.choice(ODD_FLOATS[1:] + (rng.random(),)), rng.random()] if state == TrialState.COMPLETE else None
        ours.create_new_trial(study_id, FrozenTrial(
            number=-1, state=state, value=None, values=values, datetime_start=None, datetime_complete=None,
            params={"layers": rng.randint(1, 4)}, distributions={"layers": DISTRIBUTIONS["layers"]},
            user_attrs={"from": "template"}, system_attrs={"fixed_params": {"layers": 2}},
            intermediate_values={0: rng.random()} if state == TrialState.PRUNED else {}, trial_id=-1))
    elif action == "start waiting":
        waiting = [t for t in trials if t.state == TrialState.WAITING]
        if waiting:
            ours.set_trial_state_values(rng.choice(waiting)._trial_id, TrialState.RUNNING)
    elif action == "other process":  # another worker's trial: created, written and maybe finished over there
        trial_id = elsewhere.create_new_trial(study_id)
        elsewhere.set_trial_user_attr(trial_id, "worker", rng.random())
        if rng.random() < 0.5:
            elsewhere.set_trial_state_values(trial_id, TrialState.COMPLETE, [rng.random(), rng.random()])
    else:
        trial = rng.choice(running)
        if action == "param":
            free = [name for name in DISTRIBUTIONS if name not in trial.params]
            if free:
                name = rng.choice(free)
                distribution = DISTRIBUTIONS[name]
                external = {"cell": rng.choice(distribution.choices) if name == "cell" else None}.get(name)
                if name != "cell":
                    external = distribution.low if rng.random() < 0.5 else distribution.high
                # With the distribution already known (as Optuna's cache wrapper passes it) a write can be held.
                known = distribution if rng.random() < 0.7 else None
                ours._set_trial_param(trial._trial_id, name, distribution.to_internal_repr(external), distribution, known)
        elif action == "attr":  # new keys and keys written again
            ours.set_trial_user_attr(trial._trial_id, rng.choice(["a", "b", "history"]),
                                     rng.choice([rng.random(), [1, {"x": None}], "text", None, True, (1, 2), {3: "int key"}]))
        elif action == "system attr":
            ours.set_trial_system_attr(trial._trial_id, rng.choice(["constraints", "c2"]), [rng.uniform(-1, 1)])
        elif action == "intermediate":
            ours.set_trial_intermediate_value(trial._trial_id, rng.randint(0, 5), rng.choice(ODD_FLOATS))
        elif action == "finish":
            state = rng.choice(FINISHED)
            values = [rng.choice(ODD_FLOATS[1:]), rng.random()] if state == TrialState.COMPLETE else None
            ours.set_trial_state_values(trial._trial_id, state, values)
        else:  # "other fails ours": its heartbeat went stale in another worker's eyes
            elsewhere.set_trial_state_values(trial._trial_id, TrialState.FAIL)


def _assert_reads_as_optunas(rng: random.Random, ours, optunas, study_id: int) -> None:
    assert _comparable(ours.get_all_trials(study_id)) == _comparable(optunas.get_all_trials(study_id))
    states = tuple(rng.sample(list(TrialState), rng.randint(1, 3)))
    assert _comparable(ours.get_all_trials(study_id, states=states)) == _comparable(
        optunas.get_all_trials(study_id, states=states))
    # What Optuna's cache wrapper asks for: some trials and those after one.
    ids = [t._trial_id for t in optunas.get_all_trials(study_id)]
    included = set(rng.sample(ids, min(len(ids), rng.randint(0, 3))))
    after = rng.choice(ids + [-1]) if ids else -1
    assert _comparable(ours._get_trials(study_id, None, included, after)) == _comparable(
        optunas._get_trials(study_id, None, included, after))
    for trial_id in rng.sample(ids, min(len(ids), 3)):
        assert _comparable(ours.get_trial(trial_id)) == _comparable(optunas.get_trial(trial_id))


@pytest.mark.parametrize("seed", [0, 1])
def test_reads_give_what_optunas_storage_reads_after_random_writes(opened, other, optunas, seed, monkeypatch):
    monkeypatch.setattr(cached_reads, "_IDS_PER_STATEMENT", 3)  # and more trials than fit in one statement
    rng = random.Random(seed)
    study_id, elsewhere_study = _new_study(opened), _new_study(other)
    for step in range(80):
        if rng.random() < 0.2:  # some writes held, with reads inside the block
            with opened.batch():
                _random_write(rng, opened, other, study_id)
                _assert_reads_as_optunas(rng, opened, optunas, study_id)
                _random_write(rng, opened, other, study_id)
        else:
            _random_write(rng, opened, other, study_id)
        if rng.random() < 0.1:  # a study of the other process's, between the two
            other.create_new_trial(elsewhere_study)
        _assert_reads_as_optunas(rng, opened, optunas, study_id)
    assert {t.state for t in optunas.get_all_trials(study_id)} >= {TrialState.RUNNING, TrialState.COMPLETE}


def test_a_trial_is_read_from_the_database_once_and_again_only_after_a_write_not_known_value_for_value(opened):
    study = optuna.create_study(storage=opened, study_name=f"s-{uuid.uuid4().hex}")
    done = study.ask()
    done.suggest_float("x", 0.0, 1.0)
    study.tell(done, 0.5)
    trial = study.ask()
    statements = _statements(opened)
    assert opened.get_trial(done._trial_id).values == [0.5]
    assert statements[0] == 1  # its row: is it still the trial that was read?
    opened.get_trial(trial._trial_id)
    assert statements[0] == 2  # its row: running, as this process left it
    with batched_writes(trial):  # held writes are known value for value
        trial.suggest_float("x", 0.0, 1.0)
        trial.set_user_attr("size", 1.5)
    before = statements[0]
    assert opened.get_trial(trial._trial_id).user_attrs == {"size": 1.5}
    assert statements[0] - before == 1
    study.tell(trial, 0.25)  # so is the state it is told
    before = statements[0]
    told = opened.get_trial(trial._trial_id)
    assert (told.state, told.values, told.user_attrs, list(told.params)) == (TrialState.COMPLETE, [0.25], {"size": 1.5}, ["x"])
    assert statements[0] - before == 1
    last = study.ask()
    last.set_user_attr("size", 2.5)  # outside a block: a block of its own, kept too
    before = statements[0]
    assert opened.get_trial(last._trial_id).user_attrs == {"size": 2.5}
    assert statements[0] - before == 1
    last.suggest_int("new", 1, 4)  # new to the study: Optuna's own write, not kept value for value
    before = statements[0]
    assert opened.get_trial(last._trial_id).params == {"new": last.params["new"]}
    assert statements[0] - before == 2  # its row and, written since, the rest of it
    before = statements[0]
    assert len(opened.get_all_trials(study._study_id)) == 3
    assert statements[0] - before == 1


def test_writes_of_other_processes_are_read(opened, other):
    study_id = _new_study(opened)
    theirs = other.create_new_trial(study_id)
    other.set_trial_user_attr(theirs, "worker", "host:2")
    assert opened.get_trial(theirs).user_attrs == {"worker": "host:2"}
    other.set_trial_user_attr(theirs, "history", [1, 2])  # a running trial of another process: read every time
    assert opened.get_trial(theirs).user_attrs == {"worker": "host:2", "history": [1, 2]}
    ours = opened.create_new_trial(study_id)
    opened.set_trial_user_attr(ours, "worker", "host:1")
    assert opened.get_trial(ours).state == TrialState.RUNNING
    other.set_trial_state_values(ours, TrialState.FAIL)  # ours, failed over there as stale
    assert opened.get_trial(ours).state == TrialState.FAIL
    told = opened.create_new_trial(study_id)  # told over there before this process read it once
    other.set_trial_state_values(told, TrialState.COMPLETE, [0.5])
    assert opened.get_trial(told).values == [0.5]
    assert [t.state for t in opened.get_all_trials(study_id)] == [TrialState.RUNNING, TrialState.FAIL, TrialState.COMPLETE]


def test_a_copy_in_another_process_reads_the_trials_this_one_started_from_the_database(opened, other):
    study_id = _new_study(opened)
    trial_id = opened.create_new_trial(study_id)
    opened.get_trial(trial_id)
    copy = pickle.loads(pickle.dumps(opened))  # as Optuna hands a storage to another process
    other.set_trial_user_attr(trial_id, "by", "elsewhere")
    assert copy.get_trial(trial_id).user_attrs == {"by": "elsewhere"}
    copy.engine.dispose()


def test_a_trial_whose_id_came_back_after_its_study_was_deleted_is_read_anew(opened, other):
    first = _new_study(opened)
    trial_id = opened.create_new_trial(first)
    opened.set_trial_state_values(trial_id, TrialState.FAIL)
    assert opened.get_trial(trial_id).state == TrialState.FAIL
    other.delete_study(first)  # another process: this one is not told
    second = _new_study(other)
    new_id = other.create_new_trial(second)
    other.set_trial_user_attr(new_id, "study", "second")
    other.set_trial_state_values(new_id, TrialState.FAIL)
    read = opened.get_all_trials(second)
    assert [t.user_attrs for t in read] == [{"study": "second"}]
    assert opened.get_trial(new_id).user_attrs == {"study": "second"}


def test_missing_studies_and_trials_raise_as_in_optuna(opened, optunas):
    for read in (lambda s: s.get_all_trials(10**6), lambda s: s.get_trial(10**6)):
        with pytest.raises(KeyError) as expected:
            read(optunas)
        with pytest.raises(KeyError, match=f"^{expected.value.args[0]!r}$"):
            read(opened)
    assert opened.get_all_trials(_new_study(opened)) == []


def test_a_study_run_through_optuna_reads_the_same_and_its_held_writes_at_once(opened, optunas):
    study = optuna.create_study(storage=opened, study_name=f"s-{uuid.uuid4().hex}", directions=["maximize", "minimize"])
    for _ in range(6):
        trial = study.ask()
        with batched_writes(trial):
            x = trial.suggest_float("x", 0.0, 1.0)
            trial.set_user_attr("x", x)
            assert study.trials[-1].user_attrs == {"x": x}
        study.tell(trial, [x, 1 - x])
    assert _comparable(study.get_trials()) == _comparable(optunas.get_all_trials(study._study_id))


def test_held_writes_are_kept_as_the_database_gives_them_back(opened, optunas):
    study = optuna.create_study(storage=opened, study_name=f"s-{uuid.uuid4().hex}")
    first = study.ask()  # parameters new to the study are written at once, not held
    first.suggest_int("n", 1, 8)
    first.suggest_categorical("cell", [None, 1.5, "lstm"])
    trial = study.ask()
    opened.get_trial(trial._trial_id)
    statements = _statements(opened)
    with batched_writes(trial):
        trial.suggest_categorical("cell", [None, 1.5, "lstm"])
        trial.suggest_int("n", 1, 8)
        trial.set_user_attr("pair", (1, 2))  # JSON gives back a list
        trial.set_user_attr("by_epoch", {3: 0.5})  # and string keys
        trial.storage.set_trial_system_attr(trial._trial_id, "constraints", [0.1])
    before = statements[0]
    kept = opened.get_trial(trial._trial_id)
    assert statements[0] - before == 1  # its row: the rest as written
    assert kept.user_attrs == {"pair": [1, 2], "by_epoch": {"3": 0.5}}
    assert _comparable(kept) == _comparable(optunas.get_trial(trial._trial_id))
