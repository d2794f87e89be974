"""Replay of candle files onto the bus, and the feature engine on top of it."""

from __future__ import annotations

import asyncio
import itertools
import time

import pandas as pd
import pytest
from prometheus_client import CollectorRegistry

from adapters.replay.market_data import ReplayConfig, ReplayMarketData
from engine.bus import EventBus
from engine.candles import write_candles
from engine.clock import LiveClock, SimulatedClock
from engine.component import ComponentContext, ComponentGraph, ComponentState
from engine.config import Secrets
from engine.config_loading import parse_engine_config
from engine.events import Bar, Features, bar_correlation_id
from ml.feature_engine import FeatureEngine, FeatureEngineConfig
from ml.features import FEATURE_SETS
from tests.candle_frames import candle_frame


def context(clock) -> ComponentContext:
    return ComponentContext(EventBus(), clock, CollectorRegistry(), Secrets())


async def run_replay(ctx: ComponentContext, **settings) -> ReplayMarketData:
    replay = ReplayMarketData("replay", ReplayConfig(**settings), ctx)
    await replay.start()
    await replay.on_all_started()
    await asyncio.wait_for(replay.finished.wait(), 60)
    await ctx.bus.drain()
    return replay


async def test_replay_of_the_bundled_hourly_sample_publishes_every_bar_in_order():
    clock = SimulatedClock()
    ctx = context(clock)
    bars: list[Bar] = []
    timer_times: list[int] = []
    ctx.bus.subscribe(Bar, bars.append)
    # A daily timer fires between the bars, at simulated time, as it would live.
    start = 1_502_928_000 * 10**9  # 2017-08-17T00:00Z
    day = 86_400 * 10**9
    clock.set_timer("daily", day, lambda e: timer_times.append(e.scheduled_ns), start_ns=start)

    started = time.perf_counter()
    replay = await run_replay(ctx, path="samples/BTC-USDT_1h.csv.gz", symbol="BTC/USDT")
    elapsed = time.perf_counter() - started

    assert replay.published == len(bars) == 46981
    closes = [b.ts_event for b in bars]
    assert closes == sorted(closes)
    assert len(set(closes)) == len(closes)
    assert [b.seq for b in bars] == sorted(b.seq for b in bars)
    assert all(b.ts_init == b.ts_event for b in bars)  # simulated time is the bar's close
    assert bars[0].correlation_id == f"BTC/USDT|1h|{bars[0].ts_event}"
    # Gaps are replayed as they are: 27 jumps of more than an hour.
    assert sum(1 for a, b in itertools.pairwise(closes) if b - a > 3600 * 10**9) == 27
    assert replay.gaps is not None
    assert replay.gaps.missing_candles == 127
    assert len(timer_times) == (closes[-1] - start) // day
    assert elapsed < 30  # as fast as the CPU allows: seconds for five years of hours


async def test_replay_start_and_end_select_a_window():
    ctx = context(SimulatedClock())
    bars: list[Bar] = []
    ctx.bus.subscribe(Bar, bars.append)
    await run_replay(
        ctx, path="samples/BTC-USD_1d.csv", symbol="BTC/USD", start="2020-01-01", end="2020-01-31"
    )
    assert len(bars) == 31
    assert bars[0].timeframe == "1d"


async def test_live_clock_replay_follows_the_speed_factor():
    ctx = context(LiveClock())
    bars: list[Bar] = []
    ctx.bus.subscribe(Bar, bars.append)
    started = time.perf_counter()
    # 6 hourly bars = 5 hours between first and last close; at 18,000x that is 1 s.
    await run_replay(
        ctx,
        path="samples/BTC-USDT_1h.csv.gz",
        symbol="BTC/USDT",
        start="2021-01-01T00:00:00Z",
        end="2021-01-01T05:00:00Z",
        speed=18_000,
    )
    elapsed = time.perf_counter() - started
    assert len(bars) == 6
    assert 0.9 <= elapsed < 3.0


