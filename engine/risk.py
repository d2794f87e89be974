"""The risk manager: turns each ``Signal`` into an ``OrderRequest`` or a ``RiskRejected``.

Sizing: BUY spends ``order_notional_quote`` of the quote token (capped by what is free),
times the strategy's size fraction (1 unless a ``SizingChanged`` set it: a new model's
canary trades a fraction that ramps to 1),
SELL sells ``sell_fraction`` of the free base position (capped at
``max_order_notional_quote``, so an exit is spread over signals rather than refused),
HOLD does nothing. Every other outcome is an event: an order whose ``order_id`` is
derived from the signal (so a replayed signal yields the same id), or a rejection
with a stable reason code (:class:`Reason`).

States: ACTIVE trades; REDUCING allows only position-reducing orders (SELL), entered
when the UTC day's loss passes the limit (left at the next UTC day) or by an operator;
HALTED allows nothing, entered when drawdown reaches the limit, when a critical bus
subscriber fails (the journal: ``JOURNAL_UNAVAILABLE``; see :mod:`engine.bus`), or by an
operator, and left only by :meth:`RiskManager.resume`, which is refused while a
critical subscriber is still failing. After a resume the drawdown is measured from the
equity at that moment, so the kill switch re-arms instead of firing at once. An order
approved but withheld by the failing subscriber (never seen by an executor) stops
counting as pending.

The manager reads the portfolio and the market through handles (:class:`PortfolioView`,
:class:`MarketView`): given explicitly, or found on the engine by the bus (the
``portfolio`` component named in the config, and the engine's shared market view).
Orders approved but not yet filled or failed count against balance and position.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict, deque
from collections.abc import Iterator
from dataclasses import dataclass, replace
from enum import StrEnum
from fractions import Fraction

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from engine.amm import price_impact_bps
from engine.bus import LatencyHistogram
from engine.clock import NANOS_PER_SECOND
from engine.component import Component, ComponentContext
from engine.events import (
    Bar,
    OrderFailed,
    OrderFilled,
    OrderRequest,
    PortfolioUpdate,
    RiskRejected,
    RiskStateChanged,
    Side,
    Signal,
    SizingChanged,
    SubscriberFailed,
    SubscriberRecovered,
)
from engine.instruments import Instrument
from engine.journal import Journal
from engine.market_view import MarketView
from engine.portfolio import Portfolio, PortfolioView, drawdown_fraction
from engine.reasons import Reason
from engine.risk_config import RiskConfig
from engine.timeframes import timeframe_ns

NANOS_PER_DAY = 86_400 * NANOS_PER_SECOND
GWEI = 10**9
_REMEMBERED_ORDERS = 10_000  # order ids kept to refuse a duplicate signal


class RiskState(StrEnum):
    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"
    HALTED = "HALTED"


@dataclass(frozen=True, slots=True)
class _Pending:
    """An approved order not yet filled or failed."""

    symbol: str
    side: Side
    amount_in: int
    expected_out: int
    seq: int = 0  # the bus sequence of its OrderRequest, once published


class Rejected(Exception):
    """Raised inside :meth:`RiskManager.check` to end it with one reason."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def order_id_for(signal: Signal) -> str:
    """A deterministic order id: the same signal (strategy, bar, action) gives the same id."""
    key = signal.correlation_id or f"seq{signal.seq}@{signal.ts_event}"
    digest = hashlib.blake2b(
        f"{signal.strategy_id}|{signal.symbol}|{key}|{signal.action}".encode(), digest_size=8
    )
    return f"ord-{digest.hexdigest()}"


