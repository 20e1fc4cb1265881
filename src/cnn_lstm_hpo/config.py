"""One validated config: the guide's fields, data/training settings and the search space.

Scenarios are YAML files in the guide's format (``name: {field: value}``) shipped in
``scenarios/``; a user file may be a named block or a flat mapping. Every key is checked:
unknown keys and wrong types fail with the dotted path of the bad field.
"""

from __future__ import annotations

import datetime as dt
import os
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from .errors import HPOError
from .distributed.storage import default_url
from .space import DEFAULT_SEARCH_SPACE, PARAM_NAMES, ParamSpec, check_spec

Objective = Literal["accuracy", "training_time", "model_size", "sharpe"]
OBJECTIVES: tuple[str, ...] = ("accuracy", "training_time", "model_size")  # the default set; sharpe on request
DEFAULT_WEIGHTS = {"accuracy": 0.6, "training_time": 0.2, "model_size": 0.2, "sharpe": 0.6}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Section):
    source: str = "sample"  # "sample" (bundled real data), "synthetic", or a path
    start: dt.date | None = None
    end: dt.date | None = None
    sequence_length: int = Field(30, ge=2)
    horizon: int = Field(1, ge=1)  # bars ahead: the label's outcome spans bars t+1..t+horizon
    # What the model learns (targets.py): the forward direction, the triple-barrier outcome, or
    # whether realized volatility over the horizon exceeds its trailing level.
    target: Literal["direction", "triple_barrier", "volatility"] = "direction"
    # direction: 2 down/up, 3 down/flat/up around direction_threshold; triple_barrier: 2 up/down
    # (the vertical barrier by the sign of the return), 3 stop-loss/vertical/profit-take.
    num_classes: Literal[2, 3] = 2
    direction_threshold: float = Field(0.0, ge=0.0)
    vol_window: int = Field(20, ge=2)  # triple_barrier, volatility: bars of the trailing volatility
    profit_take: float = Field(1.0, gt=0)  # triple_barrier: barrier multiples of the trailing volatility
    stop_loss: float = Field(1.0, gt=0)
    val_fraction: float = Field(0.15, gt=0.0, lt=0.5)
    test_fraction: float = Field(0.15, gt=0.0, lt=0.5)
    embargo_bars: int = Field(5, ge=0)  # gap between splits, on top of windows never straddling
    # Aggregate every symbol's bars to this interval ("1D", "1h", "15min"); needed to pool symbols
    # whose bars come at different frequencies. None: use the bars as they are.
    resample: str | None = None
    cache_dir: Path | None = None  # --data yfinance keeps its Parquet files here (default ~/.cache/...)

    @field_validator("resample")
    @classmethod
    def _interval(cls, value: str | None) -> str | None:
        if value is None:
            return value
        import pandas as pd  # only to check the interval as pandas will read it

        try:
            ok = pd.Timedelta(value) > pd.Timedelta(0)
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f"must be an interval such as '1D', '1h' or '15min', but got {value!r}")
        return value

    @model_validator(mode="after")
    def _check(self) -> DataConfig:
        if self.start and self.end and self.start >= self.end:
            raise ValueError(f"start must be before end, but got start={self.start} end={self.end}")
        if self.target == "volatility" and self.num_classes != 2:
            raise ValueError("the volatility target has 2 classes (above or below the trailing level): set num_classes: 2")
        if self.target == "volatility" and self.horizon < 2:
            raise ValueError("the volatility target needs horizon >= 2 (the volatility of one return is undefined)")
        if self.target == "direction" and self.num_classes == 3 and self.direction_threshold <= 0:
            raise ValueError("num_classes=3 needs direction_threshold > 0 to define 'flat'")
        return self


