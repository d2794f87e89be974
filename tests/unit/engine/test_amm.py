"""The shared Uniswap V2 rules in engine.amm: fee, slippage floor, impact, float model.

Exactness against the real router is in tests/integration/adapters/uniswap_v2/test_amm.py.
"""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine import amm

amounts = st.integers(min_value=1, max_value=10**30)
reserves = st.integers(min_value=10**3, max_value=10**30)


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
