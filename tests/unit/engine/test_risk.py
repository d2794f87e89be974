"""The risk manager: one test per check, the state machine, and hypothesis invariants.

Most tests run the real chain Portfolio + PaperExecutor + RiskManager on one bus, so an
approval is filled against a simulated Uniswap V2 pool and the next decision sees the
new balances.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from adapters.uniswap_v2.paper import PaperExecutor, PaperExecutorConfig
from engine import amm
from engine.bus import EventBus
from engine.clock import NANOS_PER_SECOND, SimulatedClock
from engine.component import ComponentContext, ComponentGraph, ComponentState
from engine.config import ComponentConfig, Secrets
from engine.events import (
    Event,
    OrderFailed,
    OrderFilled,
    OrderRequest,
    RiskRejected,
    RiskStateChanged,
    SizingChanged,
)
from engine.journal import Journal, JournalConfig
from engine.market_view import BusMarketView
from engine.portfolio import Portfolio, PortfolioConfig
from engine.registry import build_component
from engine.risk import RiskConfig, RiskManager, RiskState, order_id_for
from tests import factories

USDC = 10**6
ETH = 10**18
HOUR = 3_600 * NANOS_PER_SECOND
START_NS = 1_767_225_600 * NANOS_PER_SECOND  # 2026-01-01T00:00:00Z
WETH_USDC = {"symbol": "WETH/USDC", "base_decimals": 18, "quote_decimals": 6}

Decision = OrderRequest | RiskRejected


class Rig:
    """Portfolio, optional paper executor, and risk manager on one bus and clock."""

    def __init__(
        self,
        risk: dict[str, Any] | None = None,
        balances: dict[str, Any] | None = None,
        paper: dict[str, Any] | None = None,
        start_ns: int = START_NS,
        journal: Path | None = None,
    ) -> None:
        self.bus = EventBus()
        self.clock = SimulatedClock(start_ns)
        self.registry = CollectorRegistry()
        context = ComponentContext(self.bus, self.clock, self.registry, Secrets())
        self.journal = (
            None
            if journal is None
            else Journal("journal", JournalConfig(path=str(journal)), context)
        )
        self.market = BusMarketView(self.bus)
        self.portfolio = Portfolio(
            "portfolio",
            PortfolioConfig.model_validate(
                {
                    "instruments": [WETH_USDC],
                    "initial_balances": {"USDC": 10_000} if balances is None else balances,
                }
            ),
            context,
        )
        self.paper: PaperExecutor | None = None
        if paper is not None:
            self.paper = PaperExecutor(
                "paper",
                PaperExecutorConfig.model_validate({"instrument": WETH_USDC, **paper}),
                context,
                market=self.market,
            )
        self.risk = RiskManager(
            "risk",
            RiskConfig.model_validate(risk or {}),
            context,
            portfolio=self.portfolio,
            market=self.market,
        )
        self.decisions: list[Decision] = []
        self.bus.subscribe(OrderRequest, self.decisions.append)
        self.bus.subscribe(RiskRejected, self.decisions.append)
        self.fills: list[OrderFilled] = []
        self.bus.subscribe(OrderFilled, self.fills.append)
        self._signals = 0

    async def start(self) -> Rig:
        for component in (self.journal, self.portfolio, self.paper, self.risk):
            if component is not None:
                await component.start()
        return self

    def bar(self, close: float, after_ns: int = HOUR) -> None:
        self.clock.advance_to(self.clock.timestamp_ns() + after_ns)
        now = self.clock.timestamp_ns()
        self.bus.publish_nowait(factories.bar(close, ts=now, correlation_id=f"WETH/USDC|1h|{now}"))

    def signal(
        self, action: str, symbol: str = "WETH/USDC", correlation_id: str | None = None
    ) -> Decision | None:
        """Publish one signal; the decision it produced (None for none)."""
        self._signals += 1
        before = len(self.decisions)
        now = self.clock.timestamp_ns()
        self.bus.publish_nowait(
            factories.signal(
                action,  # type: ignore[arg-type]
                ts=now,
                correlation_id=correlation_id or f"sig-{self._signals}",
                symbol=symbol,
                prediction=1 if action == "BUY" else 0,
                probability_up=0.9 if action == "BUY" else 0.1,
            )
        )
        made = self.decisions[before:]
        assert len(made) <= 1
        return made[0] if made else None


def reason(decision: Decision | None) -> str:
    assert isinstance(decision, RiskRejected), f"expected a rejection, got {decision!r}"
    return decision.reason


DEEP_POOL = {"pool_depth_quote": 10_000_000}


async def trading_rig(
    risk: dict[str, Any] | None = None,
    balances: dict[str, Any] | None = None,
    paper: dict[str, Any] | None = None,
    price: float = 2_000.0,
) -> Rig:
    rig = await Rig(risk, balances, DEEP_POOL if paper is None else paper).start()
    rig.bar(price)
    return rig


# -- approvals -------------------------------------------------------------------------


async def test_buy_signal_becomes_an_order_spending_the_configured_notional():
    rig = await trading_rig({"order_notional_quote": 1_500, "slippage_tolerance_bps": 30})
    decision = rig.signal("BUY", correlation_id="WETH/USDC|1h|42")
    assert isinstance(decision, OrderRequest)
    assert decision.side == "BUY"
    assert decision.amount_in == 1_500 * USDC
    assert decision.max_slippage_bps == 30
    assert decision.correlation_id == "WETH/USDC|1h|42"
    assert decision.strategy_id == "ml"
    assert [f.order_id for f in rig.fills] == [decision.order_id]


async def test_a_canary_size_fraction_scales_that_strategys_buys_and_is_reported():
    rig = await trading_rig({"order_notional_quote": 1_000})
    rig.bus.publish_nowait(
        SizingChanged(ts_event=0, ts_init=0, strategy_id="ml", fraction=0.25, reason="canary")
    )
    rig.bus.publish_nowait(
        SizingChanged(ts_event=0, ts_init=0, strategy_id="other", fraction=0.5, reason="x")
    )
    decision = rig.signal("BUY")
    assert isinstance(decision, OrderRequest)
    assert decision.amount_in == 250 * USDC  # a quarter of the normal size
    assert rig.risk.status()["size_fractions"] == {"ml": 0.25, "other": 0.5}
    value = rig.registry.get_sample_value("trade_engine_risk_size_fraction", {"strategy": "ml"})
    assert value == 0.25
    rig.bus.publish_nowait(
        SizingChanged(ts_event=0, ts_init=0, strategy_id="ml", fraction=1.0, reason="passed")
    )
    rig.bar(2_000.0)
    full = rig.signal("BUY")
    assert isinstance(full, OrderRequest)
    assert full.amount_in == 1_000 * USDC


async def test_order_id_is_derived_deterministically_from_the_signal():
    first = await trading_rig()
    second = await trading_rig()
    a = first.signal("BUY", correlation_id="bar-7")
    b = second.signal("BUY", correlation_id="bar-7")
    c = second.signal("BUY", correlation_id="bar-8")
    assert isinstance(a, OrderRequest)
    assert isinstance(b, OrderRequest)
    assert isinstance(c, OrderRequest)
    assert a.order_id == b.order_id != c.order_id


async def test_buy_is_capped_by_the_free_quote_balance():
    rig = await trading_rig({"order_notional_quote": 1_000}, balances={"USDC": 400})
    decision = rig.signal("BUY")
    assert isinstance(decision, OrderRequest)
    assert decision.amount_in == 400 * USDC


async def test_sell_signal_sells_the_configured_fraction_of_the_position():
    rig = await trading_rig({"sell_fraction": 0.25}, balances={"USDC": 0, "WETH": 2})
    decision = rig.signal("SELL")
    assert isinstance(decision, OrderRequest)
    assert decision.side == "SELL"
    assert decision.amount_in == ETH // 2


async def test_sell_larger_than_max_order_notional_is_capped_at_it():
    rig = await trading_rig({"max_order_notional_quote": 1_000}, balances={"WETH": 3})
    decision = rig.signal("SELL")
    assert isinstance(decision, OrderRequest)
    assert decision.amount_in == ETH // 2  # 1,000 USDC at 2,000


async def test_hold_signal_produces_no_event():
    rig = await trading_rig()
    assert rig.signal("HOLD") is None
    assert rig.risk.signals["HOLD"] == 1


async def test_approved_but_unfilled_orders_count_against_the_free_balance():
    rig = await Rig({"order_notional_quote": 1_000}, balances={"USDC": 1_500}).start()
    rig.bar(2_000.0)  # no executor: orders stay pending
    first, second, third = rig.signal("BUY"), rig.signal("BUY"), rig.signal("BUY")
    assert isinstance(first, OrderRequest)
    assert isinstance(second, OrderRequest)
    assert second.amount_in == 500 * USDC
    assert reason(third) == "INSUFFICIENT_BALANCE"
    now = rig.clock.timestamp_ns()
    rig.bus.publish_nowait(
        OrderFailed(ts_event=now, ts_init=now, order_id=first.order_id, reason="X")
    )
    assert isinstance(rig.signal("BUY"), OrderRequest)  # its 1,000 is free again


async def test_pending_buys_count_against_max_position_with_what_is_held():
    # No executor: approved orders stay pending until this test fills or fails them.
    rig = await Rig(
        {"order_notional_quote": 1_000, "max_position_base": 1.2}, balances={"USDC": 10_000}
    ).start()
    rig.bar(2_000.0)  # each BUY expects 0.5 WETH
    first, second = rig.signal("BUY"), rig.signal("BUY")
    assert isinstance(first, OrderRequest)
    assert isinstance(second, OrderRequest)
    third = rig.signal("BUY")  # nothing held: 1.0 pending + 0.5 > 1.2
    assert reason(third) == "MAX_POSITION"
    assert "1.5" in third.detail
    now = rig.clock.timestamp_ns()
    rig.bus.publish_nowait(
        factories.fill("BUY", 1_000 * USDC, ETH // 2, 2_000.0, ts=now, order_id=first.order_id)
    )
    assert rig.portfolio.balance("WETH") == ETH // 2
    assert reason(rig.signal("BUY")) == "MAX_POSITION"  # 0.5 held + 0.5 pending + 0.5
    rig.bus.publish_nowait(
        OrderFailed(ts_event=now, ts_init=now, order_id=second.order_id, reason="X")
    )
    assert isinstance(rig.signal("BUY"), OrderRequest)  # 0.5 held + 0.5: within the limit


# -- one test per check ----------------------------------------------------------------


async def test_order_with_notional_over_max_is_rejected_with_max_order_notional():
    rig = await trading_rig({"order_notional_quote": 2_000, "max_order_notional_quote": 1_000})
    assert reason(rig.signal("BUY")) == "MAX_ORDER_NOTIONAL"


async def test_order_below_min_size_is_rejected_with_min_order_size():
    rig = await trading_rig({"min_order_notional_quote": 10}, balances={"USDC": 5})
    assert reason(rig.signal("BUY")) == "MIN_ORDER_SIZE"


async def test_dust_position_sell_is_rejected_with_min_order_size():
    rig = await trading_rig({"min_order_notional_quote": 10}, balances={"WETH": "0.001"})
    assert reason(rig.signal("SELL")) == "MIN_ORDER_SIZE"  # 2 USDC worth


async def test_buy_that_would_exceed_max_base_position_is_rejected_with_max_position():
    rig = await trading_rig({"order_notional_quote": 1_000, "max_position_base": 0.4})
    decision = rig.signal("BUY")
    assert reason(decision) == "MAX_POSITION"
    assert rig.portfolio.balance("WETH") == 0


async def test_buy_that_would_exceed_max_quote_position_is_rejected_with_max_position():
    rig = await trading_rig({"order_notional_quote": 1_000, "max_position_quote": 1_500})
    assert isinstance(rig.signal("BUY"), OrderRequest)
    assert reason(rig.signal("BUY")) == "MAX_POSITION"
    assert rig.portfolio.balance("WETH") * 2_000 / ETH <= 1_500


async def test_orders_over_the_rate_limit_are_rejected_with_rate_limit():
    rig = await trading_rig(
        {"order_notional_quote": 100, "max_orders_per_window": 2, "rate_window_seconds": 60}
    )
    assert isinstance(rig.signal("BUY"), OrderRequest)
    assert isinstance(rig.signal("BUY"), OrderRequest)
    assert reason(rig.signal("BUY")) == "RATE_LIMIT"
    rig.clock.advance_to(rig.clock.timestamp_ns() + 61 * NANOS_PER_SECOND)
    assert isinstance(rig.signal("BUY"), OrderRequest)  # the window rolled on


async def test_signal_after_the_last_bar_is_too_old_is_rejected_with_stale_market_data():
    rig = await trading_rig({"max_bar_age_seconds": 600})
    rig.clock.advance_to(rig.clock.timestamp_ns() + 601 * NANOS_PER_SECOND)
    assert reason(rig.signal("BUY")) == "STALE_MARKET_DATA"


async def test_signal_on_a_candle_older_than_max_candle_age_is_rejected_with_stale_market_data():
    """A live feed's warm-up history: fresh bars on the bus, old candles."""
    rig = await trading_rig({"max_candle_age_seconds": 300, "max_bar_age_seconds": 600})
    now = rig.clock.timestamp_ns()
    old = factories.signal("BUY", ts=now - 301 * NANOS_PER_SECOND, correlation_id="old")
    rig.bus.publish_nowait(old)
    assert reason(rig.decisions[-1]) == "STALE_MARKET_DATA"
    assert "candle closed 301s ago > max_candle_age_seconds 300" in rig.decisions[-1].detail
    assert isinstance(rig.signal("BUY"), OrderRequest)  # a signal on the candle just closed


