"""The one timeframe table: ccxt's names, fixed lengths, and calendar months for 1M."""

from __future__ import annotations

import ccxt
import numpy as np
import pandas as pd
import pytest

from engine import timeframes
from engine.timeframes import (
    TIMEFRAMES,
    UnknownTimeframeError,
    check_timeframe,
    close_ms,
    close_ns,
    close_times_ns,
    infer_timeframe,
    misaligned,
    missing_between,
    timeframe_for_seconds,
    timeframe_ns,
    timeframe_seconds,
)

CCXT_NAMES = [
    "1m",
    "3m",
    "5m",
    "15m",
    "30m",
    "1h",
    "2h",
    "4h",
    "6h",
    "8h",
    "12h",
    "1d",
    "3d",
    "1w",
    "1M",
]


def ns(*stamps: str) -> np.ndarray:
    return np.array([pd.Timestamp(s, tz="UTC").value for s in stamps], dtype=np.int64)


def test_the_table_holds_ccxts_names_in_order():
    assert list(TIMEFRAMES) == CCXT_NAMES


@pytest.mark.parametrize("name", [n for n in CCXT_NAMES if n != "1M"])
def test_fixed_lengths_agree_with_ccxt(name):
    assert timeframe_seconds(name) == ccxt.Exchange.parse_timeframe(name)
    assert timeframe_ns(name) == timeframe_seconds(name) * 10**9


def test_a_month_has_the_mean_gregorian_length_where_a_fixed_one_is_needed():
    assert timeframe_seconds("1M") == 30.4375 * 86_400 == 365.25 / 12 * 86_400


@pytest.mark.parametrize("call", [check_timeframe, timeframe_seconds, timeframe_ns])
def test_unknown_timeframe_error_names_the_known_ones(call):
    with pytest.raises(UnknownTimeframeError) as info:
        call("7m")
    assert str(info.value) == f"unknown timeframe '7m' (known: {', '.join(CCXT_NAMES)})"
    assert isinstance(info.value, ValueError)


def test_a_month_closes_when_the_next_calendar_month_opens():
    opens = ns("2024-01-01", "2024-02-01", "2024-12-01")
    assert (
        close_times_ns(opens, "1M").tolist()
        == ns("2024-02-01", "2024-03-01", "2025-01-01").tolist()
    )
    assert close_ns(int(opens[1]), "1M") == ns("2024-03-01")[0]  # 29 days: a leap year
    assert close_ms(int(opens[0]) // 10**6, "1M") == ns("2024-02-01")[0] // 10**6


def test_fixed_timeframes_close_one_length_after_the_open():
    opens = ns("2024-01-01", "2024-01-08")
    assert (close_times_ns(opens, "1w") - opens).tolist() == [7 * 86_400 * 10**9] * 2
    assert close_ms(0, "1h") == 3_600_000


def test_month_opens_must_be_the_first_at_midnight():
    opens = ns("2024-01-01", "2024-02-01", "2024-03-02", "2024-04-01T01:00")
    assert misaligned(opens, "1M").tolist() == [False, False, True, True]


def test_weeks_and_three_days_take_their_phase_from_the_first_candle():
    mondays = ns("2024-01-01", "2024-01-08", "2024-01-22")
    sundays = ns("2023-12-31", "2024-01-07")
    assert not misaligned(mondays, "1w").any()
    assert not misaligned(sundays, "1w").any()
    assert misaligned(ns("2024-01-01", "2024-01-09"), "1w").tolist() == [False, True]
    assert misaligned(ns("2024-01-01T12:00", "2024-01-08T12:00"), "1w").tolist() == [True, True]
    assert not misaligned(ns("2024-01-02", "2024-01-05", "2024-01-11"), "3d").any()


def test_intraday_and_daily_opens_are_multiples_of_the_length_since_the_epoch():
    assert misaligned(ns("2024-01-01T00:00", "2024-01-01T01:30"), "1h").tolist() == [False, True]


def test_missing_candles_are_counted_in_calendar_months_for_1m():
    opens = ns("2024-01-01", "2024-02-01", "2024-05-01", "2025-05-01")
    assert missing_between(opens, "1M").tolist() == [0, 2, 11]
    assert missing_between(ns("2024-01-01", "2024-01-22"), "1w").tolist() == [2]


@pytest.mark.parametrize(
    ("opens", "expected"),
    [
        (pd.date_range("2024-01-01", periods=5, freq="h", tz="UTC"), "1h"),
        (pd.date_range("2024-01-01", periods=5, freq="W-MON", tz="UTC"), "1w"),
        (pd.date_range("2024-01-01", periods=5, freq="3D", tz="UTC"), "3d"),
        (pd.date_range("2023-11-01", periods=14, freq="MS", tz="UTC"), "1M"),
        (pd.date_range("2024-01-15", periods=5, freq="30D", tz="UTC"), None),  # not months
        (pd.date_range("2024-01-01", periods=5, freq="90s", tz="UTC"), None),
        (pd.date_range("2024-01-01", periods=1, freq="h", tz="UTC"), None),
    ],
)
def test_timeframe_is_inferred_from_the_most_common_spacing(opens, expected):
    assert infer_timeframe(opens.asi8) == expected


def test_a_fixed_length_is_named_from_the_table_or_in_its_largest_whole_unit():
    assert [timeframe_for_seconds(s) for s in (60, 3_600, 604_800, 259_200)] == [
        "1m",
        "1h",
        "1w",
        "3d",
    ]
    assert [timeframe_for_seconds(s) for s in (120, 172_800, 90)] == ["2m", "2d", "90s"]
    assert timeframes.MEAN_MONTH_SECONDS == 2_629_800
