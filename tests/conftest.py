"""Shared fixtures: small deterministic OHLCV frames, CSV folders, ready-made windows and params."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from cnn_lstm_hpo.config import DataConfig
from cnn_lstm_hpo.data import synthetic_frame
from cnn_lstm_hpo.distributed.storage import close_storage, open_storage
from postgres import postgres_server, postgres_url  # noqa: F401 - a real PostgreSQL server (tests/postgres.py)


def _guide_headers(frame: pd.DataFrame) -> pd.DataFrame:
    """A frame as a typical vendor CSV has it: ``Date`` column, capitalised names."""
    out = frame.reset_index()
    out.columns = ["Date", "Open", "High", "Low", "Close", "Volume"]
    return out


@pytest.fixture
def synthetic_frames() -> dict[str, pd.DataFrame]:
    """Two short synthetic symbols (400 business days each): enough bars for all three splits."""
    return {s: synthetic_frame(s, n_bars=400) for s in ("SYN_A", "SYN_B")}


@pytest.fixture
def small_data_config() -> DataConfig:
    return DataConfig(source="synthetic", sequence_length=10, horizon=1, embargo_bars=3)


@pytest.fixture
def write_csv_folder(tmp_path: Path):
    """Write ``{symbol: frame}`` as one CSV per symbol with vendor-style headers; returns the folder."""

    def write(frames: dict[str, pd.DataFrame], name: str = "bars") -> Path:
        folder = tmp_path / name
        folder.mkdir()
        for symbol, frame in frames.items():
            _guide_headers(frame).to_csv(folder / f"{symbol}.csv", index=False)
        return folder

    return write


@pytest.fixture
def csv_folder(write_csv_folder, synthetic_frames) -> Path:
    """A folder with SYN_A.csv and SYN_B.csv (400 bars each)."""
    return write_csv_folder(synthetic_frames)


@pytest.fixture(scope="session")
def synthetic_windows():
    """The default synthetic source windowed with a short sequence (shared: treat as read-only)."""
    from cnn_lstm_hpo.windows import prepare_windows

    data, notice = prepare_windows(DataConfig(source="synthetic", sequence_length=10), None)
    assert notice is None
    return data


@pytest.fixture
def small_params() -> dict:
    """Training hyperparameters of a tiny, fast model (as ``space.suggest`` would return them)."""
    return {
        "learning_rate": 3e-3,
        "weight_decay": 0.0,
        "optimizer": "adam",
        "scheduler": "none",
        "batch_size": 64,
        "cnn_num_filters": 16,
        "cnn_filter_sizes": [2, 3],
        "cnn_attention_heads": 2,
        "lstm_hidden_dim": 16,
        "lstm_num_layers": 1,
        "lstm_bidirectional": False,
        "dropout_rate": 0.1,
    }


# The models here are tiny: intra-op threads buy nothing, and OpenMP's spin-waiting makes every op
# 10-100x slower whenever another process holds the second core. One thread keeps runtimes stable.
torch.set_num_threads(1)


@pytest.fixture(params=["sqlite", "postgresql"])
def rdb_url(request, tmp_path) -> str:
    """A database storage's URL: an SQLite file, then a real PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'study.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def opened(rdb_url):
    """The database storage as ``optimize`` opens it."""
    storage = open_storage(rdb_url)
    yield storage
    close_storage(storage)


@pytest.fixture
def other(rdb_url):
    """The same storage as another process opens it: it sees only what is committed."""
    storage = open_storage(rdb_url)
    yield storage
    close_storage(storage)
