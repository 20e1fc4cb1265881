"""Several processes on one study: trial slots, worker identity and seeds, dead workers, signals.

- A **trial slot** is taken under a file lock in the save dir: count the study's trials, and only if
  the target is not reached create the next one (the lock is released as soon as the trial exists).
  So processes sharing a save dir reach ``n_trials`` exactly. Workers on other machines use their
  own save dir: there the target can be passed by the trials that start at the same moment.
- Each trial records the **worker** (host:pid) that runs it; a process starting on the same host
  fails the RUNNING trials of workers that no longer exist and queues them again (:mod:`.faults`).
  PostgreSQL (and SQLite on a network file system) also use Optuna's heartbeats, which catch dead
  workers on any host.
- **Signals** (see :mod:`.interrupts`) reaching the process that started the workers are passed on
  to them, and each records its running trial FAIL ("interrupted") before it exits.
"""

from __future__ import annotations

import fcntl
import os
import socket
import subprocess
import sys
import time
import zlib
from pathlib import Path
from contextlib import contextmanager
from typing import Callable, Iterator

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from .faults import retry
from ..interrupts import ignore_further_signals, signal_of

SLOT_LOCK = ".trial-slots.lock"
OUTPUT_LOCK = ".outputs.lock"


class FileLock:
    """An exclusive ``flock`` on a file in the save dir; released by ``release`` (idempotent) or on exit."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.handle: int | None = None

    def __enter__(self) -> FileLock:
        self.handle = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        fcntl.flock(self.handle, fcntl.LOCK_EX)
        return self

    def release(self) -> None:
        if self.handle is not None:
            os.close(self.handle)  # closing drops the flock
            self.handle = None

    def __exit__(self, *exc: object) -> None:
        self.release()


def this_worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def default_worker_id() -> int:
    """A worker id for a process joining from anywhere: from its host and pid, never 0."""
    return zlib.crc32(this_worker().encode()) or 1


def worker_seed(seed: int, finished: int, worker_id: int) -> int:
    """The sampler seed of one process: a resumed study and every worker draw a different stream.

    Worker 0 (a single process) keeps ``seed + finished``; others mix in their identity.
    """
    if worker_id == 0:
        return seed + finished
    return int(np.random.SeedSequence([seed, finished, worker_id]).generate_state(1)[0] % 2**31)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def fail_dead_local_trials(
    study: optuna.Study, storage: optuna.storages.BaseStorage, trials: list[FrozenTrial] | None = None
) -> list[int]:
    """Fail the RUNNING trials whose worker ran on this host and no longer exists, and queue each
    again (:mod:`.faults`); their numbers.
    ``storage``: the study's (the reason goes into a trial this process does not hold).
    ``trials``: the study's trials as just read, where the caller needs them too (a read fewer)."""
    host = socket.gethostname()
    failed = []
    if trials is None:
        trials = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for trial in (t for t in trials if t.state == TrialState.RUNNING):
        worker = str(trial.user_attrs.get("worker", ""))
        worker_host, _, pid = worker.rpartition(":")
        if worker_host != host or not pid.isdigit() or _alive(int(pid)):
            continue
        if _fail_and_retry(study, storage, trial, f"worker {worker} died"):
            failed.append(trial.number)
    return failed


def fail_own_trials(study: optuna.Study, storage: optuna.storages.BaseStorage, reason: str) -> list[int]:
    """Fail this process's RUNNING trials, which a fault (``reason``) ended, and queue each again."""
    me = this_worker()
    return [
        t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if t.user_attrs.get("worker") == me and _fail_and_retry(study, storage, t, reason)
    ]


def _fail_and_retry(study: optuna.Study, storage: optuna.storages.BaseStorage, trial: FrozenTrial, reason: str) -> bool:
    # Through the storage: the trial may be held by a process that is gone.
    trial_id = storage.get_trial_id_from_study_id_trial_number(
        storage.get_study_id_from_name(study.study_name), trial.number
    )
    try:
        storage.set_trial_user_attr(trial_id, "fail_reason", reason)
        study.tell(trial.number, state=TrialState.FAIL)
    except optuna.exceptions.UpdateFinishedTrialError:  # another process failed it first, and queued it
        return False
    retry(study, trial.number, trial.params, trial.user_attrs, reason)
    return True


def spawn_workers(count: int, args: Callable[[int], list[str]]) -> list[subprocess.Popen]:
    """``count`` worker processes of this CLI; worker ids 1..count (0 is the process that starts them)."""
    return [subprocess.Popen([sys.executable, "-m", "cnn_lstm_hpo.cli", *args(i)]) for i in range(1, count + 1)]


def wait_for(processes: list[subprocess.Popen], every: float = 1.0) -> None:
    """Wait for every process, polling, so that a signal reaches this process's handler meanwhile."""
    while any(p.poll() is None for p in processes):
        time.sleep(every)


@contextmanager
def forward_interrupts(processes: list[subprocess.Popen]) -> Iterator[None]:
    """An interrupt of this process is passed on to the workers it started, then they are waited out."""
    try:
        yield
    except KeyboardInterrupt as interrupt:
        ignore_further_signals()
        signum = signal_of(interrupt)
        for p in processes:
            if p.poll() is None:
                p.send_signal(signum)  # a terminal's Ctrl-C reached them already; a kill did not
        for p in processes:
            p.wait()
        raise
