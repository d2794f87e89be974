"""The trading loop's speed: tick-to-order latency and replay throughput with inference.

Runs the paper-trading loop of `config/paper.yaml` in-process under a simulated clock
(journal, replay, features, ML strategy, risk manager, paper executor, portfolio) on
the bundled BTC/USDT hourly candles of 2021-2022, with a model trained first on the
candles before 2021 (default `trade-engine train` settings, ``--time-limit`` budget).

* tick-to-order: wall time from a `Bar` being published to the `OrderRequest` it
  causes, matched by correlation id (goal p50 <= 3 ms, p99 <= 10 ms);
* replay throughput in bars/s with per-bar inference (goal >= 500).

    .venv/bin/python bench/loop.py [--time-limit 60]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from machine import describe_machine
from prometheus_client import CollectorRegistry

from adapters.replay.market_data import SAMPLES_DIR
from engine.bus import EventBus
from engine.clock import SimulatedClock
from engine.component import ComponentContext, ComponentGraph
from engine.config import ComponentConfig, Secrets
from engine.events import Bar, OrderRequest, Signal
from engine.logs import configure_logging
from engine.registry import build_component
from ml.pipeline import train_from_file
from ml.registry import ModelRegistry
from ml.training import TrainSettings

SPLIT = "2021-01-01T00:00:00Z"
HOURLY = SAMPLES_DIR / "BTC-USDT_1h.csv.gz"
INSTRUMENT = {"symbol": "BTC/USDT", "base_decimals": 8, "quote_decimals": 6}


def components(models: Path, journal: Path) -> list[ComponentConfig]:
    entries = [
        ("journal", "journal", {"path": str(journal)}, ()),
        ("market", "replay", {"path": str(HOURLY), "symbol": "BTC/USDT", "start": SPLIT}, ()),
        ("features", "features", {"feature_set": "stationary"}, ()),
        (
            "strategy",
            "ml_direction",
            {"model": "btc", "models_dir": str(models), "feature_set": "stationary",
             "trade_on": "medium"},
            (),
        ),
        ("portfolio", "portfolio", {"instruments": [INSTRUMENT],
                                    "initial_balances": {"USDT": 10_000}}, ()),
        ("paper", "paper_executor", {"instrument": INSTRUMENT, "pool_depth_quote": 5e6}, ()),
        ("risk", "risk", {"order_notional_quote": 1000, "max_position_quote": 5000,
                          "max_orders_per_window": 1000}, ("portfolio",)),
    ]  # fmt: skip
    return [ComponentConfig(name=n, type=t, config=c, depends_on=d) for n, t, c, d in entries]


async def run_loop(models: Path, journal: Path) -> dict[str, object]:
    bus = EventBus()
    context = ComponentContext(bus, SimulatedClock(), CollectorRegistry(), Secrets())
    built = [build_component(entry, context) for entry in components(models, journal)]
    published_at: dict[str, int] = {}
    latencies: list[int] = []
    signals = 0

    def on_bar(bar: Bar) -> None:
        published_at[bar.correlation_id] = time.perf_counter_ns()

    def on_order(order: OrderRequest) -> None:
        latencies.append(time.perf_counter_ns() - published_at[order.correlation_id])

    def on_signal(signal: Signal) -> None:
        nonlocal signals
        signals += 1

    # The bar is stamped by a subscriber registered right after the journal, before
    # the feature engine; the order when it is published by the risk manager.
    bus.subscribe(Bar, on_bar, name="bench.bar")
    graph = ComponentGraph(built)
    await graph.start()
    replay = graph.get("market")
    bus.subscribe(OrderRequest, on_order, name="bench.order")
    bus.subscribe(Signal, on_signal, name="bench.signal")
    started = time.perf_counter()
    await replay.finished.wait()  # type: ignore[attr-defined]
    await bus.drain()
    elapsed = time.perf_counter() - started
    bars = replay.published  # type: ignore[attr-defined]
    await graph.stop()
    return {"bars": bars, "seconds": elapsed, "latencies_ns": latencies, "signals": signals}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time-limit", type=float, default=60.0)
    args = parser.parse_args()
    configure_logging("warning")
    with tempfile.TemporaryDirectory() as tmp:
        models = Path(tmp) / "models"
        settings = TrainSettings(feature_set="stationary", time_limit=args.time_limit)
        # Trained in another process, as the daemon and `trade-engine train` do.
        ctx = mp.get_context("spawn")
        with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
            trained = pool.submit(
                train_from_file, HOURLY, settings, ModelRegistry(models), "btc", until=SPLIT
            ).result()
        result = asyncio.run(run_loop(models, Path(tmp) / "journal.sqlite"))

    latencies = np.array(result["latencies_ns"]) / 1e6
    bars, seconds = int(result["bars"]), float(result["seconds"])  # type: ignore[arg-type]
    print(f"# bench/loop.py: {describe_machine()}")
    print(
        f"# model {trained.model.metadata['metrics']['best_model']} (stationary, trained "
        f"before {SPLIT[:10]}, {args.time_limit:g} s budget); replay of {bars:,} hourly bars "
        f"from {SPLIT[:10]}; {result['signals']} signals, {len(latencies)} orders"
    )
    print()
    print("| measure | value | goal |")
    print("|---|---|---|")
    if len(latencies):
        print(f"| tick-to-order p50 | {np.percentile(latencies, 50):.2f} ms | <= 3 ms |")
        print(f"| tick-to-order p99 | {np.percentile(latencies, 99):.2f} ms | <= 10 ms |")
    print(f"| replay with per-bar inference | {bars / seconds:,.0f} bars/s | >= 500 |")


if __name__ == "__main__":
    main()
