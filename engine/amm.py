"""Constant-product maths of Uniswap V2 on integers, no web3.

Shared by the risk manager, research and the Uniswap V2 adapters (paper and live
executors, pool feed, local chain), so each rule has one definition here: the output
and input of a swap, the 0.3% fee, the slippage floor of an order, and price impact.

Amounts and reserves are integer base units. The fee is taken from the input
(``amount_in * 997 / 1000``) and every division rounds down as in Solidity, so
:func:`get_amount_out` equals the router's ``getAmountsOut`` to the unit.
:func:`value_kept` is the same formula over real numbers, for models in floats.
"""

from __future__ import annotations

from fractions import Fraction
from math import isqrt
from typing import Literal, NamedTuple

FEE_NUMERATOR = 997
FEE_DENOMINATOR = 1000
BPS = 10_000  # basis points in one
FEE_BPS = (FEE_DENOMINATOR - FEE_NUMERATOR) * BPS // FEE_DENOMINATOR  # 30: 0.3%


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


def swap_fee(amount_in: int) -> int:
    """The pool's 0.3% of ``amount_in``, in the input token, rounded up."""
    return -(-amount_in * (FEE_DENOMINATOR - FEE_NUMERATOR) // FEE_DENOMINATOR)


def min_amount_out(expected: int, slippage_bps: int) -> int:
    """The least output an order accepts: ``expected`` less ``slippage_bps``, rounded down."""
    return expected * (BPS - slippage_bps) // BPS


def price_impact_bps(
    amount_in: int, reserve_in: int, reserve_out: int, amount_out: int | None = None
) -> float:
    """How much worse than the mid price a swap executes, in basis points, fee included.

    ``10_000 * (1 - execution_price / mid_price)`` with both prices in output per
    input; a tiny swap costs about 30 bps (the fee), larger ones more. ``amount_out``
    is the quoted output when known; otherwise :func:`get_amount_out`.
    """
    if amount_out is None:
        amount_out = get_amount_out(amount_in, reserve_in, reserve_out)
    ratio = Fraction(amount_out * reserve_in, amount_in * reserve_out)
    return float((1 - ratio) * BPS)


def value_kept(amount_in: float, reserve_in: float, fee: float) -> float:
    """Share of its mid-price value a swap returns: :func:`get_amount_out` over reals.

    ``(1 - fee) * r_in / (r_in + (1 - fee) * amount_in)``, i.e. output over
    ``amount_in * r_out / r_in``; ``fee`` is a fraction (0.003 for Uniswap V2).
    """
    keep = 1.0 - fee
    return keep * reserve_in / (reserve_in + keep * amount_in)


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
