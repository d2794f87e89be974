"""Pool bars from the real pair's logs, and the arbitrage step that moves the pool's price."""

from __future__ import annotations

from fractions import Fraction

import pytest
from prometheus_client import CollectorRegistry

from adapters.evm.anvil import rpc_call
from adapters.uniswap_v2.fills import words
from adapters.uniswap_v2.pool_feed import BarAggregator, UniswapV2PoolConfig, UniswapV2PoolFeed
from engine.amm import get_amount_out, raw_price, trade_to_price
from engine.bus import EventBus
from engine.clock import LiveClock
from engine.component import Component, ComponentContext
from engine.config import Secrets
from engine.events import Bar, Features, OrderFilled, OrderRequest, Signal, bar_correlation_id
from engine.portfolio import Portfolio, PortfolioConfig
from engine.risk import RiskConfig, RiskManager, order_id_for
from ml.feature_engine import FeatureEngine, FeatureEngineConfig
from tests.chain_helpers import TOKEN, Chain, Recorder, new_trader, order, outcome

pytest_plugins = ["tests.chain_fixtures"]

pytestmark = pytest.mark.integration
TIMEFRAME = 60


def reserves(chain: Chain) -> tuple[int, int]:
    d = chain.deployment
    r0, r1, _ = words(
        rpc_call(chain.url, "eth_call", [{"to": d.pair, "data": "0x0902f1ac"}, "latest"])
    )
    return (r0, r1) if d.base_is_token0 else (r1, r0)


def chain_time(chain: Chain) -> int:
    return int(rpc_call(chain.url, "eth_getBlockByNumber", ["latest", False])["timestamp"], 16)


async def start_feed(
    chain: Chain, bus: EventBus | None = None, poll_seconds: float = 3600
) -> tuple[UniswapV2PoolFeed, Recorder]:
    """A started feed; with the default ``poll_seconds`` the test drives ``poll_once()``."""
    bus = EventBus() if bus is None else bus
    recorder = Recorder(bus)
    settings = UniswapV2PoolConfig(
        rpc_url=chain.url,
        pair=chain.deployment.pair,
        base_token=chain.deployment.base_token,
        timeframe_seconds=TIMEFRAME,
        poll_seconds=poll_seconds,
    )
    context = ComponentContext(bus, LiveClock(), CollectorRegistry(), Secrets())
    feed = UniswapV2PoolFeed("pool", settings, context)
    await feed.start()
    return feed, recorder


async def test_pool_feed_builds_bars_from_sync_and_swap_logs(own_chain, make_executor):
    # Start on a fresh bucket so every trade of the test falls in one bar.
    now = chain_time(own_chain)
    own_chain.anvil.rpc("evm_setNextBlockTimestamp", now - now % TIMEFRAME + TIMEFRAME)
    own_chain.anvil.rpc("evm_mine")
    feed, recorder = await start_feed(own_chain)
    try:
        assert feed.price == pytest.approx(1000)
        trader = await new_trader(own_chain)
        harness = await make_executor(own_chain, trader)
        fills = []
        for side, amount in (("BUY", 20_000 * TOKEN), ("SELL", 50 * TOKEN), ("SELL", 5 * TOKEN)):
            request = order(side, amount)
            await harness.bus.publish(request)
            fills.append(await outcome(harness, request.order_id))
        assert all(isinstance(f, OrderFilled) for f in fills)
        assert await feed.poll_once() == 0  # the bucket is still open

        own_chain.anvil.rpc("evm_increaseTime", TIMEFRAME * 2)
        own_chain.anvil.rpc("evm_mine")
        assert await feed.poll_once() == 2  # the traded bar, then a flat one
    finally:
        await feed.stop()
    traded, flat = recorder.of(Bar)
    base, quote = reserves(own_chain)
    assert traded.open == pytest.approx(1000)
    assert traded.close == pytest.approx(quote / base)
    assert traded.high > 1000 > traded.low  # the BUY pushed it up, the SELLs down
    base_traded = sum(f.amount_out if f.side == "BUY" else f.amount_in for f in fills)
    assert traded.volume == pytest.approx(base_traded / TOKEN)
    assert traded.timeframe == "1m"
    assert traded.ts_event % (TIMEFRAME * 10**9) == 0
    assert flat.ts_event == traded.ts_event + TIMEFRAME * 10**9
    assert flat.open == flat.close == flat.high == flat.low == traded.close
    assert flat.volume == 0


