"""Feature engine speed: a streaming update vs recomputing a 500-bar window, and replay.

For each feature set, the per-bar cost of ``StreamingFeatures.update`` against two
ways of getting the same row by recomputing the last 500 bars every bar: through
``compute()`` (the batch API, with pandas) and through bare TA-Lib batch calls on
NumPy arrays (indicators only: a floor for any recompute-the-window design). Then
replay throughput in bars/s under the simulated clock, with and without the feature
engine subscribed. Run on the bundled BTC/USDT hourly sample (46,981 bars).

    .venv/bin/python bench/features.py
"""

from __future__ import annotations

import argparse
import asyncio
import time

import numpy as np
import talib
from machine import describe_machine
from prometheus_client import CollectorRegistry

from adapters.replay.market_data import SAMPLES_DIR, ReplayConfig, ReplayMarketData
from engine.bus import EventBus
from engine.candles import iter_bars, read_candles
from engine.clock import SimulatedClock
from engine.component import ComponentContext
from engine.config import Secrets
from engine.logs import configure_logging
from ml.feature_engine import FeatureEngine, FeatureEngineConfig
from ml.features import FEATURE_SETS, Indicator, StreamingFeatures, compute

WINDOW = 500
HOURLY = SAMPLES_DIR / "BTC-USDT_1h.csv.gz"


def streaming_us_per_bar(bars: list, feature_set: str) -> float:
    stream = StreamingFeatures(feature_set)
    started = time.perf_counter()
    for bar in bars:
        stream.update(bar)
    return (time.perf_counter() - started) / len(bars) * 1e6


def recompute_us_per_bar(frame, feature_set: str, samples: int) -> float:
    ends = np.linspace(WINDOW, len(frame), samples, dtype=int)
    started = time.perf_counter()
    for end in ends:
        compute(frame.iloc[end - WINDOW : end], feature_set).iloc[-1]
    return (time.perf_counter() - started) / samples * 1e6


def raw_talib_us_per_bar(frame, feature_set: str, samples: int) -> float:
    indicators = [s for s in FEATURE_SETS[feature_set].steps if isinstance(s, Indicator)]
    arrays = {c: frame[c].to_numpy(dtype=np.float64) for c in ("open", "high", "low", "close")}
    arrays["volume"] = frame["volume"].to_numpy(dtype=np.float64)
    ends = np.linspace(WINDOW, len(frame), samples, dtype=int)
    started = time.perf_counter()
    for end in ends:
        for step in indicators:
            inputs = [arrays.get(name, arrays["close"])[end - WINDOW : end] for name in step.inputs]
            getattr(talib, step.function)(*inputs, **step.params)
    return (time.perf_counter() - started) / samples * 1e6


async def replay_bars_per_second(with_features: str | None) -> tuple[int, float]:
    bus = EventBus()
    ctx = ComponentContext(bus, SimulatedClock(), CollectorRegistry(), Secrets())
    if with_features:
        await FeatureEngine("features", FeatureEngineConfig(feature_set=with_features), ctx).start()
    replay = ReplayMarketData("replay", ReplayConfig(path=str(HOURLY), symbol="BTC/USDT"), ctx)
    await replay.start()  # loads and validates the file first (not timed below)
    started = time.perf_counter()
    await replay.on_all_started()
    await replay.finished.wait()
    await bus.drain()
    elapsed = time.perf_counter() - started
    return replay.published, replay.published / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2000, help="windows recomputed per set")
    args = parser.parse_args()
    configure_logging("warning")
    frame, timeframe, _ = read_candles(HOURLY)
    bars = list(iter_bars(frame, "BTC/USDT", timeframe))

    print(f"# bench/features.py: {describe_machine()}")
    print(f"# {len(bars):,} bars of BTC/USDT 1h; recompute = last {WINDOW} bars, every bar")
    print()
    print(
        "| feature set | streaming µs/bar | compute() on window µs/bar | ratio "
        "| bare TA-Lib on window µs/bar | ratio |"
    )
    print("|---|---|---|---|---|---|")
    for name in FEATURE_SETS:
        stream = min(streaming_us_per_bar(bars, name) for _ in range(3))
        batch = min(recompute_us_per_bar(frame, name, args.samples) for _ in range(3))
        raw = min(raw_talib_us_per_bar(frame, name, args.samples) for _ in range(3))
        print(
            f"| {name} | {stream:.1f} | {batch:.0f} | {batch / stream:.1f}x "
            f"| {raw:.0f} | {raw / stream:.1f}x |"
        )
    print()
    print("| replay under SimulatedClock | bars | bars/s |")
    print("|---|---|---|")
    for label, features in (
        ("bars only", None),
        ("+ feature engine (seed)", "seed"),
        ("+ feature engine (stationary)", "stationary"),
    ):
        count, rate = asyncio.run(replay_bars_per_second(features))
        print(f"| {label} | {count:,} | {rate:,.0f} |")


if __name__ == "__main__":
    main()
