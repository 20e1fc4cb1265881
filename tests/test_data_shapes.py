"""Market data as real exports have it: one small example of every accepted shape, bar frequency,
gaps, resampling, repairs, the yfinance cache, and what ``cnn-lstm-hpo data`` shows.

The fixtures are written as the tools that make them write them (pandas ``to_csv``, vendor
headers, epoch columns, Parquet), then read through the public loader.
"""

from __future__ import annotations

import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cnn_lstm_hpo import data as data_module
from cnn_lstm_hpo.cli import app
from cnn_lstm_hpo.config import build_config
from cnn_lstm_hpo.data import COLUMNS, bar_frequency, bar_gaps, load_bars, synthetic_frame
from cnn_lstm_hpo.errors import HPOError
from cnn_lstm_hpo.windows import SPLITS, build_windows

ROWS = [  # open, high, low, close, volume of three bars
    (10.0, 12.0, 9.0, 11.0, 100.0),
    (11.0, 13.0, 10.0, 12.0, 200.0),
    (12.0, 14.0, 11.0, 13.0, 300.0),
]
DAYS = ["2020-01-02", "2020-01-03", "2020-01-06"]
EXPECTED = pd.DataFrame(ROWS, columns=list(COLUMNS), index=pd.DatetimeIndex(DAYS, name="date"))


def load_one(path: Path, **kwargs) -> pd.DataFrame:
    loaded = load_bars(str(path), **kwargs)
    assert list(loaded.frames) == [path.name.split(".")[0].upper()]
    return next(iter(loaded.frames.values()))


