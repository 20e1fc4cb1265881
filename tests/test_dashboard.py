"""``cnn-lstm-hpo dashboard``: a real optuna-dashboard process on loopback that lists the study and
follows it live; one-line errors for a missing extra, a missing study and a taken port."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import optuna
import pytest
from typer.testing import CliRunner

from cnn_lstm_hpo.cli import app

runner = CliRunner()
STUDY = "live_demo"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _small_study(folder: Path, n_trials: int = 2, kind: str = "sqlite") -> optuna.Study:
    """A study in ``folder/study.db`` (one process) or ``folder/study.journal`` (what ``--workers N``
    writes), made with ask/tell: what a CLI run leaves, without training."""
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "sqlite":
        storage = f"sqlite:///{folder / 'study.db'}"
    else:
        storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(folder / "study.journal")))
    study = optuna.create_study(storage=storage, study_name=STUDY, directions=["maximize", "minimize"])
    for i in range(n_trials):
        trial = study.ask()
        x = trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True)
        study.tell(trial, [0.5 + 0.01 * i, x])
    return study


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as reply:
        assert reply.status == 200
        return json.loads(reply.read())


def _listening(pid: int) -> list[tuple[str, int]]:
    """(address hex, port) of every TCP socket in LISTEN state that process ``pid`` holds."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and inode in inodes:  # 0A = LISTEN
                address, port = local.split(":")
                found.append((address, int(port, 16)))
    return found


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_dashboard_serves_the_study_live_on_loopback_only(tmp_path, kind):
    study = _small_study(tmp_path / "run", kind=kind)
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cnn_lstm_hpo.cli", "dashboard", "--save-dir", str(tmp_path / "run"), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # As from a terminal: Ctrl-C acts even when the tests run as a background job (SIGINT ignored).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        listing = None
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"dashboard exited {proc.returncode}: {proc.stderr.read()}")
            try:
                listing = _get_json(f"{base}/api/studies")
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.5)
        assert listing is not None, "dashboard never answered HTTP on 127.0.0.1"
        summaries = {s["study_name"]: s for s in listing["study_summaries"]}
        assert list(summaries) == [STUDY]
        assert summaries[STUDY]["directions"] == ["maximize", "minimize"]

        # Bound to loopback only: every listening socket of the process is 127.0.0.1, on our port.
        assert _listening(proc.pid) == [("0100007F", port)]

        # Live: a trial told after the server started shows up (optuna-dashboard caches trials ~2 s).
        detail_url = f"{base}/api/studies/{summaries[STUDY]['study_id']}"
        assert len(_get_json(detail_url)["trials"]) == 2
        trial = study.ask()
        study.tell(trial, [0.9, trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True)])
        deadline = time.monotonic() + 20
        while len(_get_json(detail_url)["trials"]) != 3:
            assert time.monotonic() < deadline, "the new trial never appeared"
            time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            out, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
    assert proc.returncode == 0, err
    shown = {"sqlite": f"sqlite:///{(tmp_path / 'run' / 'study.db').resolve()}",
             "journal": f"journal:///{str((tmp_path / 'run' / 'study.journal').resolve()).lstrip('/')}"}[kind]
    assert f"optuna-dashboard for {shown} at {base}/ (Ctrl-C to stop)" in out
    assert "Traceback" not in err


def test_missing_extra_says_how_to_install(tmp_path, monkeypatch):
    _small_study(tmp_path / "run")
    monkeypatch.setitem(sys.modules, "optuna_dashboard", None)  # import optuna_dashboard -> ImportError
    result = runner.invoke(app, ["dashboard", "--save-dir", str(tmp_path / "run"), "--port", str(_free_port())])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert lines == ['error: optuna-dashboard is not installed; pip install -e ".[dashboard]" (or pip install optuna-dashboard)']


def test_save_dir_without_a_study_is_one_line_and_creates_nothing(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(app, ["dashboard", "--save-dir", str(empty), "--port", str(_free_port())])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f"error: no study storage at {(empty / 'study.db').resolve()}; pass --storage URL or the --save-dir of a study"
    ]
    assert list(empty.iterdir()) == []

    result = runner.invoke(app, ["dashboard", "--port", str(_free_port())])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == ["error: pass --save-dir DIR (a study's output folder) or --storage URL"]


def test_port_in_use_is_one_line(tmp_path):
    _small_study(tmp_path / "run")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(app, ["dashboard", "--save-dir", str(tmp_path / "run"), "--port", str(port)])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [f"error: port {port} on 127.0.0.1 is already in use; pass another --port"]
    assert result.stdout == ""  # no address printed for a server that never started


def test_unreadable_storage_url_hides_the_password(tmp_path):
    result = runner.invoke(
        app, ["dashboard", "--storage", f"sqlite:///{tmp_path / 'absent.db'}", "--port", str(_free_port())]
    )
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "no study storage" in result.stderr
    assert not (tmp_path / "absent.db").exists()

    port = _free_port()  # nothing listens there
    url = f"postgresql://hpo:s3cret-pw@127.0.0.1:{port}/hpo"
    result = runner.invoke(app, ["dashboard", "--storage", url, "--port", str(_free_port())])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot read storage postgresql://***@127.0.0.1:{port}/hpo: ")
    assert "s3cret-pw" not in result.output


def test_a_port_left_in_time_wait_by_the_last_run_is_free_again():
    """Restarting the dashboard within a minute: the closed server's port is in TIME-WAIT only."""
    from cnn_lstm_hpo.distributed.ports import bindable_port as dashboard_port

    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as wsgiref's server
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = server.accept()
    accepted.close()  # the server side closes first: its end of the connection waits in TIME-WAIT
    server.close()
    client.recv(1)
    client.close()
    assert dashboard_port("127.0.0.1", port) == port
