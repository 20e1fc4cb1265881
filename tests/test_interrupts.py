"""Ctrl-C and SIGTERM stop a run where the books can be kept: never inside a storage write."""

from __future__ import annotations

import signal
import sys
import threading
import time

import optuna
import pytest
from optuna.trial import TrialState
from sqlalchemy import event
from sqlalchemy.engine import Engine

from cnn_lstm_hpo import MultiObjectiveOptimizer, create_optimization_config, interrupts
from cnn_lstm_hpo.interrupts import Interrupted


def send(signum: int) -> None:
    # To this (the main) thread: its handler runs at the next bytecode. A signal to the process may be
    # delivered to another thread (a test's leftover), and the main thread handle it later.
    signal.pthread_kill(threading.main_thread().ident, signum)


def test_a_signal_is_noted_inside_and_raised_at_the_next_check():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Interrupted) as raised:
        with interrupts.deferred():
            send(signal.SIGTERM)
            landed = True  # a storage write would go on to its commit here
            interrupts.check()
            landed = False
    assert landed and interrupts.exit_code_of(raised.value) == 143
    assert signal.getsignal(signal.SIGTERM) is before  # restored


def test_a_signal_after_the_last_check_still_stops_the_run():
    # Python's own SIGINT handler, whatever this process inherited (a shell's background job starts
    # with SIGINT ignored, and deferred() rightly leaves an ignored signal ignored).
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(Interrupted) as raised:
            with interrupts.deferred():
                send(signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, inherited)
    assert interrupts.exit_code_of(raised.value) == 130
    interrupts.check()  # nothing left pending


def test_a_second_signal_raises_at_once():
    with pytest.raises(Interrupted):
        with interrupts.deferred():
            send(signal.SIGTERM)
            send(signal.SIGTERM)
            pytest.fail("the second signal did not raise where it landed")


def test_an_ignored_signal_stays_ignored():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a background job's SIGINT
    try:
        with interrupts.deferred():
            send(signal.SIGINT)
            interrupts.check()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_after_an_interrupt_its_ignore_is_kept():
    with pytest.raises(Interrupted):
        with interrupts.deferred():
            send(signal.SIGTERM)
            try:
                interrupts.check()
            except Interrupted:
                interrupts.ignore_further_signals()  # as the optimizer does, to write its files whole
                raise
    try:
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def in_an_epoch_write() -> bool:
    frame = sys._getframe()
    names = set()
    while frame is not None:
        names.add(frame.f_code.co_name)
        frame = frame.f_back
    return {"run_epochs", "set_user_attr"} <= names


def test_sigterm_inside_a_storage_commit_stops_the_study_and_records_the_trial(tmp_path):
    """It used to raise inside SQLAlchemy's commit: the write recording the interrupt then waited 30 s
    for the lock the half-closed session held, failed, and the study went on with signals ignored."""
    cfg = create_optimization_config(
        scenario="smoke", n_trials=3, max_epochs_per_trial=6, save_dir=tmp_path / "run",
        data={"source": "synthetic", "sequence_length": 8}, pruning={"enabled": False},
        training={"early_stopping_patience": 6},
        search_space={"lstm_hidden_dim": {"type": "categorical", "choices": [8]},
                      "cnn_num_filters": {"type": "categorical", "choices": [4]}},
    )
    sent = []

    def on_commit(connection) -> None:
        if not sent and in_an_epoch_write():
            sent.append(time.monotonic())
            send(signal.SIGTERM)

    event.listen(Engine, "commit", on_commit)
    try:
        with pytest.raises(Interrupted):
            MultiObjectiveOptimizer(cfg, progress=False).optimize()
    finally:
        event.remove(Engine, "commit", on_commit)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    assert sent and time.monotonic() - sent[0] < 20  # no wait for a lock held by this very process
    trials = optuna.load_study(study_name="smoke", storage=f"sqlite:///{tmp_path / 'run' / 'study.db'}").trials
    assert [(t.state, t.user_attrs.get("fail_reason"), t.user_attrs.get("retry_of")) for t in trials] == [
        (TrialState.FAIL, "interrupted", None), (TrialState.WAITING, None, 0),  # queued again for the resume
    ]