class RiskManager(Component):
    """Sizes and checks every signal; publishes an order or a rejection with a reason."""

    Config = RiskConfig

    def __init__(
        self,
        name: str,
        settings: RiskConfig,
        context: ComponentContext,
        depends_on: tuple[str, ...] = (),
        *,
        portfolio: PortfolioView | None = None,
        market: MarketView | None = None,
    ) -> None:
        super().__init__(name, settings, context, depends_on)
        self._portfolio = portfolio
        self.market: MarketView = market if market is not None else context.market_view
        self.risk_state = RiskState.ACTIVE
        self.state_reason = ""
        self._reducing_for_daily_loss = False
        self._hwm = 0.0
        self._day = -1
        self._day_start_equity = 0.0
        self._last_equity = 0.0
        self._approvals: deque[int] = deque()
        self._pending: dict[str, _Pending] = {}
        self._decided: OrderedDict[str, None] = OrderedDict()
        self._failing: set[str] = set()  # critical bus subscribers failing now
        self.rejections: dict[str, int] = {reason.value: 0 for reason in Reason}
        self.approved: dict[str, int] = {"BUY": 0, "SELL": 0}
        self.tick_to_order = LatencyHistogram()
        self._bar_mark: tuple[str, int] = ("", 0)  # (correlation id, perf_counter_ns)
        self.signals: dict[str, int] = {"BUY": 0, "SELL": 0, "HOLD": 0}
        self.size_fractions: dict[str, float] = {}  # by strategy; absent: 1.0

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def portfolio(self) -> PortfolioView:
        if self._portfolio is None:
            raise RuntimeError(f"risk manager {self.name!r} has no portfolio yet (not started)")
        return self._portfolio

    async def on_start(self) -> None:
        if self._portfolio is None:
            self._portfolio = self.context.components.find(Portfolio, self.settings.portfolio)
            if self._portfolio is None:
                raise RuntimeError(
                    f"no portfolio component named {self.settings.portfolio!r} in this engine: "
                    "add one (type: portfolio) and list it in depends_on"
                )
        equity = self.portfolio.equity_quote
        self._hwm = max(self.portfolio.peak_equity_quote, equity)
        self._day = self.clock.timestamp_ns() // NANOS_PER_DAY
        self._day_start_equity = self._last_equity = equity
        self.evaluate_limits()  # a portfolio rebuilt in drawdown halts before any signal
        self.subscribe(Bar, self._on_bar, name=f"{self.name}.bars")
        self.subscribe(Signal, self._on_signal, name=f"{self.name}.signals")
        self.subscribe(PortfolioUpdate, self._on_portfolio, name=f"{self.name}.portfolio")
        self.subscribe(OrderFilled, self._on_order_done, name=f"{self.name}.fills")
        self.subscribe(OrderFailed, self._on_order_done, name=f"{self.name}.failures")
        self.subscribe(SizingChanged, self._on_sizing, name=f"{self.name}.sizing")
        self.subscribe(SubscriberFailed, self._on_subscriber_failed, name=f"{self.name}.failed")
        self.subscribe(
            SubscriberRecovered, self._on_subscriber_recovered, name=f"{self.name}.recovered"
        )
        self.register_collector(_RiskCollector(self))
        # The limits in force, for whoever reads the start of a (live) run's log.
        self.log.info(
            "risk.limits",
            equity_quote=round(equity, 6),
            **self.settings.model_dump(mode="json", exclude={"portfolio"}),
        )

    # -- operator controls ---------------------------------------------------------------

    def resume(self) -> bool:
        """Back to ACTIVE; drawdown and the day's loss are measured from equity now.

        Refused (logged, the state kept, False returned) while a critical subscriber is
        failing."""
        if self._failing:
            self.log.warning(
                "risk.resume_refused",
                reason=self.state_reason,
                failing=sorted(self._failing),
                detail="a critical bus subscriber still fails: fix it (free disk space for "
                "the journal) first",
            )
            return False
        equity = self.portfolio.equity_quote
        self._hwm = self._day_start_equity = self._last_equity = equity
        self._set_state(RiskState.ACTIVE, "resumed by operator")
        return True

    def reduce_only(self, reason: str = "operator") -> None:
        """Allow only position-reducing orders until :meth:`resume` (no effect if HALTED)."""
        if self.risk_state is not RiskState.HALTED:
            self._reducing_for_daily_loss = False
            self._set_state(RiskState.REDUCING, reason)

    def halt(self, reason: str = "operator") -> None:
        """Refuse every order until :meth:`resume`."""
        self._set_state(RiskState.HALTED, reason)

    def _set_state(self, state: RiskState, reason: str) -> None:
        if state is self.risk_state and reason == self.state_reason:
            return
        emit = self.log.warning if state is not RiskState.ACTIVE else self.log.info
        emit("risk.state", previous=str(self.risk_state), state=str(state), reason=reason)
        now = self.clock.timestamp_ns()
        self.bus.publish_nowait(
            RiskStateChanged(
                ts_event=now,
                ts_init=now,
                previous=str(self.risk_state),
                state=str(state),
                reason=reason,
            )
        )
        self.risk_state, self.state_reason = state, reason
        if state is not RiskState.REDUCING:
            self._reducing_for_daily_loss = False

    def status(self) -> dict[str, object]:
        """State, reason and decision counts, for ``GET /status``."""
        return {
            "state": str(self.risk_state),
            "reason": self.state_reason,
            "signals": dict(self.signals),
            "approved": dict(self.approved),
            "rejections": {reason: n for reason, n in self.rejections.items() if n},
            "pending_orders": len(self._pending),
            "size_fractions": dict(self.size_fractions),
        }

    # -- limits that change the state ----------------------------------------------------

    def evaluate_limits(self) -> None:
        """Apply the drawdown kill switch and the daily loss limit to current equity."""
        equity = self.portfolio.equity_quote
        day = self.clock.timestamp_ns() // NANOS_PER_DAY
        if day != self._day:
            self._day, self._day_start_equity = day, self._last_equity
            if self._reducing_for_daily_loss:
                self._set_state(RiskState.ACTIVE, "new UTC day")
        self._last_equity = equity
        self._hwm = max(self._hwm, equity)
        s = self.settings
        drawdown = drawdown_fraction(self._hwm, equity)
        if self.risk_state is not RiskState.HALTED and drawdown >= s.max_drawdown_fraction:
            self._set_state(
                RiskState.HALTED,
                f"{Reason.DRAWDOWN_HALT}: drawdown {drawdown:.2%} >= {s.max_drawdown_fraction:.2%}",
            )
        limit = s.max_daily_loss_fraction
        if limit is None or self.risk_state is not RiskState.ACTIVE:
            return
        loss = drawdown_fraction(self._day_start_equity, equity)
        if loss >= limit:
            self._set_state(
                RiskState.REDUCING,
                f"{Reason.DAILY_LOSS_LIMIT}: day's loss {loss:.2%} >= {limit:.2%}",
            )
            self._reducing_for_daily_loss = True

    # -- handlers ------------------------------------------------------------------------

    def _on_signal(self, signal: Signal) -> None:
        decision = self.check(signal)
        if decision is None:
            return
        seq = self.bus.publish_nowait(decision)
        if isinstance(decision, OrderRequest) and decision.order_id in self._pending:
            order_id = decision.order_id
            self._pending[order_id] = replace(self._pending[order_id], seq=seq)

    def _on_bar(self, bar: Bar) -> None:
        # Delivered before the bar's features (run-to-completion): the start of the
        # bar → order path that ``tick_to_order`` times.
        self._bar_mark = (bar.correlation_id, time.perf_counter_ns())

    def _on_portfolio(self, _update: PortfolioUpdate) -> None:
        self.evaluate_limits()

    def _on_sizing(self, change: SizingChanged) -> None:
        self.size_fractions[change.strategy_id] = change.fraction
        self.log.info(
            "risk.sizing_changed",
            strategy=change.strategy_id,
            fraction=round(change.fraction, 4),
            reason=change.reason,
        )

    def _on_order_done(self, event: OrderFilled | OrderFailed) -> None:
        self._pending.pop(event.order_id, None)

    def _on_subscriber_failed(self, notice: SubscriberFailed) -> None:
        journals = self.context.components.of_type(Journal)
        is_journal = any(journal.owns(notice.subscriber) for journal in journals)
        code = Reason.JOURNAL_UNAVAILABLE if is_journal else Reason.SUBSCRIBER_FAILED
        self._failing.add(notice.subscriber)
        # Every order published before this notice has been delivered or withheld by now.
        for order_id, pending in list(self._pending.items()):
            if pending.seq and self.bus.was_withheld(pending.seq):
                del self._pending[order_id]
                self.log.warning("risk.order_withheld", order_id=order_id, reason=str(code))
        self.halt(
            f"{code}: {notice.subscriber} failed on {notice.event_type} "
            f"(seq {notice.event_seq}): {notice.error}"
        )

    def _on_subscriber_recovered(self, notice: SubscriberRecovered) -> None:
        if notice.subscriber in self._failing:
            self._failing.discard(notice.subscriber)
            self.log.warning(
                "risk.subscriber_recovered",
                subscriber=notice.subscriber,
                state=str(self.risk_state),
                detail="an operator resume (POST /admin/resume) restarts trading",
            )

    # -- the decision --------------------------------------------------------------------

    def check(self, signal: Signal) -> OrderRequest | RiskRejected | None:
        """Size and check one signal: an approved order, a rejection, or None for HOLD.

        An approval is recorded (rate limit, pending exposure) before it is returned.
        """
        self.signals[signal.action] += 1
        if signal.action == "HOLD":
            return None
        side: Side = "BUY" if signal.action == "BUY" else "SELL"
        order_id = order_id_for(signal)
        try:
            amount_in, expected_out = self._size_and_check(signal, side, order_id)
        except Rejected as rejected:
            self.rejections[rejected.reason] += 1
            self.log.info(
                "risk.rejected",
                reason=str(rejected.reason),
                detail=rejected.detail,
                order_id=order_id,
                correlation_id=signal.correlation_id,
            )
            now = self.clock.timestamp_ns()
            return RiskRejected(
                ts_event=now,
                ts_init=now,
                correlation_id=signal.correlation_id,
                strategy_id=signal.strategy_id,
                symbol=signal.symbol,
                reason=str(rejected.reason),
                detail=rejected.detail,
                order_id=order_id,
            )
        if self._bar_mark[0] == signal.correlation_id:
            self.tick_to_order.observe_ns(time.perf_counter_ns() - self._bar_mark[1])
        now = self.clock.timestamp_ns()
        self._approvals.append(now)
        self._pending[order_id] = _Pending(signal.symbol, side, amount_in, expected_out)
        self._remember(order_id)
        self.approved[side] += 1
        return OrderRequest(
            ts_event=now,
            ts_init=now,
            correlation_id=signal.correlation_id,
            order_id=order_id,
            strategy_id=signal.strategy_id,
            symbol=signal.symbol,
            side=side,
            amount_in=amount_in,
            max_slippage_bps=self.settings.slippage_tolerance_bps,
        )

    def _size_and_check(self, signal: Signal, side: Side, order_id: str) -> tuple[int, int]:
        """``(amount_in, expected_out)`` of the order, or :class:`Rejected`."""
        s = self.settings
        inst = self.portfolio.instrument(signal.symbol)
        if inst is None:
            raise Rejected(Reason.UNKNOWN_SYMBOL, f"the portfolio holds no {signal.symbol!r}")
        if order_id in self._decided:
            raise Rejected(Reason.DUPLICATE_SIGNAL, f"{order_id} was already approved")
        self.evaluate_limits()
        if self.risk_state is RiskState.HALTED:
            raise Rejected(Reason.HALTED, self.state_reason)
        if self.risk_state is RiskState.REDUCING and side == "BUY":
            code = (
                Reason.DAILY_LOSS_LIMIT if self._reducing_for_daily_loss else Reason.REDUCING_ONLY
            )
            raise Rejected(code, f"only position-reducing orders: {self.state_reason}")
        now = self.clock.timestamp_ns()
        price = self._fresh_price(signal.symbol, now)
        gas = self.market.gas_price_wei()
        if (
            s.max_gas_price_gwei is not None
            and gas is not None
            and gas > s.max_gas_price_gwei * GWEI
        ):
            raise Rejected(
                Reason.GAS_PRICE_CAP, f"gas {gas / GWEI:.2f} gwei > {s.max_gas_price_gwei} gwei"
            )
        window_start = now - int(s.rate_window_seconds * NANOS_PER_SECOND)
        while self._approvals and self._approvals[0] <= window_start:
            self._approvals.popleft()
        if len(self._approvals) >= s.max_orders_per_window:
            raise Rejected(
                Reason.RATE_LIMIT,
                f"{len(self._approvals)} orders in the last {s.rate_window_seconds:g}s",
            )
        if side == "BUY":
            amount_in, notional = self._size_buy(inst, signal.strategy_id)
        else:
            amount_in, notional = self._size_sell(inst, price)
        if amount_in <= 0 or notional < s.min_order_notional_quote:
            raise Rejected(
                Reason.MIN_ORDER_SIZE,
                f"{notional:.6g} {inst.quote.symbol} < {s.min_order_notional_quote:g}",
            )
        quoted = self.market.quote(signal.symbol, side, amount_in)
        if quoted is None and s.require_pool_reserves:
            raise Rejected(Reason.NO_POOL_RESERVES, f"no reserves known for {signal.symbol}")
        if quoted == 0:
            raise Rejected(Reason.MIN_ORDER_SIZE, "the swap would return nothing")
        if side == "BUY":
            expected_out = quoted if quoted is not None else inst.base_for_quote(amount_in, price)
            self._check_position(inst, expected_out, price)
        else:
            expected_out = quoted if quoted is not None else 0
        reserves = self.market.reserves(signal.symbol)
        if quoted is not None and reserves is not None:
            self._check_execution(inst, side, amount_in, quoted, price, reserves)
        return amount_in, expected_out

    def _fresh_price(self, symbol: str, now: int) -> float:
        received = self.market.last_bar_time_ns(symbol)
        price = self.market.last_price(symbol)
        if received is None or price is None or price <= 0:
            raise Rejected(Reason.STALE_MARKET_DATA, f"no bar received for {symbol}")
        age_s = (now - received) / NANOS_PER_SECOND
        if age_s > self.settings.max_bar_age_seconds:
            raise Rejected(
                Reason.STALE_MARKET_DATA,
                f"last {symbol} bar is {age_s:.0f}s old > {self.settings.max_bar_age_seconds:g}s",
            )
        self._check_candle_delay(symbol)
        return price

    def _check_candle_delay(self, symbol: str) -> None:
        """A candle that arrived long after it closed (warm-up history, a backlog) is
        never traded. Judged on the bar's own times, so the verdict is the same whenever
        the bar is looked at."""
        limit = self.settings.max_candle_delay_bars
        bar = self.market.last_bar(symbol) if limit is not None else None
        if limit is None or bar is None:
            return
        length = timeframe_ns(bar.timeframe)
        delay = bar.ts_init - bar.ts_event
        if delay > limit * length:
            raise Rejected(
                Reason.STALE_MARKET_DATA,
                f"the {symbol} {bar.timeframe} candle arrived {delay / length:.1f} candles "
                f"after it closed > {limit:g} (warm-up history or a backlog: not traded)",
            )

    def _size_buy(self, inst: Instrument, strategy_id: str) -> tuple[int, float]:
        s = self.settings
        quote = inst.quote
        committed = sum(
            p.amount_in
            for p in self._pending.values()
            if p.side == "BUY" and p.symbol.split("/")[1] == quote.symbol
        )
        free = self.portfolio.balance(quote.symbol) - committed
        if free <= 0:
            raise Rejected(Reason.INSUFFICIENT_BALANCE, f"free {quote.format(max(free, 0))}")
        fraction = self.size_fractions.get(strategy_id, 1.0)
        amount_in = min(quote.to_units(s.order_notional_quote * fraction), free)
        notional = quote.to_float(amount_in)
        if notional > s.max_order_notional_quote:
            raise Rejected(
                Reason.MAX_ORDER_NOTIONAL,
                f"{quote.format(amount_in)} > {s.max_order_notional_quote:g} {quote.symbol}",
            )
        return amount_in, notional

    def _size_sell(self, inst: Instrument, price: float) -> tuple[int, float]:
        s = self.settings
        base = inst.base
        committed = sum(
            p.amount_in
            for p in self._pending.values()
            if p.side == "SELL" and p.symbol == inst.symbol
        )
        free = self.portfolio.balance(base.symbol) - committed
        if free <= 0:
            raise Rejected(Reason.NO_POSITION, f"no free {base.symbol} to sell")
        amount_in = int(Fraction(free) * Fraction(s.sell_fraction))
        cap = inst.base_for_quote(inst.quote.to_units(s.max_order_notional_quote), price)
        amount_in = min(amount_in, cap)
        return amount_in, inst.quote_value(amount_in, price)

    def _check_position(self, inst: Instrument, expected_out: int, price: float) -> None:
        s = self.settings
        pending = sum(
            p.expected_out
            for p in self._pending.values()
            if p.side == "BUY" and p.symbol == inst.symbol
        )
        projected = self.portfolio.balance(inst.base.symbol) + pending + expected_out
        if s.max_position_base is not None and projected > inst.base.to_units(s.max_position_base):
            raise Rejected(
                Reason.MAX_POSITION,
                f"position would be {inst.base.format(projected)} > {s.max_position_base:g}",
            )
        value = inst.quote_value(projected, price)
        if s.max_position_quote is not None and value > s.max_position_quote:
            raise Rejected(
                Reason.MAX_POSITION,
                f"position would be worth {value:.2f} {inst.quote.symbol} "
                f"> {s.max_position_quote:g}",
            )

    def _check_execution(
        self,
        inst: Instrument,
        side: Side,
        amount_in: int,
        amount_out: int,
        price: float,
        reserves: tuple[int, int],
    ) -> None:
        """Price impact against the pool's mid, slippage against the last bar close."""
        s = self.settings
        base_reserve, quote_reserve = reserves
        if side == "BUY":
            base_units, quote_units = amount_out, amount_in
            reserve_in, reserve_out = quote_reserve, base_reserve
        else:
            base_units, quote_units = amount_in, amount_out
            reserve_in, reserve_out = base_reserve, quote_reserve
        impact = price_impact_bps(amount_in, reserve_in, reserve_out, amount_out)
        if impact > s.max_price_impact_bps:
            raise Rejected(
                Reason.MAX_PRICE_IMPACT, f"{impact:.1f} bps > {s.max_price_impact_bps:g} bps"
            )
        execution = Fraction(quote_units, base_units)
        reference = inst.raw_price(price)
        ratio = execution / reference if side == "BUY" else reference / execution
        slippage = float((ratio - 1) * 10_000)
        if slippage > s.max_slippage_bps:
            raise Rejected(
                Reason.MAX_SLIPPAGE,
                f"expected {inst.human_price(execution):.6g} vs last {price:.6g}: "
                f"{slippage:.1f} bps > {s.max_slippage_bps:g} bps",
            )

    def _remember(self, order_id: str) -> None:
        self._decided[order_id] = None
        if len(self._decided) > _REMEMBERED_ORDERS:
            self._decided.popitem(last=False)


