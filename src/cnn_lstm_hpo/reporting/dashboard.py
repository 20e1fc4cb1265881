"""``cnn-lstm-hpo dashboard``: optuna-dashboard (the ``dashboard`` extra) on a study's storage, loopback only.

The storage is opened read-only (no table creation), so workers still running on it are undisturbed
and the dashboard shows the study live.
"""

from __future__ import annotations

import errno
import sys
import threading
from pathlib import Path

import optuna

from ..errors import HPOError
from ..distributed.ports import bindable_port
from ..distributed.storage import default_url, first_line, journal_url, redact, study_names

INSTALL_HINT = 'optuna-dashboard is not installed; pip install -e ".[dashboard]" (or pip install optuna-dashboard)'


def resolve_storage(save_dir: Path | None, storage: str | None) -> str:
    """``--storage`` wins (a plain journal file path is taken as ``journal:///path``); else the save dir's
    journal file if workers wrote one, or its SQLite file. Nothing is created where nothing is."""
    if storage:
        if "://" not in storage and Path(storage).is_file():
            return journal_url(Path(storage))
        return storage
    if save_dir is None:
        raise HPOError("pass --save-dir DIR (a study's output folder) or --storage URL")
    return default_url(Path(save_dir), workers=1)


def _open(url: str) -> optuna.storages.BaseStorage:
    """The storage, read-only, checked to be readable now (a clear error beats a blank page)."""
    if "://" not in url:
        raise HPOError(f"no study storage at {url}; pass a storage URL (sqlite:///..., journal:///..., postgresql://...)")
    return study_names(url)[0]  # HPOError "no study storage at ..." / "cannot read storage ..."


def serve(*, save_dir: Path | None, storage: str | None, port: int, host: str = "127.0.0.1") -> None:
    """Start optuna-dashboard for the study storage on ``host:port`` and block until Ctrl-C."""
    url = resolve_storage(save_dir, storage)
    try:
        from optuna_dashboard import run_server
    except ImportError:
        raise HPOError(INSTALL_HINT) from None
    opened = _open(url)
    port = bindable_port(host, port)
    print(f"optuna-dashboard for {redact(url)} at http://{host}:{port}/ (Ctrl-C to stop)", flush=True)
    # The server runs in a daemon thread and the main thread only waits: wsgiref swallows a
    # KeyboardInterrupt that lands while a request is being served, so Ctrl-C must not depend on it.
    failure: list[BaseException] = []
    stopped = threading.Event()

    def run() -> None:
        try:
            run_server(opened, host=host, port=port)
        except BaseException as error:  # noqa: BLE001 - handed to the main thread
            failure.append(error)
        finally:
            stopped.set()

    threading.Thread(target=run, name="optuna-dashboard", daemon=True).start()
    try:
        while not stopped.wait(0.5):
            pass
    except KeyboardInterrupt:
        return
    finally:
        sys.stdout.flush()
    for error in failure:
        if isinstance(error, OSError) and error.errno == errno.EADDRINUSE:  # lost the port after the check
            raise HPOError(f"port {port} on {host} is already in use; pass another --port") from None
        raise HPOError(f"optuna-dashboard stopped: {first_line(error)}") from None
