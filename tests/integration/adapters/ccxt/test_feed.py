"""The ccxt adapters with the real ccxt client against a local Binance-format server.

``tests/fake_exchange.py`` answers on 127.0.0.1 in Binance's own kline format with real
BTC/USDT hourly candles; ccxt's URLs are pointed at it with ``api_base_url``, so the
requests, parsing, error mapping and rate limiter are ccxt's own.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import ccxt
import pandas as pd
import pytest
from prometheus_client import CollectorRegistry

from adapters.ccxt.feed import CcxtBarFeed
from adapters.ccxt.fetch import download_history, parse_since
from engine import candles
from engine.bus import EventBus
from engine.cli import main as cli_main
from engine.clock import SimulatedClock
from engine.component import ComponentContext, ComponentState
from engine.config import Secrets
from engine.events import Bar, ComponentStateChanged
from engine.registry import resolve_component_type
from tests.fake_exchange import HOUR_MS, Candle, FakeBinance, load_source_rows
from tests.paths import ROOT
from tests.processes import free_port

pytestmark = pytest.mark.integration

NS_PER_MS = 1_000_000
# 2018-01-20 .. 2018-03-01: 927 real candles, including Binance's 33-hour outage of
# 2018-02-08/09, which a download must carry over as a gap, never fill.
SLICE = ("2018-01-20", "2018-03-01")


@pytest.fixture(scope="module")
def source_rows() -> pd.DataFrame:
    return load_source_rows(*SLICE)


@pytest.fixture(scope="module")
def source_candles(source_rows) -> list[Candle]:
    return Candle.from_rows(source_rows)


@pytest.fixture
async def fake(source_candles):
    server = FakeBinance(list(source_candles))
    await server.start()
    yield server
    await server.stop()


def expected_frame(source: list[Candle]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "timestamp": pd.to_datetime([c.open_ms for c in source], unit="ms", utc=True).astype(
                "datetime64[ns, UTC]"
            ),
            "open": [float(c.open) for c in source],
            "high": [float(c.high) for c in source],
            "low": [float(c.low) for c in source],
            "close": [float(c.close) for c in source],
            "volume": [float(c.volume) for c in source],
        }
    )


def clock_at(ms: int) -> SimulatedClock:
    return SimulatedClock(ms * NS_PER_MS)


async def fetch(fake: FakeBinance, out, clock: SimulatedClock | None = None, **kwargs):
    args = {
        "exchange_id": "binance",
        "symbol": "BTC/USDT",
        "timeframe": "1h",
        "since_ms": parse_since("2018-01-01"),
        "out": out,
        "page_size": 100,
        "settle_seconds": 0,
        "backoff_initial": 0.01,
        "backoff_max": 0.05,
        "api_base_url": fake.api_base_url,
        "clock": clock or clock_at(fake.now_ms),
        "show_progress": False,
    }
    return await download_history(**{**args, **kwargs})


# -- history download ------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".parquet", ".csv.gz"])
async def test_download_pages_through_history_and_writes_the_source_rows_exactly(
    fake, source_candles, tmp_path, suffix
):
    out = tmp_path / f"btc{suffix}"
    progress = await fetch(fake, out)

    frame, timeframe, gaps = candles.read_candles(out, "1h")
    pd.testing.assert_frame_equal(frame, expected_frame(source_candles))
    assert timeframe == "1h"
    assert gaps.missing_candles == 33  # the exchange's outage, carried over unfilled
    assert progress.added == progress.total == len(source_candles) == 927

    klines = fake.kline_requests()
    assert len(klines) == 10  # 927 candles at 100 a page
    assert all(r.query["limit"] == "100" for r in klines)
    # Each page starts one hour after the previous page's last candle.
    starts = [int(r.query["startTime"]) for r in klines]
    page_lasts = [source_candles[min(i * 100 + 99, 926)].open_ms for i in range(10)]
    assert starts[0] == parse_since("2018-01-01")
    assert starts[1:] == [last + HOUR_MS for last in page_lasts[:-1]]


async def test_download_paces_requests_with_ccxts_rate_limiter(fake, tmp_path):
    await fetch(fake, tmp_path / "btc.parquet", rate_limit_ms=100)
    klines = fake.kline_requests()
    gaps = [b.at - a.at for a, b in itertools.pairwise(klines)]
    # Binance weighs a spot klines request at 0.4 of ccxt's rateLimit: 40 ms here
    # (unthrottled, the pages follow each other within a few ms).
    assert len(gaps) == 9
    assert min(gaps) >= 0.035


async def test_download_resumes_after_the_last_stored_candle_without_duplicates(
    fake, source_candles, tmp_path
):
    out = tmp_path / "btc.parquet"
    fake.now_ms = source_candles[400].open_ms  # 400 candles exist; the 401st is forming
    first = await fetch(fake, out)
    assert first.added == 400

    fake.now_ms = source_candles[-1].open_ms + HOUR_MS
    fake.requests.clear()
    second = await fetch(fake, out)

    assert second.resumed_after == pd.Timestamp(source_candles[399].open_ms * NS_PER_MS, tz="UTC")
    assert int(fake.kline_requests()[0].query["startTime"]) == source_candles[400].open_ms
    assert second.added == 527
    frame, _, _ = candles.read_candles(out, "1h")  # rejects duplicates and disorder
    pd.testing.assert_frame_equal(frame, expected_frame(source_candles))


async def test_download_never_writes_the_forming_candle(fake, source_candles, tmp_path):
    out = tmp_path / "btc.parquet"
    forming = source_candles[450]  # mid-page: the last page holds 400..450
    fake.now_ms = forming.open_ms + 20 * 60_000  # 20 minutes into the candle
    await fetch(fake, out)

    # The server did offer the forming candle; the download left it out.
    last_page = fake.kline_requests()[-1]
    assert int(last_page.query["startTime"]) == source_candles[400].open_ms
    frame, _, _ = candles.read_candles(out, "1h")
    pd.testing.assert_frame_equal(frame, expected_frame(source_candles[:450]))


async def test_download_retries_429_and_5xx_with_backoff(fake, source_candles, tmp_path):
    out = tmp_path / "btc.parquet"
    fake.fail_next(429, after=2)
    fake.fail_next(503)
    await fetch(fake, out, backoff_initial=0.05, backoff_max=1.0)

    klines = fake.kline_requests()
    statuses = [r.status for r in klines]
    assert statuses[:5] == [200, 200, 429, 503, 200]
    # The failed page is asked again, from the same candle.
    assert len({r.query["startTime"] for r in klines[2:5]}) == 1
    # Exponential backoff between the attempts: 0.05 s, then 0.1 s.
    assert klines[3].at - klines[2].at >= 0.05
    assert klines[4].at - klines[3].at >= 0.1
    frame, _, _ = candles.read_candles(out, "1h")
    pd.testing.assert_frame_equal(frame, expected_frame(source_candles))


async def test_download_honours_retry_after_on_429(fake, tmp_path):
    fake.fail_next(429, retry_after=1)
    await fetch(fake, tmp_path / "btc.parquet", backoff_initial=0.01)
    klines = fake.kline_requests()
    assert [r.status for r in klines[:2]] == [429, 200]
    assert klines[1].at - klines[0].at >= 1.0


async def test_failed_download_keeps_what_it_fetched_and_a_rerun_completes_it(
    fake, source_candles, tmp_path
):
    out = tmp_path / "btc.parquet"
    fake.fail_next(502, times=50, after=5)
    with pytest.raises(ccxt.ExchangeNotAvailable):
        await fetch(fake, out, retries=2)
    frame, _, _ = candles.read_candles(out, "1h")
    pd.testing.assert_frame_equal(frame, expected_frame(source_candles[:500]))

    fake.clear_failures()
    await fetch(fake, out)
    frame, _, _ = candles.read_candles(out, "1h")
    pd.testing.assert_frame_equal(frame, expected_frame(source_candles))


# -- the CLI -----------------------------------------------------------------------------


@pytest.fixture
def threaded_fake(source_candles):
    """The fake served from its own thread, for the CLI's own ``asyncio.run``."""
    server = FakeBinance(list(source_candles))
    with server.running_in_thread():
        yield server


