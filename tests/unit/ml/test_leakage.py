"""The leakage check's thresholds, pinned from both sides on the bundled samples.

Honest feature sets must raise no alarm (on the whole sample and on the rolling 252-bar
windows walk-forward trains on); moderate planted leaks must be caught. With the alarm
at 5.5 standard errors, honest features reach 3.5 on the daily windows and 4.9 on the
hourly ones (the two windows where they come closest are tested), and a feature
correlating 0.6 with the next return stays above 6.1 on the windows tested here.
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest

from adapters.replay.market_data import SAMPLES_DIR
from engine.candles import read_candles
from ml.labels import forward_return, make_dataset, next_bar_direction
from ml.leakage import LeakageError, assert_no_leakage, find_leaks

WINDOW = 252  # the seed's walk-forward training window


@pytest.fixture(scope="module")
def hourly() -> pd.DataFrame:
    return read_candles(SAMPLES_DIR / "BTC-USDT_1h.csv.gz")[0]


def close_of(frame: pd.DataFrame, rows: pd.Index) -> pd.Series:
    return frame["close"].astype(float).loc[rows]


def windows(rows: pd.Index, step: int) -> list[pd.Index]:
    return [rows[start : start + WINDOW] for start in range(0, len(rows) - WINDOW, step)]


def correlated_with(target: pd.Series, corr: float, seed: int = 0) -> pd.Series:
    """A feature whose rank correlation with ``target`` is about ``corr``: normal scores
    of its ranks plus independent noise."""
    inv_cdf, count = NormalDist().inv_cdf, target.count()
    scores = [inv_cdf((rank - 0.5) / count) for rank in target.rank()]
    noise = np.random.default_rng(seed).standard_normal(len(target))
    return pd.Series(np.asarray(scores) + noise * np.sqrt(1 / corr**2 - 1), index=target.index)


def planted(frame: pd.DataFrame, rows: pd.Index, leak: str) -> pd.DataFrame:
    """One leaking feature on ``rows`` of a candle frame."""
    close = frame["close"].astype(float)
    next_return = forward_return(frame, 1).loc[rows]
    leaks = {
        "next_return": lambda: next_return,
        "about_0.6_with_the_next_return": lambda: correlated_with(next_return, 0.6),
        "up_next_bar": lambda: next_bar_direction(frame).loc[rows].astype(float),  # renamed
        "tomorrows_close": lambda: close.shift(-1).loc[rows],
        "centred_sma_3": lambda: close.rolling(3, center=True).mean().loc[rows],
        "centred_sma_5": lambda: close.rolling(5, center=True).mean().loc[rows],
        "centred_sma_20": lambda: close.rolling(20, center=True).mean().loc[rows],
    }
    return pd.DataFrame({leak: leaks[leak]()}, index=rows)


@pytest.mark.parametrize("feature_set", ["seed", "stationary"])
def test_honest_features_raise_no_alarm_on_the_daily_sample_and_its_windows(daily, feature_set):
    features, _ = make_dataset(daily, feature_set)
    assert find_leaks(features, close_of(daily, features.index)) == []
    for rows in windows(features.index, step=150):
        assert find_leaks(features.loc[rows], close_of(daily, rows)) == [], rows[0]


# Where honest features came closest to an alarm in a sweep of all 1,556 hourly windows
# (step 30): z 4.9 (log_return_12) and 4.3 (MACD).
CLOSEST_HOURLY_WINDOWS = (35_040, 45_030)


@pytest.mark.parametrize("feature_set", ["seed", "stationary"])
def test_honest_features_raise_no_alarm_on_the_hourly_sample_and_its_windows(hourly, feature_set):
    features, _ = make_dataset(hourly, feature_set)
    assert find_leaks(features, close_of(hourly, features.index)) == []
    closest = [features.index[start : start + WINDOW] for start in CLOSEST_HOURLY_WINDOWS]
    for rows in [*windows(features.index, step=4_500), *closest]:
        assert find_leaks(features.loc[rows], close_of(hourly, rows)) == [], rows[0]


def test_the_planted_feature_correlates_about_0_6_with_the_next_return(daily):
    rows = daily.index[:-1]
    feature = planted(daily, rows, "about_0.6_with_the_next_return").iloc[:, 0]
    corr = feature.rank().corr(forward_return(daily, 1).loc[rows].rank())  # Spearman
    assert 0.55 < corr < 0.65


MODERATE_LEAKS = ["next_return", "about_0.6_with_the_next_return", "up_next_bar"]


@pytest.mark.parametrize("leak", MODERATE_LEAKS)
@pytest.mark.parametrize("sample", ["daily", "hourly"])
def test_moderate_leaks_are_caught_on_the_whole_sample_and_on_its_windows(request, sample, leak):
    frame = request.getfixturevalue(sample)
    rows = frame.index[60:-1]  # as after a feature warm-up; the last bar has no next close
    whole = find_leaks(planted(frame, rows, leak), close_of(frame, rows))
    assert [found.feature for found in whole] == [leak]
    for window in windows(rows, step=1_500 if sample == "hourly" else 90):
        caught = find_leaks(planted(frame, window, leak), close_of(frame, window))
        assert [found.feature for found in caught] == [leak], window[0]


@pytest.mark.parametrize("leak", ["tomorrows_close", "centred_sma_3", "centred_sma_5"])
def test_tomorrows_close_and_short_centred_averages_are_caught_on_a_252_bar_window(daily, leak):
    for window in windows(daily.index[60:-10], step=240):
        caught = find_leaks(planted(daily, window, leak), close_of(daily, window))
        assert [found.feature for found in caught] == [leak], window[0]


@pytest.mark.parametrize("width", [3, 5, 20])
def test_centred_moving_averages_are_caught_on_the_daily_sample(daily, width):
    rows = daily.index[60:-10]
    with pytest.raises(LeakageError, match=f"'centred_sma_{width}'"):
        assert_no_leakage(planted(daily, rows, f"centred_sma_{width}"), close_of(daily, rows))


def test_a_column_named_like_the_label_is_refused_whatever_it_holds(daily):
    rows = daily.index[:300]
    leaks = find_leaks(pd.DataFrame({"target": 0.0}, index=rows), close_of(daily, rows))
    assert [str(leak) for leak in leaks] == ["'target' is the label column"]
