"""The ``cnn-lstm-hpo`` command line. Thin commands; HPOError -> one line on stderr, exit 2 (StudyFailed: exit 1)."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import shlex
import sys
import warnings
from pathlib import Path
from typing import Any, Iterator, Optional

import optuna
import typer

from .config import build_config, scenario_names, scenario_text
from .errors import HPOError, StudyFailed
from .distributed.storage import optuna_cli_storage

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None, help="Multi-objective HPO of CNN+LSTM market models.")
scenarios_app = typer.Typer(no_args_is_help=True, help="List and show the shipped scenarios.")
app.add_typer(scenarios_app, name="scenarios")

EXIT_STUDY_FAILED = 1  # every trial failed: nothing to report, the reason is on stderr
EXIT_BAD_INPUT = 2
EXIT_LEAK = 3  # the shuffled-label control beat the baseline: the test numbers cannot be trusted


@contextlib.contextmanager
def _user_errors(debug: bool) -> Iterator[None]:
    """The one place where domain errors become exit codes."""
    try:
        yield
    except (HPOError, StudyFailed) as error:
        if debug:
            raise
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT if isinstance(error, HPOError) else EXIT_STUDY_FAILED) from None


def _split_list(values: Optional[list[str]]) -> Optional[list[str]]:
    """Accept both ``--symbols A --symbols B`` and ``--symbols A,B``."""
    if not values:
        return None
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def _data_overrides(data: Optional[str], start: Optional[dt.datetime], end: Optional[dt.datetime]) -> dict[str, Any]:
    """The data settings the user gave (the scenario keeps the others)."""
    given = {"source": data, "start": start and start.date(), "end": end and end.date()}
    return {k: v for k, v in given.items() if v is not None}


# Options that several commands share, declared once.
_START = typer.Option(
    None, "--start", formats=["%Y-%m-%d"], metavar="YYYY-MM-DD", help="First bar's date (default: the scenario's, else all)."
)
_END = typer.Option(
    None, "--end", formats=["%Y-%m-%d"], metavar="YYYY-MM-DD", help="Last bar's date (default: the scenario's, else all)."
)
_FOLDS = typer.Option(
    None, "--folds", help="Walk-forward evaluation on K validation periods before the test split, K >= 2 (default: the scenario's evaluation, else holdout)."
)


def _walk_forward(folds: int | None) -> dict | None:
    return {"scheme": "walk_forward", "folds": folds} if folds is not None else None


_MAX_EPOCHS = typer.Option(None, "--max-epochs-per-trial", help="Epoch budget of each trial (default: the scenario's).")


def _setup_logging(quiet: bool, debug: bool = False) -> None:
    # Our own handler on our logger, bound to the current stderr (each CLI call may have its own).
    logger = logging.getLogger("cnn_lstm_hpo")
    logger.handlers = [logging.StreamHandler(sys.stderr)]
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    logger.propagate = False
    # Our progress line replaces Optuna's per-trial INFO lines; a failed trial's reason is recorded
    # with it (and in the summary), so Optuna's traceback of it shows only with --debug.
    optuna.logging.set_verbosity(optuna.logging.WARNING if debug else optuna.logging.ERROR)
    # Optuna's notices about its own experimental arguments are not the user's business: one line stays one line.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


@app.command()
def optimize(
    scenario: str = typer.Option("default", "--scenario", "-s", help="Scenario name or a YAML file."),
    n_trials: Optional[int] = typer.Option(None, "--n-trials", help="Trials to finish in the study (default: the scenario's)."),
    max_epochs_per_trial: Optional[int] = _MAX_EPOCHS,
    timeout_hours: Optional[float] = typer.Option(
        None, "--timeout-hours", help="Wall-clock limit of this run (default: the scenario's)."
    ),
    objectives: Optional[list[str]] = typer.Option(
        None, "--objectives", metavar="NAMES", help="Of accuracy, training_time, model_size, sharpe (default: the scenario's)."
    ),
    symbols: Optional[list[str]] = typer.Option(
        None, "--symbols", metavar="NAMES", help="Symbols to use, repeated or comma-separated (default: the scenario's)."
    ),
    data: Optional[str] = typer.Option(
        None, "--data", help="sample (bundled), synthetic, or a file/folder path (default: the scenario's, else sample)."
    ),
    start: Optional[dt.datetime] = _START,
    end: Optional[dt.datetime] = _END,
    save_dir: Optional[Path] = typer.Option(
        None, "--save-dir", help="Folder for the results and study.db (default: the scenario's, else hyperopt_results)."
    ),
    storage: Optional[str] = typer.Option(None, "--storage", help="SQLAlchemy URL, journal:///path or grpc://HOST:PORT (default: SQLite in --save-dir)."),
    study_name: Optional[str] = typer.Option(None, "--study-name", help="Study name in the storage (default: the scenario's name)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed of sampler and training (default: the scenario's, 42)."),
    no_pruning: bool = typer.Option(False, "--no-pruning", help="Train every trial to the end (for comparison)."),
    convergence_patience: Optional[int] = typer.Option(
        None, "--convergence-patience",
        help="Stop once the last N finished trials grew the front's hypervolume by at most convergence.min_improvement "
        "(0.1 %) (default: never).",
    ),
    folds: Optional[int] = _FOLDS,
    retrain_top_k: Optional[int] = typer.Option(
        None, "--retrain-top-k", help="After the study, retrain the top K configurations, as `retrain --top-k K` (default: none)."
    ),
    workers: Optional[int] = typer.Option(
        None, "--workers", help="Worker processes on this machine sharing the study, on a journal file (default: 1)."
    ),
    threads: Optional[int] = typer.Option(None, "--threads", help="Torch threads per worker (default: cores / workers; 1 with training.time_measure steady)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only warnings and the final summary."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
) -> None:
    """Run (or resume) a multi-objective study and write the guide's result files."""
    _setup_logging(quiet, debug)
    with _user_errors(debug):
        from .deployment.retrain import RetrainSettings
        from .study import MultiObjectiveOptimizer

        # Checked before the study runs, not after hours of it.
        retrain_settings = RetrainSettings(top_k=retrain_top_k) if retrain_top_k is not None else None
        overrides: dict[str, Any] = {
            "n_trials": n_trials, "max_epochs_per_trial": max_epochs_per_trial, "timeout_hours": timeout_hours,
            "objectives": _split_list(objectives), "symbols": _split_list(symbols), "save_dir": save_dir,
            "storage": storage, "study_name": study_name, "seed": seed,
            "pruning": {"enabled": False} if no_pruning else None,
            "convergence": {"patience": convergence_patience} if convergence_patience is not None else None,
            "workers": workers, "threads": threads, "evaluation": _walk_forward(folds),
            "data": _data_overrides(data, start, end),
        }
        # Only the flags the user gave override the scenario.
        config = build_config(scenario, {k: v for k, v in overrides.items() if v is not None})
        try:
            optimizer = MultiObjectiveOptimizer(config, explicit_symbols=bool(symbols), progress=not quiet)
        except HPOError as error:
            raise HPOError(_with_date_origin(str(error), config.data, scenario, start=start, end=end)) from None
        with _interrupts(f"to resume study {config.resolved_study_name!r}, run the same command again:"):
            optimizer.optimize()
        summary = config.save_dir / "optimization_summary.txt"
        done = optimizer.nothing_to_do
        if done is not None:
            count = f"{done} of {config.n_trials}" if done == config.n_trials else f"{done} (n_trials {config.n_trials})"
            typer.echo(f"nothing to do: {count} trials finished in study {config.resolved_study_name!r} "
                       f"(--n-trials sets more); summary: {summary}")
        else:
            typer.echo(summary.read_text())
        where = f"--storage {config.storage}" if config.storage else f"--save-dir {config.save_dir}"
        typer.echo(f"results in {config.save_dir}/ ; live view: cnn-lstm-hpo dashboard {where}")
        typer.echo(f"with Optuna's own CLI: optuna trials {optuna_cli_storage(config.resolved_storage)} "
                   f"--study-name {config.resolved_study_name}")
        if retrain_settings is not None:
            assert optimizer.study is not None
            _retrain_and_report(config, optimizer.study, optimizer.data, retrain_settings)


