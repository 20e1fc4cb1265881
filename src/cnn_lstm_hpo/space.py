"""The search space as data (the guide's format) and how one trial samples it."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

import optuna
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Choice = Union[bool, int, float, str, None, list[int]]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Range(_Spec):
    @model_validator(mode="after")
    def _check(self) -> _Range:
        if self.low > self.high:
            raise ValueError(f"low must be <= high, but got low={self.low} > high={self.high}")
        return self


class LogUniform(_Range):
    type: Literal["loguniform"]
    low: float
    high: float

    @model_validator(mode="after")
    def _check(self) -> LogUniform:
        if self.low <= 0:
            raise ValueError(f"loguniform needs low > 0, but got low={self.low}")
        return super()._check()


class Uniform(_Range):
    type: Literal["uniform"]
    low: float
    high: float


class IntRange(_Range):
    type: Literal["int"]
    low: int
    high: int


class Categorical(_Spec):
    type: Literal["categorical"]
    choices: list[Choice]

    @field_validator("choices", mode="before")
    @classmethod
    def _numbers_from_yaml(cls, value: Any) -> Any:
        # YAML 1.1 reads 1e-3 (no dot) as a string; a number was meant.
        if isinstance(value, list):
            return [_maybe_float(v) for v in value]
        return value

    @model_validator(mode="after")
    def _check(self) -> Categorical:
        if not self.choices:
            raise ValueError("categorical needs at least one choice, but got an empty list")
        return self


def _maybe_float(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


ParamSpec = Annotated[Union[LogUniform, Uniform, IntRange, Categorical], Field(discriminator="type")]

# The guide's ranges; batch size, optimizer and scheduler complete its "training dynamics".
DEFAULT_SEARCH_SPACE: dict[str, dict[str, Any]] = {
    "learning_rate": {"type": "loguniform", "low": 1e-5, "high": 1e-2},
    "cnn_num_filters": {"type": "categorical", "choices": [32, 64, 128, 256]},
    "cnn_filter_sizes": {"type": "categorical", "choices": [[3, 5, 7], [3, 5, 7, 11], [2, 3, 5, 8], [3, 7, 11, 15]]},
    "cnn_attention_heads": {"type": "categorical", "choices": [4, 8, 12, 16]},
    "lstm_hidden_dim": {"type": "categorical", "choices": [64, 128, 256, 512]},
    "lstm_num_layers": {"type": "int", "low": 1, "high": 4},
    "lstm_bidirectional": {"type": "categorical", "choices": [True, False]},
    "dropout_rate": {"type": "uniform", "low": 0.1, "high": 0.5},
    "weight_decay": {"type": "loguniform", "low": 1e-6, "high": 1e-3},
    "batch_size": {"type": "categorical", "choices": [32, 64, 128, 256]},
    "optimizer": {"type": "categorical", "choices": ["adam", "adamw", "sgd", "rmsprop"]},
    "scheduler": {"type": "categorical", "choices": ["none", "cosine", "step", "plateau"]},
}

PARAM_NAMES = tuple(DEFAULT_SEARCH_SPACE)
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
SCHEDULERS = ("none", "cosine", "step", "plateau")


def _encode(choice: Choice) -> bool | int | float | str | None:
    # Optuna categorical choices must be scalars: a list of filter sizes travels as "3,5,7".
    if isinstance(choice, list):
        return ",".join(str(v) for v in choice)
    return choice


def decode_param(name: str, value: Any) -> Any:
    """Turn a value as Optuna stores it back into what the model needs."""
    if name == "cnn_filter_sizes" and isinstance(value, str):
        return [int(v) for v in value.split(",")]
    return value


def suggest(trial: optuna.Trial, space: dict[str, Any]) -> dict[str, Any]:
    """Sample one value per hyperparameter; returns decoded values (filter sizes as a list)."""
    params: dict[str, Any] = {}
    for name, spec in space.items():
        if isinstance(spec, LogUniform):
            value: Any = trial.suggest_float(name, spec.low, spec.high, log=True)
        elif isinstance(spec, Uniform):
            value = trial.suggest_float(name, spec.low, spec.high)
        elif isinstance(spec, IntRange):
            value = trial.suggest_int(name, spec.low, spec.high)
        else:
            value = trial.suggest_categorical(name, [_encode(c) for c in spec.choices])
        params[name] = decode_param(name, value)
    return params


def decode_params(params: dict[str, Any]) -> dict[str, Any]:
    return {name: decode_param(name, value) for name, value in params.items()}


def check_spec(name: str, spec: Any) -> str | None:
    """What is wrong with one parameter's spec for the model that reads it, or None."""
    if name in _CATEGORICAL_ONLY and not isinstance(spec, Categorical):
        return f"{name} must be categorical"
    values = spec.choices if isinstance(spec, Categorical) else [spec.low, spec.high]
    for value in values:
        bad = _bad_value(name, value)
        if bad:
            return f"{bad}, but got {value!r}"
    return None


_CATEGORICAL_ONLY = ("cnn_filter_sizes", "lstm_bidirectional", "optimizer", "scheduler")
_POSITIVE_INTS = ("cnn_num_filters", "cnn_attention_heads", "lstm_hidden_dim", "lstm_num_layers", "batch_size")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _bad_value(name: str, value: Any) -> str | None:
    """Why the model cannot use ``value`` for hyperparameter ``name``, or None."""
    if name in _POSITIVE_INTS and not (_is_number(value) and value >= 1 and float(value).is_integer()):
        return f"{name} values must be positive integers"
    if name == "learning_rate" and not (_is_number(value) and value > 0):
        return "learning_rate values must be > 0"
    if name == "weight_decay" and not (_is_number(value) and value >= 0):
        return "weight_decay values must be >= 0"
    if name == "dropout_rate" and not (_is_number(value) and 0 <= value < 1):
        return "dropout_rate values must lie in [0, 1)"
    if name == "cnn_filter_sizes" and not (
        isinstance(value, list) and value and all(isinstance(k, int) and k > 0 for k in value)
    ):
        return "cnn_filter_sizes choices must be non-empty lists of positive kernel sizes"
    if name == "lstm_bidirectional" and not isinstance(value, bool):
        return "lstm_bidirectional choices must be true/false"
    if name == "optimizer" and value not in OPTIMIZERS:
        return f"optimizer choices must be among {list(OPTIMIZERS)}"
    if name == "scheduler" and value not in SCHEDULERS:
        return f"scheduler choices must be among {list(SCHEDULERS)}"
    return None