class BuyOnFirstFeatures(Component):
    """A stand-in strategy: one BUY signal, on the first features, carrying their id."""

    def __init__(self, context: ComponentContext) -> None:
        super().__init__("buyer", None, context)
        self.signals: list[Signal] = []

    async def on_start(self) -> None:
        self.subscribe(Features, self._on_features, name="buyer.features")

    def _on_features(self, features: Features) -> None:
        if self.signals:
            return
        now = self.clock.timestamp_ns()
        signal = Signal(
            ts_event=now,
            ts_init=now,
            correlation_id=features.correlation_id,
            strategy_id="buyer",
            symbol=features.symbol,
            prediction=1,
            probability_up=0.9,
            confidence="high",
            action="BUY",
        )
        self.signals.append(signal)
        self.bus.publish_nowait(signal)


async def test_a_pool_bar_is_followed_by_its_correlation_id_to_the_fill(own_chain, make_executor):
    """Pool bar → features → signal → order → on-chain fill, all under the bar's id."""
    trader = await new_trader(own_chain)
    # The chain runs an hour ahead of the wall clock below: deadlines by chain time.
    dex = await make_executor(own_chain, trader, deadline_clock="chain")
    context = ComponentContext(dex.bus, LiveClock(), CollectorRegistry(), Secrets())
    instrument = {"symbol": "BASE/QUOTE", "base_decimals": 18, "quote_decimals": 18}
    portfolio = Portfolio(
        "portfolio",
        PortfolioConfig.model_validate(
            {"instruments": [instrument], "initial_balances": {"QUOTE": 10_000}}
        ),
        context,
    )
    risk = RiskManager(
        "risk",
        RiskConfig.model_validate({"order_notional_quote": 100}),
        context,
        portfolio=portfolio,
    )
    pipeline = [
        portfolio,
        risk,
        FeatureEngine("features", FeatureEngineConfig(), context),
        BuyOnFirstFeatures(context),
    ]
    for component in pipeline:
        await component.start()
    feed, _ = await start_feed(own_chain, dex.bus, poll_seconds=0.05)
    try:
        # An hour of one-minute bars at once: the features warm up within it.
        own_chain.anvil.rpc("evm_increaseTime", TIMEFRAME * 60)
        own_chain.anvil.rpc("evm_mine")
        filled = await dex.recorder.wait_for(lambda e: isinstance(e, OrderFilled), within=15)
    finally:
        await feed.stop()
        for component in reversed(pipeline):
            await component.stop()
    (signal,) = pipeline[-1].signals
    (request,) = dex.recorder.of(OrderRequest)
    bars = {bar.correlation_id: bar for bar in dex.recorder.of(Bar)}
    bar = bars[filled.correlation_id]
    assert bar.correlation_id == bar_correlation_id("BASE/QUOTE", "1m", bar.ts_event)
    assert request.correlation_id == signal.correlation_id == bar.correlation_id
    assert request.order_id == filled.order_id == order_id_for(signal)
    assert len(bars) == len(dex.recorder.of(Bar))  # every bar has its own id


@pytest.mark.parametrize("target_price", [1234.5, 777.0])
async def test_arbitrage_trade_moves_the_real_pool_to_the_target_price(
    own_chain, make_executor, target_price
):
    trader = await new_trader(own_chain, base=5_000 * TOKEN, quote=10**7 * TOKEN)
    harness = await make_executor(own_chain, trader)
    base, quote = reserves(own_chain)
    d = own_chain.deployment
    trade = trade_to_price(
        base, quote, raw_price(Fraction(str(target_price)), d.base_decimals, d.quote_decimals)
    )
    assert trade is not None
    r_in, r_out = (quote, base) if trade.side == "BUY" else (base, quote)
    assert trade.amount_out == get_amount_out(trade.amount_in, r_in, r_out)
    request = order(trade.side, trade.amount_in, min_amount_out=trade.amount_out)
    await harness.bus.publish(request)
    filled = await outcome(harness, request.order_id)
    assert isinstance(filled, OrderFilled)
    assert filled.amount_out == trade.amount_out  # the maths matched the chain exactly
    base, quote = reserves(own_chain)
    assert quote / base == pytest.approx(target_price, rel=1e-9)


def test_bar_aggregator_emits_flat_bars_for_empty_buckets_and_caps_them():
    agg = BarAggregator(60, 100.0, start=120)
    assert agg.add(130, 101.0, 2.0) == []
    closed = agg.add(250, 99.0)
    assert [(b.start, b.open, b.high, b.low, b.close, b.volume) for b in closed] == [
        (120, 100.0, 101.0, 100.0, 101.0, 2.0),
        (180, 101.0, 101.0, 101.0, 101.0, 0.0),
    ]
    assert len(agg.advance(250 + 60 * 5_000)) == 1_000  # a long gap does not flood the bus
