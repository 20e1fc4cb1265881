"""Several real processes on one study: exact trial targets, distinct seeds, kill -9, Ctrl-C and SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from cnn_lstm_hpo.distributed.storage import open_storage
from cnn_lstm_hpo.distributed.workers import worker_seed

TINY = """\
tiny:
  n_trials: {n_trials}
  max_epochs_per_trial: {epochs}
  timeout_hours: null
  max_training_time_minutes: null
  data: {{source: synthetic, sequence_length: 10}}
  training: {{early_stopping_patience: {epochs}}}
  pruning: {{enabled: false}}
  sampler: {{n_startup_trials: 10}}
  search_space:
    cnn_num_filters: {{type: categorical, choices: [4, 8]}}
    cnn_filter_sizes: {{type: categorical, choices: [[2, 3], [3]]}}
    cnn_attention_heads: {{type: categorical, choices: [2]}}
    lstm_hidden_dim: {{type: categorical, choices: [8, 16]}}
    lstm_num_layers: {{type: int, low: 1, high: 1}}
    batch_size: {{type: categorical, choices: [128]}}
"""


def scenario(tmp_path: Path, n_trials: int, epochs: int) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY.format(n_trials=n_trials, epochs=epochs))
    return path


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "cnn_lstm_hpo.cli", *args]


def load(url: str) -> optuna.Study:
    return optuna.load_study(study_name="tiny", storage=open_storage(url, create=False))


def wait_for_running_trial(url: str, process: subprocess.Popen, *, min_number: int = 0, limit: float = 180.0) -> int:
    """The number (>= ``min_number``) of a RUNNING trial that has trained an epoch (the process still alive)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            for t in load(url).get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                if t.number >= min_number and t.user_attrs.get("epoch_history"):
                    return t.number
        except Exception:  # noqa: BLE001 - the storage may not exist yet
            pass
        time.sleep(0.3)
    raise AssertionError("no trial got going in time")


