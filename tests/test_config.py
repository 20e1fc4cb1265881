"""Scenarios, overrides and validation of every config field (errors name the dotted path)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from cnn_lstm_hpo import config
from cnn_lstm_hpo.config import build_config, create_optimization_config, validate_config
from cnn_lstm_hpo.errors import HPOError
from cnn_lstm_hpo.space import (
    DEFAULT_SEARCH_SPACE,
    PARAM_NAMES,
    Categorical,
    IntRange,
    LogUniform,
    Uniform,
    suggest,
)

# The guide's scenario values, verbatim.
GUIDE = {
    "default": dict(
        n_trials=1000,
        max_epochs_per_trial=50,
        objectives=["accuracy", "training_time", "model_size"],
        timeout_hours=48,
        symbols=["AAPL", "GOOGL", "MSFT", "TSLA", "NVDA", "AMZN", "META"],
    ),
    "quick_test": dict(
        n_trials=50,
        max_epochs_per_trial=20,
        objectives=["accuracy", "training_time"],
        timeout_hours=2,
        symbols=["AAPL", "GOOGL", "MSFT"],
    ),
    "accuracy_focused": dict(
        n_trials=1500,
        max_epochs_per_trial=100,
        objectives=["accuracy"],
        max_model_size_mb=1000,
        max_training_time_minutes=300,
        timeout_hours=72,
    ),
    "efficiency_focused": dict(
        n_trials=800,
        max_epochs_per_trial=30,
        objectives=["training_time", "model_size", "accuracy"],
        max_model_size_mb=100,
        max_training_time_minutes=30,
        timeout_hours=24,
    ),
    "production": dict(
        n_trials=1200,
        max_epochs_per_trial=75,
        objectives=["accuracy", "training_time", "model_size"],
        max_model_size_mb=300,
        max_training_time_minutes=90,
        timeout_hours=60,
    ),
}


def _error(raw: dict) -> str:
    with pytest.raises(HPOError) as info:
        validate_config(raw, "test")
    return str(info.value)


def _space_error(name: str, spec: dict) -> str:
    return _error({"search_space": {name: spec}})


# --- shipped scenarios ---------------------------------------------------------------------


def test_six_scenarios_are_shipped():
    assert config.scenario_names() == sorted(
        ["default", "quick_test", "accuracy_focused", "efficiency_focused", "production", "smoke"]
    )


@pytest.mark.parametrize("name", sorted(GUIDE))
def test_scenario_has_the_guides_values(name):
    cfg = build_config(name)
    assert cfg.scenario == name
    assert cfg.resolved_study_name == name
    for field, expected in GUIDE[name].items():
        assert getattr(cfg, field) == expected, field
    assert cfg.timeout == GUIDE[name]["timeout_hours"] * 3600


def test_efficiency_focused_keeps_objective_order():
    # Order matters: it is the order of the Optuna directions and of the values in outputs.
    assert build_config("efficiency_focused").objectives == ["training_time", "model_size", "accuracy"]


def test_every_scenario_validates_and_keeps_a_full_search_space():
    for name in config.scenario_names():
        cfg = build_config(name)
        assert set(cfg.search_space) == set(PARAM_NAMES), name
        assert cfg.n_trials >= 1 and cfg.max_epochs_per_trial >= 1


def test_smoke_scenario_is_small():
    cfg = build_config("smoke")
    assert cfg.n_trials <= 10 and cfg.max_epochs_per_trial <= 5
    assert cfg.search_space["lstm_hidden_dim"].choices == [16, 32]
    # Parameters the scenario does not mention keep the guide's ranges.
    assert cfg.search_space["optimizer"].choices == DEFAULT_SEARCH_SPACE["optimizer"]["choices"]


def test_unknown_scenario_lists_the_available_ones():
    with pytest.raises(HPOError) as info:
        build_config("quick_tset")
    assert "quick_tset" in str(info.value)
    assert "quick_test" in str(info.value) and "production" in str(info.value)


# --- overrides -------------------------------------------------------------------------------


def test_create_optimization_config_overrides_one_field():
    cfg = create_optimization_config(n_trials=3)
    assert cfg.n_trials == 3
    assert cfg.scenario == "default"
    assert cfg.max_epochs_per_trial == 50  # untouched fields keep the default scenario's
    assert cfg.objectives == ["accuracy", "training_time", "model_size"]


def test_create_optimization_config_with_scenario_and_nested_override():
    cfg = create_optimization_config(
        scenario="smoke", objectives=["accuracy", "model_size"], data={"sequence_length": 7}
    )
    assert cfg.scenario == "smoke"
    assert cfg.objectives == ["accuracy", "model_size"]
    assert cfg.data.sequence_length == 7
    assert str(cfg.data.start) == "2014-01-01"  # nested override merges, it does not replace `data`


def test_none_override_clears_an_optional_field():
    cfg = build_config("quick_test", {"timeout_hours": None, "max_epochs_per_trial": 4})
    assert cfg.timeout is None and cfg.max_epochs_per_trial == 4
    assert cfg.max_training_time_minutes == 120.0  # no study budget to derive a per-trial share from
    with pytest.raises(HPOError, match=r"^invalid config \(scenario quick_test\): n_trials: Input should be a valid integer$"):
        build_config("quick_test", {"n_trials": None})


def test_timeout_is_hours_in_seconds_and_settable():
    cfg = create_optimization_config(timeout_hours=1.5)
    assert cfg.timeout == 1.5 * 3600
    cfg.timeout = 1800
    assert cfg.timeout_hours == 0.5
    cfg.timeout = None
    assert cfg.timeout is None and cfg.timeout_hours is None


def test_override_is_validated():
    with pytest.raises(HPOError, match=r"^invalid config \(scenario default\): n_trials: Input should be greater than or equal to 1$"):
        create_optimization_config(n_trials=0)


# --- validation of fields -----------------------------------------------------------------------


def test_unknown_top_level_key_names_it():
    message = _error({"n_trails": 3})
    assert "n_trails" in message


def test_unknown_nested_key_names_the_dotted_path():
    assert "data.sequence_lenght" in _error({"data": {"sequence_lenght": 3}})
    assert "training.early_stoping_patience" in _error({"training": {"early_stoping_patience": 3}})


def test_wrong_type_names_the_field():
    message = _error({"n_trials": "abc"})
    assert "n_trials" in message
    assert "integer" in message


def test_wrong_nested_type_names_the_dotted_path():
    assert "data.sequence_length" in _error({"data": {"sequence_length": "long"}})


def test_unknown_objective():
    message = _error({"objectives": ["accuracy", "speed"]})
    assert "objectives" in message
    assert "accuracy" in message and "model_size" in message  # lists what is allowed


def test_repeated_objective():
    message = _error({"objectives": ["accuracy", "model_size", "accuracy"]})
    assert "objectives" in message and "repeat" in message


def test_empty_objectives():
    assert "objectives" in _error({"objectives": []})


def test_data_dates_must_be_ordered():
    assert "start" in _error({"data": {"start": "2020-01-01", "end": "2019-01-01"}})


def test_three_classes_need_a_threshold():
    assert "direction_threshold" in _error({"data": {"num_classes": 3}})
    cfg = validate_config({"data": {"num_classes": 3, "direction_threshold": 0.001}}, "test")
    assert cfg.data.num_classes == 3


# --- validation of the search space ----------------------------------------------------------------


@pytest.mark.parametrize(
    "name, spec, words",
    [
        ("learning_rate", {"type": "loguniform", "low": 1e-2, "high": 1e-5}, ["low", "high"]),
        ("dropout_rate", {"type": "uniform", "low": 0.5, "high": 0.1}, ["low", "high"]),
        ("lstm_num_layers", {"type": "int", "low": 4, "high": 1}, ["low", "high"]),
        ("learning_rate", {"type": "loguniform", "low": 0.0, "high": 1e-2}, ["low > 0"]),
        ("weight_decay", {"type": "loguniform", "low": -1e-6, "high": 1e-3}, ["low > 0"]),
        ("batch_size", {"type": "categorical", "choices": []}, ["choice"]),
    ],
)
def test_bad_range_names_the_parameter_path(name, spec, words):
    message = _space_error(name, spec)
    assert f"search_space.{name}" in message
    for word in words:
        assert word in message


def test_unknown_hyperparameter_is_named():
    message = _error({"search_space": {"lstm_hiden_dim": {"type": "categorical", "choices": [8]}}})
    assert "search_space" in message
    assert "lstm_hiden_dim" in message
    assert "lstm_hidden_dim" in message  # the known names are listed


def test_bad_optimizer_choice():
    message = _space_error("optimizer", {"type": "categorical", "choices": ["adam", "lbfgs"]})
    assert "search_space" in message and "optimizer" in message
    assert "lbfgs" in message


def test_bad_scheduler_choice():
    message = _space_error("scheduler", {"type": "categorical", "choices": ["cyclic"]})
    assert "scheduler" in message and "cyclic" in message


@pytest.mark.parametrize(
    "name, spec, bad",
    [
        ("cnn_num_filters", {"type": "categorical", "choices": [32, 0]}, "0"),
        ("cnn_attention_heads", {"type": "categorical", "choices": [4, -2]}, "-2"),
        ("batch_size", {"type": "categorical", "choices": [True]}, "True"),
        ("cnn_filter_sizes", {"type": "categorical", "choices": [[3, 5], []]}, "[]"),
        ("cnn_filter_sizes", {"type": "categorical", "choices": [[3, 0]]}, "[3, 0]"),
        ("lstm_bidirectional", {"type": "categorical", "choices": [True, "no"]}, "no"),
    ],
)
def test_bad_categorical_choice(name, spec, bad):
    message = _space_error(name, spec)
    assert name in message and bad in message


@pytest.mark.parametrize(
    "name, spec",
    [
        ("dropout_rate", {"type": "uniform", "low": 0.1, "high": 1.0}),
        ("lstm_num_layers", {"type": "int", "low": 0, "high": 2}),
        ("learning_rate", {"type": "uniform", "low": 0.0, "high": 0.1}),
        ("optimizer", {"type": "int", "low": 0, "high": 3}),
        ("cnn_filter_sizes", {"type": "int", "low": 2, "high": 5}),
    ],
)
def test_range_that_the_model_cannot_use(name, spec):
    assert name in _space_error(name, spec)


@pytest.mark.parametrize(
    "name, spec",
    [
        ("cnn_num_filters", {"type": "int", "low": 0, "high": 4}),
        ("cnn_attention_heads", {"type": "int", "low": 0, "high": 4}),
        ("batch_size", {"type": "int", "low": 0, "high": 0}),
        ("learning_rate", {"type": "categorical", "choices": [-1.0]}),
        ("dropout_rate", {"type": "categorical", "choices": [1.5]}),
        ("lstm_num_layers", {"type": "categorical", "choices": [0]}),
    ],
)
def test_values_the_model_cannot_use_are_rejected(name, spec):
    assert name in _space_error(name, spec)


def test_yaml_exponent_floats_in_categorical_choices(tmp_path: Path):
    path = tmp_path / "lr.yaml"
    path.write_text("x:\n  search_space:\n    learning_rate: {type: categorical, choices: [1e-3, 3e-4]}\n")
    # PyYAML reads "1e-3" as a string (YAML 1.1 wants a dot); the config turns it into the number.
    choices = build_config(str(path)).search_space["learning_rate"].choices
    assert choices == [1e-3, 3e-4] and all(isinstance(c, float) for c in choices)


def test_yaml_exponent_floats_in_ranges_are_numbers(tmp_path: Path):
    path = tmp_path / "lr.yaml"
    path.write_text("x:\n  search_space:\n    learning_rate: {type: loguniform, low: 1e-5, high: 1e-3}\n")
    spec = build_config(str(path)).search_space["learning_rate"]
    assert (spec.low, spec.high) == (1e-5, 1e-3)


def test_unknown_spec_type_and_extra_spec_key():
    assert "search_space.learning_rate" in _space_error("learning_rate", {"type": "normal", "low": 1, "high": 2})
    message = _space_error("lstm_hidden_dim", {"type": "categorical", "choices": [8], "step": 2})
    assert "search_space.lstm_hidden_dim" in message and "step" in message


def test_search_space_override_replaces_only_that_parameter():
    cfg = validate_config(
        {"search_space": {"lstm_hidden_dim": {"type": "categorical", "choices": [32, 64]}}}, "test"
    )
    assert isinstance(cfg.search_space["lstm_hidden_dim"], Categorical)
    assert cfg.search_space["lstm_hidden_dim"].choices == [32, 64]
    for name in PARAM_NAMES:
        if name == "lstm_hidden_dim":
            continue
        assert cfg.search_space[name].model_dump() == DEFAULT_SEARCH_SPACE[name], name


def test_search_space_override_through_build_config_overrides():
    cfg = build_config("smoke", {"search_space": {"batch_size": {"type": "categorical", "choices": [16]}}})
    assert cfg.search_space["batch_size"].choices == [16]
    assert cfg.search_space["lstm_hidden_dim"].choices == [16, 32]  # the scenario's own override stays


def test_explicit_full_search_space_is_parsed_into_specs():
    cfg = validate_config({"search_space": dict(DEFAULT_SEARCH_SPACE)}, "test")
    kinds = {name: type(spec) for name, spec in cfg.search_space.items()}
    assert kinds["learning_rate"] is LogUniform and kinds["dropout_rate"] is Uniform
    assert kinds["lstm_num_layers"] is IntRange and kinds["optimizer"] is Categorical


def test_default_search_space_is_parsed_into_specs():
    # Configs without a search_space section must hold parsed specs too (space.suggest needs them).
    cfg = create_optimization_config()
    for name, spec in cfg.search_space.items():
        assert not isinstance(spec, dict), name
        assert spec.model_dump() == DEFAULT_SEARCH_SPACE[name], name


@pytest.mark.parametrize("name", config.scenario_names())
def test_every_scenarios_search_space_can_be_sampled(name):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    params = suggest(study.ask(), build_config(name).search_space)
    assert set(params) == set(PARAM_NAMES)
    assert isinstance(params["cnn_filter_sizes"], list)


# --- user YAML files ----------------------------------------------------------------------------


def test_user_file_in_the_guides_named_format(tmp_path: Path):
    path = tmp_path / "mine.yaml"
    path.write_text("myscen:\n  n_trials: 2\n  objectives: ['accuracy', 'model_size']\n")
    cfg = build_config(str(path))
    assert cfg.scenario == "myscen"
    assert cfg.n_trials == 2
    assert cfg.objectives == ["accuracy", "model_size"]
    assert cfg.max_epochs_per_trial == 50  # unspecified fields take the defaults


def test_user_file_in_flat_format(tmp_path: Path):
    path = tmp_path / "flat.yml"
    path.write_text("n_trials: 2\nmax_epochs_per_trial: 4\ndata:\n  sequence_length: 12\n")
    cfg = build_config(str(path))
    assert cfg.scenario == "flat"  # named after the file
    assert (cfg.n_trials, cfg.max_epochs_per_trial, cfg.data.sequence_length) == (2, 4, 12)


def test_user_file_with_only_one_field_is_flat(tmp_path: Path):
    path = tmp_path / "one.yaml"
    path.write_text("n_trials: 7\n")
    cfg = build_config(str(path))
    assert cfg.n_trials == 7 and cfg.scenario == "one"


def test_user_file_search_space_override(tmp_path: Path):
    path = tmp_path / "space.yaml"
    path.write_text(
        "myscen:\n  search_space:\n    cnn_num_filters: {type: categorical, choices: [8, 16]}\n"
    )
    cfg = build_config(str(path))
    assert cfg.search_space["cnn_num_filters"].choices == [8, 16]
    assert cfg.search_space["lstm_hidden_dim"].choices == [64, 128, 256, 512]


def test_user_file_error_names_the_file_and_dotted_path(tmp_path: Path):
    path = tmp_path / "typo.yaml"
    path.write_text("myscen:\n  n_trials: 2\n  data: {sequence_lenght: 3}\n")
    with pytest.raises(HPOError) as info:
        build_config(str(path))
    assert str(info.value) == f"invalid config ({path}): data.sequence_lenght: Extra inputs are not permitted"


def test_malformed_yaml(tmp_path: Path):
    path = tmp_path / "broken.yaml"
    path.write_text("myscen:\n  n_trials: [1,\n")
    with pytest.raises(HPOError) as info:
        build_config(str(path))
    assert str(info.value) == f"cannot parse YAML {path} line 3: expected the node content, but found '<stream end>'"


def test_yaml_that_is_not_a_mapping(tmp_path: Path):
    path = tmp_path / "list.yaml"
    path.write_text("- n_trials\n- 2\n")
    with pytest.raises(HPOError) as info:
        build_config(str(path))
    assert str(info.value) == f"{path}: expected a mapping of config fields, got list"


def test_missing_user_file(tmp_path: Path):
    with pytest.raises(HPOError) as info:
        build_config(str(tmp_path / "absent.yaml"))
    assert str(info.value) == f"scenario file not found: {tmp_path / 'absent.yaml'}"


def test_resolved_config_round_trips_through_yaml(tmp_path: Path):
    cfg = build_config("smoke", {"n_trials": 4, "save_dir": str(tmp_path)})
    path = tmp_path / "resolved.yaml"
    path.write_text(cfg.to_yaml())
    again = build_config(str(path))
    assert again.n_trials == 4
    assert again.search_space == cfg.search_space
    assert again.data == cfg.data
