"""What the engine currently knows about markets, for components that must read it.

The risk manager decides on a signal using the last price, how fresh that price is,
the pool's reserves and the gas price. :class:`MarketView` is that read-only handle;
:class:`BusMarketView` fills it from ``Bar`` events on the bus, while pool state and gas
price are set by whoever knows them (the paper executor for its simulated pool, the
DEX adapter for a real one). One view is shared per engine: the engine hands it to
every component in its :class:`~engine.component.ComponentContext`.

Swap maths is the venue's to choose (Uniswap V2's is :mod:`engine.amm`): whoever sets a
pool's reserves also hands over its ``amount_out`` function, and
:meth:`MarketView.quote` applies it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from engine.bus import EventBus
from engine.events import Bar

Side = Literal["BUY", "SELL"]
AmountOut = Callable[[int, int, int], int]
"""``amount_out(amount_in, reserve_in, reserve_out)``, e.g. ``amm.get_amount_out``."""


class MarketView(Protocol):
    """Read-only market state by symbol (``BASE/QUOTE``)."""

    def last_price(self, symbol: str) -> float | None:
        """Close of the last bar, in quote tokens per base token; None before any bar."""

    def last_bar_time_ns(self, symbol: str) -> int | None:
        """Engine-clock time (``ts_init``) the last bar was received; None before any."""

    def last_bar(self, symbol: str) -> Bar | None:
        """The last bar itself; None before any."""

    def reserves(self, symbol: str) -> tuple[int, int] | None:
        """The pool's ``(base_reserve, quote_reserve)`` in base units; None if unknown."""

    def quote(self, symbol: str, side: Side, amount_in: int) -> int | None:
        """Expected output of a swap at the known reserves (venue maths); None if unknown."""

    def gas_price_wei(self) -> int | None:
        """Current gas price in wei; None if no one reported one."""


@dataclass(frozen=True, slots=True)
class PoolState:
    base_reserve: int
    quote_reserve: int
    amount_out: AmountOut


class BusMarketView:
    """A :class:`MarketView` that tracks the latest ``Bar`` per symbol from the bus.

    It subscribes a sync handler when created, so it is current before any later event
    (features, signals) produced from the same bar is delivered.
    """

    def __init__(self, bus: EventBus | None = None) -> None:
        self._bars: dict[str, Bar] = {}
        self._pools: dict[str, PoolState] = {}
        self._gas_price_wei: int | None = None
        if bus is not None:
            bus.subscribe(Bar, self.on_bar, name="market_view.bars")

    def on_bar(self, bar: Bar) -> None:
        self._bars[bar.symbol] = bar

    def last_bar(self, symbol: str) -> Bar | None:
        return self._bars.get(symbol)

    def symbols(self) -> list[str]:
        """Every symbol a bar has been received for, sorted."""
        return sorted(self._bars)

    def last_price(self, symbol: str) -> float | None:
        bar = self._bars.get(symbol)
        return None if bar is None else bar.close

    def last_bar_time_ns(self, symbol: str) -> int | None:
        # ts_init, not the candle's close: staleness is about the feed being alive on
        # the engine's clock (a demo replay on the live clock sends historical candles).
        bar = self._bars.get(symbol)
        return None if bar is None else bar.ts_init

    def set_pool(
        self, symbol: str, base_reserve: int, quote_reserve: int, amount_out: AmountOut
    ) -> None:
        """Record a pool's reserves (base units) and the maths that prices a swap on it."""
        self._pools[symbol] = PoolState(base_reserve, quote_reserve, amount_out)

    def clear_pool(self, symbol: str) -> None:
        self._pools.pop(symbol, None)

    def reserves(self, symbol: str) -> tuple[int, int] | None:
        pool = self._pools.get(symbol)
        return None if pool is None else (pool.base_reserve, pool.quote_reserve)

    def quote(self, symbol: str, side: Side, amount_in: int) -> int | None:
        pool = self._pools.get(symbol)
        if pool is None:
            return None
        if side == "BUY":
            return pool.amount_out(amount_in, pool.quote_reserve, pool.base_reserve)
        return pool.amount_out(amount_in, pool.base_reserve, pool.quote_reserve)

    def set_gas_price_wei(self, wei: int | None) -> None:
        self._gas_price_wei = wei

    def gas_price_wei(self) -> int | None:
        return self._gas_price_wei