class _RiskCollector(Collector):
    """Rejections by reason, approvals by side, signals by action, and the risk state."""

    def __init__(self, risk: RiskManager) -> None:
        self.risk = risk

    def collect(self) -> Iterator[Metric]:
        r = self.risk
        rejections = CounterMetricFamily(
            "trade_engine_risk_rejections",
            "Signals the risk manager rejected, by reason.",
            labels=["reason"],
        )
        for reason, count in sorted(r.rejections.items()):
            rejections.add_metric([reason], count)
        yield rejections
        orders = CounterMetricFamily(
            "trade_engine_risk_orders",
            "Orders the risk manager approved, by side.",
            labels=["side"],
        )
        for side, count in sorted(r.approved.items()):
            orders.add_metric([side], count)
        yield orders
        signals = CounterMetricFamily(
            "trade_engine_risk_signals",
            "Signals received by the risk manager, by action.",
            labels=["action"],
        )
        for action, count in sorted(r.signals.items()):
            signals.add_metric([action], count)
        yield signals
        latency = HistogramMetricFamily(
            "trade_engine_tick_to_order_seconds",
            "From a bar reaching the risk manager's bar handler (before its features are "
            "delivered) to the order approved for it: features, inference, risk checks.",
        )
        r.tick_to_order.add_to(latency, [])
        yield latency
        state = GaugeMetricFamily(
            "trade_engine_risk_state", "Risk state (1 = current state).", labels=["state"]
        )
        for candidate in RiskState:
            state.add_metric([candidate.value], 1.0 if r.risk_state is candidate else 0.0)
        yield state
        sizing = GaugeMetricFamily(
            "trade_engine_risk_size_fraction",
            "Share of the normal BUY size a strategy trades (below 1 during a new model's canary).",
            labels=["strategy"],
        )
        for strategy, fraction in sorted(r.size_fractions.items()):
            sizing.add_metric([strategy], fraction)
        yield sizing
