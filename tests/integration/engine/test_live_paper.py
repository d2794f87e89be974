"""config/live-paper.yaml as a real daemon on live market data from a local exchange.

The exchange is :class:`tests.fake_exchange.FakeBinance` on loopback, its time following
the wall clock: real BTC/USDT candles relabelled as one-minute candles ending now (so
one closes every minute while the test runs), the newest one forming. The daemon is the
shipped config, with the exchange's URL, the timeframe and nothing else secret given
through the environment; only its state (journal, models, API port) is moved to the
test's temporary directory. A one-minute candle is the shortest wait a wall clock allows,
so the strategy copies allow the hourly model on it.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from engine.timeframes import NANOS_PER_MS
from tests.fake_exchange import Candle, FakeBinance, load_source_rows
from tests.paper_support import quiet_supervisors, write_strategies
from tests.paths import ROOT
from tests.processes import EngineProcess, free_port

pytestmark = pytest.mark.integration

MINUTE_MS = 60_000
HISTORY = 520  # closed candles before now: more than the 500 the config warms up on
AHEAD = 10  # candles still to come after now (the test needs one or two)
HOLDING = {"USDT": 10_000, "BTC": 0.1}  # with BTC to sell, every fresh candle trades


def minute_candles(now_ms: int) -> list[Candle]:
    """Real hourly candles (January 2021) relabelled as the minutes around ``now_ms``."""
    source = Candle.from_rows(load_source_rows("2021-01-01", "2021-02-01"))
    first = (now_ms // MINUTE_MS - HISTORY) * MINUTE_MS
    return [
        Candle(first + i * MINUTE_MS, c.open, c.high, c.low, c.close, c.volume)
        for i, c in enumerate(source[: HISTORY + 1 + AHEAD])
    ]


@pytest.fixture
def exchange() -> Iterator[FakeBinance]:
    """The exchange, served from its own thread, its clock moving with the wall clock."""
    now = int(time.time() * 1000)
    fake = FakeBinance(minute_candles(now), interval="1m", now_ms=now)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def follow_the_wall_clock() -> None:
        while True:  # streams each candle's final update as its minute ends
            await fake.advance(int(time.time() * 1000))
            await asyncio.sleep(0.25)

    asyncio.run_coroutine_threadsafe(fake.start(), loop).result(timeout=10)
    ticking = asyncio.run_coroutine_threadsafe(follow_the_wall_clock(), loop)
    try:
        yield fake
    finally:
        ticking.cancel()
        asyncio.run_coroutine_threadsafe(fake.stop(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def live_paper_config(models: Path, tmp: Path, port: int) -> Path:
    """config/live-paper.yaml as shipped, its ``${...}`` left for the daemon to fill in,
    its state in ``tmp``."""
    config = yaml.safe_load((ROOT / "config" / "live-paper.yaml").read_text())
    for entry in config["components"]:
        settings = entry.setdefault("config", {})
        if entry["type"] == "journal":
            settings["path"] = str(tmp / "journal.sqlite")
        if entry["type"] == "strategy_host":
            strategies = write_strategies(models, tmp / "strategies", allow_timeframe_mismatch=True)
            settings["dir"] = str(strategies)
        if entry["type"] == "prediction_api":
            settings["models_dir"] = str(models)
        if entry["type"] == "portfolio":
            settings["initial_balances"] = HOLDING
    quiet_supervisors(config)
    config.update(api={"host": "127.0.0.1", "port": port}, log={"format": "json"})
    path = tmp / "live-paper.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def journal_rows(path: Path) -> list[tuple[str, int, int, dict[str, Any]]]:
    """(type, ts_event, ts_init, event) of every journalled event, in order."""
    if not path.exists():
        return []
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=0.2) as conn:
            rows = conn.execute(
                "SELECT type, ts_event, ts_init, body FROM events ORDER BY id"
            ).fetchall()
    except sqlite3.OperationalError:
        return []  # created, no schema yet
    return [(kind, event, init, json.loads(body)) for kind, event, init, body in rows]


@pytest.mark.timeout(240)  # the wait for the next minute comes on top of the start
def test_live_paper_trades_each_candle_that_closes_while_it_runs_on_paper_and_stops_on_sigterm(
    exchange, models, tmp_path
):
    port = free_port()
    journal = tmp_path / "journal.sqlite"
    env = {
        "ENGINE_EXCHANGE": "binance",
        "ENGINE_SYMBOL": "BTC/USDT",
        "ENGINE_TIMEFRAME": "1m",
        "ENGINE_EXCHANGE_URL": exchange.api_base_url,
    }
    daemon = EngineProcess(
        "run", "--config", str(live_paper_config(models, tmp_path, port)), env=env
    )
    try:
        daemon.wait_for_log("engine.running", timeout=90)
        started_ns = time.time_ns()

        def fresh_fill() -> dict[str, Any] | None:
            rows = journal_rows(journal)
            closes = {e["correlation_id"]: close for kind, close, _, e in rows if kind == "Bar"}
            for kind, _, _, event in rows:
                if kind == "OrderFilled" and closes.get(event["correlation_id"], 0) > started_ns:
                    return event
            return None

        deadline = time.monotonic() + 100  # the next minute, and then some
        while (fill := fresh_fill()) is None:
            assert daemon.proc.poll() is None, "".join(daemon.lines[-20:])
            assert time.monotonic() < deadline, "no paper fill on a candle closed while running"
            time.sleep(0.2)
        daemon.send(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0, "".join(daemon.lines[-20:])
    finally:
        daemon.kill()
    assert daemon.wait_for_log("engine.stopped")["clean"] is True

    rows = journal_rows(journal)
    bars = [(close, init, e) for kind, close, init, e in rows if kind == "Bar"]
    by_open = {c.open_ms: c for c in exchange.candles}
    # Closed candles only, each once, in order, with the exchange's final values (the
    # forming candle, served by REST and stream alike, never made it in).
    assert len(bars) >= 501  # the 500 of warm-up, and at least the one that traded
    opens = [close // NANOS_PER_MS - MINUTE_MS for close, _, _ in bars]
    assert opens == sorted(set(opens))
    for (close, received, bar), open_ms in zip(bars, opens, strict=True):
        candle = by_open[open_ms]
        assert received >= close  # published once closed
        assert (bar["open"], bar["high"], bar["low"], bar["close"]) == tuple(
            float(v) for v in (candle.open, candle.high, candle.low, candle.close)
        )
        assert (bar["symbol"], bar["timeframe"]) == ("BTC/USDT", "1m")
    # Signals on the warm-up too; orders only on candles that came as they closed.
    signals = [e for kind, _, _, e in rows if kind == "Signal"]
    assert len(signals) > 400
    delay = {e["correlation_id"]: (init - close) for close, init, e in bars}
    orders = [e for kind, _, _, e in rows if kind == "OrderRequest"]
    assert orders
    assert all(delay[o["correlation_id"]] <= 30 * 10**9 for o in orders)  # half a candle
    stale = [e for kind, _, _, e in rows if kind == "RiskRejected"]
    assert any(r["reason"] == "STALE_MARKET_DATA" and "warm-up" in r["detail"] for r in stale)
    # Paper fills, journalled with their orders.
    fills = [e for kind, _, _, e in rows if kind == "OrderFilled"]
    assert fill in fills
    assert {f["order_id"] for f in fills} <= {o["order_id"] for o in orders}
    assert all(f["venue_order_id"].startswith("paper-") for f in fills), fills[0]
    assert "ccxt_feed.crashed" not in "".join(daemon.lines)
