"""Candle files: every validation rule fails with the file, the row and the rule."""

from __future__ import annotations

import gzip
import time
from pathlib import Path

import pandas as pd
import pytest

from adapters.replay.market_data import SAMPLES_DIR
from engine import candles
from engine.candles import (
    MAX_CANDLE_FILE_BYTES,
    CandleFileError,
    iter_bars,
    iter_rows,
    read_candles,
    write_candles,
)
from engine.events import bar_correlation_id
from engine.timeframes import UnknownTimeframeError
from tests.candle_frames import candle_frame
from tests.hostile_files import fifo

HEADER = "timestamp,open,high,low,close,volume\n"
GOOD_ROWS = [
    "2021-03-01T00:00:00Z,100,110,90,105,1.5",
    "2021-03-01T01:00:00Z,105,106,100,101,2",
    "2021-03-01T02:00:00Z,101,103,99,102,0",
]


def csv_file(tmp_path: Path, rows: list[str], header: str = HEADER, name: str = "c.csv") -> Path:
    path = tmp_path / name
    path.write_text(header + "\n".join(rows) + "\n")
    return path


def with_row(index: int, row: str) -> list[str]:
    rows = list(GOOD_ROWS)
    rows[index] = row
    return rows


def test_good_file_loads_with_its_timeframe_and_no_gaps(tmp_path):
    frame, timeframe, gaps = read_candles(csv_file(tmp_path, GOOD_ROWS))
    assert timeframe == "1h"
    assert gaps.gaps == 0
    assert list(frame["close"]) == [105.0, 101.0, 102.0]
    assert str(frame["timestamp"].dtype) == "datetime64[ns, UTC]"


@pytest.mark.parametrize(
    ("rows", "header", "row", "rule"),
    [
        (GOOD_ROWS, "time,open,high,low,close,volume\n", None, "header"),
        (GOOD_ROWS, "timestamp,open,high,low,close\n", None, "header"),
        (with_row(1, "yesterday,105,106,100,101,2"), HEADER, 3, "parseable timestamp"),
        (with_row(1, "2021-03-01T01:00:00,105,106,100,101,2"), HEADER, 3, "UTC timestamps"),
        (with_row(1, "2021-03-01T02:00:00+01:00,105,106,100,101,2"), HEADER, 3, "UTC timestamps"),
        (with_row(2, "2021-03-01T01:00:00Z,101,103,99,102,0"), HEADER, 4, "no duplicates"),
        (with_row(2, "2021-02-28T23:00:00Z,101,103,99,102,0"), HEADER, 4, "strictly ascending"),
        (with_row(1, "2021-03-01T01:30:00Z,105,106,100,101,2"), HEADER, 3, "interval alignment"),
        (
            with_row(1, "2021-03-01T01:00:00Z,105,104,100,101,2"),
            HEADER,
            3,
            "low <= open, close <= high",
        ),
        (
            with_row(1, "2021-03-01T01:00:00Z,105,106,102,101,2"),
            HEADER,
            3,
            "low <= open, close <= high",
        ),
        (with_row(0, "2021-03-01T00:00:00Z,0,110,0,105,1.5"), HEADER, 2, "positive prices"),
        (with_row(2, "2021-03-01T02:00:00Z,101,103,99,102,-1"), HEADER, 4, "non-negative volume"),
        (with_row(1, "2021-03-01T01:00:00Z,105,abc,100,101,2"), HEADER, 3, "numeric values"),
        (with_row(1, "2021-03-01T01:00:00Z,105,106,100,,2"), HEADER, 3, "numeric values"),
    ],
    ids=lambda x: x if isinstance(x, str) and " " in x else None,
)
def test_each_rule_names_file_row_and_rule(tmp_path, rows, header, row, rule):
    path = csv_file(tmp_path, rows, header)
    with pytest.raises(CandleFileError) as info:
        read_candles(path, "1h")
    assert info.value.rule == rule
    assert info.value.row == row
    where = f"{path}, row {row}" if row else str(path)
    assert str(info.value).startswith(f"{where}: {rule}: ")


def test_wrong_timeframe_is_an_alignment_error(tmp_path):
    with pytest.raises(CandleFileError, match="not on a 1d boundary"):
        read_candles(csv_file(tmp_path, GOOD_ROWS), "1d")


def test_missing_empty_and_unknown_files(tmp_path):
    with pytest.raises(CandleFileError, match="does not exist"):
        read_candles(tmp_path / "nope.csv")
    with pytest.raises(CandleFileError, match="no candles"):
        read_candles(csv_file(tmp_path, []))
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(CandleFileError, match="file type"):
        read_candles(tmp_path / "x.json")


def test_gaps_are_reported_with_count_and_largest_and_kept(tmp_path):
    rows = [
        "2021-03-01T00:00:00Z,1,1,1,1,1",
        "2021-03-01T03:00:00Z,1,1,1,1,1",  # 2 missing
        "2021-03-01T04:00:00Z,1,1,1,1,1",
        "2021-03-01T09:00:00Z,1,1,1,1,1",  # 4 missing
    ]
    frame, _, gaps = read_candles(csv_file(tmp_path, rows), "1h")
    assert len(frame) == 4  # nothing filled in
    assert (gaps.gaps, gaps.missing_candles, gaps.largest_missing) == (2, 6, 4)
    assert gaps.largest_at == pd.Timestamp("2021-03-01T04:00:00Z")


def test_bundled_hourly_sample_matches_its_provenance_note():
    frame, timeframe, gaps = read_candles(SAMPLES_DIR / "BTC-USDT_1h.csv.gz")
    assert (len(frame), timeframe) == (46981, "1h")
    assert (gaps.gaps, gaps.missing_candles, gaps.largest_missing) == (27, 127, 33)


