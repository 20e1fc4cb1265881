"""Labels of every target (targets.py): against slow independent loops, and which labels a change
to one bar's close may move (the outcome from bars after the decision bar, the threshold from bars
up to it only)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cnn_lstm_hpo.config import DataConfig, build_config, validate_data_config
from cnn_lstm_hpo.errors import HPOError
from cnn_lstm_hpo.targets import compute_targets
from cnn_lstm_hpo.windows import build_windows


def frame_of(closes: np.ndarray) -> pd.DataFrame:
    index = pd.bdate_range("2020-01-01", periods=len(closes))
    return pd.DataFrame({"open": closes, "high": closes, "low": closes, "close": closes, "volume": 1e6}, index=index)


def random_closes(seed: int, n: int = 300, *, flat: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    steps = rng.normal(0, 0.01, n) * rng.choice([0.5, 1.0, 3.0], n)  # volatility that changes
    if flat:  # stretches of unchanged closes: zero trailing volatility, barrier ties
        steps[rng.random(n) < 0.5] = 0.0
    return 100 * np.exp(np.cumsum(steps))


def cfg(target: str, **kw) -> DataConfig:
    return DataConfig(target=target, **kw)


def slow_triple_barrier(closes, horizon, window, pt, sl, num_classes):
    lc = np.log(closes)
    classes, values = [], []
    for t in range(len(lc)):
        if t < window or t + horizon >= len(lc):
            classes.append(None), values.append(None)
            continue
        sigma = np.std([lc[i] - lc[i - 1] for i in range(t - window + 1, t + 1)], ddof=1)
        label = None
        for j in range(1, horizon + 1):
            r = lc[t + j] - lc[t]
            if r <= -sl * sigma:  # the stop-loss first: it wins a tie
                label = 0
                break
            if r >= pt * sigma:
                label = 2 if num_classes == 3 else 1
                break
        if label is None:
            label = 1 if num_classes == 3 else int(r > 0)
        classes.append(label), values.append(r)
    return classes, values


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("num_classes", [2, 3])
def test_triple_barrier_matches_a_slow_loop(seed, num_classes):
    closes = random_closes(seed, flat=seed % 2 == 1)
    horizon, window, pt, sl = 2 + seed, 5 + 3 * seed, 1.0 + 0.5 * seed, 0.8
    classes, values = compute_targets(
        frame_of(closes), cfg("triple_barrier", horizon=horizon, vol_window=window, profit_take=pt, stop_loss=sl,
                              num_classes=num_classes))
    want_classes, want_values = slow_triple_barrier(closes, horizon, window, pt, sl, num_classes)
    defined = [i for i, v in enumerate(want_values) if v is not None]
    assert np.isnan(np.delete(values, defined)).all()
    assert classes[defined].tolist() == [want_classes[i] for i in defined]
    np.testing.assert_allclose(values[defined], [want_values[i] for i in defined], rtol=0, atol=1e-12)
    assert len(set(classes[defined].tolist())) == num_classes  # every class occurs: the check has teeth


def test_triple_barrier_ties_go_to_the_stop_loss_and_the_vertical_barrier_by_sign():
    # 21 unchanged closes: zero trailing volatility at bar 20, both barriers at a zero return.
    closes = np.array([100.0] * 22 + [101.0, 102.0, 101.0, 99.0, 99.5, 99.6, 99.7, 99.8])
    three = compute_targets(frame_of(closes), cfg("triple_barrier", horizon=1, num_classes=3))
    two = compute_targets(frame_of(closes), cfg("triple_barrier", horizon=1, num_classes=2))
    assert three[0][20] == 0 and two[0][20] == 0  # close 21 = close 20 touches both: the stop-loss wins
    assert three[1][20] == 0.0
    # Later, a tiny move stays inside the barriers: vertical (1) with 3 classes, by its sign with 2.
    assert three[0][28] == 1 and two[0][28] == 1  # 99.7 -> 99.8
    assert three[1][28] == pytest.approx(np.log(99.8 / 99.7))


def test_volatility_matches_numpy():
    closes = random_closes(7)
    horizon, window = 5, 20
    classes, values = compute_targets(frame_of(closes), cfg("volatility", horizon=horizon, vol_window=window))
    r = np.diff(np.log(closes))  # r[i] = log(c[i+1] / c[i])
    for t in range(window, len(closes) - horizon):
        future, trailing = np.std(r[t : t + horizon], ddof=1), np.std(r[t - window : t], ddof=1)
        assert classes[t] == int(future > trailing)
        assert values[t] == pytest.approx(np.log(future) - np.log(trailing), abs=1e-12)
    assert np.isnan(values[:window]).all() and np.isnan(values[-horizon:]).all()
    assert 0.2 < classes[window:-horizon].mean() < 0.8


# The closes a label at t reads: direction t and t+h; the volatility targets t-vol_window .. t+h.
REACH = {"direction": lambda t, h, w: {t, t + h}, "triple_barrier": lambda t, h, w: set(range(t - w, t + h + 1)),
         "volatility": lambda t, h, w: set(range(t - w, t + h + 1))}


@pytest.mark.parametrize("target", ["direction", "triple_barrier", "volatility"])
def test_one_changed_close_moves_only_the_labels_that_read_it(target):
    horizon, window, k = 4, 10, 150
    config = cfg(target, horizon=horizon, vol_window=window, **({"num_classes": 3} if target == "triple_barrier" else {}))
    closes = random_closes(11)
    before = compute_targets(frame_of(closes), config)
    changed_closes = closes.copy()
    changed_closes[k] *= 1.08  # a big move: it flips labels wherever it can
    after = compute_targets(frame_of(changed_closes), config)
    readers = {t for t in range(len(closes)) if k in REACH[target](t, horizon, window)}
    moved_values = set(np.flatnonzero(~np.isclose(before[1], after[1], rtol=0, atol=0, equal_nan=True)))
    moved_classes = set(np.flatnonzero(before[0] != after[0])) - set(np.flatnonzero(np.isnan(before[1])))
    assert moved_values <= readers and moved_classes <= readers
    assert moved_classes  # the perturbation does reach some labels
    if target != "triple_barrier":  # a barrier label reads its window only up to the touch
        assert moved_values == readers
    # Only the outcome side for bars before k (t in [k-h, k)), only the threshold side after k.
    assert min(moved_values) >= k - horizon


def test_a_label_straddles_no_split_even_without_embargo(synthetic_frames):
    """Changing every bar from the validation cut on (all symbols) leaves every training sample,
    label and return, exactly as it was: the labels' outcomes never cross a cut, embargo 0 too."""
    for target in ("direction", "triple_barrier", "volatility"):
        config = DataConfig(source="synthetic", sequence_length=10, horizon=5, embargo_bars=0, target=target)
        base = build_windows(synthetic_frames, config)
        cut = base.cuts["val_start"]
        changed = {}
        for symbol, frame in synthetic_frames.items():
            frame = frame.copy()
            later = frame.index >= cut
            frame.loc[later, ["open", "high", "low", "close"]] *= np.linspace(0.7, 1.4, later.sum())[:, None]
            changed[symbol] = frame
        after = build_windows(changed, config)
        assert after.cuts == base.cuts
        assert base.train.y_class.tolist() == after.train.y_class.tolist(), target
        assert base.train.y_return.tolist() == after.train.y_return.tolist(), target
        assert base.val.y_return.tolist() != after.val.y_return.tolist()  # the change itself does show


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"target": "volatility", "num_classes": 3, "horizon": 5},
         "data: the volatility target has 2 classes (above or below the trailing level): set num_classes: 2"),
        ({"target": "volatility", "horizon": 1},
         "data: the volatility target needs horizon >= 2 (the volatility of one return is undefined)"),
        ({"target": "momentum"}, "data.target: Input should be 'direction', 'triple_barrier' or 'volatility'"),
    ],
)
def test_bad_target_settings_are_refused(fields, message):
    with pytest.raises(HPOError) as error:
        build_config("smoke", {"data": fields})
    assert str(error.value) == f"invalid config (scenario smoke): {message}"