async def test_signal_before_any_bar_is_rejected_with_stale_market_data():
    rig = await Rig().start()
    assert reason(rig.signal("BUY")) == "STALE_MARKET_DATA"


async def test_buy_that_moves_the_pool_too_far_is_rejected_with_max_price_impact():
    rig = await trading_rig(
        {"order_notional_quote": 1_000, "max_price_impact_bps": 100, "max_slippage_bps": 10_000},
        paper={"pool_depth_quote": 50_000},  # 1,000 into 50,000 moves it ~2%
    )
    decision = rig.signal("BUY")
    assert reason(decision) == "MAX_PRICE_IMPACT"
    pool = rig.paper.pool  # type: ignore[union-attr]
    impact = amm.price_impact_bps(1_000 * USDC, pool.quote_reserve, pool.base_reserve)
    assert impact > 100
    assert f"{impact:.1f} bps" in decision.detail  # type: ignore[union-attr]


async def test_pool_priced_away_from_the_market_is_rejected_with_max_slippage():
    rig = await trading_rig(
        {"max_slippage_bps": 100},
        paper={**DEEP_POOL, "initial_price": 2_000.0, "follow_bars": False},
    )
    rig.bar(1_950.0)  # the market fell 2.5% but the pool did not follow
    assert reason(rig.signal("BUY")) == "MAX_SLIPPAGE"


