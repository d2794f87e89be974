"""The swap that moves a constant-product pool to a target price.

With reserves ``(base, quote)`` and ``k = base * quote``, the pool prices ``target``
quote units per base unit when its reserves are ``(sqrt(k / target),
sqrt(k * target))``. The arbitrageur pays in the token the pool is short of; the pool
keeps 0.3% of the input, which :func:`swap_to_price` accounts for exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from math import isqrt
from typing import Literal

from engine.amm import FEE_DENOMINATOR, FEE_NUMERATOR, get_amount_out


@dataclass(frozen=True, slots=True)
class ArbitrageSwap:
    """Spend ``amount_in`` of the ``pay`` side to move the pool to the target price."""

    pay: Literal["base", "quote"]
    amount_in: int


def reserves_at_price(base_reserve: int, quote_reserve: int, target: Fraction) -> tuple[int, int]:
    """The reserves with the same ``k`` that price ``target`` (fees aside)."""
    k = base_reserve * quote_reserve
    return (
        isqrt(k * target.denominator // target.numerator),
        isqrt(k * target.numerator // target.denominator),
    )


def swap_to_price(
    base_reserve: int, quote_reserve: int, target: Fraction, min_move: Fraction = Fraction(0)
) -> ArbitrageSwap | None:
    """The swap that brings the pool to ``target`` (raw units), or None if it is within
    ``min_move`` (a fraction of the price) already.

    The fee-free estimate from :func:`reserves_at_price`, grossed up by 1000/997, lands
    a few bps short on big moves (the fee stays in the pool); a bisection on the
    router's own arithmetic finds the input that lands on the target to the unit."""
    if base_reserve <= 0 or quote_reserve <= 0 or target <= 0:
        raise ValueError("reserves and target price must be positive")
    price = Fraction(quote_reserve, base_reserve)
    if abs(target - price) <= min_move * price:
        return None
    base_after, quote_after = reserves_at_price(base_reserve, quote_reserve, target)
    if target > price:  # base is too cheap: buy it with quote

        def overshoots(amount: int) -> bool:
            out = get_amount_out(amount, quote_reserve, base_reserve)
            return Fraction(quote_reserve + amount, base_reserve - out) > target

        estimate = (quote_after - quote_reserve) * FEE_DENOMINATOR // FEE_NUMERATOR
        return ArbitrageSwap("quote", _largest_not_overshooting(overshoots, estimate))

    def undershoots(amount: int) -> bool:
        out = get_amount_out(amount, base_reserve, quote_reserve)
        return Fraction(quote_reserve - out, base_reserve + amount) < target

    estimate = (base_after - base_reserve) * FEE_DENOMINATOR // FEE_NUMERATOR
    return ArbitrageSwap("base", _largest_not_overshooting(undershoots, estimate))


def _largest_not_overshooting(past_target: Callable[[int], bool], estimate: int) -> int:
    """The largest input that does not move the price past the target (bisection)."""
    low, high = 0, max(estimate, 1)
    while not past_target(high):
        low, high = high, high * 2
    while high - low > 1:
        middle = (low + high) // 2
        if past_target(middle):
            high = middle
        else:
            low = middle
    return low
