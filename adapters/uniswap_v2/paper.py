"""Paper execution that fills orders exactly as a Uniswap V2 pool would.

:class:`SimulatedPool` is a constant-product pool on integers, priced with
:mod:`engine.amm` (0.3% fee, Solidity rounding), so a fill equals the
router's ``getAmountsOut`` to the unit and our own trades move the reserves. Research
backtests can use the same class as their fill model.

:class:`PaperExecutor` is the component: on every ``OrderRequest`` it publishes
``OrderSubmitted`` and then ``OrderFilled`` (or ``OrderFailed`` with the router's
reason, e.g. ``INSUFFICIENT_OUTPUT_AMOUNT``). With ``follow_bars`` the pool is
arbitraged to each bar's close before anything trades on that bar, so a replay stays
tied to real prices while paying realistic impact. It reports the pool's reserves and
its gas price to the engine's market view, which the risk manager reads.
"""

from __future__ import annotations

from fractions import Fraction

from pydantic import Field

from adapters.uniswap_v2.precheck import OrderProblem, order_problem
from engine.amm import (
    AmmError,
    TradeToPrice,
    get_amount_out,
    min_amount_out,
    swap_fee,
    trade_to_price,
)
from engine.component import Component, ComponentContext
from engine.config import StrictModel
from engine.events import Bar, OrderFailed, OrderFilled, OrderRequest, OrderSubmitted, Side
from engine.instruments import Instrument, InstrumentConfig
from engine.market_view import BusMarketView
from engine.reasons import OrderFailReason

GWEI = 10**9