async def test_reserves_unknown_are_rejected_with_no_pool_reserves_when_required():
    rig = await Rig({"require_pool_reserves": True}).start()
    rig.bar(2_000.0)
    assert reason(rig.signal("BUY")) == "NO_POOL_RESERVES"


async def test_gas_price_over_the_cap_is_rejected_with_gas_price_cap():
    rig = await trading_rig({"max_gas_price_gwei": 50}, paper={**DEEP_POOL, "gas_price_gwei": 51})
    assert reason(rig.signal("BUY")) == "GAS_PRICE_CAP"


async def test_buy_without_quote_balance_is_rejected_with_insufficient_balance():
    rig = await trading_rig(balances={"USDC": 0})
    assert reason(rig.signal("BUY")) == "INSUFFICIENT_BALANCE"


async def test_sell_without_a_position_is_rejected_with_no_position():
    rig = await trading_rig()
    assert reason(rig.signal("SELL")) == "NO_POSITION"


async def test_signal_for_a_symbol_the_portfolio_lacks_is_rejected_with_unknown_symbol():
    rig = await trading_rig()
    assert reason(rig.signal("BUY", symbol="WBTC/USDC")) == "UNKNOWN_SYMBOL"


async def test_same_signal_twice_is_rejected_with_duplicate_signal():
    rig = await trading_rig()
    first = rig.signal("BUY", correlation_id="bar-1")
    second = rig.signal("BUY", correlation_id="bar-1")
    assert isinstance(first, OrderRequest)
    assert reason(second) == "DUPLICATE_SIGNAL"
    assert second.order_id == first.order_id  # type: ignore[union-attr]


