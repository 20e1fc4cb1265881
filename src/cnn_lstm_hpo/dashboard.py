"""``cnn-lstm-hpo dashboard``: optuna-dashboard (the ``dashboard`` extra) on a study's storage, loopback only.

The storage is opened read-only (no table creation), so workers still running on it are undisturbed
and the dashboard shows the study live.
"""

from __future__ import annotations

import errno
import socket
import sys
import threading
from pathlib import Path
from typing import Any

from .errors import HPOError

INSTALL_HINT = 'optuna-dashboard is not installed; pip install -e ".[dashboard]" (or pip install optuna-dashboard)'


def resolve_storage(save_dir: Path | None, storage: str | None) -> str:
    """``--storage`` wins; else the SQLite file of ``--save-dir``, which must exist (never a new empty one)."""
    if storage:
        return storage
    if save_dir is None:
        raise HPOError("pass --save-dir DIR (a study's output folder) or --storage URL")
    db = (Path(save_dir) / "study.db").resolve()
    if not db.is_file():
        raise HPOError(f"no study storage at {db}; pass --storage URL or the --save-dir of a study")
    return f"sqlite:///{db}"


def redact(url: str) -> str:
    """The URL without its password (for messages and the printed banner)."""
    if "://" not in url or "@" not in url:
        return url
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not an SQLAlchemy URL: hide everything before the host
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"


def _open(url: str) -> Any:
    """An Optuna storage for ``url``, checked to be readable now (a clear error beats a blank page)."""
    import optuna

    if "://" not in url and Path(url).is_file():  # a journal file (JournalFileBackend)
        from optuna.storages.journal import JournalFileBackend

        try:
            return optuna.storages.JournalStorage(JournalFileBackend(url))
        except Exception as error:  # noqa: BLE001
            raise HPOError(f"cannot read journal storage {url}: {_first_line(error)}") from None
    if "://" not in url:
        raise HPOError(f"no study storage at {url}; pass a storage URL (sqlite:///..., postgresql://...) or a journal file")
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        raise HPOError(f"no study storage at {url.removeprefix('sqlite:///')}; SQLite would create an empty one")
    try:
        rdb = optuna.storages.RDBStorage(url, skip_table_creation=True, skip_compatibility_check=True)
        optuna.study.get_all_study_names(storage=rdb)
    except Exception as error:  # noqa: BLE001 - SQLAlchemy, driver and schema errors all mean "cannot read"
        raise HPOError(f"cannot read storage {redact(url)}: {_first_line(error)}") from None
    return rdb


def _first_line(error: BaseException) -> str:
    root = error
    while root.__cause__ is not None or root.__context__ is not None:  # Optuna wraps the driver's words
        root = root.__cause__ or root.__context__  # type: ignore[assignment]
    return (str(root).strip().splitlines() or [type(root).__name__])[0]


def _free_port(host: str, port: int) -> int:
    """Fail early, in one line, when the port is taken (and resolve port 0 to a free one)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise HPOError(f"port {port} on {host} is already in use; pass another --port") from None
            raise HPOError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
        return probe.getsockname()[1]


def serve(*, save_dir: Path | None, storage: str | None, port: int, host: str = "127.0.0.1") -> None:
    """Start optuna-dashboard for the study storage on ``host:port`` and block until Ctrl-C."""
    url = resolve_storage(save_dir, storage)
    try:
        from optuna_dashboard import run_server
    except ImportError:
        raise HPOError(INSTALL_HINT) from None
    opened = _open(url)
    port = _free_port(host, port)
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
        raise HPOError(f"optuna-dashboard stopped: {_first_line(error)}") from None
