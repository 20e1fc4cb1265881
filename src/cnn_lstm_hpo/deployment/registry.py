"""MLflow model registry (optional extra: ``pip install -e ".[registry]"``).

Each retrained model is logged as an MLflow run (hyperparameters as params, scores as metrics,
the saved model folder as artifacts) and registered as a version of a registered model named
after the study. The alias ``champion`` moves only to a model whose test score (by the study's
classification metric) beats the strongest baseline significantly (a paired test, Holm over the
models: ``champion_test``);
otherwise no alias moves and the outcome says why.

The guide's call shape works too::

    model_registry = ModelRegistry("sqlite:///runs/mlflow.db")
    model_registry.register_model(name=..., path=..., hyperparameters=..., performance_metrics=...)
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path
from typing import Any

from ..baselines import METRIC_LABELS

INSTALL_HINT = 'install the registry extra to enable it: pip install -e ".[registry]"'
CHAMPION = "champion"


class RegistryNotInstalled(Exception):
    """mlflow is not importable."""


class RegistryError(Exception):
    """The registry could not be reached or refused a request; the message is one line."""


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")


def _flatten(prefix: str, value: Any, out: dict[str, float]) -> None:
    """Nested dicts of numbers -> {"a.b.c": number}; strings, None and non-finite values are left out."""
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), inner, out)
    elif isinstance(value, (int, float)) and math.isfinite(float(value)):
        out[prefix] = float(value)


def _artifact_location(tracking_uri: str) -> str | None:
    # A SQLite store keeps artifacts next to its database, not in ./mlruns of whatever folder
    # the command ran from; a server decides for itself.
    if tracking_uri.startswith("sqlite:///"):
        return (Path(tracking_uri.removeprefix("sqlite:///")).parent / "mlartifacts").resolve().as_uri()
    return None


class ModelRegistry:
    """A thin wrapper over ``mlflow.MlflowClient`` with the guide's ``register_model`` call."""

    def __init__(self, tracking_uri: str, *, experiment: str | None = None) -> None:
        try:
            from mlflow import MlflowClient
        except ImportError:
            raise RegistryNotInstalled(f"mlflow is not installed; {INSTALL_HINT}") from None
        # MLflow announces at INFO every time it creates or migrates a SQLite store's tables.
        logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
        # An unreachable HTTP server would otherwise be retried for minutes; users may set their own.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as error:  # MLflow, SQLAlchemy and HTTP errors all mean the same to the user
            raise RegistryError(f"{what}: {_one_line(error)}") from None

    def _experiment_id(self, name: str) -> str:
        experiment = self._call("reading experiment", self.client.get_experiment_by_name, name)
        if experiment is not None:
            return experiment.experiment_id
        return self._call(
            "creating experiment", self.client.create_experiment, name, artifact_location=_artifact_location(self.tracking_uri)
        )

    def _ensure_model(self, name: str) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(name)
        except MlflowException as error:
            if error.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise RegistryError(f"reading registered model {name!r}: {_one_line(error)}") from None
            self._call("creating registered model", self.client.create_registered_model, name)
        except Exception as error:
            raise RegistryError(f"reading registered model {name!r}: {_one_line(error)}") from None

    def register_model(
        self, name: str, path: str | Path, hyperparameters: dict[str, Any], performance_metrics: dict[str, Any], *,
        run_name: str | None = None, tags: dict[str, str] | None = None,
    ) -> int:
        """Log one saved model folder as a run and register it as a new version of ``name``; returns the version."""
        from mlflow.entities import Metric, Param

        folder = Path(path)
        if not folder.is_dir():
            raise RegistryError(f"model folder not found: {folder}")
        experiment_id = self._experiment_id(self.experiment or name)
        run = self._call("creating run", self.client.create_run, experiment_id, run_name=run_name or folder.name, tags=tags)
        run_id = run.info.run_id
        metrics: dict[str, float] = {}
        _flatten("", performance_metrics, metrics)
        now = int(time.time() * 1000)
        self._call(
            "logging params and metrics", self.client.log_batch, run_id,
            params=[Param(k, str(v)) for k, v in hyperparameters.items()],
            metrics=[Metric(k, v, now, 0) for k, v in metrics.items()],
        )
        self._call("logging the model folder", self.client.log_artifacts, run_id, str(folder), artifact_path="model")
        self._call("closing run", self.client.set_terminated, run_id)
        self._ensure_model(name)
        version = self._call(
            "registering model version", self.client.create_model_version, name,
            source=f"{run.info.artifact_uri}/model", run_id=run_id, tags=tags,
        )
        return int(version.version)

    def set_champion(self, name: str, version: int) -> None:
        self._call("setting alias", self.client.set_registered_model_alias, name, CHAMPION, str(version))


