"""The arbitrage step's maths: one swap lands a constant-product pool on the target."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.uniswap_v2.arbitrage import reserves_at_price, swap_to_price
from engine.amm import get_amount_out

reserve = st.integers(min_value=10**15, max_value=10**30)
move = st.fractions(min_value=Fraction(1, 5), max_value=Fraction(5))


def apply(base: int, quote: int, pay: str, amount_in: int) -> tuple[int, int]:
    """Reserves after the swap, by the router's own arithmetic."""
    if pay == "quote":
        return base - get_amount_out(amount_in, quote, base), quote + amount_in
    return base + amount_in, quote - get_amount_out(amount_in, base, quote)


@settings(max_examples=500, deadline=None)
@given(base=reserve, quote=reserve, factor=move)
def test_one_swap_moves_the_pool_to_the_target_price(base, quote, factor):
    price = Fraction(quote, base)
    target = price * factor
    swap = swap_to_price(base, quote, target)
    if factor == 1:
        assert swap is None
        return
    assert swap is not None
    assert swap.pay == ("quote" if factor > 1 else "base")
    after_base, after_quote = apply(base, quote, swap.pay, swap.amount_in)
    landed = Fraction(after_quote, after_base)
    # To the unit: one more unit of input would move the price past the target.
    assert abs(landed / target - 1) < Fraction(1, 10**9)


def test_a_pool_already_close_enough_is_left_alone():
    base, quote = 10**21, 29_000 * 10**21
    target = Fraction(quote, base) * Fraction(100_005, 100_000)  # 0.5 bps away
    assert swap_to_price(base, quote, target, min_move=Fraction(1, 10_000)) is None
    assert swap_to_price(base, quote, target) is not None


def test_reserves_at_price_keep_k_and_price_the_target():
    base, quote = 3 * 10**20, 9_000_000 * 10**18
    target = Fraction(40_000)
    new_base, new_quote = reserves_at_price(base, quote, target)
    assert abs(Fraction(new_quote, new_base) / target - 1) < Fraction(1, 10**9)
    assert abs(Fraction(new_base * new_quote, base * quote) - 1) < Fraction(1, 10**9)


@pytest.mark.parametrize(("base", "quote", "target"), [(0, 1, 1), (1, 0, 1), (1, 1, 0)])
def test_nonsense_inputs_are_refused(base, quote, target):
    with pytest.raises(ValueError, match="positive"):
        swap_to_price(base, quote, Fraction(target))