async def test_day_loss_over_the_limit_rejects_buys_with_daily_loss_limit_until_next_utc_day():
    rig = await trading_rig(
        {
            "order_notional_quote": 5_000,
            "max_daily_loss_fraction": 0.05,
            "max_drawdown_fraction": 0.5,
        }
    )
    assert isinstance(rig.signal("BUY"), OrderRequest)  # half the equity in WETH
    rig.bar(1_900.0)  # about 2.5% lost today: under the limit
    assert rig.risk.risk_state is RiskState.ACTIVE
    rig.bar(1_700.0)  # about 7.5% lost today
    assert rig.risk.risk_state is RiskState.REDUCING
    assert reason(rig.signal("BUY")) == "DAILY_LOSS_LIMIT"
    assert isinstance(rig.signal("SELL"), OrderRequest)  # reducing is still allowed
    hours_to_midnight = 24 - (rig.clock.timestamp_ns() - START_NS) // HOUR % 24
    rig.bar(1_700.0, after_ns=hours_to_midnight * HOUR)
    assert rig.risk.risk_state is RiskState.ACTIVE
    assert isinstance(rig.signal("BUY"), OrderRequest)


async def test_drawdown_over_the_limit_halts_and_rejects_everything_with_halted_until_resume():
    rig = await trading_rig(
        {
            "order_notional_quote": 5_000,
            "max_drawdown_fraction": 0.2,
            "max_daily_loss_fraction": None,
        }
    )
    changes: list[RiskStateChanged] = []
    rig.bus.subscribe(RiskStateChanged, changes.append)
    assert isinstance(rig.signal("BUY"), OrderRequest)
    rig.bar(1_100.0)  # the half in WETH lost 45%: about 22.5% drawdown
    assert [(c.previous, c.state) for c in changes] == [("ACTIVE", "HALTED")]  # journalled
    assert rig.portfolio.drawdown >= 0.2
    assert rig.risk.risk_state is RiskState.HALTED
    assert "DRAWDOWN_HALT" in rig.risk.state_reason
    assert reason(rig.signal("BUY")) == "HALTED"
    assert reason(rig.signal("SELL")) == "HALTED"
    rig.bar(2_000.0)  # recovery does not un-halt
    assert rig.risk.risk_state is RiskState.HALTED
    rig.risk.resume()
    assert rig.risk.risk_state is RiskState.ACTIVE
    assert isinstance(rig.signal("SELL"), OrderRequest)


