"""Portfolio accounting: fills, fees, gas, marks, PnL, peak and drawdown."""

from __future__ import annotations

from typing import Any

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from engine.bus import EventBus
from engine.clock import SimulatedClock
from engine.component import ComponentContext, ComponentLookup, ComponentState
from engine.config import Secrets
from engine.events import (
    BalancesObserved,
    Bar,
    OrderFilled,
    PortfolioUpdate,
    Side,
    StartingBalances,
)
from engine.portfolio import Portfolio, PortfolioConfig
from tests import factories

USDC = 10**6
ETH = 10**18
WETH_USDC = {"symbol": "WETH/USDC", "base_decimals": 18, "quote_decimals": 6}


def bar(close: float, symbol: str = "WETH/USDC", ts: int = 1) -> Bar:
    """A bar without volume whose correlation id names its time: ``bar-<ts>``."""
    return factories.bar(close, ts=ts, symbol=symbol, volume=0.0, correlation_id=f"bar-{ts}")


def fill(
    side: Side, amount_in: int, amount_out: int, price: float, *, order_id: str = "o", **fields: Any
) -> OrderFilled:
    """A fill at time 2 whose correlation id names its order: ``c-<order_id>``."""
    fields.update(ts=2, order_id=order_id, correlation_id=f"c-{order_id}")
    return factories.fill(side, amount_in, amount_out, price, **fields)


def make_portfolio(
    instruments: tuple[dict[str, object], ...] = (WETH_USDC,),
    balances: dict[str, object] | None = None,
    **extra: object,
) -> tuple[Portfolio, EventBus, CollectorRegistry]:
    bus = EventBus()
    registry = CollectorRegistry()
    context = ComponentContext(bus, SimulatedClock(0), registry, Secrets())
    config = PortfolioConfig.model_validate(
        {
            "instruments": instruments,
            "initial_balances": {"USDC": 10_000} if balances is None else balances,
            **extra,
        }
    )
    return Portfolio("portfolio", config, context), bus, registry


