"""Uniswap V2 maths: exact against the real router, and consistent with itself."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from web3 import HTTPProvider, Web3

from adapters.uniswap_v2.artifacts import pair_abi, router_abi
from engine.amm import (
    AmmError,
    get_amount_in,
    get_amount_out,
    pool_price,
    price_impact_bps,
    raw_price,
    trade_to_price,
)

pytest_plugins = ["tests.chain_fixtures"]

reserves = st.integers(min_value=10**3, max_value=10**30)


@pytest.fixture(scope="module")
def router(chain):
    w3 = Web3(HTTPProvider(chain.url))
    d = chain.deployment
    pair = w3.eth.contract(address=d.pair, abi=pair_abi())
    r0, r1, _ = pair.functions.getReserves().call()
    reserve_base, reserve_quote = (r0, r1) if d.base_is_token0 else (r1, r0)
    return w3.eth.contract(address=d.router, abi=router_abi()), d, reserve_base, reserve_quote


@pytest.mark.integration
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(amount=st.integers(min_value=1, max_value=10**27), buy=st.booleans())
def test_get_amount_out_equals_the_routers_get_amounts_out(router, amount, buy):
    contract, d, reserve_base, reserve_quote = router
    path = [d.quote_token, d.base_token] if buy else [d.base_token, d.quote_token]
    reserve_in, reserve_out = (
        (reserve_quote, reserve_base) if buy else (reserve_base, reserve_quote)
    )
    on_chain = contract.functions.getAmountsOut(amount, path).call()[-1]
    assert get_amount_out(amount, reserve_in, reserve_out) == on_chain


@pytest.mark.integration
@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(fraction=st.integers(min_value=1, max_value=10**6 - 1), buy=st.booleans())
def test_get_amount_in_equals_the_routers_get_amounts_in(router, fraction, buy):
    contract, d, reserve_base, reserve_quote = router
    path = [d.quote_token, d.base_token] if buy else [d.base_token, d.quote_token]
    reserve_in, reserve_out = (
        (reserve_quote, reserve_base) if buy else (reserve_base, reserve_quote)
    )
    amount_out = reserve_out * fraction // 10**6 or 1
    on_chain = contract.functions.getAmountsIn(amount_out, path).call()[0]
    assert get_amount_in(amount_out, reserve_in, reserve_out) == on_chain


@given(amount_out=st.integers(min_value=1, max_value=10**24), r_in=reserves, r_out=reserves)
def test_get_amount_in_buys_at_least_the_amount_out_and_one_less_does_not(amount_out, r_in, r_out):
    if amount_out >= r_out:
        with pytest.raises(AmmError, match="INSUFFICIENT_LIQUIDITY"):
            get_amount_in(amount_out, r_in, r_out)
        return
    needed = get_amount_in(amount_out, r_in, r_out)
    assert get_amount_out(needed, r_in, r_out) >= amount_out
    if needed > 1:
        assert get_amount_out(needed - 1, r_in, r_out) <= amount_out


@given(amount=st.integers(min_value=1, max_value=10**24), r_in=reserves, r_out=reserves)
def test_price_impact_is_at_least_the_fee_and_grows_with_size(amount, r_in, r_out):
    # Above dust, where rounding the output down by < 1 unit moves it < 0.01 bps.
    assume(get_amount_out(amount, r_in, r_out) >= 10**6)
    impact = price_impact_bps(amount, r_in, r_out)
    assert impact >= 30 - 0.01
    assert price_impact_bps(amount * 2, r_in, r_out) >= impact - 0.01


def test_amm_rejects_what_the_library_rejects():
    with pytest.raises(AmmError, match="INSUFFICIENT_INPUT_AMOUNT"):
        get_amount_out(0, 10, 10)
    with pytest.raises(AmmError, match="INSUFFICIENT_LIQUIDITY"):
        get_amount_out(1, 0, 10)


@given(
    r_base=st.integers(min_value=10**15, max_value=10**27),
    r_quote=st.integers(min_value=10**15, max_value=10**27),
    move=st.fractions(min_value=Fraction(1, 5), max_value=5).filter(lambda f: f != 1),
)
def test_trade_to_price_moves_the_pool_to_the_target_price(r_base, r_quote, move):
    target = Fraction(r_quote, r_base) * move
    trade = trade_to_price(r_base, r_quote, target)
    assert trade is not None
    if trade.side == "BUY":
        new_base, new_quote = r_base - trade.amount_out, r_quote + trade.amount_in
    else:
        new_base, new_quote = r_base + trade.amount_in, r_quote - trade.amount_out
    assert trade.side == ("BUY" if move > 1 else "SELL")
    assert float(pool_price(new_base, new_quote) / target) == pytest.approx(1, rel=1e-9)


def test_trade_to_price_is_none_at_the_target():
    assert trade_to_price(10**18, 10**21, Fraction(1000)) is None
    assert raw_price("1000", 18, 6) == Fraction(1000, 10**12)