async def test_operator_reduce_only_rejects_buys_with_reducing_only():
    rig = await trading_rig(balances={"USDC": 5_000, "WETH": 1})
    rig.risk.reduce_only("maintenance")
    assert reason(rig.signal("BUY")) == "REDUCING_ONLY"
    assert isinstance(rig.signal("SELL"), OrderRequest)
    rig.risk.resume()
    assert isinstance(rig.signal("BUY"), OrderRequest)


async def test_operator_halt_rejects_everything_with_halted():
    rig = await trading_rig(balances={"USDC": 5_000, "WETH": 1})
    rig.risk.halt("incident")
    assert reason(rig.signal("SELL")) == "HALTED"


class Store:
    """A critical subscriber like the journal on a disk that fills up: once ``full``, it
    fails from the next order on (where it commits), on every event, until emptied."""

    def __init__(self) -> None:
        self.full = False
        self.failing = False

    def write(self, event: Event) -> None:
        self.failing = self.full and (self.failing or isinstance(event, OrderRequest))
        if self.failing:
            raise OSError("no space left on device")


async def test_a_failing_critical_subscriber_halts_and_the_order_it_withheld_is_not_pending():
    rig = Rig(paper=DEEP_POOL)
    store = Store()
    rig.bus.subscribe(Event, store.write, name="store", critical=True)  # before paper and risk
    await rig.start()
    rig.bar(2_000.0)
    assert isinstance(rig.signal("BUY"), OrderRequest)
    store.full = True
    withheld = rig.signal("BUY")
    assert isinstance(withheld, OrderRequest)  # approved, then stopped by the store
    assert withheld.order_id not in {f.order_id for f in rig.fills}  # never executed
    assert len(rig.fills) == 1
    assert rig.risk.risk_state is RiskState.HALTED
    assert rig.risk.state_reason.startswith("SUBSCRIBER_FAILED: store failed on OrderRequest")
    assert rig.risk.status()["pending_orders"] == 0
    assert rig.signal("SELL") is None  # withheld by the store: risk does not see it
    rig.risk.resume()  # refused: the store still fails
    assert rig.risk.risk_state is RiskState.HALTED
    store.full = False
    rig.bar(2_000.0)  # handled: the store works again, but trading waits for an operator
    assert rig.risk.risk_state is RiskState.HALTED
    rig.risk.resume()
    assert rig.risk.risk_state is RiskState.ACTIVE
    assert isinstance(rig.signal("SELL"), OrderRequest)
    assert len(rig.fills) == 2


