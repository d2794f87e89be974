"""The pure pieces of the ccxt adapters: dates, URL rebasing, backoff, row conversion."""

from __future__ import annotations

import pandas as pd
import pytest
from pydantic import ValidationError

from adapters.ccxt.client import backoff_delay, rebase_urls
from adapters.ccxt.feed import CcxtFeedConfig
from adapters.ccxt.fetch import (
    FetchUsageError,
    check_out_path,
    parse_since,
    read_existing,
    rows_to_frame,
)
from engine.candles import write_candles
from tests.candle_frames import candle_frame


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("2024-01-01", 1_704_067_200_000),
        ("2024-01-01T01:00:00Z", 1_704_070_800_000),
        ("2024-01-01T03:00:00+02:00", 1_704_070_800_000),
    ],
)
def test_parse_since_reads_dates_as_utc_unless_told_otherwise(text, ms):
    assert parse_since(text) == ms


@pytest.mark.parametrize("text", ["", "soon", "2024-13-45"])
def test_parse_since_rejects_what_is_not_a_date(text):
    with pytest.raises(FetchUsageError, match="cannot read the date"):
        parse_since(text)


@pytest.mark.parametrize("name", ["x.json", "x.parquet.gz", "x"])
def test_out_path_must_be_a_candle_file_type(tmp_path, name):
    with pytest.raises(FetchUsageError, match=r"use a \.parquet, \.csv or \.csv\.gz"):
        check_out_path(tmp_path / name)


def test_rebase_urls_moves_every_host_and_keeps_paths_and_websocket_schemes():
    urls = {
        "public": "https://api.binance.com/api/v3",
        "ws": {"spot": "wss://stream.binance.com:9443/ws"},
        "fapiPublic": "https://fapi.binance.com/fapi/v1?x=1",
        "rateLimit": 50,
    }
    assert rebase_urls(urls, "http://127.0.0.1:8123/") == {
        "public": "http://127.0.0.1:8123/api/v3",
        "ws": {"spot": "ws://127.0.0.1:8123/ws"},
        "fapiPublic": "http://127.0.0.1:8123/fapi/v1?x=1",
        "rateLimit": 50,
    }
    assert rebase_urls(urls, "https://proxy.example/binance")["ws"] == {
        "spot": "wss://proxy.example/binance/ws"
    }


def test_backoff_doubles_from_the_initial_delay_up_to_the_cap():
    assert [backoff_delay(i, 0.5, 5.0) for i in range(6)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]


def test_rows_to_frame_builds_the_shared_candle_format():
    frame = rows_to_frame(
        [[1_704_067_200_000, 1.5, 2.0, 1.0, 1.75, 10.0], [1_704_070_800_000, 1.75, 2, 1, 1.8, None]]
    )
    assert list(frame.columns) == ["timestamp", "open", "high", "low", "close", "volume"]
    assert str(frame["timestamp"].dtype) == "datetime64[ns, UTC]"
    assert frame["timestamp"].iloc[1] == pd.Timestamp("2024-01-01T01:00Z")
    assert frame["volume"].tolist() == [10.0, 0.0]  # no volume reported: no trades
    assert all(frame[c].dtype == "float64" for c in ("open", "high", "low", "close", "volume"))


def test_feed_config_refuses_unknown_keys_and_bad_backoff():
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        CcxtFeedConfig.model_validate({"symbl": "BTC/USDT"})
    with pytest.raises(ValidationError, match="greater than 0"):
        CcxtFeedConfig.model_validate({"backoff_initial_seconds": 0})
    with pytest.raises(ValidationError, match="backoff_max_seconds must be >= backoff_initial"):
        CcxtFeedConfig.model_validate({"backoff_initial_seconds": 5, "backoff_max_seconds": 1})


def test_resuming_refuses_a_file_of_another_timeframe(tmp_path):
    daily = rows_to_frame(
        [[86_400_000 * d, 1.0, 2.0, 0.5, 1.5, 3.0] for d in range(19_000, 19_003)]
    )
    path = tmp_path / "daily.parquet"
    write_candles(daily, path)
    with pytest.raises(FetchUsageError, match="holds 1d candles, not 1h"):
        read_existing(path, "1h")
    assert len(read_existing(path, "1d")) == 3


def test_feed_config_refuses_an_unknown_timeframe_naming_the_known_ones():
    with pytest.raises(ValidationError, match=r"unknown timeframe '7m' \(known: 1m, .*, 1M\)"):
        CcxtFeedConfig.model_validate({"timeframe": "7m"})
    assert CcxtFeedConfig.model_validate({"timeframe": "1M"}).timeframe == "1M"


def test_resuming_a_monthly_file_accepts_its_calendar_spacing(tmp_path):
    path = tmp_path / "monthly.parquet"
    write_candles(candle_frame(pd.date_range("2023-11-01", periods=6, freq="MS", tz="UTC")), path)
    assert len(read_existing(path, "1M")) == 6
    with pytest.raises(FetchUsageError, match="holds 1M candles, not 1d"):
        read_existing(path, "1d")


def test_resuming_refuses_a_broken_file_naming_the_rule(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("timestamp,open,high,low,close,volume\n2024-01-01T00:00:00Z,1,2,0.5,3,1\n")
    with pytest.raises(FetchUsageError, match=r"cannot resume: .*low <= open, close <= high"):
        read_existing(path, "1h")
