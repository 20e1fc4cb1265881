"""Many workers through Optuna's gRPC storage proxy (`cnn-lstm-hpo storage-proxy`) on a real PostgreSQL."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import optuna
import pytest
from optuna.trial import TrialState
from typer.testing import CliRunner

from cnn_lstm_hpo.distributed import storage
from cnn_lstm_hpo.cli import app
from cnn_lstm_hpo.errors import HPOError
from cnn_lstm_hpo.distributed.workers import fail_dead_local_trials

pytest.importorskip("grpc", reason='the gRPC storage proxy is an extra: pip install -e ".[grpc]"')

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "benchmarks" / "grpc_proxy.py"  # one replay worker: the real trial loop on a simulated clock


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "cnn_lstm_hpo.cli", *args]


def start_proxy(database_url: str) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(cli("storage-proxy", "--storage", database_url, "--port", "0"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    assert "workers use --storage grpc://127.0.0.1:" in line, line + process.stderr.read()
    return process, line.split("--storage ", 1)[1].split()[0]


@pytest.fixture(scope="module")
def proxy(postgres_url) -> Iterator[str]:
    """The grpc:// URL of a proxy over the test server; stopped with SIGTERM at the end."""
    process, url = start_proxy(postgres_url)
    try:
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
        assert process.returncode == 143 and stderr == "storage proxy stopped\n", stderr


@pytest.mark.slow
def test_eight_replay_workers_through_the_proxy_account_for_every_trial(tmp_path, proxy, postgres_url):
    n_trials, count = 32, 8
    study_name = "grpc_eight"
    workers = [
        subprocess.Popen([sys.executable, str(WORKER), "worker", "--storage", proxy, "--study-name", study_name,
                          "--save-dir", str(tmp_path / f"w{i}"), "--worker-id", str(i), "--n-trials", str(n_trials)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for i in range(1, count + 1)
    ]
    errors = [w.communicate(timeout=300)[1] for w in workers]
    assert [w.returncode for w in workers] == [0] * count, errors

    # Read straight from the database, not through the proxy.
    trials = optuna.load_study(study_name=study_name, storage=postgres_url).get_trials()
    numbers = [t.number for t in trials]
    # Each worker (its own save dir, as on its own machine) stops at the target; those that took a
    # slot at the same moment may pass it, by at most one trial each.
    assert n_trials <= len(trials) <= n_trials + count - 1
    assert sorted(numbers) == list(range(len(trials)))  # none lost, none twice
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    assert {t.state for t in trials} <= {TrialState.COMPLETE, TrialState.PRUNED}
    # Each trial's result file is written once, by the worker that ran it.
    written: dict[int, str] = {}
    for i in range(1, count + 1):
        for path in (tmp_path / f"w{i}").glob("trial_*_result.json"):
            number = json.loads(path.read_text())["trial_number"]
            assert number not in written, f"trial {number} written by w{i} and {written[number]}"
            written[number] = f"w{i}"
    assert sorted(written) == list(range(len(trials)))
    by_worker = {t.user_attrs["worker"] for t in trials}
    assert len(by_worker) >= 2  # the study was shared (how many joined depends on start-up order)


def test_the_dead_worker_sweep_works_through_the_proxy(proxy):
    """Through the proxy Optuna records no heartbeats; the sweep by pid fails a dead local worker's trial."""
    client = storage.open_storage(proxy)
    study = optuna.create_study(storage=client, study_name="grpc_sweep", directions=["maximize"])
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    worker = f"{socket.gethostname()}:{dead.stdout.strip()}"  # a pid that has exited
    orphan = study.ask()
    orphan.set_user_attr("worker", worker)
    alive = study.ask()
    alive.set_user_attr("worker", f"{socket.gethostname()}:1")  # pid 1 always exists

    assert fail_dead_local_trials(study, client) == [orphan.number]
    trials = optuna.load_study(study_name="grpc_sweep", storage=storage.open_storage(proxy)).trials
    assert trials[orphan.number].state == TrialState.FAIL
    assert trials[orphan.number].user_attrs["fail_reason"] == f"worker {worker} died"
    assert trials[alive.number].state == TrialState.RUNNING


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_proxy_is_one_line_and_exit_2(tmp_path, monkeypatch):
    monkeypatch.setattr(storage, "PROXY_WAIT_SECONDS", 0.5)
    port = _free_port()
    result = CliRunner().invoke(app, ["analyze", "--save-dir", str(tmp_path), "--storage", f"grpc://127.0.0.1:{port}"])
    assert result.exit_code == 2
    assert result.stderr == (f"error: no storage proxy answers at 127.0.0.1:{port} (waited 0.5 s); "
                             "start one with cnn-lstm-hpo storage-proxy --storage URL\n")


def test_a_malformed_proxy_address_is_one_line():
    with pytest.raises(HPOError) as raised:
        storage.open_storage("grpc://nohost")
    assert str(raised.value) == "--storage grpc://nohost is not a proxy address: write grpc://HOST:PORT (as storage-proxy prints it)"


def test_storage_proxy_refuses_a_journal_and_a_taken_port(tmp_path):
    journal = CliRunner().invoke(app, ["storage-proxy", "--storage", f"journal:///{tmp_path}/s.journal"])
    assert journal.exit_code == 2
    assert journal.stderr == (f"error: storage-proxy serves a database, not journal:///{tmp_path}/s.journal: "
                              "pass --storage postgresql://... (or sqlite:///... when every worker runs on this host)\n")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = CliRunner().invoke(app, ["storage-proxy", "--storage", f"sqlite:///{tmp_path}/s.db", "--port", str(port)])
    assert busy.exit_code == 2
    assert busy.stderr == f"error: port {port} on 127.0.0.1 is already in use; pass another --port\n"
