"""Balances, cost basis, PnL, equity and drawdown, from fills and bars.

The :class:`Portfolio` component applies every ``OrderFilled`` to its balances (integer
base units per token) and marks positions at every ``Bar`` close, publishing a
``PortfolioUpdate`` each time. Everything is deterministic: replaying the same events
rebuilds the same state, which the journal relies on.

Accounting rules:

* A fill's ``amount_in``/``amount_out`` already net the pool's 0.3% fee (Uniswap V2
  takes it from the input), so ``fee_paid`` is only summed for reporting
  (``fees_paid_quote``), never subtracted a second time.
* Average entry is the average cost of the base held; a sale realises
  ``proceeds - average_entry x amount`` and keeps the average of what is left.
* Gas is paid in ETH from a wallet the portfolio does not hold, so it is charged to
  equity as a realised cost in quote tokens, at the first of: 1 when the quote token is
  ETH/WETH; the market's last price of ``ETH/<quote>`` or ``WETH/<quote>`` (a feed's
  bars, through the market view); the mark of an ETH/WETH instrument; the configured
  ``eth_price_quote`` (a constant: logged once as such). If none applies, gas is not
  charged (it is summed in wei as ``gas_paid_wei`` and logged once), rather than guessed.
* Equity = quote balance + each base balance x its mark - gas charged; the mark is the
  last bar close (the last fill price until a bar arrives). Initial base holdings take
  the first mark as their cost basis.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from pydantic import Field, model_validator

from engine.component import Component, ComponentContext
from engine.config import StrictModel
from engine.events import (
    BalancesObserved,
    Bar,
    Event,
    OrderFilled,
    PortfolioUpdate,
    StartingBalances,
)
from engine.instruments import Instrument, InstrumentConfig, Token

GAS_TOKENS = frozenset({"ETH", "WETH"})
MISMATCH = "balances differ from the chain"  # the reason of a DEGRADED state it can end
WEI_PER_ETH = 10**18
METRIC_PREFIX = "trade_engine_portfolio"


def drawdown_fraction(peak: float, equity: float) -> float:
    """``(peak - equity) / peak``, 0 when there is no positive peak or no loss."""
    if peak <= 0.0 or equity >= peak:
        return 0.0
    return (peak - equity) / peak


class PortfolioView(Protocol):
    """What the risk manager reads: read-only, always current."""

    def instrument(self, symbol: str) -> Instrument | None: ...

    def balance(self, token: str) -> int: ...

    @property
    def equity_quote(self) -> float: ...

    @property
    def peak_equity_quote(self) -> float: ...

    @property
    def drawdown(self) -> float: ...


class PortfolioConfig(StrictModel):
    instruments: tuple[InstrumentConfig, ...] = Field(
        min_length=1,
        description="Markets held, each `{symbol, base_decimals, quote_decimals}`; "
        "all must share one QUOTE token, the currency of equity.",
    )
    initial_balances: dict[str, Decimal] = Field(
        default_factory=dict,
        description="Starting balance per token symbol, in tokens (e.g. `USDT: 10000`).",
    )
    eth_price_quote: float | None = Field(
        None,
        gt=0,
        description="Quote tokens per ETH to charge gas at when no live price applies: "
        "gas is valued at 1 if the quote is ETH/WETH, else at the last bar of "
        "`ETH/<quote>` or `WETH/<quote>`, else at an ETH/WETH instrument's mark, else at "
        "this constant (logged once); unset: gas is then not charged.",
    )
    balance_tolerance: dict[str, Decimal] = Field(
        default_factory=dict,
        description="Largest difference per token (in tokens, e.g. `USDC: 0.01`) between "
        "the book and the chain's balance that is not a mismatch; unlisted tokens must "
        "match to the unit (on-chain amounts and fills are exact integers).",
    )

    @model_validator(mode="after")
    def _consistent(self) -> PortfolioConfig:
        symbols = [i.symbol for i in self.instruments]
        if len(set(symbols)) != len(symbols):
            raise ValueError(f"instruments repeat a symbol: {symbols}")
        quotes = {s.split("/")[1] for s in symbols}
        if len(quotes) != 1:
            raise ValueError(f"instruments must share one quote token, got {sorted(quotes)}")
        tokens = {t for s in symbols for t in s.split("/")}
        for token, amount in self.initial_balances.items():
            if token not in tokens:
                raise ValueError(f"initial_balances: {token!r} is not a token of the instruments")
            if amount < 0:
                raise ValueError(f"initial_balances: {token} must be >= 0, got {amount}")
        for token, amount in self.balance_tolerance.items():
            if token not in tokens:
                raise ValueError(f"balance_tolerance: {token!r} is not a token of the instruments")
            if amount < 0:
                raise ValueError(f"balance_tolerance: {token} must be >= 0, got {amount}")
        return self


@dataclass(slots=True)
class _Position:
    """Cost basis and marks of one instrument's base token."""

    instrument: Instrument
    cost_quote: float = 0.0  # what the base held cost, in quote tokens
    realised_pnl: float = 0.0
    mark: float | None = None
    basis_pending: int = 0  # initial base units waiting for a first mark as their cost


