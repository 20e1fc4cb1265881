"""The MLflow registry against a real local SQLite store, checked through MLflow's own client."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cnn_lstm_hpo.deployment.checkpoint import checkpoint_meta, save_checkpoint
from cnn_lstm_hpo.model import HybridCNNLSTM, ModelConfig

mlflow = pytest.importorskip("mlflow")

from cnn_lstm_hpo.deployment.registry import ModelRegistry, RegistryError, register_retrained  # noqa: E402
from cnn_lstm_hpo.deployment.retrain import apply_holm  # noqa: E402

PARAMS = {
    "learning_rate": 3e-3, "weight_decay": 0.0, "optimizer": "adam", "scheduler": "none", "batch_size": 128,
    "cnn_num_filters": 4, "cnn_filter_sizes": [3], "cnn_attention_heads": 2, "lstm_hidden_dim": 8,
    "lstm_num_layers": 1, "lstm_bidirectional": False, "dropout_rate": 0.1,
}


class _Scaler:
    mean_ = torch.zeros(10).numpy()
    scale_ = torch.ones(10).numpy()


@pytest.fixture(scope="module")
def model_folders(tmp_path_factory) -> list[Path]:
    """Two saved (untrained) model folders: the registry logs folders, it does not care how good they are."""
    root = tmp_path_factory.mktemp("models")
    model_config = ModelConfig.from_params(PARAMS, n_features=10, num_classes=2)
    folders = []
    for k in (1, 2):
        torch.manual_seed(k)
        meta = checkpoint_meta(model_config, hyperparameters=PARAMS, feature_names=tuple(f"f{i}" for i in range(10)),
                               sequence_length=10, horizon=1, direction_threshold=0.0, scaler=_Scaler(), return_scale=0.01)
        folders.append(save_checkpoint(root / f"retrained_model_{k}", HybridCNNLSTM(model_config), meta))
    return folders


def entry(k: int, folder: Path, *, p_value: float, accuracy: float = 0.6) -> dict:
    """One record of retrained_models_results.json, as retrain writes it before its Holm correction (apply_holm)."""
    summary = {name: {"mean": accuracy, "std": 0.01, "sem": 0.005} for name in ("accuracy", "mcc")}
    return {
        "k": k, "rank": k, "trial_number": 10 + k, "hyperparameters": PARAMS, "model_path": str(folder),
        "selected_seed": 42, "test_results": summary, "validation_results": summary,
        "selected_model": {"test": {"accuracy": accuracy}, "validation": {"accuracy": accuracy}},
        "significance": {"accuracy": accuracy, "null_rule": "always up", "null_rate": 0.52, "p_value": p_value,
                         "ci95_low": 0.55, "ci95_high": 0.65},
        "n_parameters": 1234, "model_size_mb": 0.01, "training_time_minutes": 0.1,
    }


@pytest.fixture(scope="module")
def uri(tmp_path_factory) -> str:
    """One SQLite store for the module (creating one runs MLflow's migrations: seconds); tests use their own names."""
    return f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"


def client_for(uri: str):
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def test_champion_moves_only_to_a_significant_model(model_folders, uri):
    first, second = model_folders
    # Rank 1 is not significant, rank 2 is: one version each, champion on rank 2's version.
    models = [entry(1, first, p_value=0.3), entry(2, second, p_value=0.001)]
    apply_holm(models)
    outcome = register_retrained(models, name="study_a", tracking_uri=uri)
    client = client_for(uri)
    versions = sorted(client.search_model_versions("name='study_a'"), key=lambda v: int(v.version))
    assert [int(v.version) for v in versions] == [1, 2]
    assert [v.tags["beats_null"] for v in versions] == ["false", "true"]
    assert versions[1].tags["null_rule"] == "always up" and versions[1].tags["p_holm_vs_null"] == "0.002"
    assert client.get_registered_model("study_a").aliases == {"champion": 2}
    assert outcome["champion_version"] == 2
    assert ("alias 'champion' -> version 2 (model 2: test accuracy beats the strongest naive rule (always up), "
            "Holm-adjusted p=0.002)") in outcome["message"]
    # Each version is a run with the hyperparameters, flattened metrics and the model folder as artifacts.
    run = client.get_run(versions[1].run_id)
    assert run.data.params["lstm_hidden_dim"] == "8" and run.data.params["trial_number"] == "12"
    assert run.data.metrics["test.accuracy.mean"] == pytest.approx(0.6)
    assert run.data.metrics["significance.p_value"] == pytest.approx(0.001)
    assert run.data.metrics["significance.p_holm"] == pytest.approx(0.002)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "model")}
    assert artifacts == {"model/checkpoint.json", "model/model.safetensors"}
    assert (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts").is_dir()  # next to the database, not ./mlruns of the working directory

    # A later round with nothing significant registers new versions but leaves the alias where it was.
    models = [entry(1, first, p_value=0.2), entry(2, second, p_value=0.07)]
    apply_holm(models)
    outcome = register_retrained(models, name="study_a", tracking_uri=uri)
    assert [v["version"] for v in outcome["versions"]] == [3, 4]
    assert client.get_registered_model("study_a").aliases == {"champion": 2}
    assert outcome["champion_version"] is None
    assert ("alias 'champion' not moved: no model's test accuracy beats the strongest naive rule (always up) significantly "
            "(best Holm-adjusted p=0.14, needs < 0.05)") in outcome["message"]


def test_a_model_significant_only_before_holm_does_not_become_champion(model_folders, uri):
    # Raw p 0.03 < 0.05, but Holm over the two retrained models makes it 0.06 (the analysis's rule).
    models = [entry(1, model_folders[0], p_value=0.03), entry(2, model_folders[1], p_value=0.04)]
    apply_holm(models)
    outcome = register_retrained(models, name="study_holm", tracking_uri=uri)
    assert client_for(uri).get_registered_model("study_holm").aliases == {}
    assert outcome["champion_version"] is None
    assert "not moved: no model's test accuracy beats the strongest naive rule (always up) significantly (best Holm-adjusted p=0.06" in outcome["message"]


def test_no_significant_model_sets_no_alias(model_folders, uri):
    models = [entry(1, model_folders[0], p_value=0.5)]
    apply_holm(models)
    outcome = register_retrained(models, name="study_b", tracking_uri=uri)
    assert client_for(uri).get_registered_model("study_b").aliases == {}
    assert [v["version"] for v in outcome["versions"]] == [1]
    assert "alias 'champion' not moved" in outcome["message"]


def test_guide_call_shape_registers_a_version(model_folders, uri):
    model_registry = ModelRegistry(uri)
    version = model_registry.register_model(
        name="guide_model",
        path=model_folders[0],
        hyperparameters={"learning_rate": 0.001, "lstm_hidden_dim": 128},
        performance_metrics={"accuracy": 0.61, "training_time": 3.5, "nested": {"mcc": 0.2}, "note": "text is skipped"},
    )
    assert version == 1
    client = client_for(uri)
    (registered,) = client.search_model_versions("name='guide_model'")
    run = client.get_run(registered.run_id)
    assert run.data.params == {"learning_rate": "0.001", "lstm_hidden_dim": "128"}
    assert run.data.metrics == {"accuracy": 0.61, "training_time": 3.5, "nested.mcc": 0.2}
    assert run.info.status == "FINISHED"
    assert model_registry.register_model(name="guide_model", path=model_folders[1], hyperparameters={},
                                         performance_metrics={}) == 2


def test_missing_model_folder_is_a_registry_error(uri, tmp_path):
    registry = ModelRegistry(uri)
    with pytest.raises(RegistryError, match="model folder not found: .*nowhere"):
        registry.register_model(name="m", path=tmp_path / "nowhere", hyperparameters={}, performance_metrics={})


def test_unreachable_server_is_one_line_registry_error(model_folders, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    models = [entry(1, model_folders[0], p_value=0.01)]
    apply_holm(models)
    with pytest.raises(RegistryError) as caught:
        register_retrained(models, name="m", tracking_uri="http://127.0.0.1:9")
    message = str(caught.value)
    assert "\n" not in message and message.startswith("reading experiment: MlflowException: ")
    assert "127.0.0.1" in message


def test_champion_moves_on_the_mcnemar_test_against_the_strongest_baseline(model_folders, uri):
    # Both beat the majority-class rate (binomial); only model 2 beats the strongest baseline after Holm.
    first, second = (entry(k, f, p_value=0.001) for k, f in zip((1, 2), model_folders))
    apply_holm([first, second])
    for e, p_holm in ((first, 0.2), (second, 0.004)):
        e["vs_strongest_baseline"] = {"baseline": "logistic_regression", "p_value": p_holm / 2, "p_holm": p_holm,
                                      "alpha": 0.05, "significant": p_holm < 0.05}
    outcome = register_retrained([first, second], name="study_c", tracking_uri=uri)
    assert client_for(uri).get_registered_model("study_c").aliases == {"champion": 2}
    assert ("alias 'champion' -> version 2 (model 2: test accuracy beats the strongest baseline "
            "(logistic_regression, McNemar), Holm-adjusted p=0.004)") in outcome["message"]
    # A study ranked by balanced accuracy: its paired randomization test, named as such.
    second["vs_strongest_baseline"]["metric"] = "balanced_accuracy"
    outcome = register_retrained([first, second], name="study_d", tracking_uri=uri)
    assert ("(model 2: test balanced accuracy beats the strongest baseline (logistic_regression, paired "
            "randomization), Holm-adjusted p=0.004)") in outcome["message"]


def test_a_leaking_pipeline_moves_no_champion_even_with_a_significant_model(model_folders, uri):
    models = [entry(1, model_folders[0], p_value=0.001)]
    apply_holm(models)
    outcome = register_retrained(models, name="study_leak", tracking_uri=uri, pipeline_leaks=True)
    assert client_for(uri).get_registered_model("study_leak").aliases == {}
    assert outcome["champion_version"] is None
    assert outcome["message"].endswith("alias 'champion' not moved: the shuffled-label control beat the strongest "
                                       "naive rule, so the pipeline leaks and no test result can be trusted")