def command_line() -> str:
    """The command this process was started with, shell-quoted, to be run again as it is."""
    program = Path(sys.argv[0]).name
    if program in ("cli.py", "__main__.py"):  # python -m cnn_lstm_hpo.cli
        head = ["python", "-m", "cnn_lstm_hpo.cli"]
    elif program.endswith(".py"):  # the guide's scripts
        head = ["python", sys.argv[0]]
    else:  # the console script, by the name it is on the PATH with
        head = [program]
    return shlex.join(head + sys.argv[1:])


def _with_date_origin(message: str, data: Any, scenario: str, *, start: Any, end: Any) -> str:
    """A symbol left without bars by a date the user did not type: say where the date came from."""
    if " has no bars from " not in message:
        return message
    from_scenario = [f"{name} {value}" for name, value, flag in (("data.start", data.start, start), ("data.end", data.end, end))
                     if value is not None and flag is None]
    if not from_scenario:
        return message
    return (f"{message}; {' and '.join(from_scenario)} come(s) from scenario {scenario!r}: "
            "pass --start YYYY-MM-DD (or --end) to change it")


@contextlib.contextmanager
def _interrupts(resume_hint: str) -> Iterator[None]:
    """Ctrl-C / SIGTERM: the optimizer has recorded the trial and written the files; say how to go on."""
    from .interrupts import exit_code_of

    try:
        yield
    except KeyboardInterrupt as interrupt:
        typer.echo(f"\ninterrupted; {resume_hint}\n  {command_line()}", err=True)
        raise typer.Exit(exit_code_of(interrupt)) from None