def run_cli(*args: str) -> int:
    return cli_main(["fetch", "--no-progress", *args])


def test_cli_fetch_downloads_and_reports(threaded_fake, tmp_path, capsys):
    out = tmp_path / "x.parquet"
    base = ["--exchange", "binance", "--symbol", "BTC/USDT", "--timeframe", "1h"]
    rest = [
        "--since",
        "2018-01-01",
        "--out",
        str(out),
        "--api-base-url",
        threaded_fake.api_base_url,
    ]
    assert run_cli(*base, *rest) == 0
    assert f"{out}: 927 new candles, 927 in the file" in capsys.readouterr().out

    assert run_cli(*base, *rest) == 0
    assert "0 new candles (resumed after 2018-02-28T23:00Z), 927 in the file" in (
        capsys.readouterr().out
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (["--exchange", "binanse"], "unknown exchange 'binanse' (did you mean binance"),
        (["--symbol", "BTC/USDX"], "binance has no market 'BTC/USDX' (did you mean BTC/USDT"),
        (["--timeframe", "7m"], "timeframe '7m' is not a candle-file timeframe"),
        (["--since", "yesterday-ish"], "cannot read the date 'yesterday-ish'"),
        (["--out", "x.xlsx"], "x.xlsx: use a .parquet, .csv or .csv.gz file name"),
    ],
    ids=["exchange", "symbol", "timeframe", "since", "out"],
)
def test_cli_fetch_refuses_bad_usage_with_exit_2(threaded_fake, tmp_path, capsys, change, message):
    args = {
        "--exchange": "binance",
        "--symbol": "BTC/USDT",
        "--timeframe": "1h",
        "--since": "2018-01-01",
        "--out": str(tmp_path / "x.parquet"),
        "--api-base-url": threaded_fake.api_base_url,
    }
    args[change[0]] = change[1]
    assert run_cli(*[part for item in args.items() for part in item]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
    assert not (tmp_path / "x.parquet").exists()


def test_cli_fetch_without_network_exits_1_with_a_clear_message(tmp_path, capsys):
    closed_port = free_port()  # nothing listens there
    code = run_cli(
        *("--exchange", "binance", "--symbol", "BTC/USDT", "--timeframe", "1h"),
        *("--since", "2018-01-01", "--out", str(tmp_path / "x.parquet"), "--retries", "0"),
        *("--api-base-url", f"http://127.0.0.1:{closed_port}"),
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "cannot reach binance (ExchangeNotAvailable" in err
    assert "nothing was written" in err


def test_cli_fetch_interrupted_keeps_what_it_downloaded(threaded_fake, source_candles, tmp_path):
    """Ctrl-C during a long wait (a 429 asking for 30 s): exit 130, earlier pages kept."""
    out = tmp_path / "x.parquet"
    threaded_fake.fail_next(429, retry_after=30, after=3)
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "engine", "fetch", "--no-progress"),
            *("--exchange", "binance", "--symbol", "BTC/USDT", "--timeframe", "1h"),
            *("--since", "2018-01-01", "--out", str(out), "--page-size", "100"),
            *("--api-base-url", threaded_fake.api_base_url),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        deadline = time.monotonic() + 20
        while not any(r.status == 429 for r in threaded_fake.requests):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the download never reached the 429"
            time.sleep(0.02)
        time.sleep(0.2)  # into the Retry-After wait
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert f"interrupted: kept 300 candles in {out}; run the same command to resume" in err
    frame, _, _ = candles.read_candles(out, "1h")
    pd.testing.assert_frame_equal(frame, expected_frame(source_candles[:300]))


# -- the live feed -------------------------------------------------------------------------


class FeedHarness:
    """A feed on a fresh bus with a simulated clock kept in step with the fake's time."""

    def __init__(self, fake: FakeBinance, now_ms: int, **settings: object) -> None:
        self.fake = fake
        self.clock = clock_at(now_ms)
        fake.now_ms = now_ms
        self.bus = EventBus()
        self.bars: list[Bar] = []
        self.states: list[str] = []
        self.bus.subscribe(Bar, self.bars.append)
        self.bus.subscribe(ComponentStateChanged, lambda e: self.states.append(e.state))
        config = {
            "exchange": "binance",
            "symbol": "BTC/USDT",
            "timeframe": "1h",
            "mode": "poll",
            "poll_interval_seconds": 0.01,
            "settle_seconds": 0,
            "backoff_initial_seconds": 0.01,
            "backoff_max_seconds": 0.05,
            "api_base_url": fake.api_base_url,
            **settings,
        }
        context = ComponentContext(self.bus, self.clock, CollectorRegistry(), Secrets())
        self.feed = CcxtBarFeed("market", CcxtBarFeed.Config.model_validate(config), context)

    async def start(self) -> None:
        """Start the feed as a component graph would: start, then all-started."""
        await self.feed.start()
        await self.feed.on_all_started()

    async def move_to(self, now_ms: int) -> None:
        self.clock.advance_to(now_ms * NS_PER_MS)
        await self.fake.advance(now_ms)

    def opens(self) -> list[int]:
        return [b.ts_event // NS_PER_MS - HOUR_MS for b in self.bars]


async def wait_until(predicate: Callable[[], bool], what: str, within: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


def assert_bar_is(bar: Bar, candle: Candle) -> None:
    close_ns = (candle.open_ms + HOUR_MS) * NS_PER_MS
    assert bar.ts_event == close_ns
    assert bar.correlation_id == f"BTC/USDT|1h|{close_ns}"
    assert (bar.symbol, bar.timeframe) == ("BTC/USDT", "1h")
    assert (bar.open, bar.high, bar.low, bar.close, bar.volume) == (
        float(candle.open),
        float(candle.high),
        float(candle.low),
        float(candle.close),
        float(candle.volume),
    )


MID = 30 * 60_000  # half an hour into a candle


async def test_feed_publishes_history_then_each_candle_once_when_it_closes(fake, source_candles):
    k = 700
    h = FeedHarness(fake, source_candles[k].open_ms + MID, history_candles=3)
    await h.start()
    try:
        await wait_until(lambda: len(h.bars) == 3, "the history candles")
        for bar, candle in zip(h.bars, source_candles[k - 3 : k], strict=True):
            assert_bar_is(bar, candle)

        await h.move_to(source_candles[k + 1].open_ms + MID)
        await wait_until(lambda: len(h.bars) == 4, "candle k to close")
        assert_bar_is(h.bars[3], source_candles[k])  # final values, not the forming ones

        await h.move_to(source_candles[k + 3].open_ms + 1)  # two more closed at once
        await wait_until(lambda: len(h.bars) == 6, "two more candles")
        served = len(fake.kline_requests())
        await wait_until(lambda: len(fake.kline_requests()) >= served + 5, "more polls")
        assert h.opens() == [c.open_ms for c in source_candles[k - 3 : k + 3]]
        assert [b.ts_event for b in h.bars] == sorted({b.ts_event for b in h.bars})
        assert h.feed.state is ComponentState.RUNNING
    finally:
        await h.feed.stop()
    assert h.feed.exchange.session is None  # the ccxt client was closed


async def test_bar_symbol_publishes_the_exchanges_candles_under_the_engines_market(
    fake, source_candles
):
    """ETH/USDT on the exchange prices the WETH/USDC pool: bars and their correlation ids
    name the pool's market."""
    k = 700
    h = FeedHarness(
        fake, source_candles[k].open_ms + MID, history_candles=2, bar_symbol="WETH/USDC"
    )
    await h.start()
    try:
        await wait_until(lambda: len(h.bars) == 2, "the history candles")
    finally:
        await h.feed.stop()
    close_ns = (source_candles[k - 1].open_ms + HOUR_MS) * NS_PER_MS
    assert (h.bars[-1].symbol, h.bars[-1].correlation_id) == (
        "WETH/USDC",
        f"WETH/USDC|1h|{close_ns}",
    )
    assert h.bars[-1].close == float(source_candles[k - 1].close)
    assert {r.query.get("symbol") for r in fake.kline_requests()} == {"BTCUSDT"}  # asked as is


async def test_forming_candle_is_never_published(fake, source_candles):
    k = 650
    h = FeedHarness(fake, source_candles[k].open_ms + MID, history_candles=2)
    await h.start()
    try:
        await wait_until(lambda: len(h.bars) == 2, "the history candles")
        served = len(fake.kline_requests())
        # Many polls while candle k forms; the server offers it every time.
        await wait_until(lambda: len(fake.kline_requests()) >= served + 10, "polls")
        await h.move_to(source_candles[k].open_ms + HOUR_MS - 1)  # 1 ms before it closes
        served = len(fake.kline_requests())
        await wait_until(lambda: len(fake.kline_requests()) >= served + 5, "polls")
        assert h.opens() == [c.open_ms for c in source_candles[k - 2 : k]]
    finally:
        await h.feed.stop()


async def test_disconnect_degrades_then_backfills_the_gap_without_duplicates(fake, source_candles):
    k = 600
    # page_size 3: the 4 missing candles take two pages to backfill.
    h = FeedHarness(fake, source_candles[k].open_ms + MID, history_candles=2, page_size=3)
    await h.start()
    try:
        await wait_until(lambda: len(h.bars) == 2, "the history candles")
        await fake.go_offline()
        await wait_until(lambda: h.feed.state is ComponentState.DEGRADED, "DEGRADED")
        assert "disconnected from binance: ExchangeNotAvailable" in h.feed.health().reason

        await h.move_to(source_candles[k + 4].open_ms + MID)  # 4 candles close meanwhile
        await asyncio.sleep(0.1)  # several failed reconnects while offline
        assert len(h.bars) == 2
        fake.go_online()
        await wait_until(lambda: h.feed.state is ComponentState.RUNNING, "RUNNING again")
        await wait_until(lambda: len(h.bars) == 6, "the gap to be backfilled")

        assert h.opens() == [c.open_ms for c in source_candles[k - 2 : k + 4]]
        for bar, candle in zip(h.bars, source_candles[k - 2 : k + 4], strict=True):
            assert_bar_is(bar, candle)
        assert h.states == ["STARTING", "RUNNING", "DEGRADED", "RUNNING"]
        dropped = [r for r in fake.requests if r.status == 0]
        assert len(dropped) >= 2  # it kept trying, with backoff, while offline
    finally:
        await h.feed.stop()


async def test_an_exchange_that_goes_quiet_makes_the_feed_stale_until_candles_come_again(
    fake, source_candles
):
    """Connected, answering, but no new candle: /ready must not call that fresh."""
    k = 610
    h = FeedHarness(
        fake, source_candles[k].open_ms + MID, history_candles=2, stale_after_seconds=0.2
    )
    await h.start()
    try:
        await wait_until(lambda: len(h.bars) == 2, "the history candles")
        # The feed's clock moves three hours on; the exchange's does not (it went quiet).
        h.clock.advance_to((source_candles[k + 3].open_ms + MID) * NS_PER_MS)
        await wait_until(lambda: h.feed.state is ComponentState.DEGRADED, "DEGRADED")
        assert h.feed.health().reason.startswith("stale: the next candle is")
        assert h.feed.overdue_seconds() > 60
        await fake.advance(source_candles[k + 3].open_ms + MID)  # candles flow again
        await wait_until(lambda: h.feed.state is ComponentState.RUNNING, "RUNNING again")
        assert h.opens() == [c.open_ms for c in source_candles[k - 2 : k + 3]]
    finally:
        await h.feed.stop()


async def test_feed_retries_429_and_5xx_with_exponential_backoff(fake, source_candles):
    k = 620
    h = FeedHarness(
        fake,
        source_candles[k].open_ms + MID,
        history_candles=1,
        poll_interval_seconds=0.5,
        backoff_initial_seconds=0.05,
        backoff_max_seconds=1.0,
    )
    await h.start()
    try:
        await wait_until(lambda: len(h.bars) == 1, "the history candle")
        fake.fail_next(429)
        fake.fail_next(500)
        await h.move_to(source_candles[k + 1].open_ms + MID)
        await wait_until(lambda: len(h.bars) == 2, "candle k after the errors")
        assert_bar_is(h.bars[1], source_candles[k])

        polls = fake.kline_requests()[-3:]
        assert [r.status for r in polls] == [429, 500, 200]
        assert polls[1].at - polls[0].at >= 0.05
        assert polls[2].at - polls[1].at >= 0.1  # doubled
        assert "DEGRADED" in h.states
        assert h.feed.state is ComponentState.RUNNING
    finally:
        await h.feed.stop()


async def test_feed_backoff_is_capped(fake, source_candles):
    h = FeedHarness(
        fake,
        source_candles[100].open_ms + MID,
        backoff_initial_seconds=0.01,
        backoff_max_seconds=0.04,
        rate_limit_ms=1,  # so the gaps measured are the backoff, not ccxt's throttle
    )
    fake.fail_next(503, times=7)
    await h.start()
    try:
        await wait_until(lambda: len(fake.kline_requests()) >= 8, "the first good poll")
    finally:
        await h.feed.stop()
    klines = fake.kline_requests()[:8]
    gaps = [b.at - a.at for a, b in itertools.pairwise(klines)]
    assert [r.status for r in klines] == [503] * 7 + [200]
    assert all(g >= d for g, d in zip(gaps, [0.01, 0.02, 0.04], strict=False))
    assert min(gaps[3:]) >= 0.04  # 0.01, 0.02, 0.04, then capped at 0.04 ...
    assert max(gaps[3:]) < 0.24  # ... where doubling would have reached 0.64 s


async def test_feed_with_an_unknown_symbol_faults_with_the_reason(fake, source_candles):
    h = FeedHarness(fake, source_candles[100].open_ms + MID, symbol="DOGE/BTC")
    await h.start()
    try:
        await wait_until(lambda: h.feed.state is ComponentState.FAULTED, "FAULTED")
        assert "BadSymbol" in h.feed.health().reason
        assert h.bars == []
    finally:
        await h.feed.stop()


# -- the websocket path (ccxt.pro watch_ohlcv) ---------------------------------------


async def test_watch_mode_streams_each_closed_candle_once_and_backfills_after_a_drop(
    fake, source_candles
):
    k = 300
    h = FeedHarness(fake, source_candles[k].open_ms + MID, mode="watch", history_candles=2)
    await h.start()
    try:
        await wait_until(lambda: len(h.bars) == 2, "the history candles")
        await wait_until(lambda: fake.subscriptions == ["btcusdt@kline_1h"], "a subscription")
        rest_before = len(fake.kline_requests())

        for i in range(1, 3):  # two candles close on the stream
            await h.move_to(source_candles[k + i].open_ms + MID)
            await wait_until(lambda i=i: len(h.bars) == 2 + i, f"streamed candle {i}")
        assert len(fake.kline_requests()) == rest_before  # came over the websocket

        await fake.go_offline()
        await wait_until(lambda: h.feed.state is ComponentState.DEGRADED, "DEGRADED")
        await h.move_to(source_candles[k + 5].open_ms + MID)  # 3 close while offline
        fake.go_online()
        await wait_until(lambda: len(h.bars) == 7, "the gap backfilled")
        await wait_until(lambda: h.feed.state is ComponentState.RUNNING, "RUNNING")

        await h.move_to(source_candles[k + 6].open_ms + MID)
        await wait_until(lambda: len(h.bars) == 8, "streaming again")
        await asyncio.sleep(0.05)
        expected = source_candles[k - 2 : k + 6]
        assert h.opens() == [c.open_ms for c in expected]
        for bar, candle in zip(h.bars, expected, strict=True):
            assert_bar_is(bar, candle)
    finally:
        await h.feed.stop()


def test_ccxt_is_a_builtin_component_type():
    assert resolve_component_type("ccxt") is CcxtBarFeed
