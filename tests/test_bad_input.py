"""Every bad input through the real CLI: exit code 2, one exact ``error:`` line, no traceback, and the
files of an earlier run in the same save dir byte-identical afterwards.

One earlier run (a tiny study on synthetic data) is made once per module with the console script;
each case works on its own copy of that save dir. Importing the package costs seconds (torch,
optuna, sklearn), so the cases run as forks of one Python process that imported the CLI once:
each case is still a separate process calling ``cnn_lstm_hpo.cli.main`` (the console script's
entry point) with its own argv, stdout, stderr and exit status, two at a time.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd
import pytest

from cnn_lstm_hpo.config import scenario_names
from cnn_lstm_hpo.data import synthetic_frame

CONSOLE_SCRIPT = Path(sys.executable).parent / "cnn-lstm-hpo"
ROOT_USER = hasattr(os, "geteuid") and os.geteuid() == 0  # root reads and writes past file modes

TINY = """tiny:
  n_trials: 1
  max_epochs_per_trial: 1
  objectives: ['accuracy', 'model_size']
  timeout_hours: 0.1
  data:
    source: synthetic
    start: '2014-01-01'
    sequence_length: 10
  sampler:
    n_startup_trials: 1
  search_space:
    cnn_num_filters: {type: categorical, choices: [8]}
    cnn_filter_sizes: {type: categorical, choices: [[2, 3]]}
    cnn_attention_heads: {type: categorical, choices: [2]}
    lstm_hidden_dim: {type: categorical, choices: [16]}
    lstm_num_layers: {type: int, low: 1, high: 1}
    batch_size: {type: categorical, choices: [256]}
"""

# Runs every case as a fork of one process that imported the CLI once (see the module docstring).
DRIVER = r"""
import json, os, sys, traceback
from cnn_lstm_hpo.cli import main

cases = json.load(sys.stdin)
queue, running, codes = list(cases), {}, {}