@app.command()
def worker(
    storage: str = typer.Option(..., "--storage", help="The study's storage URL (journal:///..., postgresql://... or grpc://HOST:PORT)."),
    study_name: str = typer.Option(..., "--study-name", help="The study to join."),
    save_dir: Optional[Path] = typer.Option(None, "--save-dir", help="Where this worker writes (default: the study's)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="Torch threads (default: all cores)."),
    worker_id: Optional[int] = typer.Option(None, "--worker-id", help="Distinct per worker (default: from host and pid)."),
    no_outputs: bool = typer.Option(False, "--no-outputs", help="Leave the study-level files to another process."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress line."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
) -> None:
    """Join a running study from another process or machine, with the configuration stored in it."""
    _setup_logging(quiet, debug)
    with _user_errors(debug):
        from .study import MultiObjectiveOptimizer, stored_study_config
        from .distributed.workers import default_worker_id

        config = stored_study_config(storage, study_name, save_dir=save_dir, threads=threads)
        optimizer = MultiObjectiveOptimizer(
            config, progress=not quiet, worker_id=default_worker_id() if worker_id is None else worker_id,
            write_outputs=not no_outputs,
        )
        with _interrupts(f"to rejoin study {study_name!r}, run the same command again:"):
            optimizer.optimize()


@app.command("data")
def data_command(
    data: Optional[str] = typer.Option(
        None, "--data", help="sample, synthetic, yfinance, or a file/folder path (default: the scenario's)."
    ),
    symbols: Optional[list[str]] = typer.Option(
        None, "--symbols", metavar="NAMES", help="Symbols to show, space, comma or repeat (default: every symbol, or the scenario's)."
    ),
    start: Optional[dt.datetime] = _START,
    end: Optional[dt.datetime] = _END,
    scenario: Optional[str] = typer.Option(
        None, "--scenario", "-s",
        help="Show exactly what `optimize --scenario` would use (symbols, dates, windows); default: every symbol.",
    ),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
) -> None:
    """Show what a data source yields: per symbol bars, frequency, gaps and repairs; windows per split."""
    with _user_errors(debug):
        from .data import format_time, load_configured, resolve_symbols, summarize
        from .windows import SPLITS, build_windows

        overrides: dict[str, Any] = {"data": _data_overrides(data, start, end)}
        if symbols:
            overrides["symbols"] = _split_list(symbols)
        elif scenario is None:
            overrides["symbols"] = None  # no scenario named: every symbol the source has
        # Validated like optimize's config, so the dates and settings are the ones optimize uses.
        config = build_config(scenario or "default", overrides)
        cfg = config.data
        chosen, notice = resolve_symbols(cfg.source, config.symbols, explicit=bool(symbols))
        if notice:
            typer.echo(f"note: {notice}", err=True)
        loaded = load_configured(cfg, chosen)
        for symbol, frame in loaded.frames.items():
            typer.echo(summarize(frame, symbol).line())
            for note in loaded.repairs.get(symbol, []):
                typer.echo(f"  repaired: {note}")
        windows = build_windows(loaded.frames, cfg, config.evaluation)
        typer.echo(f"windows (sequence_length={cfg.sequence_length}, horizon={cfg.horizon}, "
                   f"embargo {cfg.embargo_bars} bars):")
        for split in SPLITS:
            part = getattr(windows, split)
            typer.echo(f"{split}: {len(part)} windows, majority-class rate {part.majority_rate():.4f}")
            for symbol, bounds in windows.boundaries.items():
                typer.echo(f"  {symbol}: {part.symbols.count(symbol)} windows, bars "
                           f"{format_time(bounds[f'{split}_start'])} .. {format_time(bounds[f'{split}_end'])}")
        for i, fold in enumerate(windows.folds):  # walk-forward
            typer.echo(f"fold {i} ({config.evaluation.window}): train {len(fold.train)} windows from "
                       f"{format_time(min(fold.train.dates))}; validation {len(fold.val)} windows, "
                       f"{format_time(fold.cuts['val_start'])} .. before {format_time(fold.cuts['val_end'])}, "
                       f"majority-class rate {fold.val.majority_rate():.4f}")


def _retrain_and_report(config: Any, study: Any, data: Any, settings: Any) -> None:
    """Run the retrain stage, print its summary; a leak or an unreachable registry ends non-zero."""
    from .deployment.retrain import retrain_top_k

    report = retrain_top_k(config, study, data, settings)
    typer.echo("\n".join(report.lines))
    typer.echo(f"results in {report.path}")
    if report.leak:
        typer.echo(f"error: the pipeline leaks: {report.results['shuffled_label_control']['verdict']}", err=True)
        raise typer.Exit(EXIT_LEAK)
    if report.registry_error:
        raise HPOError(report.registry_error)


@app.command()
def retrain(
    save_dir: Path = typer.Option(..., "--save-dir", help="The --save-dir of a finished study."),
    top_k: int = typer.Option(3, "--top-k", help="How many of the ranked feasible Pareto configurations."),
    epochs: Optional[int] = typer.Option(
        None, "--epochs", help="Epoch budget per model, early stopping on validation (default: 100)."
    ),
    seeds: int = typer.Option(3, "--seeds", help="Training runs per configuration, for the spread."),
    registry_uri: Optional[str] = typer.Option(
        None, "--registry-uri", help="MLflow tracking URI (default: sqlite:///<save-dir>/mlflow.db)."
    ),
    no_registry: bool = typer.Option(False, "--no-registry", help="Do not log or register in MLflow."),
    allow_appended_bars: bool = typer.Option(
        False, "--allow-appended-bars",
        help="Accept bars added after the study's last ones (its splits are kept; the test split grows).",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No per-epoch progress."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
) -> None:
    """Retrain the study's top-k configurations, test each once, save retrained_model_<k>/ and register them."""
    _setup_logging(quiet, debug)
    with _user_errors(debug):
        from .deployment.retrain import DEFAULT_EPOCHS, RetrainSettings, load_saved_study, study_data

        settings = RetrainSettings(
            top_k=top_k, epochs=DEFAULT_EPOCHS if epochs is None else epochs, seeds=seeds, register=not no_registry, registry_uri=registry_uri
        )
        config, study = load_saved_study(save_dir)
        # The same data as the study (its fingerprint checked): the resolved config's source, symbols, dates, windows.
        data = study_data(config, study, allow_appended_bars=allow_appended_bars)
        _retrain_and_report(config, study, data, settings)


@app.command()
def predict(
    model: Path = typer.Option(..., "--model", help="A saved model folder (retrained_model_<k>/)."),
    data: str = typer.Option(..., "--data", help="sample, synthetic, or a file/folder path."),
    output: Path = typer.Option(..., "--output", help="CSV file to write."),
    symbols: Optional[list[str]] = typer.Option(None, "--symbols", metavar="NAMES", help="Symbols to predict (default: all)."),
    start: Optional[str] = typer.Option(
        None, "--start", metavar="YYYY-MM-DD|after-training",
        help="First decision date to write, or after-training: only bars after the study's data (default: all rows).",
    ),
    new_only: bool = typer.Option(False, "--new-only", help="The same as --start after-training."),
    end: Optional[dt.datetime] = typer.Option(
        None, "--end", formats=["%Y-%m-%d"], metavar="YYYY-MM-DD", help="Last bar's date (default: all)."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
) -> None:
    """Class probabilities, predicted class and return for every window of the data, per symbol and date,
    with the split of the model's study each date is in and the realized outcome where known."""
    with _user_errors(debug):
        from .deployment.predict import AFTER_TRAINING, predict_to_csv

        if new_only and start not in (None, AFTER_TRAINING):
            raise HPOError(f"--new-only and --start {start} say different things: give one")
        table = predict_to_csv(
            model, data, output, symbols=_split_list(symbols), start=AFTER_TRAINING if new_only else start,
            end=end and end.date(),
        )
        counts = ", ".join(f"{n} {split}" for split, n in table["split"].value_counts(sort=False).items() if split)
        typer.echo(f"{len(table)} predictions for {table['symbol'].nunique()} symbol(s) written to {output}"
                   + (f" ({counts})" if counts else " (the model has no saved calendar: no split column)"))


@app.command()
def analyze(
    save_dir: Path = typer.Option(..., "--save-dir", help="Where to write; its study.db is read unless --storage."),
    storage: Optional[str] = typer.Option(None, "--storage", help="Storage URL of the study: SQLAlchemy, journal:///, grpc:// (default: the study.db in --save-dir)."),
    study_name: Optional[str] = typer.Option(
        None, "--study-name", help="Needed when the storage holds several studies (default: its only one)."
    ),
    importance: str = typer.Option("ped_anova", "--importance", help="Importance evaluator: ped_anova or fanova."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
) -> None:
    """Rebuild optimization_analysis.json, plots/, optimization_summary.txt and report.html from a stored
    study (read-only: workers still running on it are not disturbed)."""
    _setup_logging(quiet=True)
    with _user_errors(debug):
        from .reporting.analysis import EVALUATORS
        from .reporting.report import open_stored_study, stored_config, write_analysis_outputs

        if importance not in EVALUATORS:
            raise HPOError(f"--importance must be one of {', '.join(EVALUATORS)}, but got {importance!r}")
        study = open_stored_study(save_dir, storage, study_name)
        problems = write_analysis_outputs(study, save_dir, config=stored_config(save_dir), evaluator=importance)
    typer.echo(f"analysis of study {study.study_name!r} written to {save_dir}/: optimization_analysis.json, "
               "plots/, optimization_summary.txt, report.html")
    if problems:  # already logged as warnings; the parts that worked are written
        raise typer.Exit(1)


@app.command()
def plan(
    scenario: str = typer.Option("default", "--scenario", "-s", help="Scenario name or a YAML file."),
    n_trials: Optional[int] = typer.Option(None, "--n-trials", help="Trials in the study (default: the scenario's)."),
    max_epochs_per_trial: Optional[int] = _MAX_EPOCHS,
    timeout_hours: Optional[float] = typer.Option(None, "--timeout-hours", help="Wall-clock limit (default: the scenario's)."),
    data: Optional[str] = typer.Option(
        None, "--data", help="sample (bundled), synthetic, or a file/folder path (default: the scenario's, else sample)."
    ),
    folds: Optional[int] = _FOLDS,
    timed: int = typer.Option(5, "--timed", min=1, help="Configurations to time on this machine."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
) -> None:
    """Expected wall time and trial outcomes of a scenario on this machine, before running it."""
    _setup_logging(quiet=True)
    with _user_errors(debug):
        from .plan import make_plan

        overrides = {"n_trials": n_trials, "max_epochs_per_trial": max_epochs_per_trial, "timeout_hours": timeout_hours,
                     "data": {"source": data} if data else None, "evaluation": _walk_forward(folds)}
        config = build_config(scenario, {k: v for k, v in overrides.items() if v is not None})
        progress = lambda line: typer.echo(line, err=True)  # noqa: E731 - stdout stays the plan itself
        for line in make_plan(config, timed_configs=timed, progress=progress).lines():
            typer.echo(line)


@app.command()
def dashboard(
    save_dir: Optional[Path] = typer.Option(None, "--save-dir", help="A study's --save-dir, its study.db (default: none; give this or --storage)."),
    storage: Optional[str] = typer.Option(None, "--storage", help="Storage URL instead of --save-dir (default: none)."),
    port: int = typer.Option(8080, "--port", help="Port on 127.0.0.1."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
) -> None:
    """Live view of a study (running or finished) in optuna-dashboard, on 127.0.0.1 only."""
    with _user_errors(debug):
        from .reporting.dashboard import serve

        serve(save_dir=save_dir, storage=storage, port=port)


@app.command("storage-proxy")
def storage_proxy(
    storage: str = typer.Option(..., "--storage", help="The database: postgresql://... (sqlite:///... for one host)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(13000, "--port", help="Port to listen on (0: any free port)."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
) -> None:
    """Serve a study database to many workers through Optuna's gRPC proxy (workers: --storage grpc://HOST:PORT)."""
    _setup_logging(quiet=True, debug=debug)
    with _user_errors(debug):
        from .interrupts import exit_code_of, raise_on_sigterm
        from .distributed.storage import serve_proxy

        raise_on_sigterm()
        try:
            serve_proxy(storage, host=host, port=port)
        except KeyboardInterrupt as interrupt:
            typer.echo("storage proxy stopped", err=True)
            raise typer.Exit(exit_code_of(interrupt)) from None


@scenarios_app.command("list")
def scenarios_list() -> None:
    """The shipped scenarios: trials, epochs per trial and objectives of each."""
    rows = [("scenario", "trials", "epochs", "objectives")]
    for name in scenario_names():
        config = build_config(name)
        rows.append((name, str(config.n_trials), str(config.max_epochs_per_trial), ", ".join(config.objectives)))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        typer.echo("  ".join([row[0].ljust(widths[0]), row[1].rjust(widths[1]), row[2].rjust(widths[2]), row[3]]))


@scenarios_app.command("show")
def scenarios_show(
    name: str = typer.Argument(..., help="A name from `scenarios list`."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
) -> None:
    """Print a scenario's YAML as shipped."""
    with _user_errors(debug):
        typer.echo(scenario_text(name).rstrip())


# Options that take several values, as the guide writes them: ``--symbols AAPL GOOGL MSFT``.
_LIST_OPTIONS = ("--symbols", "--objectives")
# Commands without positional arguments, where every bare word after such an option is one of its values.
_LIST_COMMANDS = ("optimize", "data")


def join_list_options(args: list[str]) -> list[str]:
    """``--symbols A B --n-trials 3`` -> ``--symbols A,B --n-trials 3`` (click takes one value per flag)."""
    if not args or args[0] not in _LIST_COMMANDS:
        return list(args)
    out: list[str] = []
    for arg in args:
        after_value = len(out) >= 2 and out[-2] in _LIST_OPTIONS and not out[-1].startswith("-")
        if after_value and not arg.startswith("-"):
            out[-1] = f"{out[-1]},{arg}"  # one more value of the option's first one
        else:
            out.append(arg)
    return out


def main(argv: Optional[list[str]] = None) -> None:
    """The console script: click's usage errors (bad flag, bad type) become one ``error:`` line too."""
    from typer.exceptions import TyperException  # the public base of click's usage errors

    args = join_list_options(sys.argv[1:] if argv is None else argv)
    try:
        code = app(args, standalone_mode=False, prog_name="cnn-lstm-hpo")
    except TyperException as error:
        ctx = getattr(error, "ctx", None)
        if type(error).__name__ == "NoArgsIsHelpError" and ctx is not None:  # a bare command: its help
            typer.echo(ctx.get_help())
            sys.exit(0)
        hint = f" (see {ctx.command_path} --help)" if ctx is not None else ""
        message = " ".join(error.format_message().split())  # type: ignore[attr-defined]  # one line
        typer.echo(f"error: {message}{hint}", err=True)
        sys.exit(getattr(error, "exit_code", EXIT_BAD_INPUT))
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
