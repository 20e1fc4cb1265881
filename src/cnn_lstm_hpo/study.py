"""Create or resume an Optuna study and run trials: space -> model -> train -> objectives."""

from __future__ import annotations

import gc
import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from .config import OptimizationConfig, validate_config
from .convergence import front_stall
from .errors import HPOError, StudyFailed
from .distributed.faults import DISK_FULL, INTERRUPTED, RETRY_OF, counted, fault_reason, retry, storage_failed
from .fingerprint import ADDED_LATER, TIME_LIMIT, USER_ATTR as FINGERPRINT
from .fingerprint import completed, fingerprint_differences, study_fingerprint
from . import interrupts, verdict
from .model import HybridCNNLSTM, ModelConfig, model_size_mb
from .objectives import directions, steady_minutes
from .paths import writable_dir
from .monitor import TimeLimitExceeded, TrialMonitor, dominance_check, multi_objective_pruner, single_objective_pruner
from .progress import ProgressLine
from .results import STOP_ATTR, atomic_write_text, trial_record, write_json, write_study_outputs
from .samplers import make_sampler, pruning_caveat, startup_trials
from .space import suggest
from .distributed.storage import check_url_for_workers, close_storage, open_storage, redact, shared_by_processes, write_ahead
from .train import Trainer, resolve_device
from .walk_forward import TrialRun, WalkForward
from .windows import WindowedData, prepare_windows, split_from_loader
from .distributed.workers import (
    OUTPUT_LOCK, SLOT_LOCK, FileLock, fail_dead_local_trials, fail_own_trials, forward_interrupts, spawn_workers,
    this_worker, wait_for, worker_seed,
)

log = logging.getLogger("cnn_lstm_hpo")
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def open_study(config: OptimizationConfig, fingerprint: dict[str, Any] | None = None,
               storage: optuna.storages.BaseStorage | None = None, *, worker_id: int = 0) -> optuna.Study:
    """Create the study or load it by name; refuses one whose objectives or fingerprint differ.

    The config is stored with the study, so ``cnn-lstm-hpo worker`` can join it from anywhere. A
    resumed study keeps its per-trial time limit: where ``config`` did not set one, the study's
    replaces the one derived from this run's budget, in ``config`` and ``fingerprint``.
    """
    url = config.resolved_storage
    storage = storage or open_storage(url, heartbeat_seconds=config.heartbeat_seconds)
    name = config.resolved_study_name
    existing = {s.study_name: s for s in optuna.get_all_study_summaries(storage)}
    if name in existing:
        stored = existing[name].user_attrs.get("objectives")
        if stored is not None and stored != config.objectives:
            raise HPOError(f"study {name!r} in {redact(url)} optimises {stored}, not {config.objectives}; "
                           "use another --study-name or the same objectives")
    study = optuna.create_study(storage=storage, study_name=name, directions=directions(config.objectives),
                                load_if_exists=True)
    if fingerprint is not None:  # first: a refused resume must not write anything into the study
        _check_fingerprint(study, fingerprint, url, config)
    study.set_user_attr("objectives", config.objectives)
    study.set_metric_names(config.objectives)  # Optuna's plots and optuna-dashboard name the axes
    study.set_user_attr("config", config.model_dump(mode="json", exclude={"workers", "threads"}))
    study.pruner = single_objective_pruner(config)
    # A resumed study and each worker must not replay the same random start-up points.
    finished = len(study.get_trials(deepcopy=False, states=FINISHED))
    seed = worker_seed(config.seed, finished, worker_id)
    study.sampler = make_sampler(config.sampler, seed, shared=shared_by_processes(url))
    return study