def run(case):
    os.chdir(case["cwd"])
    for fd, name in ((1, "stdout"), (2, "stderr")):
        os.dup2(os.open(os.path.join(case["out"], name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
    try:
        main(case["argv"])
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)

while queue or running:
    while queue and len(running) < 2:
        case = queue.pop(0)
        pid = os.fork()
        if pid == 0:
            run(case)
        running[pid] = case
    pid, status = os.wait()
    codes[running.pop(pid)["id"]] = os.waitstatus_to_exitcode(status)
json.dump(codes, sys.stdout)
"""


# --- fixture files a case may need ----------------------------------------------------------------


def _bars(folder: Path, name: str, frame: pd.DataFrame) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / name, index_label="Date")


def _daily(n: int = 300) -> pd.DataFrame:
    return synthetic_frame("SYN_A", n_bars=n).rename(columns=str.title)


def _text(name: str, text: str) -> Callable[[Path], None]:
    def setup(tmp: Path) -> None:
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    return setup


def _mixed_frequencies(tmp: Path) -> None:
    _bars(tmp / "bars", "DAY.csv", _daily())
    hourly = _daily(300)
    hourly.index = pd.date_range("2014-01-02 09:00", periods=300, freq="h")
    _bars(tmp / "bars", "HOUR.csv", hourly)


def _two_missing_in_a_row(tmp: Path) -> None:
    frame = _daily()
    frame.iloc[100:102, frame.columns.get_loc("Close")] = float("nan")
    _bars(tmp / "bars", "GAP.csv", frame)


def _old_bars(tmp: Path) -> None:
    frame = _daily()  # 2010-01-04 .. 2011-02-25
    _bars(tmp / "bars", "OLD.csv", frame)


def _unreadable(tmp: Path) -> None:
    _bars(tmp / "bars", "LOCKED.csv", _daily())
    (tmp / "bars" / "LOCKED.csv").chmod(0)


def _read_only_save_dir(tmp: Path) -> None:
    os.chmod(tmp / "run", 0o555)


def _folder(name: str) -> Callable[[Path], None]:
    return lambda tmp: (tmp / name).mkdir(parents=True)


def _readonly_path() -> str:
    # Root writes through file modes: a folder under /sys is refused even to root.
    return "/sys/cnn-lstm-hpo-test" if ROOT_USER else "{tmp}/run"


@dataclass
class Case:
    id: str
    args: list[str]  # after the base command; {tmp}: the case's folder, {save}: its copy of the earlier run
    message: str  # the whole stderr line after "error: "
    setup: Callable[[Path], None] | None = None
    command: list[str] = field(default_factory=lambda: ["optimize", "--scenario", "{scenario}", "--save-dir", "{save}", "-q"])
    skip: str | None = None


OBJ_CHOICES = "Input should be 'accuracy', 'training_time', 'model_size' or 'sharpe'"
CASES = [
    # --- scenario
    Case("scenario-unknown", ["--scenario", "nope"], f"unknown scenario 'nope'; available: {', '.join(scenario_names())}"),
    Case("scenario-missing-file", ["--scenario", "{tmp}/missing.yaml"], "scenario file not found: {tmp}/missing.yaml"),
    Case("scenario-is-a-folder", ["--scenario", "{tmp}/scen"], "scenario {tmp}/scen is a folder, not a YAML file or a scenario name",
         setup=_folder("scen")),
    Case("scenario-bad-yaml", ["--scenario", "{tmp}/bad.yaml"],
         "cannot parse YAML {tmp}/bad.yaml line 3: expected the node content, but found '<stream end>'",
         setup=_text("bad.yaml", "bad:\n  n_trials: [1,\n")),
    Case("scenario-not-a-mapping", ["--scenario", "{tmp}/list.yaml"],
         "{tmp}/list.yaml: expected a mapping of config fields, got list", setup=_text("list.yaml", "- 1\n- 2\n")),
    Case("scenario-bad-field-type", ["--scenario", "{tmp}/typ.yaml"],
         "invalid config ({tmp}/typ.yaml): n_trials: Input should be a valid integer, unable to parse string as an integer",
         setup=_text("typ.yaml", "typ:\n  n_trials: many\n")),
    Case("scenario-unknown-field", ["--scenario", "{tmp}/unk.yaml"],
         "invalid config ({tmp}/unk.yaml): data.sequence_lenght: Extra inputs are not permitted",
         setup=_text("unk.yaml", "unk:\n  data: {sequence_lenght: 10}\n")),
    Case("scenario-dominance-quantile-above-1", ["--scenario", "{tmp}/dq.yaml"],
         "invalid config ({tmp}/dq.yaml): pruning.dominance_quantile: Input should be less than or equal to 1",
         setup=_text("dq.yaml", "dq:\n  pruning: {dominance_quantile: 1.5}\n")),
    Case("scenario-bad-search-space", ["--scenario", "{tmp}/sp.yaml"],
         "invalid config ({tmp}/sp.yaml): search_space.dropout_rate.categorical: categorical needs at least one choice, but got an empty list",
         setup=_text("sp.yaml", "sp:\n  search_space:\n    dropout_rate: {type: categorical, choices: []}\n")),
    Case("scenario-bad-resample", ["--scenario", "{tmp}/rs.yaml"],
         "invalid config ({tmp}/rs.yaml): data.resample: must be an interval such as '1D', '1h' or '15min', but got 'daily'",
         setup=_text("rs.yaml", "rs:\n  data: {resample: daily}\n")),
    Case("scenario-not-utf8", ["--scenario", "{tmp}/bin.yaml"], "cannot read scenario file {tmp}/bin.yaml: not UTF-8 text",
         setup=lambda tmp: (tmp / "bin.yaml").write_bytes(b"n_trials: \xff\xfe\n")),
    # --- data path and contents
    Case("data-missing", ["--data", "{tmp}/nothing"], "data path not found: {tmp}/nothing"),
    Case("data-empty-folder", ["--data", "{tmp}/bars"], "{tmp}/bars: no .csv or .parquet files", setup=_folder("bars")),
    Case("data-wrong-kind", ["--data", "{tmp}/bars.txt"],
         "{tmp}/bars.txt: unsupported file type (expected .csv, .csv.gz, .parquet, .pq)", setup=_text("bars.txt", "x\n")),
    Case("data-folder-named-csv", ["--data", "{tmp}/bars"], "{tmp}/bars: no .csv or .parquet files",
         setup=_folder("bars/AAPL.csv")),
    Case("data-empty-file", ["--data", "{tmp}/E.csv"], "{tmp}/E.csv: cannot read file (No columns to parse from file)",
         setup=_text("E.csv", "")),
    Case("data-header-only", ["--data", "{tmp}/H.csv"], "{tmp}/H.csv: no rows",
         setup=_text("H.csv", "Date,Open,High,Low,Close,Volume\n")),
    Case("data-not-parquet", ["--data", "{tmp}/P.parquet"],
         "{tmp}/P.parquet: cannot read file (Could not open Parquet input source '{tmp}/P.parquet': Parquet magic bytes not found in footer. Either the file is corrupted or this is not a parquet file.)",
         setup=_text("P.parquet", "Date,Open\n")),
    Case("data-unreadable", ["--data", "{tmp}/bars"], "{tmp}/bars/LOCKED.csv: cannot read file ([Errno 13] Permission denied: '{tmp}/bars/LOCKED.csv')",
         setup=_unreadable, skip="root reads files whatever their mode" if ROOT_USER else None),
    Case("data-no-header", ["--data", "{tmp}/N.csv"],
         "{tmp}/N.csv: no header row (the first line holds data); expected e.g. Date,Open,High,Low,Close,Volume",
         setup=_text("N.csv", "2020-01-02,1,2,0.5,1.5,10\n2020-01-03,1,2,0.5,1.5,10\n")),
    Case("data-missing-column", ["--data", "{tmp}/C.csv"], "{tmp}/C.csv: missing column 'volume' (have: Date, Open, High, Low, Close)",
         setup=_text("C.csv", "Date,Open,High,Low,Close\n2020-01-02,1,2,0.5,1.5\n")),
    Case("data-not-a-number", ["--data", "{tmp}/X.csv"], "{tmp}/X.csv: column 'high' row 2020-01-03: not a number ('x')",
         setup=_text("X.csv", "Date,Open,High,Low,Close,Volume\n2020-01-02,1,2,0.5,1.5,10\n2020-01-03,1,x,0.5,1.5,10\n")),
    Case("data-bad-date", ["--data", "{tmp}/D.csv"], "{tmp}/D.csv: column 'date' data row 2: cannot parse date 'yesterday'",
         setup=_text("D.csv", "Date,Open,High,Low,Close,Volume\n2020-01-02,1,2,0.5,1.5,10\nyesterday,1,2,0.5,1.5,10\n")),
    Case("data-high-below-low", ["--data", "{tmp}/L.csv"], "{tmp}/L.csv: row 2020-01-03: high < low",
         setup=_text("L.csv", "Date,Open,High,Low,Close,Volume\n2020-01-02,1,2,0.5,1.5,10\n2020-01-03,1,0.4,0.5,1.5,10\n")),
    Case("data-duplicate-date", ["--data", "{tmp}/U.csv"], "{tmp}/U.csv: duplicate date 2020-01-02 with different values",
         setup=_text("U.csv", "Date,Open,High,Low,Close,Volume\n2020-01-02,1,2,0.5,1.5,10\n2020-01-02,1,2,0.5,1.6,10\n")),
    Case("data-two-nan-bars-in-a-row", ["--data", "{tmp}/bars"],
         "{tmp}/bars/GAP.csv: column 'close' rows 2010-05-24 .. 2010-05-25: 2 consecutive bars with a missing value (NaN); "
         "fill or remove them (only an isolated bar is dropped)", setup=_two_missing_in_a_row),
    Case("data-mixed-frequencies", ["--data", "{tmp}/bars"],
         "symbols have different bar frequencies (DAY daily, HOUR hourly); set data.resample (e.g. '1D') to aggregate them to one",
         setup=_mixed_frequencies),
    Case("data-dates-select-nothing", ["--data", "{tmp}/bars"],
         "symbol OLD has no bars from 2014-01-01 to its end; its data runs from 2010-01-04 to 2011-02-25; data.start "
         "2014-01-01 come(s) from scenario '{tmp}/tiny.yaml': pass --start YYYY-MM-DD (or --end) to change it", setup=_old_bars),
    Case("data-too-few-bars", ["--data", "{tmp}/bars", "--start", "2011-02-01"],
         "symbol OLD: too few rows (19 bars) to compute the indicators; use a longer date range", setup=_old_bars),
    Case("symbols-unknown", ["--symbols", "AAPL", "MSFT"], "symbol AAPL is not in data source 'synthetic'; it has: SYN_A, SYN_B"),
    # --- save dir, storage, study name
    Case("save-dir-is-a-file", ["--save-dir", "{tmp}/afile"], "--save-dir {tmp}/afile is a file, not a folder",
         setup=_text("afile", "keep me\n")),
    Case("save-dir-read-only", ["--save-dir", _readonly_path()],
         f"--save-dir {_readonly_path()} cannot be written "
         f"({'Operation not permitted' if ROOT_USER else 'Permission denied'})",
         setup=None if ROOT_USER else _read_only_save_dir),
    Case("save-dir-under-a-file", ["--save-dir", "{tmp}/afile/run"], "--save-dir {tmp}/afile/run cannot be written (Not a directory)",
         setup=_text("afile", "keep me\n")),
    Case("storage-unknown-dialect", ["--storage", "notadb://x"],
         "cannot open storage notadb://x: Can't load plugin: sqlalchemy.dialects:notadb"),
    Case("storage-not-a-url", ["--storage", "study.db"], "cannot open storage study.db: Could not parse SQLAlchemy URL from given URL string"),
    Case("study-name-empty", ["--study-name", ""],
         "invalid config ({tmp}/tiny.yaml): study_name: String should have at least 1 character"),
    Case("study-name-too-long", ["--study-name", "s" * 513],
         "invalid config ({tmp}/tiny.yaml): study_name: String should have at most 512 characters"),
    # --- flags: type and range
    Case("n-trials-zero", ["--n-trials", "0"], "invalid config ({tmp}/tiny.yaml): n_trials: Input should be greater than or equal to 1"),
    Case("n-trials-negative", ["--n-trials", "-1"], "invalid config ({tmp}/tiny.yaml): n_trials: Input should be greater than or equal to 1"),
    Case("n-trials-not-a-number", ["--n-trials", "abc"],
         "Invalid value for '--n-trials': Input should be a valid integer, unable to parse string as an integer "
         "(see cnn-lstm-hpo optimize --help)"),
    Case("n-trials-without-value", ["--n-trials"], "Option '--n-trials' requires an argument."),
    Case("max-epochs-zero", ["--max-epochs-per-trial", "0"],
         "invalid config ({tmp}/tiny.yaml): max_epochs_per_trial: Input should be greater than or equal to 1"),
    Case("timeout-negative", ["--timeout-hours", "-1"], "invalid config ({tmp}/tiny.yaml): timeout_hours: Input should be greater than 0"),
    Case("timeout-not-a-number", ["--timeout-hours", "soon"],
         "Invalid value for '--timeout-hours': Input should be a valid number, unable to parse string as a number "
         "(see cnn-lstm-hpo optimize --help)"),
    Case("seed-negative", ["--seed", "-1"], "invalid config ({tmp}/tiny.yaml): seed: Input should be greater than or equal to 0"),
    Case("convergence-patience-zero", ["--convergence-patience", "0"],
         "invalid config ({tmp}/tiny.yaml): convergence.patience: Input should be greater than or equal to 1"),
    Case("seed-too-large", ["--seed", str(2**31)], "invalid config ({tmp}/tiny.yaml): seed: Input should be less than 2147483648"),
    Case("start-after-end", ["--start", "2015-01-01", "--end", "2014-06-01"],
         "invalid config ({tmp}/tiny.yaml): data: start must be before end, but got start=2015-01-01 end=2014-06-01"),
    Case("start-bad-format", ["--start", "01/02/2015"],
         "Invalid value for '--start': Value error, '01/02/2015' does not match the formats '%Y-%m-%d'. "
         "(see cnn-lstm-hpo optimize --help)"),
    Case("objectives-unknown", ["--objectives", "accuracy", "speed"], f"invalid config ({{tmp}}/tiny.yaml): objectives.1: {OBJ_CHOICES}"),
    Case("objectives-repeated", ["--objectives", "accuracy", "accuracy"],
         "invalid config ({tmp}/tiny.yaml): objectives: objectives must not repeat, but got ['accuracy', 'accuracy']"),
    Case("retrain-top-k-zero", ["--retrain-top-k", "0"], "retrain top_k must be an integer >= 1, but got top_k=0"),
    Case("unknown-flag", ["--bogus", "3"], "No such option: --bogus (Possible options: --symbols) (see cnn-lstm-hpo optimize --help)"),
    Case("extra-argument", ["now"], "Got unexpected extra argument(s) (now) (see cnn-lstm-hpo optimize --help)"),
    # --- a second run on the earlier run's folder with a changed config
    Case("resume-with-changed-config", ["--max-epochs-per-trial", "2"],
         "study 'tiny' in sqlite:///{save}/study.db was run with other settings: max_epochs_per_trial (1 -> 2); "
         "pruning.brackets ([] -> [[1]]); its trials "  # the budget moves the rungs too: 1 epoch leaves none
         "would not be comparable: resume with the same settings or use another --study-name"),
    # --- the data command
    Case("data-command-missing-path", ["--data", "{tmp}/nothing"], "data path not found: {tmp}/nothing",
         command=["data", "--scenario", "{scenario}"]),
    Case("data-command-start-after-end", ["--start", "2015-01-01", "--end", "2014-06-01"],
         "invalid config ({tmp}/tiny.yaml): data: start must be before end, but got start=2015-01-01 end=2014-06-01",
         command=["data", "--scenario", "{scenario}"]),
    Case("data-command-unknown-symbol", ["--symbols", "AAPL"], "symbol AAPL is not in data source 'synthetic'; it has: SYN_A, SYN_B",
         command=["data", "--scenario", "{scenario}"]),
]


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and os.access(p, os.R_OK)}


@pytest.fixture(scope="module")
def earlier_run(tmp_path_factory) -> Path:
    """A finished tiny study: the save dir every case must leave byte-identical."""
    base = tmp_path_factory.mktemp("earlier")
    (base / "tiny.yaml").write_text(TINY)
    command = [str(CONSOLE_SCRIPT)] if CONSOLE_SCRIPT.exists() else [sys.executable, "-m", "cnn_lstm_hpo.cli"]
    done = subprocess.run([*command, "optimize", "--scenario", "tiny.yaml", "--save-dir", "run", "-q"],
                          cwd=base, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (base / "run" / "study.db").is_file() and (base / "run" / "trial_0_result.json").is_file()
    return base


@pytest.fixture(scope="module")
def outcomes(earlier_run: Path, tmp_path_factory) -> dict[str, tuple[Path, int, str, str, dict, dict]]:
    """Run every case once: its folder, exit code, stdout, stderr, and the case folder's files before and after."""
    root = tmp_path_factory.mktemp("cases")
    jobs, before = [], {}
    for case in CASES:
        if case.skip:
            continue
        tmp = root / case.id
        shutil.copytree(earlier_run, tmp)
        if case.setup:
            case.setup(tmp)
        (tmp / ".out").mkdir()
        subs = {"tmp": str(tmp), "save": str(tmp / "run"), "scenario": str(tmp / "tiny.yaml")}
        argv = [a.format(**subs) for a in [*case.command, *case.args]]
        jobs.append({"id": case.id, "argv": argv, "cwd": str(tmp), "out": str(tmp / ".out")})
        before[case.id] = _files(tmp)
    done = subprocess.run([sys.executable, "-c", DRIVER], input=json.dumps(jobs), capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    codes = json.loads(done.stdout)
    results = {}
    for case in CASES:
        if case.skip:
            continue
        tmp = root / case.id
        out = tmp / ".out"
        stdout, stderr = (out / "stdout").read_text(), (out / "stderr").read_text()
        shutil.rmtree(out)
        if case.id == "save-dir-read-only" and not ROOT_USER:
            os.chmod(tmp / "run", 0o755)
        results[case.id] = (tmp, codes[case.id], stdout, stderr, before[case.id], _files(tmp))
    return results


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(case: Case, outcomes):
    if case.skip:
        pytest.skip(case.skip)
    folder, code, stdout, stderr, before, after = outcomes[case.id]
    expected = "error: " + case.message.format(tmp=folder, save=folder / "run") + "\n"
    assert "Traceback" not in stdout + stderr
    assert code == 2, stderr
    assert stderr == expected
    assert after == before  # the earlier run's files (and the case's own inputs) byte for byte