async def test_hand_computed_sequence_of_marks_and_fills():
    portfolio, bus, _ = make_portfolio()
    await portfolio.start()

    bus.publish_nowait(bar(2_000.0))
    assert portfolio.equity_quote == 10_000.0

    bus.publish_nowait(fill("BUY", 2_000 * USDC, ETH, 2_000.0, fee_paid=6 * USDC))
    assert portfolio.balances == {"USDC": 8_000 * USDC, "WETH": ETH}
    assert portfolio.equity_quote == pytest.approx(10_000.0)

    bus.publish_nowait(bar(2_100.0))
    assert portfolio.equity_quote == pytest.approx(10_100.0)
    assert portfolio.peak_equity_quote == pytest.approx(10_100.0)
    assert portfolio.position("WETH/USDC").unrealised_pnl == pytest.approx(100.0)

    # second buy at 2,200 with 0.001 ETH of gas, charged at the WETH mark (2,100)
    bus.publish_nowait(
        fill("BUY", 2_200 * USDC, ETH, 2_200.0, fee_paid=6_600_000, gas_cost_wei=ETH // 1_000)
    )
    position = portfolio.position("WETH/USDC")
    assert position.average_entry == pytest.approx(2_100.0)
    assert portfolio.gas_charged_quote == pytest.approx(2.1)
    assert portfolio.equity_quote == pytest.approx(5_800 + 2 * 2_100 - 2.1)

    bus.publish_nowait(bar(2_000.0))
    assert portfolio.equity_quote == pytest.approx(9_797.9)
    assert portfolio.drawdown == pytest.approx(302.1 / 10_100)

    bus.publish_nowait(fill("SELL", ETH, 2_050 * USDC, 2_050.0, fee_paid=3 * ETH // 1_000))
    position = portfolio.position("WETH/USDC")
    assert position.realised_pnl == pytest.approx(-50.0)
    assert position.average_entry == pytest.approx(2_100.0)
    assert position.unrealised_pnl == pytest.approx(-100.0)
    assert portfolio.balances == {"USDC": 7_850 * USDC, "WETH": ETH}
    assert portfolio.equity_quote == pytest.approx(9_847.9)
    assert portfolio.equity_quote == pytest.approx(
        portfolio.initial_equity_quote
        + portfolio.realised_pnl
        + portfolio.unrealised_pnl
        - portfolio.gas_charged_quote
    )
    assert portfolio.fees_paid_quote == pytest.approx(6 + 6.6 + 6.15)
    assert portfolio.peak_equity_quote == pytest.approx(10_100.0)
    assert portfolio.fills == {"BUY": 2, "SELL": 1}


async def test_fee_is_inside_the_fill_amounts_and_not_subtracted_again():
    portfolio, bus, _ = make_portfolio()
    await portfolio.start()
    bus.publish_nowait(fill("BUY", 1_000 * USDC, ETH // 2, 2_000.0, fee_paid=3 * USDC))
    assert portfolio.balance("USDC") == 9_000 * USDC
    assert portfolio.balance("WETH") == ETH // 2


async def test_every_bar_and_fill_publishes_an_update_carrying_the_correlation_id():
    portfolio, bus, _ = make_portfolio()
    updates: list[PortfolioUpdate] = []
    bus.subscribe(PortfolioUpdate, updates.append)
    await portfolio.start()
    bus.publish_nowait(bar(2_000.0, ts=5))
    bus.publish_nowait(fill("BUY", 1_000 * USDC, ETH // 2, 2_000.0, order_id="x"))
    bus.publish_nowait(bar(1_000.0, symbol="WBTC/USDC"))  # not held: no update
    assert [u.correlation_id for u in updates] == ["bar-5", "c-x"]
    last = updates[-1]
    assert last.balances == {"USDC": 9_000 * USDC, "WETH": ETH // 2}
    assert last.equity_quote == pytest.approx(10_000.0)
    assert last.peak_equity_quote == pytest.approx(10_000.0)
    assert last.drawdown == 0.0


async def test_gas_is_not_charged_without_an_eth_price_but_is_summed_in_wei():
    btc = {"symbol": "WBTC/USDT", "base_decimals": 8, "quote_decimals": 6}
    portfolio, bus, _ = make_portfolio((btc,), {"USDT": 1_000})
    await portfolio.start()
    bus.publish_nowait(bar(50_000.0, symbol="WBTC/USDT"))
    bus.publish_nowait(
        fill("BUY", 500 * 10**6, 10**6, 50_000.0, symbol="WBTC/USDT", gas_cost_wei=10**15)
    )
    assert portfolio.gas_paid_wei == 10**15
    assert portfolio.gas_uncharged_wei == 10**15
    assert portfolio.gas_charged_quote == 0.0
    assert portfolio.equity_quote == pytest.approx(1_000.0)


async def test_gas_is_charged_at_the_configured_eth_price():
    btc = {"symbol": "WBTC/USDT", "base_decimals": 8, "quote_decimals": 6}
    portfolio, bus, _ = make_portfolio((btc,), {"USDT": 1_000}, eth_price_quote=3_000.0)
    await portfolio.start()
    bus.publish_nowait(bar(50_000.0, symbol="WBTC/USDT"))
    bus.publish_nowait(
        fill("BUY", 500 * 10**6, 10**6, 50_000.0, symbol="WBTC/USDT", gas_cost_wei=10**15)
    )
    assert portfolio.gas_charged_quote == pytest.approx(3.0)
    assert portfolio.equity_quote == pytest.approx(997.0)


async def test_gas_is_charged_one_to_one_when_the_quote_is_weth():
    pepe = {"symbol": "PEPE/WETH", "base_decimals": 18, "quote_decimals": 18}
    portfolio, bus, _ = make_portfolio((pepe,), {"WETH": 2})
    await portfolio.start()
    bus.publish_nowait(fill("BUY", ETH, 10**24, 1e-6, symbol="PEPE/WETH", gas_cost_wei=10**16))
    assert portfolio.gas_charged_quote == pytest.approx(0.01)


async def test_initial_base_holding_takes_the_first_mark_as_its_cost_basis():
    portfolio, bus, _ = make_portfolio(balances={"USDC": 0, "WETH": 2})
    await portfolio.start()
    assert portfolio.equity_quote == 0.0  # nothing to value it with yet
    bus.publish_nowait(bar(1_500.0))
    assert portfolio.equity_quote == pytest.approx(3_000.0)
    assert portfolio.position("WETH/USDC").average_entry == pytest.approx(1_500.0)
    bus.publish_nowait(fill("SELL", ETH, 1_600 * USDC, 1_600.0))
    assert portfolio.realised_pnl == pytest.approx(100.0)


async def test_selling_everything_realises_the_whole_pnl_and_clears_the_cost():
    portfolio, bus, _ = make_portfolio()
    await portfolio.start()
    bus.publish_nowait(bar(2_000.0))
    bus.publish_nowait(fill("BUY", 2_000 * USDC, ETH, 2_000.0))
    bus.publish_nowait(fill("SELL", ETH, 1_900 * USDC, 1_900.0))
    position = portfolio.position("WETH/USDC")
    assert position.base_units == 0
    assert position.average_entry is None
    assert position.unrealised_pnl == 0.0
    assert portfolio.realised_pnl == pytest.approx(-100.0)


async def test_metrics_expose_equity_drawdown_balances_and_fills():
    portfolio, bus, registry = make_portfolio()
    await portfolio.start()
    bus.publish_nowait(bar(2_000.0))
    bus.publish_nowait(fill("BUY", 2_000 * USDC, ETH, 2_000.0))
    bus.publish_nowait(bar(1_000.0))
    value = registry.get_sample_value
    assert value("trade_engine_portfolio_equity_quote") == pytest.approx(9_000.0)
    assert value("trade_engine_portfolio_drawdown_ratio") == pytest.approx(0.1)
    assert value("trade_engine_portfolio_balance", {"token": "WETH"}) == 1.0
    assert value("trade_engine_portfolio_fills_total", {"side": "BUY"}) == 1.0
    await portfolio.stop()
    assert value("trade_engine_portfolio_equity_quote") is None


async def test_gas_is_charged_at_the_feeds_eth_price_before_the_configured_constant():
    btc = {"symbol": "WBTC/USDT", "base_decimals": 8, "quote_decimals": 6}
    portfolio, bus, _ = make_portfolio((btc,), {"USDT": 1_000}, eth_price_quote=3_000.0)
    await portfolio.start()
    bus.publish_nowait(bar(2_500.0, symbol="ETH/USDT"))  # a feed's bar; not an instrument
    bus.publish_nowait(
        fill("BUY", 500 * 10**6, 10**6, 50_000.0, symbol="WBTC/USDT", gas_cost_wei=10**15)
    )
    assert portfolio.gas_charged_quote == pytest.approx(2.5)


async def test_the_configured_constant_is_the_fallback_and_logged_once_as_such():
    btc = {"symbol": "WBTC/USDT", "base_decimals": 8, "quote_decimals": 6}
    portfolio, _, _ = make_portfolio((btc,), {"USDT": 1_000}, eth_price_quote=3_000.0)
    await portfolio.start()
    with structlog.testing.capture_logs() as logs:
        for order_id in ("a", "b"):
            portfolio.apply_fill(
                fill(
                    "BUY",
                    10**6,
                    10,
                    50_000.0,
                    symbol="WBTC/USDT",
                    gas_cost_wei=10**15,
                    order_id=order_id,
                )
            )
    assert portfolio.gas_charged_quote == pytest.approx(6.0)
    warnings = [r for r in logs if r["event"] == "portfolio.gas_at_constant_price"]
    assert len(warnings) == 1
    assert warnings[0]["log_level"] == "warning"


def starting(balances: dict[str, int], block: int = 7) -> StartingBalances:
    return StartingBalances(
        ts_event=1, ts_init=1, account="0xabc", block=block, balances=balances, eth_wei=10**18
    )


def observed(balances: dict[str, int], block: int = 8) -> BalancesObserved:
    return BalancesObserved(
        ts_event=3, ts_init=3, account="0xabc", block=block, balances=balances, reason="periodic"
    )


async def test_starting_balances_from_the_chain_replace_the_configured_ones_and_restart_the_peak():
    portfolio, bus, _ = make_portfolio(balances={"USDC": 10_000})
    updates: list[PortfolioUpdate] = []
    bus.subscribe(PortfolioUpdate, updates.append)
    await portfolio.start()
    bus.publish_nowait(starting({"USDC": 500 * USDC, "WETH": ETH, "DAI": 5}))  # DAI: not ours
    assert portfolio.balances == {"USDC": 500 * USDC, "WETH": ETH}
    assert portfolio.equity_quote == portfolio.peak_equity_quote == 500.0
    assert portfolio.initial_equity_quote == 500.0
    assert portfolio.chain_account == "0xabc"
    assert updates[-1].balances == {"USDC": 500 * USDC, "WETH": ETH}
    bus.publish_nowait(bar(2_000.0))  # the first mark is the chain's WETH's cost basis
    assert portfolio.equity_quote == pytest.approx(2_500.0)
    assert portfolio.position("WETH/USDC").average_entry == pytest.approx(2_000.0)
    assert portfolio.drawdown == 0.0


async def test_starting_balances_after_a_fill_are_compared_with_the_book_not_applied():
    portfolio, bus, _ = make_portfolio()
    await portfolio.start()
    bus.publish_nowait(fill("BUY", 1_000 * USDC, ETH // 2, 2_000.0))
    bus.publish_nowait(starting({"USDC": 0, "WETH": 0}))
    assert portfolio.balances == {"USDC": 9_000 * USDC, "WETH": ETH // 2}
    assert portfolio.state is ComponentState.DEGRADED


async def test_a_reading_beyond_the_tolerance_degrades_and_counts_and_one_that_agrees_recovers():
    portfolio, bus, registry = make_portfolio(balance_tolerance={"USDC": "0.01"})
    await portfolio.start()
    value = registry.get_sample_value
    bus.publish_nowait(observed({"USDC": 10_000 * USDC - 10_000, "WETH": 0}))  # within 0.01
    assert portfolio.state is ComponentState.RUNNING
    with structlog.testing.capture_logs() as logs:
        bus.publish_nowait(observed({"USDC": 9_990 * USDC, "WETH": 1}, block=9))
    assert portfolio.state is ComponentState.DEGRADED
    assert portfolio.health().reason == (
        "balances differ from the chain at block 9: "
        "USDC book 10000.000000 USDC, chain 9990.000000 USDC; "
        "WETH book 0.000000000000000000 WETH, chain 0.000000000000000001 WETH"
    )
    [warning] = [r for r in logs if r["event"] == "portfolio.balance_mismatch"]
    assert warning["log_level"] == "warning"
    assert value("trade_engine_portfolio_balance_mismatches_total", {"token": "USDC"}) == 1
    assert value("trade_engine_portfolio_balance_mismatches_total", {"token": "WETH"}) == 1
    assert value("trade_engine_portfolio_balance_checks_total") == 2
    assert portfolio.balances == {"USDC": 10_000 * USDC, "WETH": 0}  # never rewritten
    bus.publish_nowait(observed({"USDC": 10_000 * USDC, "WETH": 0}, block=10))
    assert portfolio.state is ComponentState.RUNNING
    assert value("trade_engine_portfolio_balance_checks_total") == 3


def test_config_refuses_a_tolerance_for_an_unknown_token_or_below_zero():
    with pytest.raises(ValidationError, match="balance_tolerance: 'DAI' is not a token"):
        PortfolioConfig.model_validate(
            {"instruments": [WETH_USDC], "balance_tolerance": {"DAI": 1}}
        )
    with pytest.raises(ValidationError, match="balance_tolerance: USDC must be >= 0"):
        PortfolioConfig.model_validate(
            {"instruments": [WETH_USDC], "balance_tolerance": {"USDC": -1}}
        )


def test_portfolio_is_found_by_name_in_its_engine_context():
    portfolio, _, _ = make_portfolio()
    assert portfolio.context.components.find(Portfolio, "portfolio") is portfolio
    assert portfolio.context.components.find(Portfolio, "other") is None
    assert ComponentLookup().find(Portfolio, "portfolio") is None


def test_config_refuses_instruments_with_different_quotes_and_unknown_balance_tokens():
    with pytest.raises(ValidationError, match="one quote token"):
        PortfolioConfig.model_validate(
            {"instruments": [WETH_USDC, {"symbol": "WBTC/USDT"}], "initial_balances": {}}
        )
    with pytest.raises(ValidationError, match="not a token"):
        PortfolioConfig.model_validate({"instruments": [WETH_USDC], "initial_balances": {"DAI": 1}})
    with pytest.raises(ValidationError, match="extra"):
        PortfolioConfig.model_validate({"instruments": [WETH_USDC], "leverage": 3})


@settings(max_examples=200, deadline=None)
@given(
    trades=st.lists(
        st.tuples(
            st.sampled_from(["BUY", "SELL"]),
            st.integers(1, 3_000),  # quote tokens per buy, or per mille of the position sold
            st.floats(500.0, 5_000.0),  # price of the fill and the bar after it
            st.integers(0, 10**15),  # gas in wei
        ),
        max_size=25,
    )
)
def test_equity_always_equals_start_plus_realised_plus_unrealised_minus_gas(trades):
    portfolio, _, _ = make_portfolio()
    portfolio.mark(bar(2_000.0))
    for side, size, price, gas in trades:
        if side == "BUY":
            spend = min(size * USDC, portfolio.balance("USDC"))
            if spend <= 0:
                continue
            got = int(spend * ETH // USDC / price)
            portfolio.apply_fill(fill("BUY", spend, got, price, gas_cost_wei=gas))
        else:
            sell = portfolio.balance("WETH") * min(size, 1_000) // 1_000
            if sell <= 0:
                continue
            proceeds = int(sell * price * USDC // ETH)
            portfolio.apply_fill(fill("SELL", sell, proceeds, price, gas_cost_wei=gas))
        portfolio.mark(bar(price))
        expected = (
            portfolio.initial_equity_quote
            + portfolio.realised_pnl
            + portfolio.unrealised_pnl
            - portfolio.gas_charged_quote
        )
        assert portfolio.equity_quote == pytest.approx(expected, rel=1e-9, abs=1e-6)
        assert portfolio.peak_equity_quote >= portfolio.equity_quote
        assert 0.0 <= portfolio.drawdown < 1.0
