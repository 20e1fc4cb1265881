"""A real study through the CLI on a real PostgreSQL server (tests/postgres.py starts and stops it):
trials land in the database, the outputs match it, ``analyze`` reads it back, and a wrong password
or a dead server is one ``error:`` line without the password."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from typer.testing import CliRunner

from cnn_lstm_hpo.cli import app
from cnn_lstm_hpo.space import decode_params
from postgres import DATABASE, PASSWORD, PASSWORD_USER, PostgresServer

CONSOLE_SCRIPT = Path(sys.executable).parent / "cnn-lstm-hpo"
COMMAND = [str(CONSOLE_SCRIPT)] if CONSOLE_SCRIPT.exists() else [sys.executable, "-m", "cnn_lstm_hpo.cli"]
STUDY = "pg_smoke"


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*COMMAND, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def _one_error_line(*args: str) -> str:
    """Run the CLI in this process (the error comes before any training) and return its one error line."""
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


@pytest.mark.slow
def test_cli_study_on_postgres_then_analyze(postgres_url: str, tmp_path: Path):
    done = _cli("optimize", "--scenario", "smoke", "--data", "synthetic", "--n-trials", "2",
                "--max-epochs-per-trial", "1", "--storage", postgres_url, "--study-name", STUDY,
                "--save-dir", "run", "-q", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "run" / "study.db").exists()  # the database is the storage, not a file

    study = optuna.load_study(study_name=STUDY, storage=postgres_url)
    trials = study.get_trials(deepcopy=False)
    assert sorted(t.number for t in trials) == [0, 1]
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    assert study.user_attrs["objectives"] == ["accuracy", "training_time", "model_size"]

    best = json.loads((tmp_path / "run" / "best_configurations.json").read_text())
    stored = {t.number: t for t in study.best_trials}  # the feasible Pareto front, from PostgreSQL
    assert sorted(entry["trial_number"] for entry in best) == sorted(stored)
    for entry in best:
        trial = stored[entry["trial_number"]]
        assert entry["values"] == trial.values
        assert entry["params"] == decode_params(trial.params)
    for number in (0, 1):
        record = json.loads((tmp_path / "run" / f"trial_{number}_result.json").read_text())
        assert record["trial_number"] == number

    done = _cli("analyze", "--storage", postgres_url, "--study-name", STUDY, "--save-dir", "again", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"analysis of study {STUDY!r}" in done.stdout
    analysis = json.loads((tmp_path / "again" / "optimization_analysis.json").read_text())
    assert analysis  # written from the database alone: "again" held nothing before
    assert (tmp_path / "again" / "report.html").is_file()


def test_wrong_password_and_dead_server_are_one_line(postgres_server: PostgresServer, tmp_path: Path):
    import psycopg

    # The role and its password are real: the right one gets in, so the refusal below is the password's.
    psycopg.connect(host="127.0.0.1", port=postgres_server.port, user=PASSWORD_USER, password=PASSWORD,
                    dbname=DATABASE).close()

    wrong = postgres_server.password_url("wrong-pw-123")
    line = _one_error_line("optimize", "--scenario", "smoke", "--data", "synthetic", "--n-trials", "1",
                           "--storage", wrong, "--save-dir", str(tmp_path / "run"))
    assert "password authentication failed" in line
    assert "wrong-pw-123" not in line and f"127.0.0.1:{postgres_server.port}/{DATABASE}" in line

    line = _one_error_line("analyze", "--storage", wrong, "--save-dir", str(tmp_path / "run"))
    assert "wrong-pw-123" not in line and "password authentication failed" in line

    # A port where no server listens: the server is unreachable, said in one line, nothing created.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    dead = f"postgresql://{PASSWORD_USER}:{PASSWORD}@127.0.0.1:{dead_port}/{DATABASE}"
    line = _one_error_line("optimize", "--scenario", "smoke", "--data", "synthetic", "--n-trials", "1",
                           "--storage", dead, "--save-dir", str(tmp_path / "dead"))
    assert PASSWORD not in line and f"127.0.0.1:{dead_port}" in line
    assert not list((tmp_path / "dead").glob("trial_*_result.json"))
