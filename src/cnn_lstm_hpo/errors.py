"""The one exception type for bad user input; the CLI maps it to exit code 2."""

from __future__ import annotations


class HPOError(Exception):
    """A problem with what the user gave us (config, flags, data files, storage).

    The message is one line that names the bad value; the CLI prints it without a traceback.
    """


class TrialDiverged(Exception):
    """Raised inside a trial when the training loss becomes NaN/inf; the trial is recorded FAIL."""


class StudyFailed(Exception):
    """Every trial of the study failed: the CLI says why (the most common reason) and exits 1."""
