"""Ctrl-C and SIGTERM: stop a run at a point where the books can be kept, and exit with 128 + signal.

Outside the trial loop a signal raises :class:`Interrupted` (a KeyboardInterrupt) at once. Inside it
(:func:`deferred`) the signal is only noted, and :func:`check` raises it at the next safe point:
between training batches, between evaluation batches and between trials. Raised anywhere else, it
could land inside a storage write and leave a half-closed SQLite session holding the write lock, so
the write that records the interrupted trial would wait for it and fail ("database is locked"). A
second signal while one is pending raises at once, for a run stuck where nothing checks.
"""

from __future__ import annotations

import signal
from contextlib import contextmanager
from types import FrameType
from typing import Iterator

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_pending: int | None = None


class Interrupted(KeyboardInterrupt):
    """SIGTERM (or SIGINT) received: finish the books and exit with 128 + signal."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def signal_of(interrupt: KeyboardInterrupt) -> int:
    """The signal behind an interrupt: a plain KeyboardInterrupt is Ctrl-C's SIGINT."""
    return interrupt.signum if isinstance(interrupt, Interrupted) else signal.SIGINT


def exit_code_of(interrupt: KeyboardInterrupt) -> int:
    return 128 + signal_of(interrupt)


def raise_on_sigterm() -> None:
    """SIGTERM -> Interrupted, in the main thread; also where SIGINT is ignored (background jobs)."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Interrupted(signum)

    signal.signal(signal.SIGTERM, handler)


def ignore_further_signals() -> None:
    """After the first interrupt: let the result files be written whole."""
    for signum in _SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


@contextmanager
def deferred() -> Iterator[None]:
    """Within: SIGINT and SIGTERM (where not ignored) are raised by :func:`check`, not where they land."""
    global _pending

    def note(signum: int, frame: FrameType | None) -> None:
        global _pending
        if _pending is not None:
            raise Interrupted(signum)
        _pending = signum

    previous = {signum: signal.getsignal(signum) for signum in _SIGNALS}
    for signum, handler in previous.items():
        if handler is not signal.SIG_IGN:
            signal.signal(signum, note)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            if signal.getsignal(signum) is note:  # not where an interrupt has set SIG_IGN since
                signal.signal(signum, handler)
        # Handlers first, then what was noted: a signal landing in between is noted or goes to the
        # previous handler, never lost.
        noted, _pending = _pending, None
    if noted is not None:  # noted after the last safe point: it still stops the run
        raise Interrupted(noted)


def check() -> None:
    """Raise the signal noted under :func:`deferred`, if any."""
    global _pending
    if _pending is not None:
        signum, _pending = _pending, None
        raise Interrupted(signum)