def _check_fingerprint(study: optuna.Study, current: dict[str, Any], url: str, config: OptimizationConfig) -> None:
    recorded = study.user_attrs.get(FINGERPRINT)
    if recorded is None:  # a new study, or one from before fingerprints: from now on it has one
        study.set_user_attr(FINGERPRINT, current)
        return
    stored = completed(recorded, study.user_attrs.get("config"), current)
    if not config.time_limit_given:  # derived from this run's n_trials and timeout: the study's stands
        config.max_training_time_minutes = current[TIME_LIMIT] = stored[TIME_LIMIT]
    differ = fingerprint_differences(stored, current)
    if differ:
        shown = [f"{k} ({stored.get(k, ADDED_LATER.get(k))!r} -> {current.get(k, ADDED_LATER.get(k))!r})"
                 if k not in ("search_space", "data.digest") else k for k in differ]
        # A setting the study predates (or ran at the value it predates): the value that resumes it.
        before = [f"{k}: {'null' if ADDED_LATER[k] is None else ADDED_LATER[k]}"
                  for k in differ if k in ADDED_LATER and k not in stored]
        hint = f" (here {', '.join(before)})" if before else ""
        raise HPOError(
            f"study {study.study_name!r} in {redact(url)} was run with other settings: {'; '.join(shown)}; "
            f"its trials would not be comparable: resume with the same settings{hint} or use another --study-name"
        )
    if stored != recorded:  # an older study: the fields it lacked, from now on
        study.set_user_attr(FINGERPRINT, stored)


def stored_study_config(url: str, study_name: str, *, save_dir: Path | None = None,
                        threads: int | None = None) -> OptimizationConfig:
    """The configuration a study was started with (stored in it), to join it as one more worker."""
    storage = open_storage(url, create=False)
    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
        raw = study.user_attrs.get("config")
    except KeyError:
        names = optuna.get_all_study_names(storage)
        raise HPOError(f"no study {study_name!r} in {redact(url)}; it holds: {', '.join(names) or 'none'}") from None
    finally:
        close_storage(storage)
    if raw is None:
        raise HPOError(f"study {study_name!r} stores no configuration (not started by cnn-lstm-hpo optimize); run optimize for it")
    overrides = {"storage": url, "study_name": study_name, "workers": 1, "threads": threads}
    if save_dir is not None:
        overrides["save_dir"] = str(save_dir)
    return validate_config({**raw, **overrides}, f"study {study_name!r}")


def all_failed(study: optuna.Study) -> str | None:
    """A one-line account when every finished trial failed (none completed or was pruned), else None."""
    finished = study.get_trials(deepcopy=False, states=FINISHED)
    if not finished or any(t.state != TrialState.FAIL for t in finished):
        return None
    reasons = Counter(
        t.user_attrs.get("fail_reason") or t.system_attrs.get("fail_reason") or "no reason recorded" for t in finished
    )
    reason, count = reasons.most_common(1)[0]
    first_line = str(reason).splitlines()[0] if str(reason).strip() else "no reason recorded"
    return f"all {len(finished)} trials failed; most common reason ({count} of {len(finished)}): {first_line}"


