"""The shared Uniswap V2 rules in engine.amm: outputs and inputs to the unit, fee,
slippage floor, impact, float model.

Exactness against the real router is in tests/integration/adapters/uniswap_v2/test_amm.py;
the vectors here catch a one-unit rounding change without a chain.
"""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine import amm

amounts = st.integers(min_value=1, max_value=10**30)
reserves = st.integers(min_value=10**3, max_value=10**30)
E18 = 10**18

# Uniswap v2-core's own swap cases (test/UniswapV2Pair.spec.ts, "getInputPrice"): amount
# in, reserve in, reserve out (in whole 18-decimal tokens), and the most the pair pays out
# (one unit more fails its K check).
V2_CORE_SWAPS = [
    (1, 5, 10, 1662497915624478906),
    (1, 10, 5, 453305446940074565),
    (2, 5, 10, 2851015155847869602),
    (2, 10, 5, 831248957812239453),
    (1, 10, 10, 906610893880149131),
    (1, 100, 100, 987158034397061298),
    (1, 1000, 1000, 996006981039903216),
]


@pytest.mark.parametrize(("amount_in", "reserve_in", "reserve_out", "expected"), V2_CORE_SWAPS)
def test_amount_out_equals_uniswap_v2_core_s_swap_vectors_to_the_unit(
    amount_in, reserve_in, reserve_out, expected
):
    assert amm.get_amount_out(amount_in * E18, reserve_in * E18, reserve_out * E18) == expected


def test_amount_out_and_in_round_as_solidity_on_hand_computed_cases():
    # 1,000 in against 1,000,000 / 1,000,000: 997,000 * 1,000,000 / 1,000,997,000
    # = 996.007 -> 996 (floor, not rounded, never ceiled).
    assert amm.get_amount_out(1_000, 10**6, 10**6) == 996
    # An exact quotient stays exact: 1,000 in against 997 / 2,000:
    # 997,000 * 2,000 / (997,000 + 997,000) = 1,000.
    assert amm.get_amount_out(1_000, 997, 2_000) == 1_000
    # A fraction over one half still rounds down: 1 in against 2 / 1,000:
    # 997 * 1,000 / (2,000 + 997) = 332.67 -> 332.
    assert amm.get_amount_out(1, 2, 1_000) == 332
    # getAmountIn is floor + 1: 1,000,000 * 996 * 1,000 / (999,004 * 997) = 999.99 -> 1,000.
    assert amm.get_amount_in(996, 10**6, 10**6) == 1_000
    # ... even when the quotient is exact (997 * 500 * 1,000 / (500 * 997) = 1,000),
    # though 1,000 in would buy the 500 out.
    assert amm.get_amount_in(500, 997, 1_000) == 1_001
    assert amm.get_amount_out(1_000, 997, 1_000) == 500


def test_fee_is_uniswap_v2_s_thirty_bps():
    assert amm.FEE_BPS == 30
    assert Fraction(amm.FEE_NUMERATOR, amm.FEE_DENOMINATOR) == 1 - Fraction(amm.FEE_BPS, amm.BPS)


@given(amounts)
def test_swap_fee_is_three_per_mille_rounded_up(amount_in):
    assert amm.swap_fee(amount_in) == -(-amount_in * 3 // 1000)
    assert amm.swap_fee(1) == 1
    assert amm.swap_fee(1000) == 3


@given(amounts, st.integers(min_value=0, max_value=9_999))
def test_min_amount_out_takes_the_slippage_off_the_quote_rounding_down(expected, slippage_bps):
    assert amm.min_amount_out(expected, slippage_bps) == (
        expected * (10_000 - slippage_bps) // 10_000
    )
    assert amm.min_amount_out(expected, 0) == expected


@given(amounts, reserves, reserves)
def test_price_impact_from_a_given_quote_equals_the_computed_one(amount_in, r_in, r_out):
    try:
        out = amm.get_amount_out(amount_in, r_in, r_out)
    except amm.AmmError:
        return
    assert amm.price_impact_bps(amount_in, r_in, r_out, out) == amm.price_impact_bps(
        amount_in, r_in, r_out
    )


def test_value_kept_is_get_amount_out_over_the_mid_price_value_in_real_numbers():
    units = 10**6
    quote_reserve, base_reserve = 100_000 * units, 50 * units  # 50 tokens at 2,000
    base_out = amm.get_amount_out(1000 * units, quote_reserve, base_reserve)
    kept = amm.value_kept(1000.0, 100_000.0, amm.FEE_BPS / amm.BPS)
    assert kept == pytest.approx(base_out * 2000 / (1000 * units), rel=1e-6)
    assert amm.value_kept(1.0, 1e18, 0.003) == pytest.approx(0.997, abs=1e-12)