async def test_a_journal_that_cannot_write_halts_with_journal_unavailable(tmp_path):
    rig = Rig(paper=DEEP_POOL, journal=tmp_path / "j.sqlite")
    await rig.start()
    rig.bar(2_000.0)
    assert rig.journal is not None
    rig.journal.conn.close()  # every write fails from now on
    rig.bar(2_010.0)
    assert rig.journal.state is ComponentState.FAULTED
    assert rig.risk.risk_state is RiskState.HALTED
    assert rig.risk.state_reason.startswith("JOURNAL_UNAVAILABLE: journal.append failed on Bar")
    assert rig.signal("BUY") is None  # the signal itself is withheld: risk never sees it
    assert rig.risk.status()["signals"] == {"BUY": 0, "SELL": 0, "HOLD": 0}


# -- metrics, config, wiring -----------------------------------------------------------


async def test_rejections_are_counted_by_reason_and_the_state_is_a_gauge():
    rig = await trading_rig()
    rig.signal("SELL")
    rig.signal("SELL")
    rig.signal("BUY")
    value = rig.registry.get_sample_value
    assert value("trade_engine_risk_rejections_total", {"reason": "NO_POSITION"}) == 2.0
    assert value("trade_engine_risk_rejections_total", {"reason": "HALTED"}) == 0.0
    assert value("trade_engine_risk_orders_total", {"side": "BUY"}) == 1.0
    assert value("trade_engine_risk_state", {"state": "ACTIVE"}) == 1.0
    rig.risk.halt()
    assert value("trade_engine_risk_state", {"state": "HALTED"}) == 1.0
    assert value("trade_engine_risk_state", {"state": "ACTIVE"}) == 0.0