def performance_metrics(entry: dict[str, Any]) -> dict[str, Any]:
    """What one retrained model logs as MLflow metrics (nested; flattened with dots)."""
    sig = entry["significance"]
    return {
        "test": entry["test_results"], "validation": entry["validation_results"],
        "selected_test": entry["selected_model"]["test"],
        "significance": {k: sig[k] for k in ("accuracy", "null_rate", "p_value", "p_holm", "ci95_low", "ci95_high")},
        "n_parameters": entry["n_parameters"], "model_size_mb": entry["model_size_mb"],
        "training_time_minutes": entry["training_time_minutes"],
    }


def champion_test(entry: dict[str, Any]) -> dict[str, Any]:
    """The test the champion alias moves on: the paired test against the strongest test baseline
    by the study's metric (McNemar for accuracy), Holm-corrected over the retrained models (verdict.retrain_signal); entries written
    before it existed fall back to the binomial test against the strongest naive rule (Holm too)."""
    vs = entry.get("vs_strongest_baseline")
    if vs is None:
        sig = entry["significance"]
        return {"p_value": sig["p_holm"], "alpha": sig["alpha"], "significant": sig["significant"], "metric": "accuracy",
                "against": f"the strongest naive rule ({sig['null_rule']})"}
    metric = vs.get("metric", "accuracy")  # entries from before the metric was recorded: McNemar on accuracy
    test = "McNemar" if metric == "accuracy" else "paired randomization"
    return {"p_value": vs["p_holm"], "alpha": vs["alpha"], "significant": vs["significant"], "metric": metric,
            "against": f"the strongest baseline ({vs['baseline']}, {test})"}


def register_retrained(
    models: list[dict[str, Any]], *, name: str, tracking_uri: str, pipeline_leaks: bool = False
) -> dict[str, Any]:
    """Register every saved model; move ``champion`` to the best-ranked significant one, if any, and
    never while the shuffled-label control says the pipeline leaks (no test result can be trusted)."""
    registry = ModelRegistry(tracking_uri)
    versions = []
    for entry in models:
        if not entry.get("model_path"):
            continue
        sig = entry["significance"]
        version = registry.register_model(
            name=name,
            path=entry["model_path"],
            hyperparameters={**entry["hyperparameters"], "trial_number": entry["trial_number"], "seed": entry["selected_seed"]},
            performance_metrics=performance_metrics(entry),
            run_name=f"retrained_model_{entry['k']}",
            tags={
                "trial_number": str(entry["trial_number"]), "rank": str(entry["rank"]),
                "test_accuracy": f"{sig['accuracy']:.6f}", "null_rule": sig["null_rule"],
                "p_value_vs_null": f"{sig['p_value']:.6g}", "p_holm_vs_null": f"{sig['p_holm']:.6g}",
                "beats_null": str(sig["significant"]).lower(),
            },
        )
        versions.append({"k": entry["k"], "version": version, **champion_test(entry)})
    listed = ", ".join(str(v["version"]) for v in versions)
    message = f"registered version(s) {listed} of model {name!r}"
    significant = [v for v in versions if v["significant"]]  # already in rank order
    champion = None
    if significant and pipeline_leaks:
        message += (f"; alias '{CHAMPION}' not moved: the shuffled-label control beat the strongest naive rule, "
                    "so the pipeline leaks and no test result can be trusted")
    elif significant:
        champion = significant[0]
        registry.set_champion(name, champion["version"])
        message += (
            f"; alias '{CHAMPION}' -> version {champion['version']} (model {champion['k']}: test {METRIC_LABELS[champion['metric']]} beats "
            f"{champion['against']}, Holm-adjusted p={champion['p_value']:.3g})"
        )
    elif versions:
        best_p = min(v["p_value"] for v in versions)
        message += (
            f"; alias '{CHAMPION}' not moved: no model's test {METRIC_LABELS[versions[0]['metric']]} beats {versions[0]['against']} "
            f"significantly (best Holm-adjusted p={best_p:.3g}, needs < {versions[0]['alpha']})"
        )
    return {
        "model_name": name, "versions": versions, "champion_version": champion["version"] if champion else None,
        "message": message,
    }
