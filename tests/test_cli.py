"""The command line and the guide's two scripts, as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from cnn_lstm_hpo import MultiObjectiveOptimizer
from cnn_lstm_hpo.cli import app
from cnn_lstm_hpo.config import build_config

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--n-trials", "2", "--max-epochs-per-trial", "1", "--start", "2016-01-01"]
runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args))


def test_scenarios_list_and_show():
    listed = invoke("scenarios", "list")
    assert listed.exit_code == 0
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["scenario", "trials", "epochs", "objectives"]
    assert [line.split()[0] for line in lines[1:]] == [
        "accuracy_focused", "default", "efficiency_focused", "production", "quick_test", "smoke"]
    assert "quick_test              50      20  accuracy, training_time" in lines
    shown = invoke("scenarios", "show", "production")
    assert shown.exit_code == 0 and "max_training_time_minutes: 90.0" in shown.stdout


def test_every_option_is_described_with_its_default_and_flags_take_no_value():
    import typer.main

    commands = typer.main.get_command(app).commands
    commands = {**{n: c for n, c in commands.items() if n != "scenarios"},
                **{f"scenarios {n}": c for n, c in commands["scenarios"].commands.items()}}
    for name, command in commands.items():
        ctx = command.context_class(command, info_name=name)
        for param in command.params:
            record = param.get_help_record(ctx)
            assert record is not None, (name, param.name)
            shown, text = record
            assert text.strip(), (name, shown)  # a description
            if param.param_type_name == "option" and not param.required and not param.is_flag:
                assert "default" in text, (name, shown)  # shown by click, or said in words where None
            assert "<bool>" not in shown and "BOOLEAN" not in shown, (name, shown)
    help_text = invoke("optimize", "--help").stdout
    assert "--no-pruning" in help_text and "--start YYYY-MM-DD" in help_text and "<bool>" not in help_text


def test_unknown_scenario_is_one_line_exit_2():
    result = invoke("scenarios", "show", "nope")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "unknown scenario 'nope'" in result.stderr and "Traceback" not in result.output


def test_optimize_smoke_on_bundled_data_writes_every_output(tmp_path):
    save = tmp_path / "smoke"
    result = invoke("optimize", "--scenario", "smoke", *FAST, "--save-dir", str(save), "--seed", "3")
    assert result.exit_code == 0, result.output
    for name in ("best_configurations.json", "optimization_summary.txt", "resolved_config.yaml", "study.db",
                 "trial_0_result.json", "trial_1_result.json"):
        assert (save / name).is_file(), name
    assert "seed: 3" in (save / "resolved_config.yaml").read_text()
    assert "trials 2/2" in result.stderr  # the progress line
    best = json.loads((save / "best_configurations.json").read_text())
    assert best and best[0]["rank"] == 1


SMALL_SPACE = """
  search_space:
    cnn_num_filters: {type: categorical, choices: [8]}
    cnn_filter_sizes: {type: categorical, choices: [[2, 3]]}
    cnn_attention_heads: {type: categorical, choices: [2]}
    lstm_hidden_dim: {type: categorical, choices: [16]}
    lstm_num_layers: {type: int, low: 1, high: 1}