@pytest.mark.parametrize(
    ("timeframe", "opens", "first_closes"),
    [
        (
            "1w",
            pd.date_range("2024-01-01", periods=10, freq="W-MON", tz="UTC"),
            ["2024-01-08", "2024-01-15", "2024-01-22"],
        ),
        (
            "1M",
            pd.date_range("2023-12-01", periods=10, freq="MS", tz="UTC"),
            ["2024-01-01", "2024-02-01", "2024-03-01"],
        ),
    ],
)
async def test_weekly_and_monthly_files_replay_with_bars_closing_at_the_next_open(
    tmp_path, timeframe, opens, first_closes
):
    path = tmp_path / f"x_{timeframe}.parquet"
    write_candles(candle_frame(opens), path)
    clock = SimulatedClock()
    ctx = context(clock)
    bars: list[Bar] = []
    ctx.bus.subscribe(Bar, bars.append)
    replay = await run_replay(ctx, path=str(path), symbol="X/Y")
    assert replay.published == len(bars) == 10
    assert {b.timeframe for b in bars} == {timeframe}
    closes = [pd.Timestamp(b.ts_event, tz="UTC").strftime("%Y-%m-%d") for b in bars]
    assert closes[:3] == first_closes
    assert [b.ts_event for b in bars[:-1]] == [int(t.value) for t in opens[1:]]
    assert all(b.ts_init == b.ts_event for b in bars)  # the clock jumped to each close
    assert bars[0].correlation_id == bar_correlation_id("X/Y", timeframe, bars[0].ts_event)


async def test_bad_file_faults_the_component_at_start_with_the_rule(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,open,high,low,close,volume\n2021-01-01T00:00:00Z,1,1,2,1,1\n")
    ctx = context(SimulatedClock())
    replay = ReplayMarketData(
        "replay", ReplayConfig(path=str(bad), symbol="X", timeframe="1h"), ctx
    )
    with pytest.raises(ValueError, match="row 2: low <= open, close <= high"):
        await replay.start()
    assert replay.state is ComponentState.FAULTED


async def test_feature_engine_publishes_features_for_every_warm_bar_with_the_bar_correlation():
    clock = SimulatedClock()
    ctx = context(clock)
    features: list[Features] = []
    ctx.bus.subscribe(Features, features.append)
    engine = FeatureEngine("features", FeatureEngineConfig(feature_set="stationary"), ctx)
    await engine.start()
    replay = await run_replay(ctx, path="samples/BTC-USD_1d.csv", symbol="BTC/USD")
    assert len(features) == replay.published - 49
    assert features[0].correlation_id.startswith("BTC/USD|1d|")
    assert tuple(features[0].values) == FEATURE_SETS["stationary"].columns
    assert all(f.feature_set == "stationary" for f in features)
    await engine.stop()


def test_engine_config_wires_replay_and_features_by_type_name():
    config = parse_engine_config(
        {
            "clock": "simulated",
            "components": [
                {
                    "name": "market",
                    "type": "replay",
                    "config": {"path": "samples/BTC-USD_1d.csv", "symbol": "BTC/USD"},
                },
                {
                    "name": "features",
                    "type": "features",
                    "depends_on": ["market"],
                    "config": {"feature_set": "seed"},
                },
            ],
        }
    )
    assert [c.type for c in config.components] == ["replay", "features"]


async def test_replay_drives_a_component_graph_under_simulated_clock():
    clock = SimulatedClock()
    ctx = context(clock)
    replay = ReplayMarketData(
        "market", ReplayConfig(path="samples/BTC-USD_1d.csv", symbol="BTC/USD"), ctx
    )
    # The source starts first, yet the feature engine started after it misses nothing:
    # publishing begins only once the whole graph runs.
    features = FeatureEngine("features", FeatureEngineConfig(), ctx, depends_on=("market",))
    graph = ComponentGraph([features, replay])
    await graph.start()
    await asyncio.wait_for(replay.finished.wait(), 30)
    await ctx.bus.drain()
    await graph.stop()
    assert replay.state is ComponentState.STOPPED
    assert ctx.bus.published[Features] == replay.published - 49


async def test_simulated_replay_starts_the_clock_at_the_data_not_at_the_epoch():
    """An hourly clock timer must not fire for every hour since 1970."""
    clock = SimulatedClock()  # starts at the epoch
    ctx = context(clock)
    fired: list[int] = []
    clock.set_timer("hourly", 3600 * 10**9, lambda e: fired.append(e.scheduled_ns))
    replay = ReplayMarketData(
        "market",
        ReplayConfig(path="samples/BTC-USD_1d.csv", symbol="BTC/USD", start="2022-12-01"),
        ctx,
    )
    graph = ComponentGraph([replay])
    started = time.perf_counter()
    await graph.start()
    await asyncio.wait_for(replay.finished.wait(), 10)
    await graph.stop()
    assert time.perf_counter() - started < 5
    # Hourly over December 2022 only, both ends included, on the timer's own grid.
    assert len(fired) == 24 * 31 + 1
    assert min(fired) == 1_669_852_800 * 10**9  # 2022-12-01T00:00Z, not 1970