class MultiObjectiveOptimizer:
    """The guide's optimizer: ``MultiObjectiveOptimizer(config, data_loaders=(train, val, test)).optimize()``.

    Without ``data_loaders`` the data comes from ``config.data`` (bundled sample by default).
    """

    def __init__(self, config: OptimizationConfig, data_loaders: tuple[Any, Any, Any] | None = None, *,
                 explicit_symbols: bool = False, progress: bool = True, worker_id: int = 0,
                 write_outputs: bool = True) -> None:
        if data_loaders is not None and config.workers > 1:
            raise HPOError("--workers > 1 reads the data from the config: loaders cannot be shared with worker processes")
        self.config = config
        self.worker_id = worker_id  # 0: the process the user started; 1..N: workers
        self.write_outputs = write_outputs  # spawned workers leave the study-level files to their parent
        self.save_dir = Path(config.save_dir)
        self.device = resolve_device(config.training.device)
        self.progress = progress
        self.notice: str | None = None
        walk_forward = config.evaluation.scheme == "walk_forward"
        if data_loaders is not None:
            if walk_forward:
                raise HPOError("evaluation.scheme walk_forward cuts folds from the bars of config.data: data_loaders need scheme holdout")
            train, val, test = (split_from_loader(loader) for loader in data_loaders)
            num_classes = int(max(train.y_class.max(), val.y_class.max())) + 1
            self.data = WindowedData(train, val, test, scaler=None, num_classes=max(num_classes, 2))
        else:
            self.data, self.notice = prepare_windows(
                config.data, config.symbols, explicit_symbols=explicit_symbols, evaluation=config.evaluation
            )
            if self.notice:
                log.warning("note: %s", self.notice)
        caveat = pruning_caveat(config.sampler, config.pruning.enabled)
        if caveat and write_outputs:  # once, from the process the user started (not workers or replays)
            log.warning("note: %s", caveat)
        if "sharpe" in config.objectives and not verdict.trades(config):
            raise HPOError(f"objective 'sharpe' needs a target that trades ({', '.join(verdict.TRADING_TARGETS)}), "
                           f"not {verdict.target_of(config)!r}")
        self.fingerprint = study_fingerprint(config, self.data)
        self.study: optuna.Study | None = None
        # Set when this run found the study already at n_trials: how many trials had finished.
        self.nothing_to_do: int | None = None
        self.pruner = multi_objective_pruner(config)
        self.dominance = dominance_check(config)
        self.others_may_finish = shared_by_processes(config.resolved_storage)  # trials completed meanwhile elsewhere
        self.full_disk: Exception | None = None  # what ended a trial on a full disk: the run stops after it
        self.walk_forward = WalkForward(self) if self.data.folds else None

    # --- the guide's per-trial API -------------------------------------------------------
    def suggest_hyperparameters(self, trial: optuna.Trial) -> dict[str, Any]:
        return suggest(trial, self.config.search_space)

    def create_model_config(self, params: dict[str, Any]) -> ModelConfig:
        return ModelConfig.from_params(params, n_features=self.data.n_features, num_classes=self.data.num_classes)

    # --- what benchmarks/replay.py replaces: the model, its training, the clock ------------------
    def build_model(self, params: dict[str, Any]) -> torch.nn.Module:
        return HybridCNNLSTM(self.create_model_config(params))

    def make_trainer(self, model: torch.nn.Module, params: dict[str, Any], seed: int, data: WindowedData | None = None) -> Trainer:
        """On ``data`` (a walk-forward fold) or the holdout splits."""
        data = self.data if data is None else data
        return Trainer(model, data.train, data.val, params, self.config.training, device=self.device, seed=seed)

    def clock(self) -> float:
        """Seconds, for the run's timeout."""
        return time.monotonic()

    def _over_time(self, minutes: float) -> float:
        """The training-time constraint value: <= 0 is feasible, as Optuna defines it."""
        limit = self.config.max_training_time_minutes
        return minutes - limit if limit is not None else 0.0

    def objective(self, trial: optuna.Trial) -> list[float]:
        try:
            return self._run_trial(trial)
        except optuna.TrialPruned:
            raise
        except Exception as error:  # diverged, out of memory, a failure after training: FAIL with its reason, the study goes on
            trial.set_user_attr("fail_reason", f"{type(error).__name__}: {error}")
            raise

    def _run_trial(self, trial: optuna.Trial) -> list[float]:
        cfg = self.config
        params = self.suggest_hyperparameters(trial)
        # The initial weights too: same params, same trial (a retry is the trial it retries).
        seed = cfg.seed + trial.user_attrs.get(RETRY_OF, trial.number)
        torch.manual_seed(seed)
        model = self.build_model(params)
        size = model_size_mb(model)
        trial.set_user_attr("model_size_mb", size)
        # Checked before any training: an oversized model costs no training time. The constraint
        # is recorded so the sampler learns the infeasible region; the trial ends PRUNED.
        limit = cfg.max_model_size_mb
        trial.set_constraint("model_size_mb", size - limit if limit is not None else 0.0)
        if limit is not None and size > limit:
            trial.set_user_attr("stop_reason", f"model size {size:.1f} MB > max_model_size_mb {limit}")
            raise optuna.TrialPruned(f"model size {size:.1f} MB exceeds {limit} MB")
        monitor = TrialMonitor(trial, cfg, size, self.pruner, self.dominance, others_may_finish=self.others_may_finish)
        try:
            if self.walk_forward is not None:
                run = self.walk_forward.run(trial, params, model, monitor, seed)
            else:
                run = self._holdout_run(model, params, monitor, seed)
        except BaseException as stop:
            # However it ends (interrupted too): how, and the whole history.
            if isinstance(stop, TimeLimitExceeded):
                trial.set_constraint("training_time_minutes", self._over_time(stop.projected_minutes))
            elif isinstance(stop, optuna.TrialPruned):
                # What it would have trained to complete: a trial pruned while over the limit was infeasible.
                trial.set_constraint("training_time_minutes", self._over_time(monitor.projected))
            monitor.save()
            raise
        monitor.save()
        trial.set_constraint("training_time_minutes", self._over_time(run.limited_minutes))
        trial.set_user_attr("val_metrics", run.val_metrics)
        trial.set_user_attr("constant_predictor", run.constant_predictor)
        trial.set_user_attr("training", run.training)
        values = {"accuracy": run.score, "training_time": run.minutes, "model_size": size}
        values.update(self._record_signal(trial, run.trainer))
        return [values[name] for name in cfg.objectives]

    def _holdout_run(self, model: torch.nn.Module, params: dict[str, Any], monitor: TrialMonitor, seed: int) -> TrialRun:
        trainer = self.make_trainer(model, params, seed)
        result = trainer.fit(self.config.max_epochs_per_trial, on_epoch=monitor, on_probe=monitor.probe)
        best = result.best.val
        steady = steady_minutes(monitor.history)
        minutes = steady if self.config.training.time_measure == "steady" else monitor.minutes()
        return TrialRun(
            score=best.composite, val_metrics=best.to_dict(), constant_predictor=best.constant_predictor,
            minutes=minutes, limited_minutes=minutes,
            training={
                "epochs_trained": len(result.epochs), "best_epoch": result.best_epoch, "stopped_early": result.stopped_early,
                "cpu_minutes": result.cpu_seconds / 60, "wall_minutes": result.wall_seconds / 60, "steady_minutes": steady,
            },
            trainer=trainer,
        )

    def _record_signal(self, trial: optuna.Trial, trainer: Trainer) -> dict[str, float]:
        """The best weights' validation predictions (for the paired test against the baselines) and,
        for targets that trade, their trading evaluation; returns the ``sharpe`` objective when it applies.
        Under walk-forward ``trainer`` is the most recent fold's: its validation windows are the holdout's
        bars (in the same order), scaled as that fold's model saw them (rolling: by its own scaler)."""
        probs, _ = trainer.predict(trainer.val)
        pred = probs.argmax(axis=1)
        trial.set_user_attr(verdict.PREDICTIONS_ATTR, verdict.encode(pred))
        if not verdict.trades(self.config):
            return {}
        record = verdict.trading_record(self.config, self.data, self.data.val, pred, with_returns=True)
        trial.set_user_attr(verdict.TRADING_ATTR, record)
        return {"sharpe": record["strategy"]["sharpe"]}

    # --- the study --------------------------------------------------------------------------
    def _write_trial_result(self, study: optuna.Study, trial: FrozenTrial) -> None:
        write_json(self.save_dir / f"trial_{trial.number}_result.json", trial_record(trial, self.config.objectives))

    def optimize(self) -> optuna.Study:
        """Run until ``n_trials`` trials have finished in the study (counting earlier runs and every
        worker's trials) or the run's timeout; with ``workers`` > 1, in that many processes."""
        cfg = self.config
        writable_dir(self.save_dir)  # a file or a read-only folder: one line, before anything is written
        url = cfg.resolved_storage
        check_url_for_workers(url, cfg.workers)
        if cfg.torch_threads:
            torch.set_num_threads(cfg.torch_threads)
        storage = self.storage = open_storage(url, heartbeat_seconds=cfg.heartbeat_seconds)
        try:
            return self._optimize(storage, url)
        except HPOError:
            raise
        except Exception as error:
            if fault_reason(error) is None:  # not a full disk nor a storage error
                raise
            raise self._fault_error(error, url) from None
        finally:
            close_storage(storage)  # the engine reconnects if the returned study is used again

    def _optimize(self, storage: optuna.storages.BaseStorage, url: str) -> optuna.Study:
        cfg = self.config
        self.full_disk = None
        study = self.study = open_study(cfg, self.fingerprint, storage, worker_id=self.worker_id)
        write_ahead(storage, url)
        if study.user_attrs.get(verdict.STUDY_ATTR) is None:  # once per study: the same data on every resume
            study.set_user_attr(verdict.STUDY_ATTR, verdict.study_baselines(cfg, self.data))
        if study.user_attrs.get(STOP_ATTR):  # an earlier run stopped on a stalled front; this one goes on
            study.set_user_attr(STOP_ATTR, None)
        if self.write_outputs:
            atomic_write_text(self.save_dir / "resolved_config.yaml", cfg.to_yaml())
        interrupts.raise_on_sigterm()
        try:
            if cfg.workers > 1:
                self._run_workers(study, url)
            else:
                self._run_trials(study)
        except KeyboardInterrupt as interrupt:  # Ctrl-C or SIGTERM: the books first, then exit
            interrupts.ignore_further_signals()
            fail_dead_local_trials(study, storage)
            self._write_unrecorded_results(study)
            if self.write_outputs:
                self._write_study_files(study, analysis=True)
            log.warning("interrupted (exit %d): the running trial is recorded as failed and runs again on resume",
                        interrupts.exit_code_of(interrupt))
            raise
        # A finished study run again: its files are there already (`analyze` rebuilds them).
        if self.write_outputs and not (self.nothing_to_do is not None and (self.save_dir / "report.html").exists()):
            self._write_study_files(study, analysis=True)
        failure = all_failed(study)
        if failure:
            raise StudyFailed(failure)
        return study

    def _fault_error(self, error: BaseException, url: str) -> HPOError:
        """The one line that ends a run a fault (``error``: a full disk, a storage error) stopped; its
        running trial is recorded as failed for that reason and queued again, where the storage can
        still write."""
        reason = fault_reason(error)
        assert reason is not None
        if self.study is not None:
            try:
                fail_own_trials(self.study, self.storage, reason)
            except Exception:  # noqa: BLE001 - it cannot: the next run's sweep of dead workers fails and retries it
                pass
        resume = f"run the same command again to resume study {self.config.resolved_study_name!r}"
        where = f"storage {redact(url)}" if storage_failed(error) else f"save dir {self.save_dir}"
        if reason.startswith(DISK_FULL):
            return HPOError(f"{reason} ({where}); free space, then {resume}")
        return HPOError(f"{reason} ({where}); when it answers again, {resume}")

    def _run_trials(self, study: optuna.Study) -> None:
        """Trials one after another until the study has ``n_trials`` or this run's time is up."""
        # What exists now (imports, data) lives for the whole run: kept out of the collection that
        # follows every trial, which otherwise walks the whole heap: ~0.3 s a trial with torch
        # loaded. Each trial's survivors (the study's records) are frozen after it too, so that it
        # walks one trial's objects, not the study's (9 ms a trial by 1000 trials). Unfrozen after,
        # for API callers.
        gc.collect()
        gc.freeze()
        try:
            with interrupts.deferred():
                self._trial_loop(study)
        finally:
            gc.unfreeze()

    def _trial_loop(self, study: optuna.Study) -> None:
        cfg = self.config
        started = self.clock()
        callbacks: list[Callable[[optuna.Study, FrozenTrial], None]] = [self._write_trial_result]
        if self.progress:
            callbacks.append(ProgressLine(cfg.n_trials, cfg.objectives))
        first = True
        while cfg.timeout is None or self.clock() - started < cfg.timeout:
            interrupts.check()
            with FileLock(self.save_dir / SLOT_LOCK) as slot:
                trials = study.get_trials(deepcopy=False)
                if fail_dead_local_trials(study, self.storage, trials):  # and queued them again: read anew
                    trials = study.get_trials(deepcopy=False)
                if sum(t.state in (*FINISHED, TrialState.RUNNING) for t in counted(trials)) >= cfg.n_trials:
                    finished = sum(t.state in FINISHED for t in counted(trials))
                    if first and finished >= cfg.n_trials:  # not one still running elsewhere
                        self.nothing_to_do = finished
                    return
                first = False
                if self._front_stalled(study, trials):
                    return
                # The slot is held until the trial exists (the objective's first step releases it).
                study.optimize(lambda trial: self._objective_in_slot(study, trial, slot),
                               n_trials=1, callbacks=callbacks, catch=(Exception,))
            if self.full_disk is not None:  # the next trial would meet it too
                raise self._fault_error(self.full_disk, cfg.resolved_storage)
            gc.collect()  # frees the finished trial's tensors held in cycles (a pruned trial's traceback)
            gc.freeze()

    def _front_stalled(self, study: optuna.Study, trials: list[FrozenTrial]) -> bool:
        conv = self.config.convergence
        if conv.patience is None:
            return False
        stall = front_stall(
            trials, study.directions, conv.patience, conv.min_improvement, after=startup_trials(self.config.sampler)
        )
        if stall is not None:
            log.info("stopping: %s (convergence.min_improvement %.3g %%)", stall.describe(), 100 * conv.min_improvement)
            study.set_user_attr(STOP_ATTR, f"Stopped before n_trials (convergence.patience {stall.trials}): {stall.describe()}")
        return stall is not None

    def _objective_in_slot(self, study: optuna.Study, trial: optuna.Trial, slot: FileLock) -> list[float]:
        slot.release()
        # At once, not held with the trial's first writes: if this process dies before they reach the
        # database, the sweep of dead workers' trials (workers.py) still finds this one by it.
        trial.set_user_attr("worker", this_worker())
        try:
            return self.objective(trial)
        except KeyboardInterrupt:
            interrupts.ignore_further_signals()
            trial.set_user_attr("fail_reason", INTERRUPTED)
            retry(study, trial.number, trial.params, trial.user_attrs, INTERRUPTED)
            raise
        except Exception as error:
            reason = fault_reason(error)
            if reason is not None:  # not the configuration's doing: it runs again
                if reason.startswith(DISK_FULL):
                    self.full_disk = error
                trial.set_user_attr("fail_reason", reason)
                retry(study, trial.number, trial.params, trial.user_attrs, reason)
            raise

    def _run_workers(self, study: optuna.Study, url: str) -> None:
        """This process is worker 0 and runs trials too; ``workers - 1`` more processes join it."""
        cfg = self.config
        log.info("%d workers x %d torch threads on %s", cfg.workers, cfg.threads_per_worker, redact(url))
        processes = spawn_workers(cfg.workers - 1, lambda i: [
            "worker", "--storage", url, "--study-name", study.study_name, "--save-dir", str(self.save_dir),
            "--threads", str(cfg.threads_per_worker), "--worker-id", str(i), "--no-outputs", "--quiet",
        ])
        with forward_interrupts(processes):
            self._run_trials(study)
            wait_for(processes)
        fail_dead_local_trials(study, self.storage)  # a worker killed mid-trial leaves nothing RUNNING
        failed = [p.returncode for p in processes if p.returncode not in (0, 1)]  # 1: every trial failed
        if failed:
            log.warning("warning: %d worker(s) ended with exit codes %s", len(failed), failed)

    def _write_unrecorded_results(self, study: optuna.Study) -> None:
        """Result files of this save dir's finished trials that have none (an interrupted trial)."""
        for trial in study.get_trials(deepcopy=False, states=FINISHED):
            if not (self.save_dir / f"trial_{trial.number}_result.json").exists():
                self._write_trial_result(study, trial)

    def _write_study_files(self, study: optuna.Study, *, analysis: bool) -> None:
        # Under a lock, read from storage inside it: whoever writes last writes the newest state.
        with FileLock(self.save_dir / OUTPUT_LOCK):
            write_study_outputs(study, self.config.objectives, self.config.objective_weights, self.save_dir)
            if analysis:
                from .reporting.report import write_analysis_outputs  # lazy: matplotlib and plotly load only here

                write_analysis_outputs(study, self.save_dir, config=self.config)  # never raises

    def retrain_best_models(self, top_k: int = 3, *, epochs: int | None = None, seeds: int | None = None,
                            register: bool = True, registry_uri: str | None = None) -> list[dict[str, Any]]:
        """The guide's last step: retrain the top-k configurations, test once, save (see retrain.py).

        Returns one record per model (``model_path``, ``hyperparameters``, ``test_results``, ...),
        as written to ``retrained_models_results.json``.
        """
        from .deployment.retrain import DEFAULT_EPOCHS, DEFAULT_SEEDS, RetrainSettings, retrain_top_k

        study = self.study or open_study(self.config, self.fingerprint)
        settings = RetrainSettings(top_k=top_k, epochs=DEFAULT_EPOCHS if epochs is None else epochs,
                                   seeds=DEFAULT_SEEDS if seeds is None else seeds, register=register,
                                   registry_uri=registry_uri)
        self.retrain_report = retrain_top_k(self.config, study, self.data, settings)
        for line in self.retrain_report.lines:
            log.info("%s", line)
        if self.retrain_report.leak:
            log.error("the shuffled-label control beat the baseline: the pipeline leaks (see %s)", self.retrain_report.path)
        if self.retrain_report.registry_error:
            log.error("%s", self.retrain_report.registry_error)
        return self.retrain_report.results["models"]