@dataclass(frozen=True, slots=True)
class PositionSnapshot:
    symbol: str
    base_units: int
    average_entry: float | None
    mark: float | None
    realised_pnl: float
    unrealised_pnl: float


class Portfolio(Component):
    """Balances, PnL, equity and drawdown, marked on bars and updated on fills."""

    Config = PortfolioConfig

    def __init__(
        self,
        name: str,
        settings: PortfolioConfig,
        context: ComponentContext,
        depends_on: tuple[str, ...] = (),
    ) -> None:
        super().__init__(name, settings, context, depends_on)
        instruments = [c.to_instrument() for c in settings.instruments]
        self.quote_token = instruments[0].quote
        self._positions = {i.symbol: _Position(i) for i in instruments}
        self._by_base = {p.instrument.base.symbol: p for p in self._positions.values()}
        self._balances: dict[str, int] = {self.quote_token.symbol: 0}
        for inst in instruments:
            self._balances[inst.base.symbol] = 0
        self._tokens: dict[str, Token] = {i.base.symbol: i.base for i in instruments} | {
            self.quote_token.symbol: self.quote_token
        }
        for token, amount in settings.initial_balances.items():
            self._balances[token] = self._tokens[token].to_units(amount)
            if token in self._by_base:
                self._by_base[token].basis_pending = self._balances[token]
        self._tolerance = {
            token: self._tokens[token].to_units(amount)
            for token, amount in settings.balance_tolerance.items()
        }
        self._market = context.market_view  # the ETH price gas is charged at
        self.balance_checks = 0
        self.balance_mismatches = dict.fromkeys(sorted(self._tokens), 0)
        self.chain_account: str | None = None
        self.fees_paid_quote = 0.0
        self.gas_paid_wei = 0
        self.gas_charged_quote = 0.0
        self.gas_uncharged_wei = 0
        self.fills = {"BUY": 0, "SELL": 0}
        self._warned_gas = False
        self._warned_constant = False
        self._equity = self._compute_equity()
        self._peak = self._equity
        self.initial_equity_quote = self._equity

    # -- lifecycle -----------------------------------------------------------------------

    async def on_start(self) -> None:
        self.subscribe(Bar, self._on_bar, name=f"{self.name}.bars")
        self.subscribe(OrderFilled, self._on_fill, name=f"{self.name}.fills")
        self.subscribe(StartingBalances, self._on_starting, name=f"{self.name}.starting")
        self.subscribe(BalancesObserved, self.reconcile, name=f"{self.name}.reconcile")
        self.register_collector(_PortfolioCollector(self))

    def _on_bar(self, bar: Bar) -> None:
        update = self.mark(bar)
        if update is not None:
            self.bus.publish_nowait(update)

    def _on_fill(self, fill: OrderFilled) -> None:
        update = self.apply_fill(fill)
        if update is not None:
            self.bus.publish_nowait(update)

    def _on_starting(self, starting: StartingBalances) -> None:
        update = self.start_from(starting)
        if update is not None:
            self.bus.publish_nowait(update)

    # -- state changes (pure of the bus, so a journal can replay them) -------------------

    def mark(self, bar: Bar) -> PortfolioUpdate | None:
        """Mark ``bar.symbol`` at its close; None if the portfolio does not hold it."""
        pos = self._positions.get(bar.symbol)
        if pos is None or bar.close <= 0:
            return None
        pos.mark = bar.close
        if pos.basis_pending:
            pos.cost_quote += pos.instrument.base.to_float(pos.basis_pending) * bar.close
            pos.basis_pending = 0
        return self._updated(bar)

    def apply_fill(self, fill: OrderFilled) -> PortfolioUpdate | None:
        """Apply one fill to balances, cost basis, PnL and gas; None if not ours."""
        pos = self._positions.get(fill.symbol)
        if pos is None:
            self.log.warning("portfolio.unknown_symbol", symbol=fill.symbol, order=fill.order_id)
            return None
        inst = pos.instrument
        base, quote = inst.base.symbol, inst.quote.symbol
        if fill.side == "BUY":
            self._balances[quote] -= fill.amount_in
            self._balances[base] += fill.amount_out
            pos.cost_quote += inst.quote.to_float(fill.amount_in)
            self.fees_paid_quote += inst.quote.to_float(fill.fee_paid)
        else:
            if pos.basis_pending:  # sold before any mark: the initial holding costs this price
                pos.cost_quote += inst.base.to_float(pos.basis_pending) * fill.price
                pos.basis_pending = 0
            held = self._balances[base]
            if held > 0:
                released = pos.cost_quote * min(fill.amount_in, held) / held
                pos.realised_pnl += inst.quote.to_float(fill.amount_out) - released
                pos.cost_quote -= released
            self._balances[base] -= fill.amount_in
            self._balances[quote] += fill.amount_out
            self.fees_paid_quote += inst.base.to_float(fill.fee_paid) * fill.price
        if self._balances[base] <= 0:
            pos.cost_quote = 0.0
        if pos.mark is None:
            pos.mark = fill.price
        self.fills[fill.side] += 1
        self._charge_gas(fill.gas_cost_wei)
        return self._updated(fill)

    def start_from(self, starting: StartingBalances) -> PortfolioUpdate | None:
        """Take the chain's balances as the starting ones (before any fill; after one,
        they are only compared). Peak equity restarts from the new equity."""
        if sum(self.fills.values()):
            self.log.warning(
                "portfolio.starting_balances_late",
                detail="fills were applied already: compared with the book, not applied",
            )
            self.reconcile(starting)
            return None
        ours = {t: units for t, units in starting.balances.items() if t in self._tokens}
        replaced = {
            t: self._tokens[t].format(self._balances.get(t, 0))
            for t, units in ours.items()
            if self._balances.get(t, 0) != units
        }
        for token, units in ours.items():
            self._balances[token] = units
            pos = self._by_base.get(token)
            if pos is not None:
                pos.cost_quote, pos.basis_pending = 0.0, units
        self.chain_account = starting.account
        self._equity = self._peak = self.initial_equity_quote = self._compute_equity()
        self.log.info(
            "portfolio.balances_from_chain",
            account=starting.account,
            block=starting.block,
            balances={t: self._tokens[t].format(u) for t, u in sorted(ours.items())},
            replaced_configured=replaced,
        )
        return self._updated(starting)

    def reconcile(self, observed: BalancesObserved | StartingBalances) -> list[str]:
        """Compare the chain's balances with the book; DEGRADED (logged, counted) on a
        difference beyond the token's tolerance, RUNNING again once they agree. Returns
        the tokens that differ."""
        self.balance_checks += 1
        differ: list[str] = []
        details: dict[str, str] = {}
        for token, chain_units in sorted(observed.balances.items()):
            if token not in self._tokens:
                continue
            book = self._balances.get(token, 0)
            if abs(chain_units - book) > self._tolerance.get(token, 0):
                fmt = self._tokens[token].format
                differ.append(token)
                self.balance_mismatches[token] += 1
                details[token] = f"book {fmt(book)}, chain {fmt(chain_units)}"
        if differ:
            reason = f"{MISMATCH} at block {observed.block}: " + "; ".join(
                f"{token} {text}" for token, text in details.items()
            )
            self.log.warning(
                "portfolio.balance_mismatch",
                account=observed.account,
                block=observed.block,
                differences=details,
                detail="tokens moved outside the engine, or a fill it did not see: check the "
                "account's transactions before trading on",
            )
            self.degrade(reason)
        elif self.state == "DEGRADED" and self.health().reason.startswith(MISMATCH):
            self.log.info("portfolio.balances_agree", block=observed.block)
            self.recover()
        return differ

    def _charge_gas(self, wei: int) -> None:
        if wei <= 0:
            return
        self.gas_paid_wei += wei
        price = self._eth_price()
        if price is None:
            self.gas_uncharged_wei += wei
            if not self._warned_gas:
                self._warned_gas = True
                self.log.warning(
                    "portfolio.gas_not_charged",
                    reason="no ETH price in quote: set eth_price_quote to charge gas to equity",
                )
            return
        self.gas_charged_quote += wei / WEI_PER_ETH * price

    def _eth_price(self) -> float | None:
        quote = self.quote_token.symbol
        if quote in GAS_TOKENS:
            return 1.0
        for symbol in sorted(GAS_TOKENS):
            price = self._market.last_price(f"{symbol}/{quote}")
            if price is not None and price > 0:
                return price
        for symbol in sorted(GAS_TOKENS):
            pos = self._by_base.get(symbol)
            if pos is not None and pos.mark is not None:
                return pos.mark
        constant = self.settings.eth_price_quote
        if constant is not None and not self._warned_constant:
            self._warned_constant = True
            self.log.warning(
                "portfolio.gas_at_constant_price",
                eth_price_quote=constant,
                reason=f"no ETH/{quote} or WETH/{quote} price on the market: gas is charged "
                "at the configured eth_price_quote",
            )
        return constant

    def _compute_equity(self) -> float:
        equity = self.quote_token.to_float(self._balances[self.quote_token.symbol])
        for pos in self._positions.values():
            if pos.mark is not None:
                equity += pos.instrument.quote_value(
                    self._balances[pos.instrument.base.symbol], pos.mark
                )
        return equity - self.gas_charged_quote

    def _updated(self, cause: Event) -> PortfolioUpdate:
        self._equity = self._compute_equity()
        self._peak = max(self._peak, self._equity)
        return PortfolioUpdate(
            ts_event=cause.ts_event,
            ts_init=self.clock.timestamp_ns(),
            correlation_id=cause.correlation_id,
            balances=dict(self._balances),
            equity_quote=self._equity,
            peak_equity_quote=self._peak,
            drawdown=self.drawdown,
        )

    # -- read-only accessors (PortfolioView) ---------------------------------------------

    def instrument(self, symbol: str) -> Instrument | None:
        pos = self._positions.get(symbol)
        return None if pos is None else pos.instrument

    @property
    def symbols(self) -> list[str]:
        return list(self._positions)

    def balance(self, token: str) -> int:
        """Balance of ``token`` in base units (0 for a token not held)."""
        return self._balances.get(token, 0)

    @property
    def balances(self) -> dict[str, int]:
        return dict(self._balances)

    @property
    def equity_quote(self) -> float:
        return self._equity

    @property
    def peak_equity_quote(self) -> float:
        return self._peak

    @property
    def drawdown(self) -> float:
        return drawdown_fraction(self._peak, self._equity)

    def position(self, symbol: str) -> PositionSnapshot:
        pos = self._positions[symbol]
        units = self._balances[pos.instrument.base.symbol]
        held = pos.instrument.base.to_float(units)
        unrealised = 0.0
        if pos.mark is not None and units > 0 and not pos.basis_pending:
            unrealised = held * pos.mark - pos.cost_quote
        return PositionSnapshot(
            symbol=symbol,
            base_units=units,
            average_entry=pos.cost_quote / held if units > 0 and not pos.basis_pending else None,
            mark=pos.mark,
            realised_pnl=pos.realised_pnl,
            unrealised_pnl=unrealised,
        )

    @property
    def realised_pnl(self) -> float:
        return sum(p.realised_pnl for p in self._positions.values())

    def status(self) -> dict[str, object]:
        """Balances, positions, equity and drawdown, for ``GET /status``."""
        tokens = {self.quote_token.symbol: self.quote_token} | {
            p.instrument.base.symbol: p.instrument.base for p in self._positions.values()
        }
        return {
            "equity_quote": self.equity_quote,
            "peak_equity_quote": self.peak_equity_quote,
            "drawdown": self.drawdown,
            "balances": {
                symbol: {"units": units, "amount": tokens[symbol].to_float(units)}
                for symbol, units in sorted(self._balances.items())
                if symbol in tokens
            },
            "positions": [asdict(self.position(symbol)) for symbol in self._positions],
            "realised_pnl_quote": self.realised_pnl,
            "unrealised_pnl_quote": self.unrealised_pnl,
        }

    @property
    def unrealised_pnl(self) -> float:
        return sum(self.position(s).unrealised_pnl for s in self._positions)


