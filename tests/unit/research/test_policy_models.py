"""The policy replay's schedule and training windows: no model sees a bar after its cut."""

from __future__ import annotations

import pandas as pd
import pytest

from research.policy_models import schedule_points, training_window
from tests.candle_frames import candle_frame

HOUR = pd.Timedelta(hours=1)


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def test_a_monthly_schedule_starts_at_the_start_and_fires_on_each_first_of_the_month():
    points = schedule_points(utc("2019-01-15"), utc("2019-04-01"), "monthly")
    assert points == [utc("2019-01-15"), utc("2019-02-01"), utc("2019-03-01"), utc("2019-04-01")]


def test_a_cron_schedule_is_taken_as_given_and_a_bad_one_is_refused():
    points = schedule_points(utc("2019-01-01"), utc("2019-01-01 13:00"), "0 */6 * * *")
    assert [p.hour for p in points] == [0, 6, 12]
    with pytest.raises(ValueError, match="cron"):
        schedule_points(utc("2019-01-01"), utc("2019-02-01"), "fortnightly")


def test_the_training_window_holds_only_candles_closed_strictly_before_the_cut():
    frame = candle_frame(pd.date_range("2019-01-01", periods=100, freq="1h"))
    cut = utc("2019-01-03 00:00")  # the 23:00 candle closes at the cut: left out
    window = training_window(frame, cut, 20, HOUR)
    assert len(window) == 20
    assert window["timestamp"].iloc[-1] == utc("2019-01-02 22:00")
    assert (window["timestamp"] + HOUR < cut).all()
    assert window["timestamp"].is_monotonic_increasing


def test_a_window_longer_than_the_history_before_the_cut_is_refused():
    frame = candle_frame(pd.date_range("2019-01-01", periods=100, freq="1h"))
    with pytest.raises(ValueError, match="only 9 candles close before"):
        training_window(frame, utc("2019-01-01 10:00"), 20, HOUR)