def foreground() -> None:
    """As from a terminal: SIGINT acts, even when the tests themselves run as a background job."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def assert_workers_shared_with_distinct_first_points(trials: list, stderr: str) -> None:
    """Several processes ran trials, and each one's first point differs (no shared random stream).

    The starting process runs trials while its workers import (seconds), so trials are made long
    enough for the others to join; on a loaded machine the first may still take several before they
    do: at least two processes must have run trials, and none failed.
    """
    assert "worker(s) ended with exit codes" not in stderr
    by_worker: dict[str, list] = {}
    for t in sorted(trials, key=lambda t: t.number):
        by_worker.setdefault(t.user_attrs["worker"], []).append(t)
    assert len(by_worker) >= 2
    firsts = {json.dumps(ts[0].params, sort_keys=True) for ts in by_worker.values()}
    assert len(firsts) == len(by_worker)


def test_worker_seeds_differ_per_worker_and_resume():
    seeds = {worker_seed(42, finished, worker) for finished in (0, 5) for worker in (0, 1, 2, 3, 12345)}
    assert len(seeds) == 10
    assert worker_seed(42, 5, 0) == 47  # a single process keeps the documented seed + finished trials


def test_three_local_workers_reach_the_target_exactly_with_distinct_points(tmp_path):
    save = tmp_path / "run"
    result = subprocess.run(
        cli("optimize", "--scenario", str(scenario(tmp_path, 7, 10)), "--save-dir", str(save), "--workers", "3", "--quiet"),
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    study = load(f"journal:///{save / 'study.journal'}")
    trials = study.get_trials()
    assert sorted(t.number for t in trials) == list(range(7))
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert_workers_shared_with_distinct_first_points(trials, result.stderr)
    assert sorted(json.loads((save / f"trial_{n}_result.json").read_text())["trial_number"] for n in range(7)) == list(range(7))
    assert {b["trial_number"] for b in json.loads((save / "best_configurations.json").read_text())} <= set(range(7))


def test_sqlite_with_several_workers_is_refused(tmp_path):
    db = tmp_path / "s.db"
    result = subprocess.run(
        cli("optimize", "--scenario", str(scenario(tmp_path, 2, 1)), "--save-dir", str(tmp_path / "r"),
            "--workers", "2", "--storage", f"sqlite:///{db}"),
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 2
    assert result.stderr.endswith(
        f"error: --workers 2 needs a storage several processes can write: SQLite (sqlite:///{db}) takes one; "
        "use a new --save-dir (a journal file is made there), --storage journal:///path/study.journal, "
        "or --storage postgresql://...\n"
    )


def test_kill_9_mid_trial_then_a_joining_worker_completes_the_study(tmp_path):
    save = tmp_path / "run"
    url = f"sqlite:///{save / 'study.db'}"
    process = subprocess.Popen(
        cli("optimize", "--scenario", str(scenario(tmp_path, 3, 8)), "--save-dir", str(save), "--quiet"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        running = wait_for_running_trial(url, process, min_number=1)  # trial 0 complete, trial 1 mid-way
    finally:
        process.kill()  # SIGKILL: no handler runs
        process.wait()
    before = {t.number: (t.params, t.values) for t in load(url).get_trials() if t.state == TrialState.COMPLETE}
    assert load(url).trials[running].state == TrialState.RUNNING  # what a crash leaves

    # Join from "another machine": storage and study name only; the configuration comes from the study.
    result = subprocess.run(
        cli("worker", "--storage", url, "--study-name", "tiny", "--save-dir", str(tmp_path / "elsewhere"), "--quiet"),
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    study = load(url)
    trials = study.get_trials()
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    dead = trials[running]
    assert dead.state == TrialState.FAIL and dead.user_attrs["fail_reason"] == f"worker {dead.user_attrs['worker']} died"
    # The dead worker's trial ran again with its params, and the target counts it once.
    [retry] = [t for t in trials if t.user_attrs.get("retry_of") == running]
    assert retry.params == dead.params and retry.user_attrs["retry_reason"] == dead.user_attrs["fail_reason"]
    assert len(trials) == 4 and [t for t in trials if t.state == TrialState.COMPLETE] == [t for t in trials if t is not dead]
    assert before and all(trials[n].state == TrialState.COMPLETE for n in before)
    for number, (params, values) in before.items():
        assert (trials[number].params, trials[number].values) == (params, values)
    assert (tmp_path / "elsewhere" / "best_configurations.json").is_file()


@pytest.mark.parametrize(("sig", "code", "ignore_sigint"), [(signal.SIGINT, 130, False), (signal.SIGTERM, 143, True)])
def test_interrupt_mid_trial_records_it_and_exits_with_128_plus_signal(tmp_path, sig, code, ignore_sigint):
    save = tmp_path / "run"
    url = f"sqlite:///{save / 'study.db'}"

    def background() -> None:  # a job started with `&` in a non-interactive shell ignores SIGINT
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    process = subprocess.Popen(
        cli("optimize", "--scenario", str(scenario(tmp_path, 2, 40)), "--save-dir", str(save), "--quiet"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=background if ignore_sigint else foreground,
    )
    running = wait_for_running_trial(url, process)
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == code, stderr
    command = f"-m cnn_lstm_hpo.cli optimize --scenario {tmp_path / 'tiny.yaml'} --save-dir {save} --quiet"
    assert stderr.endswith(f"\ninterrupted; to resume study 'tiny', run the same command again:\n  python {command}\n")
    assert "Traceback" not in stderr
    trial = load(url).trials[running]
    assert trial.state == TrialState.FAIL and trial.user_attrs["fail_reason"] == "interrupted"
    record = json.loads((save / f"trial_{running}_result.json").read_text())
    assert record["state"] == "FAIL" and record["fail_reason"] == "interrupted"
    json.loads((save / "best_configurations.json").read_text())  # complete, parseable
    assert "1 failed" in (save / "optimization_summary.txt").read_text()


def test_sigterm_to_the_starting_process_stops_its_workers_and_records_their_trials(tmp_path):
    save = tmp_path / "run"
    url = f"journal:///{save / 'study.journal'}"
    process = subprocess.Popen(
        cli("optimize", "--scenario", str(scenario(tmp_path, 4, 40)), "--save-dir", str(save), "--workers", "2", "--quiet"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 180
    while len({t.user_attrs.get("worker") for t in running_trials(url)}) < 2:  # both processes mid-trial
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.3)
    process.send_signal(signal.SIGTERM)  # to the starting process only, as `kill PID` does
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr
    trials = load(url).get_trials()
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    interrupted = [t for t in trials if t.user_attrs.get("fail_reason") == "interrupted"]
    assert len({t.user_attrs["worker"] for t in interrupted}) == 2  # the worker was stopped too, not killed
    for t in interrupted:
        assert json.loads((save / f"trial_{t.number}_result.json").read_text())["fail_reason"] == "interrupted"


def running_trials(url: str) -> list:
    try:
        return [t for t in load(url).get_trials(deepcopy=False, states=(TrialState.RUNNING,)) if t.user_attrs.get("epoch_history")]
    except Exception:  # noqa: BLE001 - the storage may not exist yet
        return []


def test_three_workers_on_a_real_postgresql_server(tmp_path, postgres_url):
    save = tmp_path / "run"
    result = subprocess.run(
        cli("optimize", "--scenario", str(scenario(tmp_path, 6, 10)), "--save-dir", str(save), "--workers", "3",
            "--storage", postgres_url, "--study-name", "pg_workers", "--quiet"),
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    trials = optuna.load_study(study_name="pg_workers", storage=postgres_url).get_trials()
    assert sorted(t.number for t in trials) == list(range(6))
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert_workers_shared_with_distinct_first_points(trials, result.stderr)


def test_a_journal_study_names_its_objectives_and_prints_what_optunas_own_cli_takes(tmp_path):
    save = tmp_path / "run"
    run = subprocess.run(
        cli("optimize", "--scenario", str(scenario(tmp_path, 1, 1)), "--save-dir", str(save),
            "--storage", f"journal:///{save / 'study.journal'}", "--quiet"),
        capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr
    hint = next(line for line in run.stdout.splitlines() if line.startswith("with Optuna's own CLI: "))
    assert hint == f"with Optuna's own CLI: optuna trials --storage {save / 'study.journal'} --storage-class JournalFileBackend --study-name tiny"
    listed = subprocess.run([str(Path(sys.executable).parent / "optuna"), *hint.split(": ", 1)[1].split()[1:], "-f", "json"],
                            capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert [t["number"] for t in json.loads(listed.stdout)] == [0]
    assert load(f"journal:///{save / 'study.journal'}").metric_names == ["accuracy", "training_time", "model_size"]
