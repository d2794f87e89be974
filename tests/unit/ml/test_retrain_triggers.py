"""The retrain triggers' rules: cron times, the age limit, accuracy with hysteresis,
drift only when the error rate rises; and the training window never holds a bar that
closed after the engine's time."""

from __future__ import annotations

import random

import pandas as pd
import pytest
from pydantic import ValidationError

from ml.retrain_triggers import (
    NANOS_PER_DAY,
    ChampionWatch,
    TriggerSettings,
    model_age_due,
    next_schedule_ns,
)
from ml.supervisor import training_window
from tests import factories

HOUR = 3_600_000_000_000


def ns(text: str) -> int:
    return pd.Timestamp(text).value


def test_the_cron_schedule_names_the_next_time_strictly_after_now():
    assert next_schedule_ns("0 2 * * *", ns("2021-03-01T01:59:59Z")) == ns("2021-03-01T02:00:00Z")
    assert next_schedule_ns("0 2 * * *", ns("2021-03-01T02:00:00Z")) == ns("2021-03-02T02:00:00Z")
    assert next_schedule_ns("0 0 1 * *", ns("2021-03-15T00:00:00Z")) == ns("2021-04-01T00:00:00Z")
    with pytest.raises(ValidationError, match="not a valid cron expression"):
        TriggerSettings(schedule="every day at two")


def test_the_age_trigger_fires_at_the_limit_and_not_before_nor_when_off():
    settings = TriggerSettings(max_model_age_days=30)
    trained = ns("2021-01-01T00:00:00Z")
    assert model_age_due(settings, trained + 30 * NANOS_PER_DAY - 1, trained) == ""
    assert "30.0 days old" in model_age_due(settings, trained + 30 * NANOS_PER_DAY, trained)
    off = TriggerSettings(max_model_age_days=None)
    assert model_age_due(off, trained + 999 * NANOS_PER_DAY, trained) == ""


def test_accuracy_fires_on_a_full_window_below_the_floor_then_waits_for_a_new_window():
    watch = ChampionWatch(TriggerSettings(min_accuracy=0.6, accuracy_window=10, drift=False))
    fired = [watch.observe(i % 2 == 0) for i in range(9)]  # 50%, but the window is not full
    assert fired == [None] * 9
    alarm = watch.observe(False)
    assert alarm is not None
    assert alarm[0] == "accuracy"
    watch.restart()  # what the supervisor does after an alarm
    assert [watch.observe(False) for _ in range(9)] == [None] * 9
    assert watch.observe(False) is not None


def test_drift_fires_when_errors_rise_not_when_they_fall_nor_on_a_stationary_stream():
    rng = random.Random(1)

    def first_alarm(error_rates: list[tuple[float, int]]) -> int | None:
        watch = ChampionWatch(TriggerSettings(min_accuracy=None, drift=True))
        n = 0
        for rate, count in error_rates:
            for _ in range(count):
                n += 1
                if watch.observe(rng.random() >= rate) is not None:
                    return n
        return None

    worse = first_alarm([(0.3, 1000), (0.7, 1000)])
    assert worse is not None
    assert 1000 < worse < 1300
    assert first_alarm([(0.7, 1000), (0.3, 1000)]) is None  # better: no retraining
    assert first_alarm([(0.48, 5000)]) is None


def test_the_training_window_ends_at_now_and_prefers_the_bars_seen_live():
    history = pd.DataFrame(
        {
            "timestamp": pd.date_range("2021-01-01", periods=10, freq="1h", tz="UTC"),
            "open": 1.0, "high": 2.0, "low": 0.5, "close": 1.0, "volume": 1.0,
        }
    )  # fmt: skip
    now = ns("2021-01-01T06:00:00Z")  # the 05:00 candle has just closed
    live = [
        factories.bar(7.0, ts=ns("2021-01-01T05:00:00Z")),  # the 04:00 candle, seen live
        factories.bar(9.0, ts=ns("2021-01-01T08:00:00Z")),  # closes after now
    ]
    window = training_window(history, live, "1h", now, window_bars=4)
    opens = [str(t.time()) for t in window["timestamp"]]
    assert opens == ["02:00:00", "03:00:00", "04:00:00", "05:00:00"]
    assert window.loc[2, "close"] == 7.0
    assert (window["timestamp"] + pd.Timedelta(hours=1)).max().value <= now
    whole = training_window(history, live, "1h", ns("2021-01-02T00:00:00Z"), window_bars=100)
    assert len(whole) == 10  # the file's ten candles; the live 07:00 one replaces its own
