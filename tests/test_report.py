"""What ``cnn-lstm-hpo analyze`` writes: real PNGs, a report.html a real browser renders, partial
reports for degenerate studies, one clear line for a storage that cannot be read, and no writes to
a study that workers are still running."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import optuna
import pytest
from PIL import Image

from _studies import DEGENERATE, OBJECTIVES, degenerate_studies, planted_study, told
from cnn_lstm_hpo.cli import main
from cnn_lstm_hpo.reporting.report import DEFAULT_WEIGHTS
from cnn_lstm_hpo.results import ranked_pareto

optuna.logging.set_verbosity(optuna.logging.WARNING)


def analyze(save_dir: Path, *extra: str) -> int:
    with pytest.raises(SystemExit) as exit_info:
        main(["analyze", "--save-dir", str(save_dir), *extra])
    return exit_info.value.code


@pytest.fixture(scope="module")
def planted_dir(tmp_path_factory) -> Path:
    """The planted study (3 objectives, pruned and failed trials, one infeasible) stored in SQLite
    as ``optimize`` stores it, analysed once through the CLI."""
    save_dir = tmp_path_factory.mktemp("planted")
    planted_study(storage=f"sqlite:///{save_dir / 'study.db'}")
    assert analyze(save_dir) == 0
    return save_dir


# --- plots ------------------------------------------------------------------------------------
PLOTS = ["optimization_history.png", "pareto_front_2d.png", "hyperparameter_correlations.png", "learning_curves.png",
         *[f"parameter_importance_{o}.png" for o in OBJECTIVES], "parameter_importance_first_rung.png"]


@pytest.mark.parametrize("name", PLOTS)
def test_plots_are_real_pngs_of_sensible_size(planted_dir, name):
    path = planted_dir / "plots" / name
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.verify()  # a truncated or corrupt file fails here
    with Image.open(path) as image:
        width, height = image.size
        assert 400 <= width <= 4000 and 250 <= height <= 3000, image.size
        # Drawn, not blank: axes, labels and marks give many colours.
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 20)) > 50
    assert json.loads((planted_dir / "optimization_analysis.json").read_text())["plots"][name] == "written"


def test_pareto_front_2d_has_a_panel_per_pair_of_objectives(planted_dir):
    with Image.open(planted_dir / "plots" / "pareto_front_2d.png") as image:
        width, height = image.size
    assert width > 2.5 * height  # three pairs side by side


# --- the report in a real browser -------------------------------------------------------------
def _browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    binary = next((b for b in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if b), None)
    driver = shutil.which("chromedriver")
    if binary is None or driver is None:
        pytest.skip("no chromium + chromedriver on PATH (apt-get install chromium chromium-driver; .ci/run does)")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1300,1600",
                "--enable-unsafe-swiftshader"):  # software WebGL for the 3-D Pareto plot, trusted local file
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(driver))


@pytest.fixture(scope="module")
def browser():
    driver = _browser()
    yield driver
    driver.quit()


def test_report_renders_in_a_headless_browser(planted_dir, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get((planted_dir / "report.html").as_uri())
    WebDriverWait(browser, 60).until(
        lambda d: d.execute_script("const g = document.getElementById('pareto-plot'); return !!(g && g._fullLayout);"))
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []
    # Self-contained: the page loaded nothing besides itself (no script src, no CDN, no server).
    assert browser.execute_script("return performance.getEntriesByType('resource').map(r => r.name);") == []
    assert browser.find_elements(By.CSS_SELECTOR, "script[src], link[href]") == []

    # The interactive 3-D Pareto front: plotly's traces hold the front, and the WebGL canvas shows points.
    analysis = json.loads((planted_dir / "optimization_analysis.json").read_text())
    front = [row["trial_number"] for row in analysis["pareto_front"]["trials"]]
    traces = browser.execute_script(
        "return document.getElementById('pareto-plot').data.map(t => [t.type, t.name, t.x.length, t.hovertext]);")
    assert {kind for kind, *_ in traces} == {"scatter3d"}
    shown = {name: sorted(int(re.match(r"<b>trial (\d+)</b>", text).group(1)) for text in texts)
             for _, name, n, texts in traces if len(texts) == n}
    assert shown["Pareto front (feasible)"] == sorted(front) and len(front) > 1
    assert shown["infeasible (a limit broken)"] == analysis["trials"]["complete_but_infeasible"] == [3]
    assert sum(map(len, shown.values())) == analysis["trials"]["by_state"]["COMPLETE"]
    plot = browser.find_element(By.ID, "pareto-plot")
    assert plot.find_elements(By.CSS_SELECTOR, "canvas") and plot.size["width"] > 300 and plot.size["height"] > 300
    # One colour bar (trial number, shared by the traces), and the front's points labelled by trial.
    bars = [bar.text for bar in plot.find_elements(By.CSS_SELECTOR, "g.colorbar")]
    assert len(bars) == 1 and "trial number" in bars[0], bars
    labels = browser.execute_script(
        "return document.getElementById('pareto-plot').data.filter(t => t.name.startsWith('Pareto')).map(t => t.text)[0];")
    assert labels == [f"#{n}" for n in sorted(front)] or sorted(labels) == sorted(f"#{n}" for n in front)
    browser.execute_script("arguments[0].scrollIntoView();", plot)
    # Colour bar and legend off: what colour is left on the page is the markers'.
    browser.execute_async_script("""const done = arguments[arguments.length - 1], g = arguments[0];
        Plotly.relayout(g, {showlegend: false, 'coloraxis.showscale': false}).then(done);""", plot)
    _assert_coloured_points(plot.screenshot_as_png)

    # The best-configuration table starts with the study's top trial (as best_configurations.json ranks it).
    study = optuna.load_study(study_name="planted", storage=f"sqlite:///{planted_dir / 'study.db'}")
    top = ranked_pareto(study, OBJECTIVES, DEFAULT_WEIGHTS)[0]["trial_number"]
    first_row = browser.find_elements(By.CSS_SELECTOR, "#best-configs tbody tr")[0]
    assert [c.text for c in first_row.find_elements(By.TAG_NAME, "td")][:2] == ["1", str(top)]
    # The failed trial and its reason are listed.
    assert "TrialDiverged: loss became nan" in browser.find_element(By.ID, "stopped-trials").text
    for div in ("importance-plot", "correlation-plot", "learning-plot", "hypervolume-plot"):
        assert browser.find_element(By.ID, div).find_elements(By.CSS_SELECTOR, "svg.main-svg"), div
    # Read at a glance: a rounded hypervolume title, a legend on the learning curves, summary lines
    # wrapped rather than scrolled, and non-significant correlations without colour.
    title = browser.find_element(By.CSS_SELECTOR, "#hypervolume-plot .gtitle").text
    assert title.startswith("Hypervolume of the feasible front (reference point: accuracy ")
    assert not re.search(r"\d\.\d{4,}|\{", title), title
    legend = browser.find_element(By.CSS_SELECTOR, "#learning-plot g.legend").text
    assert "complete" in legend and "pruned / stopped" in legend
    size = browser.get_window_size()
    browser.set_window_size(600, size["height"])  # narrower than the summary's longest lines
    try:
        assert browser.execute_script(
            "const p = document.querySelector('#summary pre'); return p.scrollWidth <= p.clientWidth;")
    finally:
        browser.set_window_size(size["width"], size["height"])
    cells = [c for c in analysis["correlations"]["cells"]]
    greyed = browser.execute_script(
        "return document.getElementById('correlation-plot').data.map(t => [t.name, t.z.flat().filter(v => v !== null).length]);")
    assert dict(greyed) == {"not significant": sum(not c["significant"] for c in cells),
                            "significant": sum(c["significant"] for c in cells)}


def _assert_coloured_points(png: bytes) -> None:
    """Markers are saturated colours; axes, grid and text are grey: count saturated pixels."""
    import io

    with Image.open(io.BytesIO(png)) as image:
        rgb = np.asarray(image.convert("RGB"), dtype=int)
    saturated = int((rgb.max(axis=-1) - rgb.min(axis=-1) > 80).sum())
    assert saturated > 100, f"only {saturated} coloured pixels in the Pareto plot"


# --- degenerate studies and bad storage through the CLI ---------------------------------------
@pytest.fixture(scope="module")
def degenerate_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("degenerate")

    def storage(name: str) -> str:
        (root / name).mkdir()
        return f"sqlite:///{root / name / 'study.db'}"

    degenerate_studies(storage)
    return {name: root / name for name in DEGENERATE}


@pytest.mark.parametrize("name", DEGENERATE)
def test_degenerate_study_gives_a_partial_report_and_exit_0(degenerate_dirs, name, capsys):
    save_dir = degenerate_dirs[name]
    assert analyze(save_dir) == 0
    out, err = capsys.readouterr()
    assert "analysis of study" in out and "Traceback" not in err
    analysis = json.loads((save_dir / "optimization_analysis.json").read_text())
    notes = [v for v in analysis["plots"].values() if v != "written"]
    written = sorted(p.name for p in (save_dir / "plots").glob("*.png")) if (save_dir / "plots").exists() else []
    assert sorted(k for k, v in analysis["plots"].items() if v == "written") == written
    assert notes, "a degenerate study has at least one part it is too small for"
    page = (save_dir / "report.html").read_text()
    assert 'class="note"' in page
    summary = (save_dir / "optimization_summary.txt").read_text()
    # The verdict first: a study without stored baselines (these are built by hand) claims no edge.
    assert summary.startswith("no edge found: this study stored no validation baselines")
    assert summary.splitlines()[2] == f"Study: {name.replace(' ', '-')}"
    if name in ("empty", "only pruned and failed"):
        assert "no feasible complete trial" in page
    if name == "one objective":
        assert "one objective: no trade-off to show" in page


def test_a_storage_that_is_not_a_database_gives_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "study.db").write_bytes(b"this is not a SQLite file" * 100)
    before = (tmp_path / "study.db").read_bytes()
    assert analyze(tmp_path) == 2
    out, err = capsys.readouterr()
    url = f"sqlite:///{(tmp_path / 'study.db').resolve()}"
    assert err == f"error: cannot read storage {url}: file is not a database\n"
    assert (tmp_path / "study.db").read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["study.db"]


def test_a_database_without_a_study_gives_one_line_and_exit_2(tmp_path, capsys):
    sqlite3.connect(tmp_path / "study.db").execute("create table unrelated (x int)").connection.close()
    assert analyze(tmp_path) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot read storage sqlite:///{(tmp_path / 'study.db').resolve()}: ")
    assert err.count("\n") == 1 and "no such table" in err


def test_a_missing_storage_gives_one_line_and_exit_2(tmp_path, capsys):
    assert analyze(tmp_path / "nowhere") == 2
    err = capsys.readouterr().err
    assert err == (f"error: no study storage at {(tmp_path / 'nowhere' / 'study.db').resolve()}; "
                   "pass --storage URL or the --save-dir of a study\n")
    assert not (tmp_path / "nowhere").exists()  # nothing created where nothing was


def test_an_unknown_study_name_gives_one_line_and_exit_2(degenerate_dirs, capsys):
    assert analyze(degenerate_dirs["empty"], "--study-name", "nope") == 2
    err = capsys.readouterr().err
    url = f"sqlite:///{(degenerate_dirs['empty'] / 'study.db').resolve()}"
    assert err == f"error: no study 'nope' in {url}; it holds: empty\n"


def test_analyze_leaves_a_running_study_untouched(tmp_path):
    """A worker holds a RUNNING trial; analyze reads the storage, writes nothing to it, and the
    worker finishes its trial afterwards as if nothing happened."""
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(directions=["maximize", "minimize"], study_name="live", storage=url)
    for v in (0.5, 0.6, 0.55, 0.7):
        told(study, [v, 1 - v])
    running = study.ask()
    running.suggest_float("x", 0, 1)
    digest = hashlib.sha256((tmp_path / "study.db").read_bytes()).hexdigest()
    assert analyze(tmp_path) == 0
    assert hashlib.sha256((tmp_path / "study.db").read_bytes()).hexdigest() == digest
    assert "1 running" in (tmp_path / "optimization_summary.txt").read_text()
    study.tell(running, [0.8, 0.2])
    assert [t.state for t in optuna.load_study(study_name="live", storage=url).trials][-1] == optuna.trial.TrialState.COMPLETE


def test_summary_reads_for_a_person(planted_dir):
    summary = (planted_dir / "optimization_summary.txt").read_text()
    assert "Trials: 47 total; 40 complete, 6 pruned, 1 failed, 0 running; 1 infeasible" in summary
    assert "Why trials stopped early: pruned at epoch 2: 6; failed: TrialDiverged: loss became nan at epoch 1: 1" in summary
    assert "Rank 1: trial " in summary and "vs majority-class rate 0.5500" in summary
    importance = summary.split("Most important parameters")[1]
    assert "accuracy: learning_rate" in importance and "model_size: lstm_hidden_dim" in importance


def test_summary_names_the_symbols_loaded_not_the_scenarios(tmp_path):
    from cnn_lstm_hpo import MultiObjectiveOptimizer
    from cnn_lstm_hpo.config import build_config
    from cnn_lstm_hpo.reporting.report import run_context
    from cnn_lstm_hpo.results import summary_text

    config = build_config("quick_test", {"save_dir": tmp_path})
    assert config.data.source == "sample" and config.symbols == ["AAPL", "GOOGL", "MSFT"]
    optimizer = MultiObjectiveOptimizer(config, progress=False)  # the bundled data has SP500 and NASDAQ instead
    study = optuna.create_study(directions=["maximize", "minimize"])  # accuracy, training_time
    study.set_user_attr("fingerprint", optimizer.fingerprint)
    lines = summary_text(study, config.objectives, [], context=run_context(study, config)).splitlines()
    assert [line for line in lines if line.startswith("Symbols:")] == ["Symbols: NASDAQ, SP500"]
