"""The saved-model format: a folder with safetensors weights and JSON, written atomically.

``retrained_model_<k>/`` holds
- ``model.safetensors``: the state dict (tensors only: loading never unpickles anything),
- ``checkpoint.json``: the architecture, hyperparameters, feature list, window length, horizon,
  class setup, the fitted scaler's ``mean_``/``scale_`` and the return scale, the data
  fingerprint, the calendar cuts of the study's data (first validation and test dates, last bar)
  and where the model came from (study, trial, seed),
- ``metrics.json``: what the model scored (written by retrain).

The folder is assembled under a temporary name beside its destination and renamed into place,
so an interrupted run never leaves a half-written model where a complete one is expected.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import HPOError
from ..features import FEATURE_NAMES
from ..model import HybridCNNLSTM, ModelConfig
from ..results import write_json

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CHECKPOINT_FILE = "checkpoint.json"
METRICS_FILE = "metrics.json"


@dataclass(frozen=True)
class SavedModel:
    """A loaded model and everything needed to turn OHLCV bars into its inputs."""

    model: HybridCNNLSTM
    meta: dict[str, Any]

    @property
    def sequence_length(self) -> int:
        return int(self.meta["sequence_length"])

    @property
    def scaler_mean(self) -> np.ndarray:
        return np.asarray(self.meta["scaler"]["mean"], dtype=np.float64)

    @property
    def scaler_scale(self) -> np.ndarray:
        return np.asarray(self.meta["scaler"]["scale"], dtype=np.float64)

    @property
    def return_scale(self) -> float:
        return float(self.meta["return_scale"])


def checkpoint_meta(
    model_config: ModelConfig, *, hyperparameters: dict[str, Any], feature_names: tuple[str, ...], sequence_length: int,
    horizon: int, direction_threshold: float, scaler: Any, return_scale: float, fingerprint: Any = None,
    origin: dict[str, Any] | None = None, calendar: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The JSON half of a checkpoint. ``scaler`` is a fitted StandardScaler (or None for user loaders)."""
    return {
        "format_version": FORMAT_VERSION,
        "model_config": model_config.to_dict(),
        "hyperparameters": hyperparameters,
        "feature_names": list(feature_names),
        "sequence_length": sequence_length,
        "horizon": horizon,
        "num_classes": model_config.num_classes,
        "direction_threshold": direction_threshold,
        "scaler": None if scaler is None else {"mean": scaler.mean_.tolist(), "scale": scaler.scale_.tolist()},
        # The return head learns returns in units of the training returns' std (see Trainer).
        "return_scale": return_scale,
        "fingerprint": fingerprint,
        "origin": origin or {},
        # val_start, test_start, data_end of the study's data (WindowedData.calendar): predict's split column.
        "calendar": calendar,
    }


def save_checkpoint(
    folder: Path, model: torch.nn.Module, meta: dict[str, Any], metrics: dict[str, Any] | None = None
) -> Path:
    """Write the folder atomically: build it under a temp name, then rename it into place."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".tmp"))
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; the model folder follows the umask like any mkdir
        state = {name: t.detach().cpu().contiguous() for name, t in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format_version": str(FORMAT_VERSION)})
        write_json(tmp / CHECKPOINT_FILE, meta)
        if metrics is not None:
            write_json(tmp / METRICS_FILE, metrics)
        _replace_dir(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def _umask() -> int:
    mask = os.umask(0)  # reading the umask means setting it: put it straight back
    os.umask(mask)
    return mask


def _replace_dir(new: Path, target: Path) -> None:
    # os.replace cannot overwrite a non-empty folder: move the old one aside first. Between the
    # two renames the target is briefly absent, never half-written.
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".old"))
        os.replace(target, old / target.name)
    os.replace(new, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(folder: Path) -> SavedModel:
    """Rebuild the model from a saved folder; refuses a feature set this code does not compute."""
    folder = Path(folder)
    meta_path, weights_path = folder / CHECKPOINT_FILE, folder / WEIGHTS_FILE
    if not meta_path.is_file() or not weights_path.is_file():
        raise HPOError(f"{folder}: not a saved model (needs {CHECKPOINT_FILE} and {WEIGHTS_FILE})")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as error:
        raise HPOError(f"{meta_path}: not valid JSON ({error})") from None
    if meta.get("format_version") != FORMAT_VERSION:
        raise HPOError(f"{meta_path}: format_version {meta.get('format_version')!r}, this code reads {FORMAT_VERSION}")
    saved = tuple(meta["feature_names"])
    if saved != FEATURE_NAMES:
        missing = [f for f in saved if f not in FEATURE_NAMES]
        detail = f"missing here: {', '.join(missing)}" if missing else "same names, different order or count"
        raise HPOError(f"{folder}: feature set mismatch: the model was trained on features {list(saved)}, "
                       f"this version computes {list(FEATURE_NAMES)} ({detail})")
    if meta.get("scaler") is None:
        raise HPOError(f"{folder}: the model was trained on user-supplied loaders and has no fitted scaler to predict with")
    config = dict(meta["model_config"])
    config["cnn_filter_sizes"] = tuple(config["cnn_filter_sizes"])
    model = HybridCNNLSTM(ModelConfig(**config))
    try:
        state = load_file(str(weights_path))
    except (SafetensorError, OSError) as error:
        raise HPOError(f"{weights_path}: cannot read weights ({error})") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise HPOError(f"{weights_path}: weights do not fit the saved model config ({str(error).splitlines()[0]})") from None
    model.eval()
    return SavedModel(model=model, meta=meta)
