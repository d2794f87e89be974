"""The paper executor fills as a Uniswap V2 pool would: to the unit, moving its reserves."""

from __future__ import annotations

from fractions import Fraction

import pytest
from prometheus_client import CollectorRegistry

from adapters.uniswap_v2.paper import PaperExecutor, PaperExecutorConfig, SimulatedPool
from engine import amm
from engine.bus import EventBus
from engine.clock import SimulatedClock
from engine.component import ComponentContext
from engine.config import Secrets
from engine.events import Event, OrderFailed, OrderFilled, OrderSubmitted
from engine.instruments import InstrumentConfig
from tests import factories
from tests.paper_orders import order

ETH_USDC = {"symbol": "WETH/USDC", "base_decimals": 18, "quote_decimals": 6}
USDC = 10**6
ETH = 10**18


async def started_executor(**config: object) -> tuple[PaperExecutor, EventBus, list[Event]]:
    bus = EventBus()
    context = ComponentContext(bus, SimulatedClock(1_000), CollectorRegistry(), Secrets())
    settings = PaperExecutorConfig.model_validate({"instrument": ETH_USDC, **config})
    executor = PaperExecutor("paper", settings, context)
    seen: list[Event] = []
    for event_type in (OrderSubmitted, OrderFilled, OrderFailed):
        bus.subscribe(event_type, seen.append)
    await executor.start()
    seen.clear()
    return executor, bus, seen


