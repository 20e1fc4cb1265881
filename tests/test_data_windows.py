"""Data sources, file validation, and leakage-safe windowing."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from cnn_lstm_hpo.config import DataConfig
from cnn_lstm_hpo.data import COLUMNS, available_symbols, load_frames, resolve_symbols, synthetic_frame
from cnn_lstm_hpo.errors import HPOError
from cnn_lstm_hpo.features import FEATURE_NAMES, compute_features, direction_classes, forward_returns
from cnn_lstm_hpo.windows import (
    SPLITS,
    Split,
    WindowLoader,
    build_windows,
    prepare_windows,
    split_from_loader,
)


def vendor_csv(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.reset_index()
    out.columns = ["Date", "Open", "High", "Low", "Close", "Volume"]
    return out


def write(folder: Path, name: str, table: pd.DataFrame) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / name
    table.to_csv(path, index=False)
    return path


def load_error(source: Path) -> str:
    with pytest.raises(HPOError) as info:
        load_frames(str(source))
    return str(info.value)


# --- bundled and synthetic sources ---------------------------------------------------------------


def test_sample_source_has_sp500_and_nasdaq():
    frames = load_frames("sample")
    assert list(frames) == ["SP500", "NASDAQ"]
    for frame in frames.values():
        assert list(frame.columns) == list(COLUMNS)
        assert isinstance(frame.index, pd.DatetimeIndex)
        assert frame.index.is_monotonic_increasing and not frame.index.has_duplicates
        assert len(frame) > 4000
        assert (frame["high"] >= frame["low"]).all()
        assert all(frame[c].dtype == np.float64 for c in COLUMNS)


def test_sample_source_symbol_selection_and_dates():
    frames = load_frames("sample", ["nasdaq"], start=dt.date(2015, 1, 1), end=dt.date(2015, 12, 31))
    assert list(frames) == ["NASDAQ"]
    index = frames["NASDAQ"].index
    assert index.min() >= pd.Timestamp("2015-01-01") and index.max() <= pd.Timestamp("2015-12-31")
    assert 240 < len(index) < 260


def test_unknown_symbol_names_the_available_ones():
    with pytest.raises(HPOError) as info:
        load_frames("sample", ["SP500", "AAPL"])
    message = str(info.value)
    assert "AAPL" in message
    assert "SP500" in message and "NASDAQ" in message


def test_available_symbols():
    assert available_symbols("sample") == ("SP500", "NASDAQ")
    assert available_symbols("synthetic") == ("SYN_A", "SYN_B")


def test_scenario_symbols_fall_back_to_the_source_with_a_notice():
    symbols, notice = resolve_symbols("sample", ["AAPL", "MSFT"], explicit=False)
    assert symbols is None
    assert "AAPL" in notice and "SP500" in notice and "NASDAQ" in notice


def test_explicit_symbols_are_kept():
    assert resolve_symbols("sample", ["AAPL"], explicit=True) == (["AAPL"], None)
    assert resolve_symbols("sample", ["SP500"], explicit=False) == (["SP500"], None)
    assert resolve_symbols("sample", None, explicit=False) == (None, None)
    assert resolve_symbols("/some/path", ["AAPL"], explicit=False) == (["AAPL"], None)


def test_prepare_windows_reports_the_fallback_notice():
    cfg = DataConfig(source="synthetic", sequence_length=10)
    data, notice = prepare_windows(cfg, ["AAPL"])
    assert notice is not None and "SYN_A" in notice
    assert set(data.train.symbols) == {"SYN_A", "SYN_B"}
    with pytest.raises(HPOError, match=r"^symbol AAPL is not in data source 'synthetic'; it has: SYN_A, SYN_B$"):
        prepare_windows(cfg, ["AAPL"], explicit_symbols=True)


def test_synthetic_data_is_deterministic():
    a, b = synthetic_frame("SYN_A", 300), synthetic_frame("SYN_A", 300)
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a["close"], synthetic_frame("SYN_B", 300)["close"])
    assert not np.allclose(a["close"], synthetic_frame("SYN_A", 300, seed=1)["close"])
    frames1, frames2 = load_frames("synthetic"), load_frames("synthetic")
    assert list(frames1) == ["SYN_A", "SYN_B"]
    for symbol in frames1:
        pd.testing.assert_frame_equal(frames1[symbol], frames2[symbol])


def test_synthetic_bars_are_valid_ohlcv():
    frame = synthetic_frame("SYN_A", 500)
    assert list(frame.columns) == list(COLUMNS)
    assert (frame["high"] >= frame[["open", "close"]].max(axis=1)).all()
    assert (frame["low"] <= frame[["open", "close"]].min(axis=1)).all()
    assert (frame[["open", "high", "low", "close", "volume"]] > 0).all().all()


def test_synthetic_returns_have_momentum():
    frame = synthetic_frame("SYN_A", 3000)
    r = np.diff(np.log(frame["close"].to_numpy()))
    assert np.corrcoef(r[:-1], r[1:])[0, 1] > 0.35  # AR(1) with momentum 0.5


# --- user files -----------------------------------------------------------------------------------


def test_folder_of_csv_and_parquet_files(tmp_path: Path, synthetic_frames):
    folder = tmp_path / "bars"
    a, b = synthetic_frames["SYN_A"], synthetic_frames["SYN_B"]
    # Vendor headers with Adj Close: adjusted prices are used, open/high/low scaled alike.
    table = vendor_csv(a)
    table.insert(5, "Adj Close", table["Close"] * 0.9)
    write(folder, "aaa.csv", table)
    # Parquet with a DatetimeIndex; lower-case names.
    b.to_parquet(folder / "BBB.parquet")
    # A "timestamp" column, columns in another order, odd spacing in the header.
    other = a.iloc[::-1].reset_index().rename(columns={"date": "timestamp", "close": " Close "})
    write(folder, "ccc.csv", other[["timestamp", "volume", " Close ", "low", "high", "open"]])
    (folder / "notes.txt").write_text("ignored")
    frames = load_frames(str(folder))
    assert sorted(frames) == ["AAA", "BBB", "CCC"]
    for frame in frames.values():
        assert list(frame.columns) == list(COLUMNS)
        assert isinstance(frame.index, pd.DatetimeIndex) and frame.index.is_monotonic_increasing
    np.testing.assert_allclose(frames["AAA"]["close"], a["close"] * 0.9)
    np.testing.assert_allclose(frames["AAA"]["open"], a["open"] * 0.9)
    np.testing.assert_allclose(frames["AAA"]["high"], a["high"] * 0.9)
    np.testing.assert_allclose(frames["AAA"]["volume"], a["volume"])
    pd.testing.assert_frame_equal(frames["BBB"], b, check_freq=False)
    pd.testing.assert_frame_equal(frames["CCC"], a, check_freq=False)
    assert sorted(available_symbols(str(folder))) == ["AAA", "BBB", "CCC"]
    assert list(load_frames(str(folder), ["bbb"])) == ["BBB"]


def test_timezone_aware_parquet_index_is_made_naive(tmp_path: Path, synthetic_frames):
    frame = synthetic_frames["SYN_A"].copy()
    frame.index = frame.index.tz_localize("UTC")
    folder = tmp_path / "tz"
    folder.mkdir()
    frame.to_parquet(folder / "AAA.parquet")
    loaded = load_frames(str(folder))["AAA"]
    assert loaded.index.tz is None
    assert loaded.index[0] == pd.Timestamp("2010-01-04")


def test_long_format_file_with_symbol_column(tmp_path: Path, synthetic_frames):
    parts = [vendor_csv(f).assign(Symbol=s.lower()) for s, f in synthetic_frames.items()]
    table = pd.concat(parts).sample(frac=1.0, random_state=0)  # shuffled rows
    path = write(tmp_path, "long.csv", table)
    frames = load_frames(str(path))
    assert sorted(frames) == ["SYN_A", "SYN_B"]
    for symbol, frame in frames.items():
        pd.testing.assert_frame_equal(frame, synthetic_frames[symbol], check_freq=False)
    assert list(load_frames(str(path), ["SYN_B"])) == ["SYN_B"]


def test_single_file_without_symbol_column_is_one_symbol(tmp_path: Path, synthetic_frames):
    path = write(tmp_path, "spy.csv", vendor_csv(synthetic_frames["SYN_A"]))
    assert list(load_frames(str(path))) == ["SPY"]


def test_windows_from_a_csv_folder(csv_folder):
    data, notice = prepare_windows(DataConfig(source=str(csv_folder), sequence_length=10), None)
    assert notice is None
    assert set(data.train.symbols) == {"SYN_A", "SYN_B"}
    assert data.n_features == len(FEATURE_NAMES) and data.sequence_length == 10


@pytest.fixture
def table(synthetic_frames) -> pd.DataFrame:
    return vendor_csv(synthetic_frames["SYN_A"].iloc[:80]).astype({"Close": object, "Volume": object})


def test_missing_close_column(tmp_path, table):
    path = write(tmp_path / "d", "AAA.csv", table.drop(columns="Close"))
    message = load_error(path.parent)
    assert str(path) in message and "'close'" in message


def test_non_numeric_cell(tmp_path, table):
    table.loc[5, "Close"] = "12,5x"
    path = write(tmp_path / "d", "AAA.csv", table)
    message = load_error(path.parent)
    assert str(path) in message
    assert "'close'" in message
    assert f"{table.loc[5, 'Date']:%Y-%m-%d}" in message
    assert "12,5x" in message


def test_missing_value(tmp_path, table):
    # Two bars in a row with a missing value are refused; an isolated one is dropped
    # (tests/test_data_formats.py).
    table.loc[7:8, "Volume"] = None
    path = write(tmp_path / "d", "AAA.csv", table)
    message = load_error(path.parent)
    assert str(path) in message and "'volume'" in message
    assert f"{table.loc[7, 'Date']:%Y-%m-%d}" in message
    assert "2 consecutive bars with a missing value (NaN)" in message


def test_duplicate_date(tmp_path, table):
    table.loc[9, "Date"] = table.loc[8, "Date"]
    path = write(tmp_path / "d", "AAA.csv", table)
    message = load_error(path.parent)
    assert str(path) in message and "duplicate" in message
    assert f"{table.loc[8, 'Date']:%Y-%m-%d}" in message


def test_high_below_low(tmp_path, table):
    table.loc[11, "High"] = table.loc[11, "Low"] - 1.0
    path = write(tmp_path / "d", "AAA.csv", table)
    message = load_error(path.parent)
    assert str(path) in message and "high < low" in message
    assert f"{table.loc[11, 'Date']:%Y-%m-%d}" in message


def test_non_positive_price(tmp_path, table):
    table.loc[12, "Low"] = 0.0
    path = write(tmp_path / "d", "AAA.csv", table)
    message = load_error(path.parent)
    assert str(path) in message and f"{table.loc[12, 'Date']:%Y-%m-%d}" in message


def test_unparseable_date(tmp_path, table):
    table = table.astype({"Date": object})
    table.loc[3, "Date"] = "yesterday"
    path = write(tmp_path / "d", "AAA.csv", table)
    message = load_error(path.parent)
    assert str(path) in message and "date" in message


def test_no_date_column(tmp_path, table):
    path = write(tmp_path / "d", "AAA.csv", table.drop(columns="Date"))
    message = load_error(path.parent)
    assert str(path) in message and "date" in message


def test_bad_row_in_long_format_names_the_symbol(tmp_path, synthetic_frames):
    parts = [vendor_csv(f.iloc[:50]).assign(symbol=s) for s, f in synthetic_frames.items()]
    table = pd.concat(parts, ignore_index=True)
    table.loc[60, "High"] = table.loc[60, "Low"] - 1.0  # a SYN_B row
    path = write(tmp_path, "long.csv", table)
    message = load_error(path)
    assert str(path) in message and "SYN_B" in message and "high < low" in message


def test_empty_folder(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / "readme.md").write_text("no data")
    message = load_error(folder)
    assert str(folder) in message and ".csv" in message


def test_missing_path(tmp_path):
    assert "not found" in load_error(tmp_path / "nope")


def test_unreadable_file(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "AAA.parquet").write_bytes(b"this is not parquet")
    message = load_error(folder)
    assert "AAA.parquet" in message and "cannot read" in message


def test_too_few_rows_for_the_window(synthetic_frames):
    frames = {"SYN_A": synthetic_frames["SYN_A"].iloc[:90]}
    with pytest.raises(HPOError) as info:
        build_windows(frames, DataConfig(sequence_length=30))
    message = str(info.value)
    assert "SYN_A" in message and "too few rows" in message and "sequence_length=30" in message


def test_no_symbols():
    with pytest.raises(HPOError):
        build_windows({}, DataConfig())


@pytest.mark.filterwarnings("ignore:invalid value encountered in log1p:RuntimeWarning")
def test_non_finite_bars_are_reported(synthetic_frames):
    frame = synthetic_frames["SYN_A"].copy()
    frame.iloc[200, frame.columns.get_loc("volume")] = -5.0  # log1p(-5) is NaN
    with pytest.raises(HPOError) as info:
        build_windows({"SYN_A": frame}, DataConfig(sequence_length=10))
    assert str(info.value) == f"symbol SYN_A: indicators are not finite at {frame.index[200]:%Y-%m-%d} (check the bars there)"


def test_empty_date_cell(tmp_path, table):
    table = table.astype({"Date": object})
    table.loc[4, "Date"] = None
    path = write(tmp_path / "d", "AAA.csv", table)
    message = load_error(path.parent)
    assert "date" in message


def test_csv_with_offsets_across_dst(tmp_path, synthetic_frames):
    frame = synthetic_frames["SYN_A"].copy()
    frame.index = frame.index.tz_localize("America/New_York")
    path = write(tmp_path / "d", "AAA.csv", vendor_csv(frame))
    loaded = load_frames(str(path.parent))["AAA"]
    assert loaded.index.tz is None and len(loaded) == len(frame)


# --- features and labels ----------------------------------------------------------------------------


def test_features_are_trailing(synthetic_frames):
    frame = synthetic_frames["SYN_A"]
    full = compute_features(frame)
    cut = compute_features(frame.iloc[:250])
    np.testing.assert_array_equal(full.iloc[:250].to_numpy(), cut.to_numpy())
    assert list(full.columns) == list(FEATURE_NAMES)
    assert np.isfinite(full.iloc[60:].to_numpy()).all()


def test_forward_returns_and_classes():
    frame = pd.DataFrame({"close": [100.0, 110.0, 99.0, 99.0, 120.0]})
    r = forward_returns(frame, 2)
    np.testing.assert_allclose(r[:3], np.log([99 / 100, 99 / 110, 120 / 99]))
    assert np.isnan(r[3:]).all()
    returns = np.array([-0.02, -0.001, 0.0, 0.001, 0.02])
    assert direction_classes(returns, 2, 0.0).tolist() == [0, 0, 0, 1, 1]
    assert direction_classes(returns, 3, 0.005).tolist() == [0, 1, 1, 1, 2]


# --- windows: structure ----------------------------------------------------------------------------


CONFIGS = [
    DataConfig(sequence_length=10, horizon=1, embargo_bars=3),
    DataConfig(sequence_length=7, horizon=3, embargo_bars=0),
    DataConfig(sequence_length=12, horizon=2, embargo_bars=5, num_classes=3, direction_threshold=0.004),
]


def _positions(frame: pd.DataFrame, dates: list) -> np.ndarray:
    return frame.index.get_indexer(pd.DatetimeIndex(dates))


def _per_symbol(split: Split, symbol: str) -> np.ndarray:
    return np.array([i for i, s in enumerate(split.symbols) if s == symbol])


@pytest.mark.parametrize("cfg", CONFIGS, ids=["h1-e3", "h3-e0", "3class"])
def test_windows_match_an_independent_recomputation(synthetic_frames, cfg):
    data = build_windows(synthetic_frames, cfg)
    assert data.num_classes == cfg.num_classes
    for split in SPLITS:
        part: Split = getattr(data, split)
        n = len(part)
        assert n > 0
        assert part.x.shape == (n, cfg.sequence_length, len(FEATURE_NAMES)) and part.x.dtype == torch.float32
        assert part.y_class.shape == (n,) and part.y_class.dtype == torch.int64
        assert part.y_return.shape == (n,) and part.y_return.dtype == torch.float32
        assert len(part.symbols) == len(part.dates) == n
    for symbol, frame in synthetic_frames.items():
        scaled = data.scaler.transform(compute_features(frame).to_numpy())
        log_close = np.log(frame["close"].to_numpy())
        for split in SPLITS:
            part = getattr(data, split)
            idx = _per_symbol(part, symbol)
            pos = _positions(frame, [part.dates[i] for i in idx])
            assert (pos >= 0).all()
            # The window of the sample at bar t is exactly bars t-L+1..t of *this* symbol.
            expected = np.stack([scaled[p - cfg.sequence_length + 1 : p + 1] for p in pos]).astype(np.float32)
            np.testing.assert_allclose(part.x[idx].numpy(), expected, rtol=1e-6, atol=1e-6)
            ret = log_close[pos + cfg.horizon] - log_close[pos]
            np.testing.assert_allclose(part.y_return[idx].numpy(), ret.astype(np.float32), rtol=1e-5, atol=1e-7)
            classes = direction_classes(ret, cfg.num_classes, cfg.direction_threshold)
            assert part.y_class[idx].tolist() == classes.tolist()
    if cfg.num_classes == 3:
        assert set(data.train.y_class.tolist()) == {0, 1, 2}


@pytest.mark.parametrize("cfg", CONFIGS, ids=["h1-e3", "h3-e0", "3class"])
def test_splits_are_chronological_and_never_straddle(synthetic_frames, cfg):
    data = build_windows(synthetic_frames, cfg)
    length, h = cfg.sequence_length, cfg.horizon
    for symbol, frame in synthetic_frames.items():
        bounds = data.boundaries[symbol]
        spans = {}
        for split in SPLITS:
            part = getattr(data, split)
            dates = [part.dates[i] for i in _per_symbol(part, symbol)]
            assert all(a < b for a, b in zip(dates, dates[1:])), f"{symbol} {split} dates not increasing"
            pos = _positions(frame, dates)
            # Everything a sample touches: window start .. label bar.
            spans[split] = (pos.min() - length + 1, pos.max() + h)
            lo, hi = _positions(frame, [bounds[f"{split}_start"], bounds[f"{split}_end"]])
            assert lo <= spans[split][0] and spans[split][1] <= hi, f"{symbol} {split} leaves its segment"
            # Samples are contiguous bars: the first sample's window starts at the segment start.
            assert spans[split][0] == lo and spans[split][1] == hi
            assert len(pos) == hi - lo + 1 - (length - 1) - h
        for earlier, later in (("train", "val"), ("val", "test")):
            last_label = spans[earlier][1]
            first_window_bar = spans[later][0]
            assert last_label < first_window_bar
            assert first_window_bar - last_label == cfg.embargo_bars + 1
        # The test split runs to the last bar with a label.
        assert spans["test"][1] == len(frame) - 1


def test_split_sizes_follow_the_fractions(synthetic_frames):
    cfg = DataConfig(sequence_length=10, val_fraction=0.2, test_fraction=0.1, embargo_bars=0)
    data = build_windows({"SYN_A": synthetic_frames["SYN_A"]}, cfg)
    segments = {
        s: len(pd.bdate_range(data.boundaries["SYN_A"][f"{s}_start"], data.boundaries["SYN_A"][f"{s}_end"]))
        for s in SPLITS
    }
    total = sum(segments.values())
    assert segments["val"] == int(total * 0.2)
    assert segments["test"] == int(total * 0.1)


def test_scaler_is_fitted_on_training_rows_only(synthetic_frames):
    cfg = DataConfig(sequence_length=10)
    data = build_windows(synthetic_frames, cfg)
    rows = []
    for symbol, frame in synthetic_frames.items():
        features = compute_features(frame)
        b = data.boundaries[symbol]
        rows.append(features.loc[b["train_start"] : b["train_end"]].to_numpy())
    train_rows = np.concatenate(rows)
    assert np.isfinite(train_rows).all()
    np.testing.assert_allclose(data.scaler.mean_, train_rows.mean(axis=0), rtol=1e-10)
    np.testing.assert_allclose(data.scaler.scale_, train_rows.std(axis=0), rtol=1e-10)
    assert data.scaler.n_samples_seen_ == len(train_rows)


def test_split_majority_rate():
    split = Split.from_windows(torch.zeros(5, 2, 1), torch.tensor([1, 1, 0, 1, 0]), torch.zeros(5))
    assert split.majority_rate() == pytest.approx(0.6)


# --- windows: leakage -----------------------------------------------------------------------------


def _perturb_after(frame: pd.DataFrame, cut: pd.Timestamp, seed: int) -> pd.DataFrame:
    """Scale every bar strictly after ``cut`` by random factors (prices together, volume apart)."""
    rng = np.random.default_rng(seed)
    out = frame.copy()
    after = out.index > cut
    n = int(after.sum())
    assert n > 0
    price = rng.uniform(0.5, 2.0, n)
    for column in ("open", "high", "low", "close"):
        out.loc[after, column] = out.loc[after, column].to_numpy() * price
    out.loc[after, "volume"] = out.loc[after, "volume"].to_numpy() * rng.uniform(0.2, 5.0, n)
    return out


def _assert_same_split(a: Split, b: Split) -> None:
    assert torch.equal(a.x, b.x)
    assert torch.equal(a.y_class, b.y_class)
    assert torch.equal(a.y_return, b.y_return)
    assert a.symbols == b.symbols and a.dates == b.dates


@pytest.mark.parametrize("cfg", CONFIGS, ids=["h1-e3", "h3-e0", "3class"])
def test_bars_after_the_training_segment_do_not_change_training_samples(synthetic_frames, cfg):
    base = build_windows(synthetic_frames, cfg)
    perturbed = {
        s: _perturb_after(f, base.boundaries[s]["train_end"], seed=i) for i, (s, f) in enumerate(synthetic_frames.items())
    }
    again = build_windows(perturbed, cfg)
    _assert_same_split(base.train, again.train)
    np.testing.assert_array_equal(base.scaler.mean_, again.scaler.mean_)
    np.testing.assert_array_equal(base.scaler.scale_, again.scaler.scale_)
    assert base.boundaries == again.boundaries
    # The perturbation is real: the later splits do change.
    assert not torch.equal(base.val.x, again.val.x)
    assert not torch.equal(base.test.y_return, again.test.y_return)


@pytest.mark.parametrize("cfg", CONFIGS, ids=["h1-e3", "h3-e0", "3class"])
def test_bars_after_the_validation_segment_do_not_change_train_or_val_samples(synthetic_frames, cfg):
    base = build_windows(synthetic_frames, cfg)
    perturbed = {
        s: _perturb_after(f, base.boundaries[s]["val_end"], seed=10 + i) for i, (s, f) in enumerate(synthetic_frames.items())
    }
    again = build_windows(perturbed, cfg)
    _assert_same_split(base.train, again.train)
    _assert_same_split(base.val, again.val)
    np.testing.assert_array_equal(base.scaler.mean_, again.scaler.mean_)
    np.testing.assert_array_equal(base.scaler.scale_, again.scaler.scale_)
    assert not torch.equal(base.test.x, again.test.x)


def test_one_symbols_bars_do_not_change_another_symbols_samples(synthetic_frames):
    cfg = DataConfig(sequence_length=10)
    base = build_windows(synthetic_frames, cfg)
    # Change only the FIRST symbol's bars after its validation end: its rows lie just before the
    # second symbol's in every split, so a window crossing symbols would carry the change over.
    perturbed = dict(synthetic_frames)
    perturbed["SYN_A"] = _perturb_after(synthetic_frames["SYN_A"], base.boundaries["SYN_A"]["val_end"], seed=3)
    again = build_windows(perturbed, cfg)
    assert not torch.equal(base.test.x, again.test.x)  # the change is real
    for split in SPLITS:
        a, b = getattr(base, split), getattr(again, split)
        idx = torch.as_tensor(_per_symbol(a, "SYN_B"))
        assert len(idx) > 0
        assert torch.equal(a.x[idx], b.x[idx]) and torch.equal(a.y_return[idx], b.y_return[idx])
        assert torch.equal(a.y_class[idx], b.y_class[idx])


def _calendar(symbol: str, start: str, n_bars: int) -> pd.DataFrame:
    frame = synthetic_frame(symbol, n_bars=n_bars)
    frame.index = pd.bdate_range(start, periods=n_bars, name="date")
    return frame


@pytest.mark.parametrize("embargo", [0, 4])
def test_symbols_with_different_calendars_are_cut_at_the_same_dates(embargo):
    # A long history from 2005, a short one from 2011 that runs later, one fully inside.
    frames = {"OLD": _calendar("OLD", "2005-01-03", 2400), "NEW": _calendar("NEW", "2011-01-03", 1200),
              "MID": _calendar("MID", "2009-06-01", 1600)}
    cfg = DataConfig(sequence_length=10, horizon=2, embargo_bars=embargo)
    data = build_windows(frames, cfg)
    b = data.boundaries
    # Everything a training sample touches (window .. label bar) of any symbol precedes every
    # validation bar of any symbol, and likewise validation before test.
    assert max(b[s]["train_end"] for s in frames) < data.cuts["val_start"] <= min(b[s]["val_start"] for s in frames)
    assert max(b[s]["val_end"] for s in frames) < data.cuts["test_start"] <= min(b[s]["test_start"] for s in frames)
    for split, later in (("train", "val"), ("val", "test")):
        last_label = max(
            frames[s].index[frames[s].index.get_loc(d) + cfg.horizon]
            for s, d in zip(getattr(data, split).symbols, getattr(data, split).dates)
        )
        first_window_bar = min(
            frames[s].index[frames[s].index.get_loc(d) - cfg.sequence_length + 1]
            for s, d in zip(getattr(data, later).symbols, getattr(data, later).dates)
        )
        assert last_label < first_window_bar
    # The cuts split the union of dates (after warm-up) by the fractions.
    union = sorted(set().union(*(frames[s].loc[b[s]["train_start"]:].index for s in frames)))
    n = len(union)
    assert data.cuts["test_start"] == union[n - int(n * cfg.test_fraction)]
    assert data.cuts["val_start"] == union[n - int(n * cfg.test_fraction) - int(n * cfg.val_fraction)]
    # The embargo counts each symbol's own bars after the cut.
    for s in frames:
        index = frames[s].index
        assert index.get_loc(b[s]["val_start"]) - index.searchsorted(data.cuts["val_start"]) == embargo


def test_a_symbol_without_bars_in_a_split_names_its_range():
    frames = {"OLD": _calendar("OLD", "2005-01-03", 2400), "LATE": _calendar("LATE", "2013-06-03", 120)}
    with pytest.raises(HPOError, match=r"symbol LATE: too few rows in the train split \(0 bars; the symbol has"):
        build_windows(frames, DataConfig(sequence_length=10))


# --- loaders ------------------------------------------------------------------------------------------


def test_window_loader_batches(synthetic_windows):
    split = synthetic_windows.val
    loader = WindowLoader(split, batch_size=64)
    batches = list(loader)
    assert len(batches) == len(loader) == -(-len(split) // 64)
    assert all(len(b[0]) == 64 for b in batches[:-1])
    assert torch.equal(torch.cat([b[0] for b in batches]), split.x)
    shuffled = list(WindowLoader(split, batch_size=64, shuffle=True, seed=1))
    ys = torch.cat([b[2] for b in shuffled])
    assert not torch.equal(ys, split.y_return)
    assert torch.equal(ys.sort().values, split.y_return.sort().values)
    assert split_from_loader(loader) is split


def test_split_from_a_torch_dataloader(synthetic_windows):
    split = synthetic_windows.val
    dataset = torch.utils.data.TensorDataset(split.x, split.y_class, split.y_return)
    got = split_from_loader(torch.utils.data.DataLoader(dataset, batch_size=100))
    assert torch.equal(got.x, split.x) and torch.equal(got.y_class, split.y_class)
    assert torch.equal(got.y_return, split.y_return)
    with pytest.raises(HPOError):
        split_from_loader([(split.x,)])
    with pytest.raises(HPOError):
        split_from_loader(42)