def csv(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def body(dates: list[str]) -> str:
    return "".join(f"{d},{o:g},{h:g},{lo:g},{c:g},{v:g}\n" for d, (o, h, lo, c, v) in zip(dates, ROWS))


# --- the shapes of real exports -------------------------------------------------------------------


def test_pandas_to_csv_with_an_unnamed_index_column(tmp_path):
    frame = EXPECTED.rename(columns=str.title)
    frame.index.name = None  # the commonest export of all: ",Open,High,Low,Close,Volume"
    frame.to_csv(tmp_path / "ABC.csv")
    assert (tmp_path / "ABC.csv").read_text().startswith(",Open,High,Low,Close,Volume\n2020-01-02,")
    pd.testing.assert_frame_equal(load_one(tmp_path / "ABC.csv"), EXPECTED, check_index_type=False, check_freq=False)


YFINANCE_CSV = Path(__file__).parent / "data" / "yfinance_download_XYZ.csv"


def test_a_yfinance_download_written_with_to_csv_is_read_with_its_ticker_as_the_symbol(tmp_path):
    # The fixture is byte for byte what yfinance.download("XYZ").to_csv() writes: Price / Ticker / Date rows.
    assert YFINANCE_CSV.read_text().startswith(
        "Price,Adj Close,Close,High,Low,Open,Volume\nTicker,XYZ,XYZ,XYZ,XYZ,XYZ,XYZ\nDate,,,,,,\n2010-01-04,")
    shutil.copy(YFINANCE_CSV, tmp_path / "download.csv")  # the symbol comes from the Ticker row, not the file name
    loaded = load_bars(str(tmp_path / "download.csv"))
    assert list(loaded.frames) == ["XYZ"]
    frame = loaded.frames["XYZ"]
    raw = pd.read_csv(YFINANCE_CSV, skiprows=[1, 2])
    assert len(frame) == 60 and str(frame.index[0].date()) == "2010-01-04"
    np.testing.assert_allclose(frame["close"], raw["Adj Close"])  # adjusted, as for a one-row header
    np.testing.assert_allclose(frame["volume"], raw["Volume"])


def test_two_header_rows_without_the_date_row_and_several_tickers_by_ticker(tmp_path):
    frame = EXPECTED.rename(columns=str.title)
    frame.index.name = None
    # group_by="ticker": (Ticker, Price) columns, two symbols side by side.
    wide = pd.concat({"AAA": frame, "BBB": frame * 2}, axis=1, names=["Ticker", "Price"])
    wide.to_csv(tmp_path / "both.csv")
    assert (tmp_path / "both.csv").read_text().startswith("Ticker,AAA,AAA,")
    loaded = load_bars(str(tmp_path / "both.csv"))
    assert list(loaded.frames) == ["AAA", "BBB"]
    pd.testing.assert_frame_equal(loaded.frames["AAA"], EXPECTED, check_index_type=False, check_freq=False)
    np.testing.assert_allclose(loaded.frames["BBB"]["close"], 2 * EXPECTED["close"])


@pytest.mark.parametrize("header", ["Date", "date", "DATE", "Datetime", "timestamp", "Time", "trade_date", "Open Time"])
def test_date_column_under_common_names(tmp_path, header):
    path = csv(tmp_path, "ABC.csv", f"{header},Open,High,Low,Close,Volume\n" + body(DAYS))
    frame = load_one(path)
    assert list(frame.index) == list(EXPECTED.index)
    assert frame.index.name == "date"


def test_mixed_case_headers_prefer_adj_close_and_ignore_extra_columns(tmp_path):
    path = csv(
        tmp_path, "ABC.csv",
        "DATE,open,HIGH,Low,close,Adj Close,VOLUME,Dividends,Stock Splits\n"
        "2020-01-02,10,12,9,11,5.5,100,0,0\n"
        "2020-01-03,11,13,10,12,12,200,0.1,0\n",
    )
    frame = load_one(path)
    assert list(frame.columns) == list(COLUMNS)
    # Adjusted close, and open/high/low scaled by the same factor (adj_close / close).
    np.testing.assert_allclose(frame.iloc[0].to_numpy(), [5.0, 6.0, 4.5, 5.5, 100.0])
    np.testing.assert_allclose(frame.iloc[1].to_numpy(), [11.0, 13.0, 10.0, 12.0, 200.0])


@pytest.mark.parametrize(
    ("name", "dates"),
    [
        ("iso", DAYS),
        ("us", ["01/02/2020", "01/03/2020", "01/06/2020"]),
        ("us_short", ["1/2/2020", "1/3/2020", "1/6/2020"]),
        ("epoch_s", ["1577923200", "1578009600", "1578268800"]),
        ("epoch_ms", ["1577923200000", "1578009600000", "1578268800000"]),
        ("yyyymmdd", ["20200102", "20200103", "20200106"]),
    ],
)
def test_date_formats(tmp_path, name, dates):
    path = csv(tmp_path, "ABC.csv", "Date,Open,High,Low,Close,Volume\n" + body(dates))
    pd.testing.assert_frame_equal(load_one(path), EXPECTED, check_index_type=False, check_freq=False)


def test_us_dates_are_month_first(tmp_path):
    # 01/02 is January 2 (not February 1): the order is decided by the file, not guessed per row.
    path = csv(tmp_path, "ABC.csv", "Date,Open,High,Low,Close,Volume\n" + body(["01/02/2020", "01/03/2020", "01/13/2020"]))
    assert [f"{d:%Y-%m-%d}" for d in load_one(path).index] == ["2020-01-02", "2020-01-03", "2020-01-13"]


def test_intraday_without_time_zone(tmp_path):
    times = ["2020-03-02 09:30:00", "2020-03-02 10:30:00", "2020-03-02 11:30:00"]
    frame = load_one(csv(tmp_path, "ABC.csv", "Datetime,Open,High,Low,Close,Volume\n" + body(times)))
    assert list(frame.index) == list(pd.DatetimeIndex(times))
    assert bar_frequency(frame.index).label == "hourly"


def test_intraday_with_time_zone_keeps_local_wall_time(tmp_path):
    # yfinance intraday: "2020-03-02 09:30:00-05:00"; the exchange's clock, not UTC.
    times = ["2020-03-02 09:30:00-05:00", "2020-03-02 10:30:00-05:00", "2020-03-02 11:30:00-05:00"]
    frame = load_one(csv(tmp_path, "ABC.csv", "Datetime,Open,High,Low,Close,Volume\n" + body(times)))
    assert frame.index.tz is None
    assert [f"{t:%Y-%m-%d %H:%M}" for t in frame.index] == ["2020-03-02 09:30", "2020-03-02 10:30", "2020-03-02 11:30"]


def test_daily_bars_with_a_positive_utc_offset_stay_on_their_own_date(tmp_path):
    # Converted to UTC these would fall on the previous day (2020-01-01 15:00) and shift every bar.
    days = ["2020-01-02T00:00:00+09:00", "2020-01-03T00:00:00+09:00", "2020-01-06T00:00:00+09:00"]
    frame = load_one(csv(tmp_path, "ABC.csv", "Date,Open,High,Low,Close,Volume\n" + body(days)))
    assert list(frame.index) == list(EXPECTED.index)
    assert bar_frequency(frame.index).label == "daily"


def test_parquet_with_a_time_zone_aware_index_keeps_local_dates(tmp_path):
    frame = EXPECTED.rename(columns=str.title)
    frame.index = frame.index.tz_localize("Asia/Tokyo").rename("Date")
    frame.to_parquet(tmp_path / "ABC.parquet")
    pd.testing.assert_frame_equal(load_one(tmp_path / "ABC.parquet"), EXPECTED, check_index_type=False, check_freq=False)


def test_parquet_with_a_date_column(tmp_path):
    EXPECTED.reset_index().to_parquet(tmp_path / "ABC.parquet", index=False)
    pd.testing.assert_frame_equal(load_one(tmp_path / "ABC.parquet"), EXPECTED, check_index_type=False, check_freq=False)


def test_long_file_with_a_symbol_column(tmp_path):
    a = EXPECTED.reset_index().assign(Ticker="aapl")
    b = (EXPECTED * 2).reset_index().assign(Ticker="msft")
    # Interleaved as a database dump would be; symbols are upper-cased.
    pd.concat([a, b]).sort_values("date").to_csv(tmp_path / "all.csv", index=False)
    loaded = load_bars(str(tmp_path / "all.csv"))
    assert sorted(loaded.frames) == ["AAPL", "MSFT"]
    pd.testing.assert_frame_equal(loaded.frames["AAPL"], EXPECTED, check_index_type=False, check_freq=False)
    pd.testing.assert_frame_equal(loaded.frames["MSFT"], EXPECTED * 2, check_index_type=False, check_freq=False)


def test_folder_mixing_csv_and_parquet(tmp_path):
    folder = tmp_path / "bars"
    folder.mkdir()
    EXPECTED.to_csv(folder / "AAA.csv")
    EXPECTED.to_parquet(folder / "BBB.parquet")
    loaded = load_bars(str(folder))
    assert list(loaded.frames) == ["AAA", "BBB"]
    for frame in loaded.frames.values():
        pd.testing.assert_frame_equal(frame, EXPECTED, check_index_type=False, check_freq=False)


# --- frequency, gaps, resampling ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("index", "label"),
    [
        (pd.bdate_range("2020-01-01", periods=50), "daily"),
        (pd.date_range("2020-01-02 09:00", periods=50, freq="h"), "hourly"),
        (pd.date_range("2020-01-02 09:30", periods=50, freq="5min"), "5-minute"),
        (pd.date_range("2020-01-02 09:30", periods=50, freq="min"), "1-minute"),
        (pd.date_range("2020-01-03", periods=50, freq="W-FRI"), "weekly"),
    ],
)
def test_bar_frequency(index, label):
    assert bar_frequency(pd.DatetimeIndex(index)).label == label