class SwapFailedError(Exception):
    """The swap would revert; ``reason`` is the router's code, ``detail`` its message."""

    def __init__(self, reason: OrderFailReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class SimulatedPool:
    """One Uniswap V2 pair's reserves, in base units, traded with the V2 maths."""

    def __init__(self, base_reserve: int, quote_reserve: int) -> None:
        if base_reserve <= 0 or quote_reserve <= 0:
            raise ValueError("reserves must be > 0")
        self.base_reserve = base_reserve
        self.quote_reserve = quote_reserve

    @classmethod
    def at_price(cls, instrument: Instrument, price: float, depth_quote: float) -> SimulatedPool:
        """A pool holding ``depth_quote`` quote tokens, priced at ``price``."""
        quote_reserve = instrument.quote.to_units(depth_quote)
        base_reserve = int(Fraction(quote_reserve) / instrument.raw_price(price))
        return cls(base_reserve, quote_reserve)

    @property
    def raw_price(self) -> Fraction:
        """Mid price in quote base units per base base unit."""
        return Fraction(self.quote_reserve, self.base_reserve)

    def quote(self, side: Side, amount_in: int) -> int:
        """Output of a swap (``getAmountsOut``); BUY spends quote, SELL spends base."""
        if side == "BUY":
            return get_amount_out(amount_in, self.quote_reserve, self.base_reserve)
        return get_amount_out(amount_in, self.base_reserve, self.quote_reserve)

    def swap(self, side: Side, amount_in: int, min_amount_out: int = 0) -> int:
        """Execute a swap and move the reserves; raises :class:`SwapFailedError` as the
        router would revert (nothing changes then)."""
        try:
            amount_out = self.quote(side, amount_in)
        except AmmError as exc:
            reason = OrderFailReason(str(exc).rpartition(": ")[2])
            raise SwapFailedError(reason, str(exc)) from None
        if amount_out < min_amount_out:
            reason = OrderFailReason.INSUFFICIENT_OUTPUT_AMOUNT
            raise SwapFailedError(
                reason,
                f"UniswapV2Router: {reason} (out {amount_out} < minimum {min_amount_out})",
            )
        self._apply(side, amount_in, amount_out)
        return amount_out

    def move_to(self, target: Fraction) -> TradeToPrice | None:
        """Arbitrage the pool to ``target`` (raw units); the trade made, if any."""
        trade = trade_to_price(self.base_reserve, self.quote_reserve, target)
        if trade is not None and trade.amount_out > 0:
            self._apply(trade.side, trade.amount_in, trade.amount_out)
        return trade

    def _apply(self, side: Side, amount_in: int, amount_out: int) -> None:
        if side == "BUY":
            self.quote_reserve += amount_in
            self.base_reserve -= amount_out
        else:
            self.base_reserve += amount_in
            self.quote_reserve -= amount_out


class PaperExecutorConfig(StrictModel):
    instrument: InstrumentConfig = Field(
        description="The pool's market: `{symbol, base_decimals, quote_decimals}`."
    )
    pool_depth_quote: float = Field(
        1_000_000.0,
        gt=0,
        description="Quote tokens in the pool when it is created (at `initial_price` or the "
        "first bar's close); deeper pools mean less price impact.",
    )
    initial_price: float | None = Field(
        None, gt=0, description="Create the pool at this price at start; unset: first bar close."
    )
    follow_bars: bool = Field(
        True,
        description="Arbitrage the pool to every bar's close, so fills track the replayed "
        "prices; false: only our own trades move it.",
    )
    gas_used_per_swap: int = Field(
        0, ge=0, description="Gas units charged per fill (a V2 swap uses about 110000); 0: none."
    )
    gas_price_gwei: float = Field(
        0.0, ge=0, description="Gas price of the simulated chain, reported to the risk manager."
    )


class PaperExecutor(Component):
    """Fills orders against a simulated Uniswap V2 pool, to the unit."""

    Config = PaperExecutorConfig

    def __init__(
        self,
        name: str,
        settings: PaperExecutorConfig,
        context: ComponentContext,
        depends_on: tuple[str, ...] = (),
        *,
        market: BusMarketView | None = None,
    ) -> None:
        super().__init__(name, settings, context, depends_on)
        self.instrument = settings.instrument.to_instrument()
        self.market = market if market is not None else context.market_view
        self.gas_price_wei = int(Fraction(str(settings.gas_price_gwei)) * GWEI)
        self.pool: SimulatedPool | None = None
        if settings.initial_price is not None:
            self.pool = SimulatedPool.at_price(
                self.instrument, settings.initial_price, settings.pool_depth_quote
            )
        self._orders: set[str] = set()
        self._submitted = 0

    async def on_start(self) -> None:
        self.market.set_gas_price_wei(self.gas_price_wei)
        self._publish_pool()
        self.subscribe(Bar, self._on_bar, name=f"{self.name}.bars")
        self.subscribe(OrderRequest, self._on_order, name=f"{self.name}.orders")

    def _publish_pool(self) -> None:
        if self.pool is not None:
            self.market.set_pool(
                self.instrument.symbol,
                self.pool.base_reserve,
                self.pool.quote_reserve,
                get_amount_out,
            )

    # -- the pool follows the market -----------------------------------------------------

    def _on_bar(self, bar: Bar) -> None:
        if bar.symbol != self.instrument.symbol or bar.close <= 0:
            return
        if self.pool is None:
            self.pool = SimulatedPool.at_price(
                self.instrument, bar.close, self.settings.pool_depth_quote
            )
        elif self.settings.follow_bars:
            self.pool.move_to(self.instrument.raw_price(bar.close))
        self._publish_pool()

    # -- orders --------------------------------------------------------------------------

    def _on_order(self, request: OrderRequest) -> None:
        if request.order_id in self._orders:
            self.log.warning("order.duplicate_ignored", order_id=request.order_id)
            return
        self._orders.add(request.order_id)
        for event in self.execute(request):
            self.bus.publish_nowait(event)

    def execute(self, request: OrderRequest) -> list[OrderSubmitted | OrderFilled | OrderFailed]:
        """The events one order produces, in order; the pool moves if it fills."""
        now = self.clock.timestamp_ns()
        inst = self.instrument
        stamp = {"ts_event": now, "ts_init": now, "correlation_id": request.correlation_id}
        problem = self._invalid(request)
        if problem is not None:
            return [
                OrderFailed(
                    **stamp,
                    order_id=request.order_id,
                    reason=str(problem.reason),
                    detail=problem.detail,
                )
            ]
        assert self.pool is not None
        self._submitted += 1
        venue_id = f"paper-{self._submitted}"
        events: list[OrderSubmitted | OrderFilled | OrderFailed] = [
            OrderSubmitted(**stamp, order_id=request.order_id, venue_order_id=venue_id)
        ]
        min_out = request.min_amount_out
        if min_out <= 0:
            quoted = self.pool.quote(request.side, request.amount_in)
            min_out = min_amount_out(quoted, request.max_slippage_bps)
        try:
            amount_out = self.pool.swap(request.side, request.amount_in, min_out)
        except SwapFailedError as exc:
            events.append(
                OrderFailed(
                    **stamp, order_id=request.order_id, reason=str(exc.reason), detail=exc.detail
                )
            )
            return events
        self._publish_pool()
        if request.side == "BUY":
            base_units, quote_units = amount_out, request.amount_in
        else:
            base_units, quote_units = request.amount_in, amount_out
        gas_used = self.settings.gas_used_per_swap
        events.append(
            OrderFilled(
                **stamp,
                order_id=request.order_id,
                symbol=request.symbol,
                side=request.side,
                amount_in=request.amount_in,
                amount_out=amount_out,
                price=inst.price_of(base_units, quote_units),
                fee_paid=swap_fee(request.amount_in),
                gas_used=gas_used,
                gas_cost_wei=gas_used * self.gas_price_wei,
                venue_order_id=venue_id,
            )
        )
        return events

    def _invalid(self, request: OrderRequest) -> OrderProblem | None:
        """Why the order cannot be sent at all (as the live executor says it), or None."""
        problem = order_problem(request, self.instrument.symbol)
        if problem is None and self.pool is None:
            reason = OrderFailReason.INSUFFICIENT_LIQUIDITY
            return OrderProblem(reason, "no pool yet: it is created at the first bar")
        return problem