class _PortfolioCollector(Collector):
    """Equity, drawdown, PnL, balances and fills, read at scrape time."""

    def __init__(self, portfolio: Portfolio) -> None:
        self.portfolio = portfolio

    def collect(self) -> Iterator[Metric]:
        p = self.portfolio
        for name, doc, value in (
            ("equity_quote", "Equity in quote tokens, marked at the last bar.", p.equity_quote),
            ("peak_equity_quote", "Highest equity so far, in quote tokens.", p.peak_equity_quote),
            ("drawdown_ratio", "Fall from peak equity, as a fraction of the peak.", p.drawdown),
            ("realised_pnl_quote", "Realised PnL in quote tokens, before gas.", p.realised_pnl),
            ("unrealised_pnl_quote", "Unrealised PnL in quote tokens.", p.unrealised_pnl),
            ("gas_charged_quote", "Gas charged to equity, in quote tokens.", p.gas_charged_quote),
        ):
            yield GaugeMetricFamily(f"{METRIC_PREFIX}_{name}", doc, value=value)
        balances = GaugeMetricFamily(
            f"{METRIC_PREFIX}_balance", "Balance per token, in tokens.", labels=["token"]
        )
        tokens = {p.quote_token.symbol: p.quote_token}
        for symbol in p.symbols:
            inst = p.instrument(symbol)
            assert inst is not None
            tokens[inst.base.symbol] = inst.base
        for symbol, token in sorted(tokens.items()):
            balances.add_metric([symbol], token.to_float(p.balance(symbol)))
        yield balances
        fills = CounterMetricFamily(
            f"{METRIC_PREFIX}_fills", "Fills applied to the portfolio, by side.", labels=["side"]
        )
        for side, count in sorted(p.fills.items()):
            fills.add_metric([side], count)
        yield fills
        yield CounterMetricFamily(
            f"{METRIC_PREFIX}_gas_paid_wei", "Gas paid by fills, in wei.", value=p.gas_paid_wei
        )
        yield CounterMetricFamily(
            f"{METRIC_PREFIX}_balance_checks",
            "Readings of the account's balances on chain compared with the book.",
            value=p.balance_checks,
        )
        mismatches = CounterMetricFamily(
            f"{METRIC_PREFIX}_balance_mismatches",
            "Readings in which a token's balance on chain differed from the book beyond "
            "its tolerance.",
            labels=["token"],
        )
        for token, count in p.balance_mismatches.items():
            mismatches.add_metric([token], count)
        yield mismatches