def _bars(index: pd.DatetimeIndex, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 + np.cumsum(rng.normal(0, 1, len(index)))
    open_ = close + rng.normal(0, 0.5, len(index))
    return pd.DataFrame(
        {"open": open_, "high": np.maximum(open_, close) + 1, "low": np.minimum(open_, close) - 1, "close": close,
         "volume": rng.integers(1, 1000, len(index)).astype(float)},
        index=index.rename("date"),
    )


def _trading_hours(days: int) -> pd.DatetimeIndex:
    """Hourly bars 09:00 .. 15:00 on business days: nights and weekends are not gaps."""
    return pd.DatetimeIndex([d + pd.Timedelta(hours=h) for d in pd.bdate_range("2020-01-06", periods=days) for h in range(9, 16)])


def test_daily_and_hourly_symbols_are_not_pooled(tmp_path):
    folder = tmp_path / "bars"
    folder.mkdir()
    _bars(pd.bdate_range("2020-01-01", periods=60)).to_csv(folder / "DAY.csv")
    _bars(_trading_hours(10)).to_csv(folder / "HOUR.csv")
    with pytest.raises(HPOError) as info:
        load_bars(str(folder))
    assert str(info.value) == (
        "symbols have different bar frequencies (DAY daily, HOUR hourly); set data.resample (e.g. '1D') to aggregate them to one"
    )


def test_resample_to_daily_aggregates_ohlcv(tmp_path):
    folder = tmp_path / "bars"
    folder.mkdir()
    hourly = _bars(_trading_hours(10), seed=1)
    daily = _bars(pd.bdate_range("2020-01-06", periods=10), seed=2)
    hourly.to_csv(folder / "HOUR.csv")
    daily.to_csv(folder / "DAY.csv")
    loaded = load_bars(str(folder), resample="1D")
    # Independent aggregation: one row per calendar day, by hand.
    rows = {}
    for day, bars in hourly.groupby(hourly.index.date):
        rows[pd.Timestamp(day)] = [bars["open"].iloc[0], bars["high"].max(), bars["low"].min(), bars["close"].iloc[-1],
                                   bars["volume"].sum()]
    expected = pd.DataFrame.from_dict(rows, orient="index", columns=list(COLUMNS))
    got = loaded.frames["HOUR"]
    assert len(got) == 10 and list(got.index) == list(expected.index)
    np.testing.assert_allclose(got.to_numpy(), expected.to_numpy())
    np.testing.assert_allclose(loaded.frames["DAY"].to_numpy(), daily.to_numpy())  # already daily: unchanged
    assert loaded.repairs["HOUR"] == ["resampled from hourly bars to 1D: 70 -> 10 bars"]


def test_resample_finer_than_the_bars_is_refused(tmp_path):
    _bars(pd.bdate_range("2020-01-01", periods=60)).to_csv(tmp_path / "DAY.csv")
    with pytest.raises(HPOError) as info:
        load_bars(str(tmp_path / "DAY.csv"), resample="1h")
    assert str(info.value) == (
        "symbol DAY: cannot resample daily bars to 1h (data.resample must be at least as coarse as every symbol's bars)"
    )


def test_daily_gaps_count_and_largest():
    days = pd.bdate_range("2020-01-01", periods=80)
    index = days.delete(list(range(20, 28)) + [50, 51, 52, 53, 54])  # 8 and 5 business days missing
    gaps = bar_gaps(index)
    assert gaps.count == 2
    spacing = index[1:] - index[:-1]
    assert gaps.largest == spacing.max() == pd.Timedelta(days=13)  # Wed 2020-01-29 .. Tue 02-11 (8 missing)
    assert gaps.largest_after == index[19]
    assert bar_gaps(days).count == 0  # weekends and single holidays are not gaps
    assert bar_gaps(days.delete([10])).count == 0


def test_intraday_gaps_ignore_nights_and_weekends():
    index = _trading_hours(10)
    assert bar_gaps(index).count == 0
    holed = index.delete([7 * 4 + 3])  # 12:00 on the fifth day
    gaps = bar_gaps(holed)
    assert (gaps.count, gaps.largest) == (1, pd.Timedelta(hours=2))
    assert gaps.largest_after == pd.Timestamp("2020-01-10 11:00")
    lunch = index[index.hour != 12]  # a break on every day is the market's, not a gap
    assert bar_gaps(lunch).count == 0
    assert bar_gaps(lunch.delete([3])).count == 1


# --- repairs and refusals -------------------------------------------------------------------------


def test_an_isolated_nan_bar_is_dropped_and_counted(tmp_path):
    frame = synthetic_frame("SYN_A", n_bars=300)
    frame.iloc[100, frame.columns.get_loc("close")] = np.nan
    frame.iloc[200, frame.columns.get_loc("volume")] = np.nan
    frame.to_csv(tmp_path / "ABC.csv")
    loaded = load_bars(str(tmp_path / "ABC.csv"))
    dropped = [frame.index[100], frame.index[200]]
    assert len(loaded.frames["ABC"]) == 298
    assert not loaded.frames["ABC"].index.isin(dropped).any()
    assert loaded.repairs["ABC"] == [
        f"dropped 2 bars with a missing value (NaN): {dropped[0]:%Y-%m-%d}, {dropped[1]:%Y-%m-%d}"
    ]


def test_a_symbol_without_bars_in_the_range_names_its_range(tmp_path):
    EXPECTED.to_csv(tmp_path / "ABC.csv")
    with pytest.raises(HPOError) as info:
        load_bars(str(tmp_path / "ABC.csv"), start=pd.Timestamp("2021-01-01").date(), end=pd.Timestamp("2021-06-30").date())
    assert str(info.value) == (
        "symbol ABC has no bars from 2021-01-01 to 2021-06-30; its data runs from 2020-01-02 to 2020-01-06"
    )


# --- yfinance: served from the cache, never from the network --------------------------------------


def _no_download(symbol, path):
    raise AssertionError(f"tried to download {symbol}")


def test_yfinance_reads_the_parquet_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(data_module, "_download", _no_download)
    cache = tmp_path / "cache"
    cache.mkdir()
    # As yfinance.download(...) returns it: a Date index, capitalised columns, Adj Close.
    table = EXPECTED.rename(columns=str.title).assign(**{"Adj Close": EXPECTED["close"]})
    table.index = table.index.rename("Date")
    table.to_parquet(cache / "AAPL.parquet")
    loaded = load_bars("yfinance", ["aapl"], cache_dir=cache)
    assert list(loaded.frames) == ["AAPL"]
    pd.testing.assert_frame_equal(loaded.frames["AAPL"], EXPECTED, check_index_type=False, check_freq=False)


def test_yfinance_without_network_is_one_line(tmp_path, monkeypatch):
    fake = types.ModuleType("yfinance")

    def download(*args, **kwargs):
        raise ConnectionError("Failed to resolve 'query2.finance.yahoo.com'\n(more lines)")

    fake.download = download  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "yfinance", fake)
    with pytest.raises(HPOError) as info:
        load_bars("yfinance", ["MSFT"], cache_dir=tmp_path / "cache")
    assert str(info.value) == (
        "cannot download MSFT from Yahoo Finance (Failed to resolve 'query2.finance.yahoo.com'); check the network"
    )
    assert not (tmp_path / "cache" / "MSFT.parquet").exists()