class TrainingConfig(_Section):
    early_stopping_patience: int = Field(5, ge=1)
    gradient_clip: float = Field(1.0, gt=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # Balanced accuracy: a constant predictor scores 1/num_classes whatever the class balance
    # (benchmarks/metric_choice.py; README, Objectives). "accuracy" is the guide's.
    classification_metric: Literal["accuracy", "balanced_accuracy", "mcc"] = "balanced_accuracy"
    # Wall time is the guide's measure; CPU time is steadier on shared hosts; steady: the median CPU
    # time of the epochs after the first (warm-up) times the epochs trained, one torch thread a trial
    # (objectives.steady_minutes): the same on a busy machine as on an idle one.
    time_measure: Literal["wall", "cpu", "steady"] = "wall"
    classification_weight: float = Field(0.7, ge=0)
    regression_weight: float = Field(0.3, ge=0)

    @model_validator(mode="after")
    def _check(self) -> TrainingConfig:
        if self.classification_weight + self.regression_weight <= 0:
            raise ValueError("classification_weight + regression_weight must be > 0")
        return self


class SamplerConfig(_Section):
    # Optuna's samplers, seeded; all read the constraints recorded with trial.set_constraint.
    type: Literal["tpe", "gp", "nsga2", "random"] = "tpe"
    n_startup_trials: int = Field(10, ge=0)  # tpe, gp: random trials before the model takes over
    population_size: int = Field(50, ge=2)  # nsga2
    # tpe: sample the parameters jointly (True) or one by one (False); null: Optuna's default (one
    # by one for several objectives, jointly for one). Jointly: one split of the trials a trial,
    # not one a parameter: 2.3x less framework time at 1000 trials, the same hypervolume in the
    # replay (docs/benchmarks.md, P4).
    multivariate: bool | None = True


class PruningConfig(_Section):
    enabled: bool = True
    min_resource: int = Field(10, ge=1)  # the guide's HyperbandPruner defaults; fitted to the epoch budget
    reduction_factor: int = Field(3, ge=2)
    # hyperband: brackets of successive halving, from the most aggressive (rungs from the minimum
    # resource) to the most patient; asha: the most aggressive bracket alone (Optuna's
    # SuccessiveHalvingPruner for one objective), fewer epochs for a riskier front.
    strategy: Literal["hyperband", "asha"] = "hyperband"
    # What a rung compares: the composite validation score at the first rung predicts the final
    # score far better than the validation loss (benchmarks/pruning_efficiency.py).
    metric: Literal["val_loss", "val_score"] = "val_score"
    score_tolerance: float = Field(0.01, ge=0)  # "a little lower", in the metric's units
    # Also stop a trial once even its projected final point is dominated by a completed feasible
    # trial (pruning.DominanceCheck). The accuracy it may still gain: this quantile of the gains the
    # study's completed trials made after the same epoch (1: the largest seen); null: off. The
    # median: 2.9x fewer epochs at the same front, replayed and confirmed on a real run
    # (docs/benchmarks.md, "P1 with the dominance check").
    dominance_quantile: float | None = Field(0.5, ge=0, le=1)


class TradingConfig(_Section):
    # How predictions become positions for the trading evaluation (trading.py) and the sharpe objective.
    positions: Literal["long_short", "long_flat"] = "long_short"
    cost_bps: float = Field(5.0, ge=0)  # basis points per unit of turnover


class ConvergenceConfig(_Section):
    # Stop the study once the last `patience` finished trials grew the feasible front's
    # hypervolume by at most `min_improvement` of it (convergence.py); null: run all n_trials.
    patience: int | None = Field(None, ge=1)
    min_improvement: float = Field(0.001, ge=0)


class EvaluationConfig(_Section):
    # holdout: one validation period before the test split; walk_forward: `folds` successive
    # validation periods of the holdout's length before it (windows.fold_cuts), each fold training
    # on everything before its period (expanding) or on a span as long as the oldest fold's (rolling).
    scheme: Literal["holdout", "walk_forward"] = "holdout"
    folds: int = Field(4, ge=2)
    window: Literal["expanding", "rolling"] = "expanding"


class OptimizationConfig(_Section):
    scenario: str = "custom"
    n_trials: int = Field(1000, ge=1)
    max_epochs_per_trial: int = Field(50, ge=1)
    objectives: list[Objective] = Field(default_factory=lambda: list(OBJECTIVES), min_length=1)
    objective_weights: dict[Objective, float] = Field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    symbols: list[str] | None = None  # None: every symbol the data source has
    timeout_hours: float | None = Field(48.0, gt=0)
    max_model_size_mb: float | None = Field(500.0, gt=0)
    # Per trial (walk-forward: per fold, so the same configurations fit under either scheme). Unset:
    # min(120, the study's time budget per trial), so that a few huge configurations cannot eat a
    # short study's budget; null: no limit. A study keeps the limit it started with
    # (study.open_study): an unset one is not derived again from a resume's budget.
    max_training_time_minutes: float | None = Field(120.0, gt=0)
    pruning_warmup_steps: int = Field(10, ge=0)
    pruning_interval_steps: int = Field(1, ge=1)
    seed: int = Field(42, ge=0, lt=2**31)  # numpy/Optuna seeds must be >= 0; later trials add their number
    save_dir: Path = Path("hyperopt_results")
    storage: str | None = None  # SQLAlchemy URL or journal:///path; default: see storage.default_url
    # Worker processes on this machine sharing the study, and torch threads in each (None: cores / workers).
    workers: int = Field(1, ge=1)
    threads: int | None = Field(None, ge=1)
    heartbeat_seconds: int = Field(60, ge=1)  # PostgreSQL, SQLite on a network disk: a trial silent for 3 beats is failed
    study_name: str | None = Field(None, min_length=1, max_length=512)  # default: the scenario name; 512: Optuna's column
    data: DataConfig = Field(default_factory=DataConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    sampler: SamplerConfig = Field(default_factory=SamplerConfig)
    pruning: PruningConfig = Field(default_factory=PruningConfig)
    convergence: ConvergenceConfig = Field(default_factory=ConvergenceConfig)
    trading: TradingConfig = Field(default_factory=TradingConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    search_space: dict[str, ParamSpec] = Field(default_factory=dict, validate_default=True)
    # Whether max_training_time_minutes was given (scenario, file, override) rather than left to its
    # default: decided at the first validation, not again when a field is assigned later.
    _time_limit_given: bool | None = PrivateAttr(None)

    @field_validator("objectives")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"objectives must not repeat, but got {value}")
        return value

    @field_validator("search_space", mode="before")
    @classmethod
    def _merge_defaults(cls, value: Any) -> Any:
        # A scenario overrides single parameters; the rest keep the guide's ranges.
        if not isinstance(value, dict):
            return value
        unknown = sorted(set(value) - set(PARAM_NAMES))
        if unknown:
            raise ValueError(f"unknown hyperparameter {unknown[0]!r}; known: {', '.join(PARAM_NAMES)}")
        return {**DEFAULT_SEARCH_SPACE, **value}

    @field_validator("search_space")
    @classmethod
    def _check_space(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name, spec in value.items():
            problem = check_spec(name, spec)
            if problem:
                raise ValueError(f"{name}: {problem}")
        return value

    @model_validator(mode="after")
    def _auto_time_limit(self) -> OptimizationConfig:
        if self._time_limit_given is None:
            self._time_limit_given = "max_training_time_minutes" in self.model_fields_set
        if "max_training_time_minutes" not in self.model_fields_set and self.timeout_hours is not None:
            # Each trial's share of the study's budget: n_trials then fit timeout_hours even if every
            # trial used its whole limit. (4 x the share let a few large models take most of a short
            # study: quick_test replayed at 64 min instead of 32; docs/benchmarks.md, P5.)
            fair_share = min(120.0, self.timeout_hours * 60 / self.n_trials)
            # Set without re-validating (validate_assignment would call this validator again); four
            # significant digits, so that a tiny budget's limit is small, not 0.
            self.__dict__["max_training_time_minutes"] = float(f"{fair_share:.4g}")
            self.model_fields_set.add("max_training_time_minutes")
        return self

    @property
    def timeout(self) -> float | None:
        """Overall time limit in seconds (the guide's ``config.timeout``)."""
        return None if self.timeout_hours is None else self.timeout_hours * 3600

    @timeout.setter
    def timeout(self, seconds: float | None) -> None:
        self.timeout_hours = None if seconds is None else seconds / 3600

    @property
    def time_limit_given(self) -> bool:
        """max_training_time_minutes was set by the user, not derived from the budget or defaulted."""
        return bool(self._time_limit_given)

    @property
    def resolved_study_name(self) -> str:
        return self.study_name or self.scenario

    @property
    def dominance_check_on(self) -> bool:
        """pruning.dominance_quantile applies: pruning on, several objectives (one: Optuna's pruners),
        none of them sharpe (known only once a trial ends, it cannot be projected from its epochs)."""
        return (self.pruning.enabled and self.pruning.dominance_quantile is not None and len(self.objectives) > 1
                and "sharpe" not in self.objectives)

    @property
    def resolved_storage(self) -> str:
        return self.storage or default_url(self.save_dir, self.workers)

    @property
    def threads_per_worker(self) -> int:
        """Workers x threads stays within the cores, so workers do not slow each other down. The
        steady time measure runs one thread a trial: threads waiting on each other spin and count as
        CPU time, the more so on a busy machine (benchmarks/steady_time.py); --workers uses the cores."""
        if self.threads:
            return self.threads
        return 1 if self.training.time_measure == "steady" else max(1, (os.cpu_count() or 1) // self.workers)

    @property
    def torch_threads(self) -> int | None:
        """The torch threads a run sets, or None to leave torch's default (one process, nothing asked)."""
        if self.threads or self.workers > 1 or self.training.time_measure == "steady":
            return self.threads_per_worker
        return None

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def _validated(model: type[_Section], raw: dict[str, Any], source: str) -> Any:
    """``raw`` validated as ``model``; the first problem as an HPOError naming its dotted path."""
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        first = error.errors()[0]
        path = ".".join(str(p) for p in first["loc"] if not str(p).startswith("function-"))
        # Discriminated unions add the tag to the path (search_space.lr.loguniform.low): keep it readable.
        where = f"{path}: " if path else ""
        raise HPOError(f"invalid config ({source}): {where}{first['msg'].removeprefix('Value error, ')}") from None


def validate_config(raw: dict[str, Any], source: str) -> OptimizationConfig:
    return _validated(OptimizationConfig, raw, source)


def validate_data_config(raw: dict[str, Any]) -> DataConfig:
    return _validated(DataConfig, raw, "data")


def scenario_names() -> list[str]:
    folder = resources.files("cnn_lstm_hpo") / "scenarios"
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def scenario_text(name: str) -> str:
    if name not in scenario_names():
        raise HPOError(f"unknown scenario {name!r}; available: {', '.join(scenario_names())}")
    return (resources.files("cnn_lstm_hpo") / "scenarios" / f"{name}.yaml").read_text()


def _read_yaml(text: str, source: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        raise HPOError(f"cannot parse YAML {source}{line}: {getattr(error, 'problem', error)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise HPOError(f"{source}: expected a mapping of config fields, got {type(data).__name__}")
    return data


def _unwrap_named(data: dict[str, Any], default_name: str) -> tuple[str, dict[str, Any]]:
    """The guide's format nests the fields under the scenario name; a flat mapping is also fine."""
    if len(data) == 1:
        (key, body), = data.items()
        if key not in OptimizationConfig.model_fields and isinstance(body, dict):
            return str(key), body
    return default_name, data


def load_scenario(name_or_path: str) -> dict[str, Any]:
    """Raw (unvalidated) fields of a shipped scenario or a user YAML file, with ``scenario`` set."""
    path = Path(name_or_path)
    if path.is_dir():
        raise HPOError(f"scenario {name_or_path} is a folder, not a YAML file or a scenario name")
    if name_or_path.endswith((".yaml", ".yml")) or path.is_file():
        if not path.is_file():
            raise HPOError(f"scenario file not found: {name_or_path}")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
            raise HPOError(f"cannot read scenario file {name_or_path}: {reason}") from None
        name, body = _unwrap_named(_read_yaml(text, str(path)), path.stem)
        source = str(path)
    else:
        name, body = _unwrap_named(_read_yaml(scenario_text(name_or_path), name_or_path), name_or_path)
        source = f"scenario {name_or_path}"
    return {**body, "scenario": body.get("scenario", name), "_source": source}


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and key != "objective_weights":
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def build_config(scenario: str = "default", overrides: dict[str, Any] | None = None) -> OptimizationConfig:
    """Scenario (name or YAML path) + overrides (nested dicts allowed) -> validated config.

    An override of None sets the field to None (e.g. ``timeout_hours=None``: no time limit).
    """
    raw = load_scenario(scenario)
    source = raw.pop("_source")
    return validate_config(_deep_merge(raw, overrides or {}), source)


def create_optimization_config(**overrides: Any) -> OptimizationConfig:
    """The guide's entry point: the default scenario with any field overridden.

    >>> config = create_optimization_config(n_trials=20, objectives=["accuracy", "model_size"])
    """
    scenario = overrides.pop("scenario", "default")
    return build_config(scenario, overrides)