def test_parquet_and_gzip_round_trip(tmp_path):
    frame, _, _ = read_candles(csv_file(tmp_path, GOOD_ROWS))
    for name in ("c.parquet", "c2.csv.gz", "c3.csv"):
        write_candles(frame, tmp_path / name)
        back, timeframe, _ = read_candles(tmp_path / name)
        pd.testing.assert_frame_equal(back, frame)
        assert timeframe == "1h"
    with gzip.open(tmp_path / "c2.csv.gz", "rt") as f:
        assert f.readline() == HEADER


def test_parquet_rows_are_numbered_from_one(tmp_path):
    frame, _, _ = read_candles(csv_file(tmp_path, GOOD_ROWS))
    frame.loc[2, "volume"] = -5.0
    write_candles(frame, tmp_path / "bad.parquet")
    with pytest.raises(CandleFileError) as info:
        read_candles(tmp_path / "bad.parquet")
    assert (info.value.rule, info.value.row) == ("non-negative volume", 3)


def test_a_weekly_file_is_read_with_its_timeframe_and_gaps(tmp_path):
    opens = pd.date_range("2024-01-01", periods=6, freq="W-MON", tz="UTC").delete(3)
    write_candles(candle_frame(opens), tmp_path / "w.parquet")
    frame, timeframe, gaps = read_candles(tmp_path / "w.parquet")
    assert (len(frame), timeframe) == (5, "1w")
    assert (gaps.gaps, gaps.missing_candles) == (1, 1)
    closes = [row[0] for row in iter_rows(frame, timeframe)]
    assert closes[0] == pd.Timestamp("2024-01-08", tz="UTC").value


def test_a_monthly_file_has_calendar_spacing_and_closes_at_the_next_month(tmp_path):
    opens = pd.date_range("2023-11-01", periods=8, freq="MS", tz="UTC").delete(5)  # no Apr
    write_candles(candle_frame(opens), tmp_path / "m.csv")
    frame, timeframe, gaps = read_candles(tmp_path / "m.csv")
    assert (len(frame), timeframe) == (7, "1M")
    assert (gaps.gaps, gaps.missing_candles, gaps.largest_missing) == (1, 1, 1)
    assert gaps.largest_at == pd.Timestamp("2024-03-01", tz="UTC")
    bars = list(iter_bars(frame, "X/Y", timeframe))
    assert [pd.Timestamp(b.ts_event, tz="UTC").strftime("%Y-%m-%d") for b in bars[2:5]] == [
        "2024-02-01",
        "2024-03-01",  # February 2024 has 29 days
        "2024-04-01",
    ]
    assert bars[0].correlation_id == bar_correlation_id("X/Y", "1M", bars[0].ts_event)


def test_a_monthly_file_whose_open_is_not_the_first_of_a_month_is_misaligned(tmp_path):
    rows = ["2024-01-01T00:00:00Z,1,1,1,1,1", "2024-02-02T00:00:00Z,1,1,1,1,1"]
    with pytest.raises(CandleFileError) as info:
        read_candles(csv_file(tmp_path, rows), "1M")
    assert (info.value.rule, info.value.row) == ("interval alignment", 3)
    assert "not on a 1M boundary" in str(info.value)


def test_an_unknown_timeframe_names_the_known_ones(tmp_path):
    with pytest.raises(UnknownTimeframeError, match=r"'2w' \(known: 1m, 3m, .*, 1w, 1M\)"):
        read_candles(csv_file(tmp_path, GOOD_ROWS), "2w")


def refused_at_once(path: Path) -> str:
    started = time.monotonic()
    with pytest.raises(CandleFileError) as info:
        read_candles(path)
    assert time.monotonic() - started < 1.0
    return str(info.value)


def test_a_device_a_fifo_and_a_directory_behind_a_candle_name_are_refused_unread(tmp_path):
    zero = tmp_path / "zero.csv"
    zero.symlink_to("/dev/zero")
    assert refused_at_once(zero) == f"{zero}: file: not a regular file: it is a character device"
    with fifo(tmp_path / "pipe.csv.gz") as pipe:
        assert (
            refused_at_once(pipe) == f"{pipe}: file: not a regular file: it is a FIFO (named pipe)"
        )
    folder = tmp_path / "folder.parquet"
    folder.mkdir()
    assert refused_at_once(folder) == f"{folder}: file: not a regular file: it is a directory"


def test_a_candle_file_over_the_size_limit_is_refused_before_reading(tmp_path, monkeypatch):
    huge = tmp_path / "huge.csv"
    with huge.open("wb") as handle:
        handle.truncate(MAX_CANDLE_FILE_BYTES + 1)  # sparse: takes no disk
    assert refused_at_once(huge) == (
        f"{huge}: size: 512 MB (536,870,913 bytes), larger than the 512 MB allowed"
    )
    # A gzip file within the limit that expands past it is stopped as it expands.
    monkeypatch.setattr(candles, "MAX_CANDLE_FILE_BYTES", 10_000)
    rows = [f"2021-03-{1 + i // 24:02d}T{i % 24:02d}:00:00Z,100,110,90,105,1.5" for i in range(480)]
    bomb = tmp_path / "bomb.csv.gz"
    bomb.write_bytes(gzip.compress((HEADER + "\n".join(rows) + "\n").encode()))
    assert bomb.stat().st_size < 10_000
    assert refused_at_once(bomb) == (
        f"{bomb}: size: more than 9.77 KB once decompressed, the most allowed"
    )