"""


def test_guide_scenario_symbols_fall_back_to_bundled_with_a_note(tmp_path):
    scenario = tmp_path / "guide_like.yaml"
    scenario.write_text("guide_like:\n  symbols: ['AAPL', 'GOOGL', 'MSFT']\n  objectives: ['accuracy', 'training_time']\n" + SMALL_SPACE)
    result = invoke("optimize", "--scenario", str(scenario), *FAST, "--save-dir", str(tmp_path / "q"))
    assert result.exit_code == 0, result.output
    assert "AAPL" in result.stderr and "using SP500, NASDAQ" in result.stderr
    assert len([line for line in result.stderr.splitlines() if "AAPL" in line]) == 1


def test_quick_test_scenario_prepares_bundled_data_offline():
    optimizer = MultiObjectiveOptimizer(build_config("quick_test"), progress=False)
    assert optimizer.notice is not None and "SP500, NASDAQ" in optimizer.notice
    assert set(optimizer.data.train.symbols) == {"SP500", "NASDAQ"}
    assert optimizer.config.objectives == ["accuracy", "training_time"]


def test_explicit_unknown_symbol_names_the_available_ones(tmp_path):
    result = invoke("optimize", "--scenario", "smoke", *FAST, "--symbols", "AAPL", "--save-dir", str(tmp_path / "x"))
    assert result.exit_code == 2
    assert "AAPL" in result.stderr and "SP500, NASDAQ" in result.stderr
    assert "Traceback" not in result.output


def test_bad_yaml_field_names_dotted_path(tmp_path):
    scenario = tmp_path / "mine.yaml"
    scenario.write_text("mine:\n  n_trials: 2\n  search_space:\n    learning_rate: {type: loguniform, low: 0.1, high: 0.01}\n")
    result = invoke("optimize", "--scenario", str(scenario), "--save-dir", str(tmp_path / "r"))
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: invalid config ({scenario}): search_space.learning_rate.loguniform: "
        "low must be <= high, but got low=0.1 > high=0.01\n"
    )


def test_bad_data_file_names_file_column_and_row(tmp_path):
    folder = tmp_path / "bars"
    folder.mkdir()
    (folder / "ABC.csv").write_text("Date,Open,High,Low,Close,Volume\n2020-01-02,1,2,0.5,1.5,100\n2020-01-03,1,x,0.5,1.5,100\n")
    result = invoke("optimize", "--scenario", "smoke", "--data", str(folder), "--save-dir", str(tmp_path / "r"))
    assert result.exit_code == 2
    assert result.stderr.endswith(f"error: {folder / 'ABC.csv'}: column 'high' row 2020-01-03: not a number ('x')\n")


def test_data_command_reports_windows(tmp_path):
    result = invoke("data", "--data", "synthetic")
    assert result.exit_code == 0, result.output
    assert "SYN_A: 1500 bars" in result.stdout and "majority-class rate" in result.stdout


def _script(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / name), *args], capture_output=True, text=True, timeout=300)


def test_guide_scripts_are_shims_over_the_cli(tmp_path):
    save = tmp_path / "s1"
    done = _script("run_hyperopt_with_config.py", "--scenario", "smoke", "--n_trials", "1",
                   "--max_epochs_per_trial", "1", "--save_dir", str(save))
    assert done.returncode == 0, done.stderr
    assert (save / "best_configurations.json").is_file()

    save2 = tmp_path / "s2"
    done = _script("run_hyperparameter_optimization.py", "--scenario", "smoke", "--n_trials", "1",
                   "--max_epochs_per_trial", "1", "--timeout_hours", "0.1", "--symbols", "SP500", "NASDAQ",
                   "--objectives", "accuracy", "model_size", "--save_dir", str(save2))
    assert done.returncode == 0, done.stderr
    record = json.loads((save2 / "trial_0_result.json").read_text())
    assert set(record["objectives"]) == {"accuracy", "model_size"}

    bad = _script("run_hyperparameter_optimization.py", "--scenario", "smoke", "--symbols", "AAPL",
                  "--save_dir", str(tmp_path / "s3"))
    assert bad.returncode == 2 and "AAPL" in bad.stderr and "Traceback" not in bad.stderr


def test_a_study_whose_every_trial_failed_exits_1_with_the_reason(tmp_path, monkeypatch):
    from cnn_lstm_hpo.train import Trainer

    def out_of_memory(self, *args, **kwargs):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore detail")

    monkeypatch.setattr(Trainer, "fit", out_of_memory)
    result = invoke("optimize", "--scenario", "smoke", *FAST, "--save-dir", str(tmp_path / "r"))
    assert result.exit_code == 1
    assert result.stderr.endswith(
        "error: all 2 trials failed; most common reason (2 of 2): RuntimeError: CUDA out of memory. "
        "Tried to allocate 2.00 GiB\n"
    )
    assert "Traceback" not in result.output


def test_starting_a_study_does_not_load_the_analysis_stack():
    """statsmodels, matplotlib and plotly load only for the report: every worker process imports
    the study module, and they would add seconds to its start."""
    code = "import sys, cnn_lstm_hpo.study; print(sorted(m for m in ('statsmodels', 'matplotlib', 'plotly') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_ctrl_c_writes_the_report_and_prints_the_command_that_resumes(tmp_path, monkeypatch):
    from cnn_lstm_hpo.train import Trainer

    fit = Trainer.fit
    calls = []

    def interrupted_third(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "fit", interrupted_third)
    save = tmp_path / "my run"
    args = ["optimize", "--scenario", "smoke", "--n-trials", "3", "--max-epochs-per-trial", "1",
            "--start", "2016-01-01", "--save-dir", str(save)]
    monkeypatch.setattr(sys, "argv", ["/somewhere/bin/cnn-lstm-hpo", *args])
    result = invoke(*args)
    assert result.exit_code == 130, result.output
    assert f"run the same command again:\n  cnn-lstm-hpo optimize --scenario smoke --n-trials 3 --max-epochs-per-trial 1 " \
           f"--start 2016-01-01 --save-dir '{save}'\n" in result.stderr
    for name in ("report.html", "optimization_analysis.json", "optimization_summary.txt", "best_configurations.json"):
        assert (save / name).is_file(), name
    assert list((save / "plots").glob("*.png"))


def test_a_finished_study_run_again_has_nothing_to_do(tmp_path):
    save = tmp_path / "done"
    args = ["optimize", "--scenario", "smoke", "--n-trials", "1", "--max-epochs-per-trial", "1",
            "--start", "2016-01-01", "--save-dir", str(save)]
    assert invoke(*args).exit_code == 0
    report = (save / "report.html").stat().st_mtime_ns
    again = invoke(*args)
    assert again.exit_code == 0, again.output
    assert again.stdout.splitlines()[0] == (
        f"nothing to do: 1 of 1 trials finished in study 'smoke' (--n-trials sets more); "
        f"summary: {save / 'optimization_summary.txt'}"
    )
    assert "Best configurations" not in again.stdout
    assert (save / "report.html").stat().st_mtime_ns == report  # nothing rewritten


def test_a_scenario_start_date_that_leaves_a_symbol_without_bars_says_where_it_came_from(tmp_path, synthetic_frames, write_csv_folder):
    folder = write_csv_folder(synthetic_frames)  # 400 business days from 2010: nothing from smoke's 2014-01-01 on
    result = invoke("optimize", "--scenario", "smoke", "--data", str(folder), "--save-dir", str(tmp_path / "run"))
    assert result.exit_code == 2
    assert result.stderr.startswith("error: symbol SYN_A has no bars from 2014-01-01 to its end; its data runs from ")
    assert result.stderr.endswith("; data.start 2014-01-01 come(s) from scenario 'smoke': pass --start YYYY-MM-DD "
                                  "(or --end) to change it\n")
    typed = invoke("optimize", "--scenario", "smoke", "--data", str(folder), "--start", "2014-01-01",
                   "--save-dir", str(tmp_path / "run"))
    assert typed.exit_code == 2 and "come(s) from scenario" not in typed.stderr  # the user typed it: nothing to add
