"""Trials lost to faults that are not their configuration's, and their one retry.

A trial ends FAIL on its own when its configuration fails (divergence, an error from the model): it
counts toward ``n_trials``. It is *lost* when something around it fails: its worker died (the pid
sweep, :func:`.workers.fail_dead_local_trials`, or Optuna's heartbeat), an interrupt (Ctrl-C,
SIGTERM), a storage error (a lost database connection) or a full disk. A lost trial is queued
again once with the same parameters (``study.enqueue_trial``), as Optuna's
``RetryHeartbeatStaleTrialCallback`` does, and the retry carries ``retry_of`` (the lost trial's
number) and ``retry_reason``. A lost trial that has a retry does not count toward ``n_trials``;
a retry lost again is not retried (it counts).
"""

from __future__ import annotations

import errno
from typing import Iterable, Iterator

import optuna
import sqlalchemy
from optuna.trial import FrozenTrial

INTERRUPTED = "interrupted"
DISK_FULL = "disk full"
STORAGE_ERROR = "storage error"
RETRY_OF = "retry_of"
RETRY_REASON = "retry_reason"

# What SQLite and PostgreSQL say when the disk is full (SQLITE_FULL; ENOSPC in a server's words).
_FULL_WORDS = ("database or disk is full", "No space left on device")


def _chain(error: BaseException) -> Iterator[BaseException]:
    """The error and those it was raised from or during, outermost first (Optuna wraps SQLAlchemy's
    error, which wraps the driver's: ``orig``)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__ or getattr(current, "orig", None)


def _line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def disk_full(error: BaseException) -> str | None:
    """The words of the full disk behind ``error`` (the innermost error that says so), or None."""
    said = [
        link for link in _chain(error)
        if (isinstance(link, OSError) and link.errno == errno.ENOSPC) or any(words in str(link) for words in _FULL_WORDS)
    ]
    return _line(said[-1]) if said else None


def storage_failed(error: BaseException) -> BaseException | None:
    """The storage layer's error behind ``error`` (a lost connection, a locked or full file), or None."""
    kinds = (optuna.exceptions.StorageInternalError, sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)
    return next((link for link in _chain(error) if isinstance(link, kinds)), None)


def fault_reason(error: BaseException) -> str | None:
    """The fail reason of a trial that ``error`` ended, where it is a fault and not the trial's own
    (a full disk, a storage error such as a lost database connection); None otherwise."""
    full = disk_full(error)
    if full is not None:
        return f"{DISK_FULL}: {full}"
    storage = storage_failed(error)
    if storage is not None:
        # The driver's words, not the wrappers' ("An exception is raised during the commit").
        return f"{STORAGE_ERROR}: {_line(list(_chain(storage))[-1])}"
    return None


def retried(trials: Iterable[FrozenTrial]) -> dict[int, FrozenTrial]:
    """Lost trials that have a retry (queued, running or finished), by number: their retries."""
    return {t.user_attrs[RETRY_OF]: t for t in trials if RETRY_OF in t.user_attrs}


def counted(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """The trials that count toward ``n_trials``: all but those lost to a fault and queued again."""
    lost = retried(trials)
    return [t for t in trials if t.number not in lost]


def retry(study: optuna.Study, number: int, params: dict, user_attrs: dict, reason: str) -> None:
    """Queue trial ``number`` (its ``params`` and ``user_attrs``), lost for ``reason``, again; not a
    retry, which is not retried."""
    if RETRY_OF not in user_attrs:
        study.enqueue_trial(params, user_attrs={RETRY_OF: number, RETRY_REASON: reason})


def retry_stale_trial(study: optuna.Study, trial: FrozenTrial) -> None:
    """Optuna's heartbeat failed ``trial`` (its worker fell silent): queue it again. Optuna's own
    ``RetryHeartbeatStaleTrialCallback`` would copy the dead trial's user attributes (its epoch
    history among them) into the retry; this queues the parameters only."""
    retry(study, trial.number, trial.params, trial.user_attrs,
          f"no heartbeat from worker {trial.user_attrs.get('worker', '(unknown)')}")