async def test_tick_to_order_times_only_orders_approved_for_the_bar_just_received():
    rig = await trading_rig()
    value = rig.registry.get_sample_value
    bar_id = f"WETH/USDC|1h|{rig.clock.timestamp_ns()}"
    assert isinstance(rig.signal("BUY", correlation_id=bar_id), OrderRequest)
    assert value("trade_engine_tick_to_order_seconds_count") == 1.0
    assert 0 < value("trade_engine_tick_to_order_seconds_sum") < 1.0
    assert isinstance(rig.signal("BUY"), OrderRequest)  # not from a bar (an operator's)
    assert value("trade_engine_tick_to_order_seconds_count") == 1.0
    rig.bar(2_000.0)
    assert isinstance(rig.signal("SELL", correlation_id=bar_id), OrderRequest)  # a bar late
    assert value("trade_engine_tick_to_order_seconds_count") == 1.0


def test_config_forbids_unknown_fields_and_inverted_order_bounds():
    with pytest.raises(ValidationError, match="extra"):
        RiskConfig.model_validate({"max_leverage": 3})
    with pytest.raises(ValidationError, match="above"):
        RiskConfig.model_validate({"min_order_notional_quote": 100, "max_order_notional_quote": 50})
    for name, field in RiskConfig.model_fields.items():
        assert field.description, f"{name} is undocumented"


async def test_components_built_from_config_find_the_portfolio_and_the_shared_market_view():
    bus = EventBus()
    clock = SimulatedClock(START_NS)
    context = ComponentContext(bus, clock, CollectorRegistry(), Secrets())
    entries = [
        ComponentConfig(
            name="portfolio",
            type="portfolio",
            config={"instruments": [WETH_USDC], "initial_balances": {"USDC": 10_000}},
        ),
        ComponentConfig(name="paper", type="paper_executor", config={"instrument": WETH_USDC}),
        ComponentConfig(
            name="risk",
            type="risk",
            depends_on=("portfolio",),
            config={"max_price_impact_bps": 35, "max_slippage_bps": 10_000},
        ),
    ]
    graph = ComponentGraph(build_component(entry, context) for entry in entries)
    await graph.start()
    decisions: list[Decision] = []
    bus.subscribe(OrderRequest, decisions.append)
    bus.subscribe(RiskRejected, decisions.append)
    now = clock.timestamp_ns()
    bus.publish_nowait(factories.bar(2e3, ts=now, volume=0.0))
    bus.publish_nowait(factories.signal("BUY", ts=now, correlation_id="c"))
    # 1,000 into the paper executor's default 1,000,000 pool: 39.9 bps with the fee; the
    # check only runs because the risk manager sees the executor's reserves
    assert [type(d).__name__ for d in decisions] == ["RiskRejected"]
    assert decisions[0].reason == "MAX_PRICE_IMPACT"  # type: ignore[union-attr]
    assert "39.9 bps" in decisions[0].detail
    portfolio = graph.get("portfolio")
    assert isinstance(portfolio, Portfolio)
    await graph.stop()


async def test_risk_manager_without_a_portfolio_on_its_engine_fails_to_start_clearly():
    context = ComponentContext(EventBus(), SimulatedClock(0), CollectorRegistry(), Secrets())
    risk = RiskManager("risk", RiskConfig(portfolio="book"), context)
    with pytest.raises(RuntimeError, match="no portfolio component named 'book'"):
        await risk.start()


def test_order_id_changes_with_strategy_symbol_and_action():
    base = {"correlation_id": "c", "strategy_id": "a", "symbol": "X/Y", "action": "BUY"}
    ids = {
        order_id_for(factories.signal(**{**base, **change}))
        for change in ({}, {"strategy_id": "b"}, {"symbol": "Z/Y"}, {"action": "SELL"})
    }
    assert len(ids) == 4


# -- invariants for any signal sequence and price path ---------------------------------

