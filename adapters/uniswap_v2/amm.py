"""Uniswap V2 constant-product maths on integers, exactly as ``UniswapV2Library``.

Amounts and reserves are integer base units. The 0.3% fee is taken from the input
(``amount_in * 997 / 1000``) and every division rounds down as in Solidity, so
:func:`get_amount_out` equals the router's ``getAmountsOut`` to the unit. Used by the
live executor's tests, the paper executor and the demo's arbitrage step.
"""

from __future__ import annotations

from fractions import Fraction
from math import isqrt
from typing import Literal, NamedTuple

FEE_NUMERATOR = 997
FEE_DENOMINATOR = 1000


class AmmError(ValueError):
    """Input the on-chain library would reject; the message is its revert reason."""


def _check_reserves(reserve_in: int, reserve_out: int) -> None:
    if reserve_in <= 0 or reserve_out <= 0:
        raise AmmError("UniswapV2Library: INSUFFICIENT_LIQUIDITY")


def get_amount_out(amount_in: int, reserve_in: int, reserve_out: int) -> int:
    """Output for an exact input, fee included (``UniswapV2Library.getAmountOut``)."""
    if amount_in <= 0:
        raise AmmError("UniswapV2Library: INSUFFICIENT_INPUT_AMOUNT")
    _check_reserves(reserve_in, reserve_out)
    amount_in_with_fee = amount_in * FEE_NUMERATOR
    numerator = amount_in_with_fee * reserve_out
    denominator = reserve_in * FEE_DENOMINATOR + amount_in_with_fee
    return numerator // denominator


def get_amount_in(amount_out: int, reserve_in: int, reserve_out: int) -> int:
    """Input needed for an exact output, fee included (``UniswapV2Library.getAmountIn``)."""
    if amount_out <= 0:
        raise AmmError("UniswapV2Library: INSUFFICIENT_OUTPUT_AMOUNT")
    _check_reserves(reserve_in, reserve_out)
    if amount_out >= reserve_out:
        raise AmmError("UniswapV2Library: INSUFFICIENT_LIQUIDITY")
    numerator = reserve_in * amount_out * FEE_DENOMINATOR
    denominator = (reserve_out - amount_out) * FEE_NUMERATOR
    return numerator // denominator + 1


def price_impact_bps(amount_in: int, reserve_in: int, reserve_out: int) -> float:
    """How much worse than the mid price a swap executes, in basis points, fee included.

    ``10_000 * (1 - execution_price / mid_price)`` with both prices in output per
    input; a tiny swap costs about 30 bps (the fee), larger ones more.
    """
    amount_out = get_amount_out(amount_in, reserve_in, reserve_out)
    ratio = Fraction(amount_out * reserve_in, amount_in * reserve_out)
    return float((1 - ratio) * 10_000)


def pool_price(reserve_base: int, reserve_quote: int) -> Fraction:
    """Mid price in quote base units per base base unit."""
    _check_reserves(reserve_base, reserve_quote)
    return Fraction(reserve_quote, reserve_base)


def human_price(raw_price: Fraction, base_decimals: int, quote_decimals: int) -> float:
    """Raw price (base units over base units) → quote tokens per base token."""
    return float(raw_price * Fraction(10**base_decimals, 10**quote_decimals))


def raw_price(price: Fraction | float | str, base_decimals: int, quote_decimals: int) -> Fraction:
    """Quote tokens per base token → quote base units per base base unit."""
    return Fraction(price) * Fraction(10**quote_decimals, 10**base_decimals)


def _amount_in_for_marginal_price(reserve_in: int, reserve_out: int, target: Fraction) -> int:
    """Largest input after which the pool's marginal price (in per out) is <= ``target``.

    Solves ``(r_in + x)(1000 r_in + 997 x) = 1000 T r_in r_out`` for ``x`` (the
    reserves after a fee-paying swap), with an integer square root.
    """
    t_num, t_den = target.numerator, target.denominator
    a = FEE_NUMERATOR * t_den
    b = (FEE_DENOMINATOR + FEE_NUMERATOR) * reserve_in * t_den
    c = FEE_DENOMINATOR * reserve_in * (reserve_in * t_den - t_num * reserve_out)
    if c >= 0:
        return 0  # already at or beyond the target
    return max(0, (isqrt(b * b - 4 * a * c) - b) // (2 * a))


class TradeToPrice(NamedTuple):
    """The swap that moves a pool to a price: BUY spends quote, SELL spends base."""

    side: Literal["BUY", "SELL"]
    amount_in: int
    amount_out: int


def trade_to_price(reserve_base: int, reserve_quote: int, target: Fraction) -> TradeToPrice | None:
    """The swap after which the pool's mid price is ``target`` (raw units), or None.

    ``target`` is quote base units per base base unit (see :func:`raw_price`). Below
    the target the trade buys base with quote; above it, sells base. The result is
    rounded down, so the pool ends at the target or just short of it.
    """
    _check_reserves(reserve_base, reserve_quote)
    if target <= 0:
        raise ValueError(f"target price must be > 0, got {target}")
    current = Fraction(reserve_quote, reserve_base)
    if current < target:
        amount_in = _amount_in_for_marginal_price(reserve_quote, reserve_base, target)
        if amount_in == 0:
            return None
        return TradeToPrice(
            "BUY", amount_in, get_amount_out(amount_in, reserve_quote, reserve_base)
        )
    if current > target:
        amount_in = _amount_in_for_marginal_price(reserve_base, reserve_quote, 1 / target)
        if amount_in == 0:
            return None
        return TradeToPrice(
            "SELL", amount_in, get_amount_out(amount_in, reserve_base, reserve_quote)
        )
    return None