def test_triple_barrier_with_three_classes_needs_no_direction_threshold():
    assert validate_data_config({"target": "triple_barrier", "num_classes": 3}).num_classes == 3


def test_older_direction_studies_keep_their_fingerprint(synthetic_windows):
    """data.target and its settings came after studies existed: at direction (what those studies
    ran) none is in the fingerprint, and settings the target does not read never block a resume."""
    from cnn_lstm_hpo.fingerprint import fingerprint_differences, study_fingerprint

    def fingerprint(**data):
        return study_fingerprint(build_config("smoke", {"data": data}), synthetic_windows)

    older = fingerprint()
    assert not {"data.target", "data.vol_window", "data.profit_take", "data.stop_loss"} & set(older)
    assert fingerprint_differences(older, fingerprint(vol_window=30, profit_take=2.0)) == []
    assert fingerprint_differences(older, fingerprint(target="volatility", horizon=1 + 1)) == ["data.horizon", "data.target"]
    volatility = fingerprint(target="volatility", horizon=2, profit_take=2.0)
    assert fingerprint_differences(volatility, fingerprint(target="volatility", horizon=2, vol_window=30)) == ["data.vol_window"]
    assert fingerprint_differences(fingerprint(target="triple_barrier"), fingerprint(target="triple_barrier", stop_loss=2.0)) == [
        "data.stop_loss"
    ]