LIMITS = {
    "order_notional_quote": 3_000,
    "max_order_notional_quote": 4_000,
    "max_position_base": 3.0,
    "max_position_quote": 8_000,
    "max_drawdown_fraction": 0.1,
    "max_daily_loss_fraction": 0.08,
    "max_orders_per_window": 3,
    "rate_window_seconds": 3_600,
    "max_price_impact_bps": 200,
    "max_slippage_bps": 200,
}
PAPER = {"pool_depth_quote": 2_000_000, "gas_used_per_swap": 110_000, "gas_price_gwei": 20}

steps = st.lists(
    st.tuples(
        st.floats(0.6, 1.4),  # the bar's close relative to the previous one
        st.lists(st.sampled_from(["BUY", "SELL", "HOLD"]), max_size=3),
        st.booleans(),  # the operator resumes before the signals (used by the second test)
    ),
    min_size=1,
    max_size=20,
)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@settings(max_examples=1_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=steps)
def test_for_any_signals_and_prices_limits_hold_halt_fires_and_nothing_passes_while_halted(path):
    rig = run(Rig(LIMITS, paper=PAPER).start())
    max_base = 3 * ETH
    price = 2_000.0
    halted_once = False
    for move, actions, _ in path:
        price = max(price * move, 1.0)
        rig.bar(price)
        for action in actions:
            halted_before = rig.risk.risk_state is RiskState.HALTED
            decision = rig.signal(action)
            if halted_before:
                assert not isinstance(decision, OrderRequest)
                if decision is not None:
                    assert decision.reason == "HALTED"
            if isinstance(decision, OrderRequest) and decision.side == "BUY":
                held = rig.portfolio.balance("WETH")
                assert held / ETH * price <= LIMITS["max_position_quote"]
            assert rig.portfolio.balance("WETH") <= max_base
        if rig.portfolio.drawdown >= LIMITS["max_drawdown_fraction"]:
            assert rig.risk.risk_state is RiskState.HALTED
        halted_once = halted_once or rig.risk.risk_state is RiskState.HALTED
        if halted_once:  # no resume here: once halted, halted for good
            assert rig.risk.risk_state is RiskState.HALTED


@settings(max_examples=1_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=steps)
def test_halted_is_left_only_by_resume_and_the_halt_re_arms_from_the_resume_equity(path):
    rig = run(Rig(LIMITS, paper=PAPER).start())
    limit = LIMITS["max_drawdown_fraction"]
    peak = rig.portfolio.equity_quote  # an independent model of the kill switch's baseline
    price = 2_000.0

    def observe() -> None:
        nonlocal peak
        equity = rig.portfolio.equity_quote
        peak = max(peak, equity)
        if peak > 0 and (peak - equity) / peak >= limit:
            assert rig.risk.risk_state is RiskState.HALTED

    for move, actions, resume in path:
        if resume:
            rig.risk.resume()
            assert rig.risk.risk_state is RiskState.ACTIVE
            peak = rig.portfolio.equity_quote
        price = max(price * move, 1.0)
        was_halted = rig.risk.risk_state is RiskState.HALTED
        rig.bar(price)
        observe()
        if was_halted:
            assert rig.risk.risk_state is RiskState.HALTED
        for action in actions:
            was_halted = rig.risk.risk_state is RiskState.HALTED
            decision = rig.signal(action)
            observe()
            if was_halted:
                assert rig.risk.risk_state is RiskState.HALTED
                assert not isinstance(decision, OrderRequest)


async def test_risk_manager_starting_on_a_portfolio_already_in_drawdown_is_halted_at_once():
    rig = Rig({"max_drawdown_fraction": 0.2}, balances={"USDC": 0, "WETH": 1})
    await rig.portfolio.start()
    rig.bar(2_000.0)
    rig.bar(1_500.0)  # 25% below the peak, e.g. a portfolio rebuilt from a journal
    await rig.risk.start()
    assert rig.risk.risk_state is RiskState.HALTED
