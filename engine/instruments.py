"""Tokens and ``BASE/QUOTE`` instruments, and conversions between their units.

On-chain amounts are integers in a token's base units (``10**decimals`` per token);
research prices are floats; money shown to people is a ``Decimal`` formatted with the
token's decimals. These helpers are the one place those conversions happen, so a
rounding rule is never chosen twice. Instruments come from config
(:class:`InstrumentConfig`).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_DOWN, Context, Decimal
from fractions import Fraction

from pydantic import Field, model_validator

from engine.config import StrictModel

# Base-unit amounts of 18-decimal tokens exceed the default 28 significant digits.
_CONTEXT = Context(prec=100)
SYMBOL_PATTERN = r"^[^/\s]+/[^/\s]+$"


@dataclass(frozen=True, slots=True)
class Token:
    """An ERC-20 style token: its symbol, decimals and (on a chain) its address."""

    symbol: str
    decimals: int
    address: str | None = None

    def to_units(self, amount: Decimal | float | int | str) -> int:
        """Token amount → integer base units, rounded down (never more than asked).

        A float is read through its shortest ``repr`` so ``0.1`` means one tenth.
        """
        value = amount if isinstance(amount, Decimal) else Decimal(str(amount))
        scaled = _CONTEXT.multiply(value, Decimal(10) ** self.decimals)
        return int(scaled.to_integral_value(rounding=ROUND_DOWN, context=_CONTEXT))

    def to_decimal(self, units: int) -> Decimal:
        """Base units → exact token amount, for people and reports."""
        return Decimal(units).scaleb(-self.decimals, _CONTEXT)

    def to_float(self, units: int) -> float:
        """Base units → token amount as a float, for research-style arithmetic."""
        return units / 10**self.decimals

    def format(self, units: int) -> str:
        """``"1.500000 USDC"``: the exact amount with the token's decimals and symbol."""
        return f"{self.to_decimal(units):.{self.decimals}f} {self.symbol}"


@dataclass(frozen=True, slots=True)
class Instrument:
    """A ``BASE/QUOTE`` market; prices are quote tokens per base token."""

    symbol: str
    base: Token
    quote: Token

    def raw_price(self, price: Fraction | Decimal | float | str) -> Fraction:
        """Quote tokens per base token → quote base units per base base unit (exact)."""
        return Fraction(price) * Fraction(10**self.quote.decimals, 10**self.base.decimals)

    def human_price(self, raw: Fraction) -> float:
        """Quote base units per base base unit → quote tokens per base token."""
        return float(raw * Fraction(10**self.base.decimals, 10**self.quote.decimals))

    def price_of(self, base_units: int, quote_units: int) -> float:
        """The price at which ``base_units`` traded for ``quote_units`` (0 if no base)."""
        if base_units == 0:
            return 0.0
        return self.quote.to_float(quote_units) / self.base.to_float(base_units)

    def quote_value(self, base_units: int, price: float) -> float:
        """Value of ``base_units`` at ``price``, in quote tokens."""
        return self.base.to_float(base_units) * price

    def base_for_quote(self, quote_units: int, price: float) -> int:
        """Base units ``quote_units`` buy at ``price`` before any fee (rounded down)."""
        if price <= 0:
            return 0
        return int(Fraction(quote_units) / self.raw_price(price))


class InstrumentConfig(StrictModel):
    """One instrument in a component's config."""

    symbol: str = Field(
        pattern=SYMBOL_PATTERN, description="`BASE/QUOTE`, as bars, signals and orders name it."
    )
    base_decimals: int = Field(18, ge=0, le=36, description="Decimals of the BASE token.")
    quote_decimals: int = Field(18, ge=0, le=36, description="Decimals of the QUOTE token.")
    base_address: str | None = Field(None, description="BASE token address, if on a chain.")
    quote_address: str | None = Field(None, description="QUOTE token address, if on a chain.")

    @model_validator(mode="after")
    def _distinct_tokens(self) -> InstrumentConfig:
        base, quote = self.symbol.split("/")
        if base == quote:
            raise ValueError(f"base and quote must differ, got {self.symbol!r}")
        return self

    def to_instrument(self) -> Instrument:
        base, quote = self.symbol.split("/")
        return Instrument(
            self.symbol,
            Token(base, self.base_decimals, self.base_address),
            Token(quote, self.quote_decimals, self.quote_address),
        )