def test_yfinance_not_installed_and_not_cached(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "yfinance", None)  # import fails
    with pytest.raises(HPOError) as info:
        load_bars("yfinance", ["MSFT"], cache_dir=tmp_path)
    assert str(info.value) == (
        f"no cached bars for MSFT in {tmp_path}, and yfinance is not installed: pip install 'cnn-lstm-hpo[yfinance]'"
    )


# --- the data command -----------------------------------------------------------------------------

runner = CliRunner()


def test_data_command_shows_bars_frequency_gaps_repairs_and_windows(tmp_path):
    folder = tmp_path / "bars"
    folder.mkdir()
    a = synthetic_frame("SYN_A", n_bars=300)
    a.iloc[150, a.columns.get_loc("close")] = np.nan
    nan_day = a.index[150]
    a = a.drop(a.index[60:70])  # ten business days missing: one gap of 16 days
    a.rename(columns=str.title).to_csv(folder / "AAA.csv")
    synthetic_frame("SYN_B", n_bars=300).to_csv(folder / "BBB.csv")
    result = runner.invoke(app, ["data", "--data", str(folder)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "AAA: 289 bars, 2010-01-04 .. 2011-02-25, daily; gaps: 1 longer than usual (largest 17 days after 2010-03-26)"
    assert lines[1] == f"  repaired: dropped 1 bar with a missing value (NaN): {nan_day:%Y-%m-%d}"
    assert lines[2] == "BBB: 300 bars, 2010-01-04 .. 2011-02-25, daily; gaps: none"
    assert lines[3] == "windows (sequence_length=30, horizon=1, embargo 5 bars):"
    for split in SPLITS:
        assert sum(1 for line in lines if line.startswith(f"{split}: ") and "windows, majority-class rate" in line) == 1


def test_data_command_with_a_scenario_uses_its_dates_and_the_windows_optimize_uses():
    result = runner.invoke(app, ["data", "--scenario", "smoke"])
    assert result.exit_code == 0, result.output
    config = build_config("smoke")
    cfg = config.data
    assert str(cfg.start) == "2014-01-01" and cfg.sequence_length == 20
    loaded = load_bars(cfg.source, None, start=cfg.start, end=cfg.end)
    windows = build_windows(loaded.frames, cfg)
    expected = []
    for symbol, frame in loaded.frames.items():
        expected.append(f"{symbol}: {len(frame)} bars, {frame.index[0]:%Y-%m-%d} .. {frame.index[-1]:%Y-%m-%d}, daily; gaps: none")
    expected.append(f"windows (sequence_length=20, horizon=1, embargo {cfg.embargo_bars} bars):")
    for split in SPLITS:
        part = getattr(windows, split)
        expected.append(f"{split}: {len(part)} windows, majority-class rate {part.majority_rate():.4f}")
        for symbol, bounds in windows.boundaries.items():
            count = sum(1 for s in part.symbols if s == symbol)
            expected.append(
                f"  {symbol}: {count} windows, bars {bounds[f'{split}_start']:%Y-%m-%d} .. {bounds[f'{split}_end']:%Y-%m-%d}"
            )
    assert result.stdout.splitlines() == expected
    assert result.stdout.splitlines()[0].startswith("SP500: ") and " 2014-01-02 .. " in result.stdout


def test_data_command_accepts_the_guides_space_separated_symbols():
    from cnn_lstm_hpo.cli import join_list_options

    assert join_list_options(["data", "--symbols", "SYN_A", "SYN_B", "--data", "synthetic"]) == [
        "data", "--symbols", "SYN_A,SYN_B", "--data", "synthetic"
    ]
    result = runner.invoke(app, join_list_options(["data", "--data", "synthetic", "--symbols", "SYN_B", "SYN_A"]))
    assert result.exit_code == 0, result.output
    assert [line.split(":")[0] for line in result.stdout.splitlines()[:2]] == ["SYN_B", "SYN_A"]


# --- every data setting reaches every path that loads bars ----------------------------------------


def _long(index: pd.DatetimeIndex, symbol: str) -> pd.DataFrame:
    """Bars at ``index`` that stay positive however many there are (a multiplicative walk)."""
    return synthetic_frame(symbol, n_bars=len(index)).set_axis(index.rename("date"))


def test_resampled_hourly_bars_train_as_resampled_bars(tmp_path):
    from cnn_lstm_hpo.config import DataConfig
    from cnn_lstm_hpo.windows import prepare_windows

    _long(pd.date_range("2020-01-01", periods=2400, freq="h"), "HOUR").to_csv(tmp_path / "HOUR.csv")
    cfg = DataConfig(source=str(tmp_path / "HOUR.csv"), sequence_length=10, resample="4h")
    data, _ = prepare_windows(cfg, None)
    spacing = set(pd.Series(data.train.dates).diff().dropna())
    assert spacing == {pd.Timedelta(hours=4)}  # round the clock: every 4-hour period has a bar


def test_a_daily_and_an_hourly_symbol_pool_with_resample_through_optimize(tmp_path):
    from cnn_lstm_hpo import MultiObjectiveOptimizer, create_optimization_config

    folder = tmp_path / "bars"
    folder.mkdir()
    _long(pd.bdate_range("2020-01-06", periods=400), "DAY").to_csv(folder / "DAY.csv")
    _long(_trading_hours(400), "HOUR").to_csv(folder / "HOUR.csv")
    config = create_optimization_config(
        scenario="smoke", save_dir=tmp_path / "run",
        data={"source": str(folder), "start": None, "sequence_length": 10, "resample": "1D"},
    )
    optimizer = MultiObjectiveOptimizer(config, progress=False)
    assert sorted(optimizer.data.boundaries) == ["DAY", "HOUR"]
    assert all(d == d.normalize() for d in optimizer.data.train.dates)  # daily bars, both symbols
    assert optimizer.fingerprint["data.resample"] == "1D"


def test_a_yfinance_cache_dir_reaches_the_loader(tmp_path, monkeypatch):
    from cnn_lstm_hpo.config import DataConfig
    from cnn_lstm_hpo.windows import prepare_windows

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "default"))  # where a forgotten setting would lead
    written = []

    def download(symbol, path):
        written.append(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        synthetic_frame(symbol, n_bars=400).to_parquet(path)

    monkeypatch.setattr(data_module, "_download", download)
    cfg = DataConfig(source="yfinance", cache_dir=tmp_path / "cache", sequence_length=10)
    data, _ = prepare_windows(cfg, ["aapl"])
    assert written == [tmp_path / "cache" / "AAPL.parquet"] and list(data.boundaries) == ["AAPL"]


def test_predict_shapes_new_bars_with_the_models_data_settings(tmp_path):
    import torch
    from sklearn.preprocessing import StandardScaler

    from cnn_lstm_hpo.deployment.checkpoint import checkpoint_meta, save_checkpoint
    from cnn_lstm_hpo.features import FEATURE_NAMES
    from cnn_lstm_hpo.model import HybridCNNLSTM, ModelConfig
    from cnn_lstm_hpo.deployment.predict import predict_to_csv

    params = {"cnn_num_filters": 4, "cnn_filter_sizes": [2], "cnn_attention_heads": 2, "lstm_hidden_dim": 4,
              "lstm_num_layers": 1, "lstm_bidirectional": False, "dropout_rate": 0.0}
    model_config = ModelConfig.from_params(params, n_features=len(FEATURE_NAMES), num_classes=2)
    meta = checkpoint_meta(
        model_config, hyperparameters=params, feature_names=FEATURE_NAMES, sequence_length=5, horizon=1,
        direction_threshold=0.0, scaler=StandardScaler().fit(np.eye(len(FEATURE_NAMES))), return_scale=1.0,
        origin={"data": {"source": "elsewhere", "sequence_length": 5, "resample": "4h"}},
    )
    torch.manual_seed(0)
    model = save_checkpoint(tmp_path / "model", HybridCNNLSTM(model_config), meta)
    _long(pd.date_range("2020-01-01", periods=800, freq="h"), "HOUR").to_csv(tmp_path / "HOUR.csv")
    table = predict_to_csv(model, str(tmp_path / "HOUR.csv"), tmp_path / "out.csv")
    assert set(table["date"].diff().dropna()) == {pd.Timedelta(hours=4)}


def test_only_the_data_module_calls_the_loaders():
    # Every other path loads through data.load_configured / configured_frames, so that a data
    # setting cannot reach one path and not another.
    import cnn_lstm_hpo

    package = Path(cnn_lstm_hpo.__file__).parent
    callers = sorted(
        p.name for p in package.rglob("*.py")
        if p.name != "data.py" and ("load_bars(" in p.read_text() or "load_frames(" in p.read_text())
    )
    assert callers == []