async def test_buy_fill_equals_get_amount_out_to_the_unit_and_moves_reserves_by_it():
    executor, bus, seen = await started_executor(initial_price=2_000.0)
    pool = executor.pool
    assert pool is not None
    base0, quote0 = pool.base_reserve, pool.quote_reserve
    amount_in = 1_234_567_891  # 1234.567891 USDC
    expected = amm.get_amount_out(amount_in, quote0, base0)

    bus.publish_nowait(order("BUY", amount_in))

    submitted, filled = seen
    assert isinstance(submitted, OrderSubmitted)
    assert isinstance(filled, OrderFilled)
    assert filled.amount_out == expected
    assert filled.amount_in == amount_in
    assert filled.correlation_id == "corr-o1"
    assert filled.venue_order_id == submitted.venue_order_id
    assert (pool.base_reserve, pool.quote_reserve) == (base0 - expected, quote0 + amount_in)
    assert filled.price == pytest.approx((amount_in / USDC) / (expected / ETH), rel=1e-12)
    assert filled.fee_paid == -(-amount_in * 3 // 1000)


async def test_sell_fill_equals_get_amount_out_to_the_unit_and_moves_reserves_by_it():
    executor, bus, seen = await started_executor(initial_price=2_000.0)
    pool = executor.pool
    assert pool is not None
    base0, quote0 = pool.base_reserve, pool.quote_reserve
    amount_in = 3 * ETH // 7
    expected = amm.get_amount_out(amount_in, base0, quote0)

    bus.publish_nowait(order("SELL", amount_in))

    filled = seen[-1]
    assert isinstance(filled, OrderFilled)
    assert filled.amount_out == expected
    assert (pool.base_reserve, pool.quote_reserve) == (base0 + amount_in, quote0 - expected)


async def test_consecutive_fills_each_see_the_reserves_left_by_the_previous_one():
    executor, bus, seen = await started_executor(initial_price=2_000.0, pool_depth_quote=100_000)
    pool = executor.pool
    assert pool is not None
    base, quote = pool.base_reserve, pool.quote_reserve
    outs = []
    for i in range(3):
        amount_in = 5_000 * USDC
        out = amm.get_amount_out(amount_in, quote, base)
        quote, base = quote + amount_in, base - out
        outs.append(out)
        bus.publish_nowait(order("BUY", amount_in, order_id=f"o{i}"))
    fills = [e.amount_out for e in seen if isinstance(e, OrderFilled)]
    assert fills == outs
    assert fills[0] > fills[1] > fills[2]  # each buy moved the price up


async def test_explicit_min_amount_out_above_the_output_fails_with_insufficient_output_amount():
    executor, bus, seen = await started_executor(initial_price=2_000.0)
    pool = executor.pool
    assert pool is not None
    reserves = (pool.base_reserve, pool.quote_reserve)
    amount_in = 1_000 * USDC
    out = amm.get_amount_out(amount_in, pool.quote_reserve, pool.base_reserve)

    bus.publish_nowait(order("BUY", amount_in, order_id="too-greedy", min_amount_out=out + 1))
    bus.publish_nowait(order("BUY", amount_in, order_id="exact", min_amount_out=out))

    assert [type(e).__name__ for e in seen] == [
        "OrderSubmitted",
        "OrderFailed",
        "OrderSubmitted",
        "OrderFilled",
    ]
    failed = seen[1]
    assert isinstance(failed, OrderFailed)
    assert failed.reason == "INSUFFICIENT_OUTPUT_AMOUNT"
    assert failed.order_id == "too-greedy"
    assert seen[3].amount_out == out  # type: ignore[attr-defined]
    assert reserves != (pool.base_reserve, pool.quote_reserve)  # only the exact one traded


def test_pool_swap_that_fails_leaves_reserves_unchanged():
    pool = SimulatedPool(10 * ETH, 20_000 * USDC)
    with pytest.raises(Exception, match="INSUFFICIENT_OUTPUT_AMOUNT"):
        pool.swap("SELL", ETH, min_amount_out=10**18)
    assert (pool.base_reserve, pool.quote_reserve) == (10 * ETH, 20_000 * USDC)


async def test_unknown_symbol_fails_without_being_submitted():
    _, bus, seen = await started_executor(initial_price=2_000.0)
    bus.publish_nowait(order("BUY", USDC, symbol="WBTC/USDC"))
    assert len(seen) == 1
    failed = seen[0]
    assert isinstance(failed, OrderFailed)
    assert failed.reason == "UNKNOWN_SYMBOL"


async def test_order_before_any_pool_fails_with_insufficient_liquidity():
    _, bus, seen = await started_executor()
    bus.publish_nowait(order("BUY", USDC))
    assert isinstance(seen[-1], OrderFailed)
    assert seen[-1].reason == "INSUFFICIENT_LIQUIDITY"


async def test_duplicate_order_id_is_filled_once():
    _, bus, seen = await started_executor(initial_price=2_000.0)
    bus.publish_nowait(order("BUY", USDC, order_id="same"))
    bus.publish_nowait(order("BUY", USDC, order_id="same"))
    assert sum(isinstance(e, OrderFilled) for e in seen) == 1


async def test_pool_is_created_at_the_first_bar_close_with_the_configured_depth():
    executor, bus, _ = await started_executor(pool_depth_quote=500_000)
    bus.publish_nowait(factories.bar(2_500.0, ts=1_000))
    pool = executor.pool
    assert pool is not None
    assert pool.quote_reserve == 500_000 * USDC
    assert pool.base_reserve == 200 * ETH  # 500,000 / 2,500


@pytest.mark.parametrize("closes", [(2_000.0, 2_100.0), (2_000.0, 1_850.5), (2_000.0, 2_000.0)])
async def test_arbitrage_step_moves_the_pool_price_to_the_bar_close_within_rounding(closes):
    executor, bus, _ = await started_executor(initial_price=2_000.0)
    pool = executor.pool
    assert pool is not None
    for i, close in enumerate(closes):
        bus.publish_nowait(factories.bar(close, ts=1_000 + i))
        target = executor.instrument.raw_price(close)
        assert abs(pool.raw_price / target - 1) < Fraction(1, 10**9)
    # constant product only grows: the arbitrageur pays the fee into the pool
    assert pool.base_reserve * pool.quote_reserve >= (10**6 * USDC) * (500 * ETH)


async def test_without_follow_bars_only_our_trades_move_the_pool():
    executor, bus, _ = await started_executor(initial_price=2_000.0, follow_bars=False)
    pool = executor.pool
    assert pool is not None
    before = (pool.base_reserve, pool.quote_reserve)
    bus.publish_nowait(factories.bar(3_000.0, ts=1_000))
    assert (pool.base_reserve, pool.quote_reserve) == before


async def test_market_view_receives_reserves_after_every_change_and_the_gas_price():
    executor, bus, _ = await started_executor(initial_price=2_000.0, gas_price_gwei=25)
    view = executor.context.market_view
    pool = executor.pool
    assert pool is not None
    assert view.gas_price_wei() == 25 * 10**9
    assert view.reserves("WETH/USDC") == (pool.base_reserve, pool.quote_reserve)
    assert view.quote("WETH/USDC", "BUY", USDC) == pool.quote("BUY", USDC)
    bus.publish_nowait(factories.bar(2_200.0, ts=1_000))
    assert view.reserves("WETH/USDC") == (pool.base_reserve, pool.quote_reserve)
    bus.publish_nowait(order("SELL", ETH))
    assert view.reserves("WETH/USDC") == (pool.base_reserve, pool.quote_reserve)


async def test_gas_cost_per_swap_is_gas_used_times_gas_price():
    _, bus, seen = await started_executor(
        initial_price=2_000.0, gas_used_per_swap=110_000, gas_price_gwei=12.5
    )
    bus.publish_nowait(order("BUY", 100 * USDC))
    filled = seen[-1]
    assert isinstance(filled, OrderFilled)
    assert filled.gas_used == 110_000
    assert filled.gas_cost_wei == 110_000 * 12_500_000_000


def test_instrument_config_is_validated():
    with pytest.raises(ValueError, match="differ"):
        InstrumentConfig(symbol="ETH/ETH")
