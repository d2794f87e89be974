"""The Uniswap V2 executor against the real router on a real anvil chain."""

from __future__ import annotations

import asyncio

import pytest
from web3 import AsyncHTTPProvider, AsyncWeb3
from web3.exceptions import TransactionNotFound

from adapters.uniswap_v2.artifacts import erc20_abi, router_abi
from adapters.uniswap_v2.executor import OrderStatus
from engine.bus import EventBus
from engine.clock import SimulatedClock
from engine.events import Event, OrderFailed, OrderFilled, OrderSubmitted
from tests import factories
from tests.chain_helpers import TOKEN, Chain, new_trader, order, outcome, quote

pytest_plugins = ["tests.chain_fixtures"]

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(("side", "amount_in"), [("BUY", 1_000 * TOKEN), ("SELL", 2 * TOKEN)])
async def test_swap_fills_at_the_quoted_amount_in_both_directions(
    chain, trader, make_executor, side, amount_in
):
    harness = await make_executor(chain, trader)
    expected = await quote(chain, side, amount_in)
    request = order(side, amount_in)
    await harness.bus.publish(request)
    filled = await outcome(harness, request.order_id)

    assert isinstance(filled, OrderFilled), filled
    assert filled.side == side
    assert filled.amount_in == amount_in
    assert filled.amount_out == expected  # nothing else traded in between
    assert filled.gas_used > 0
    assert filled.gas_cost_wei > 0
    submitted = harness.recorder.of(OrderSubmitted)
    assert [s.venue_order_id for s in submitted] == [filled.venue_order_id]
    # Submitted is published before the fill, as the journal needs.
    events = harness.recorder.events
    assert events.index(submitted[0]) < events.index(filled)
    price = (
        filled.amount_in / filled.amount_out
        if side == "BUY"
        else filled.amount_out / filled.amount_in
    )
    assert filled.price == pytest.approx(price)
    assert 500 < filled.price < 2000


async def sent_amount_out_min(chain: Chain, tx_hash: str) -> int:
    w3 = AsyncWeb3(AsyncHTTPProvider(chain.url))
    try:
        router = w3.eth.contract(address=chain.deployment.router, abi=router_abi())
        tx = await w3.eth.get_transaction(tx_hash)
        _, args = router.decode_function_input(tx["input"])
        return args["amountOutMin"]
    finally:
        await w3.provider.disconnect()


async def test_slippage_sets_amount_out_min_from_a_fresh_quote_exactly_once(
    chain, trader, make_executor
):
    harness = await make_executor(chain, trader)
    expected = await quote(chain, "BUY", 500 * TOKEN)
    request = order("BUY", 500 * TOKEN, max_slippage_bps=120)
    await harness.bus.publish(request)
    filled = await outcome(harness, request.order_id)
    assert isinstance(filled, OrderFilled)
    assert await sent_amount_out_min(chain, filled.venue_order_id) == expected * 9_880 // 10_000


async def test_explicit_min_amount_out_is_used_without_applying_slippage_again(
    chain, trader, make_executor
):
    harness = await make_executor(chain, trader)
    floor = await quote(chain, "SELL", TOKEN) - 1
    request = order("SELL", TOKEN, min_amount_out=floor, max_slippage_bps=500)
    await harness.bus.publish(request)
    filled = await outcome(harness, request.order_id)
    assert isinstance(filled, OrderFilled)
    assert await sent_amount_out_min(chain, filled.venue_order_id) == floor


async def test_swap_with_too_high_amount_out_min_fails_with_insufficient_output_amount(
    chain, trader, make_executor
):
    harness = await make_executor(chain, trader)
    too_high = await quote(chain, "BUY", 100 * TOKEN) + 1
    request = order("BUY", 100 * TOKEN, min_amount_out=too_high)
    await harness.bus.publish(request)
    failed = await outcome(harness, request.order_id)
    assert isinstance(failed, OrderFailed)
    assert failed.reason == "INSUFFICIENT_OUTPUT_AMOUNT"
    assert "UniswapV2Router" in failed.detail
    assert harness.recorder.of(OrderSubmitted) == []  # refused before anything was sent


async def test_swap_with_expired_deadline_fails_with_expired(chain, trader, make_executor):
    # The engine's clock is far behind the chain: its deadline is long past on chain.
    harness = await make_executor(
        chain, trader, clock=SimulatedClock(start_ns=10**18), deadline_clock="engine"
    )
    request = order("SELL", TOKEN)
    await harness.bus.publish(request)
    failed = await outcome(harness, request.order_id)
    assert isinstance(failed, OrderFailed)
    assert failed.reason == "EXPIRED"


@pytest.mark.parametrize("deadline_clock", ["chain", "auto"])
async def test_deadline_from_the_chain_clock_ignores_a_stale_engine_clock(
    chain, trader, make_executor, deadline_clock
):
    """`auto` (the default) counts from the chain's time under a simulated clock."""
    harness = await make_executor(
        chain, trader, clock=SimulatedClock(start_ns=10**18), deadline_clock=deadline_clock
    )
    request = order("SELL", TOKEN)
    await harness.bus.publish(request)
    assert isinstance(await outcome(harness, request.order_id), OrderFilled)


async def test_swap_with_insufficient_balance_fails_with_a_clear_reason(chain, make_executor):
    poor = await new_trader(chain, base=TOKEN)
    harness = await make_executor(chain, poor)
    request = order("SELL", 5 * TOKEN)
    await harness.bus.publish(request)
    failed = await outcome(harness, request.order_id)
    assert isinstance(failed, OrderFailed)
    assert failed.reason == "INSUFFICIENT_BALANCE"
    assert f"balance {TOKEN} < amount_in {5 * TOKEN}" in failed.detail
    # The loop and the executor carry on.
    ok = order("SELL", TOKEN // 2)
    await harness.bus.publish(ok)
    assert isinstance(await outcome(harness, ok.order_id), OrderFilled)


async def test_revoked_allowance_fails_clearly_then_next_order_reapproves_after_nonce_resync(
    chain, trader, make_executor
):
    harness = await make_executor(chain, trader)
    first = order("BUY", 10 * TOKEN)
    await harness.bus.publish(first)
    assert isinstance(await outcome(harness, first.order_id), OrderFilled)

    # Behind the executor's back, the same key revokes the router's allowance: this
    # also uses a nonce the executor thinks is its next one.
    w3 = AsyncWeb3(AsyncHTTPProvider(chain.url))
    try:
        token = w3.eth.contract(address=chain.deployment.quote_token, abi=erc20_abi())
        tx = await token.functions.approve(chain.deployment.router, 0).build_transaction(
            {"from": trader.address, "nonce": await w3.eth.get_transaction_count(trader.address)}
        )
        signed = w3.eth.account.sign_transaction(tx, trader.private_key)
        await w3.eth.wait_for_transaction_receipt(
            await w3.eth.send_raw_transaction(signed.raw_transaction)
        )
    finally:
        await w3.provider.disconnect()

    second = order("BUY", 10 * TOKEN)
    await harness.bus.publish(second)
    failed = await outcome(harness, second.order_id)
    assert isinstance(failed, OrderFailed)
    assert failed.reason == "INSUFFICIENT_ALLOWANCE"

    third = order("BUY", 10 * TOKEN)
    await harness.bus.publish(third)
    assert isinstance(await outcome(harness, third.order_id), OrderFilled)
    assert harness.executor.nonces.resyncs == 1
    assert harness.executor.approvals.sent == 2


async def test_unknown_symbol_and_bad_amount_fail_without_crashing(chain, trader, make_executor):
    harness = await make_executor(chain, trader)
    bad_symbol = factories.order("BUY", 1, ts=0, order_id="x1", strategy_id="t", symbol="ETH/USD")
    zero = order("BUY", 0)
    await harness.bus.publish(bad_symbol)
    await harness.bus.publish(zero)
    assert (await outcome(harness, "x1")).reason == "UNKNOWN_SYMBOL"
    assert (await outcome(harness, zero.order_id)).reason == "INVALID_AMOUNT"
    assert harness.executor.state == "RUNNING"


async def test_a_swap_the_journal_could_not_record_is_not_sent(chain, make_executor):
    """Journal before send: the bus withholds an ``OrderSubmitted`` a critical subscriber
    (the journal) failed on, and the executor then does not send the signed swap."""
    owner = await new_trader(chain)
    bus = EventBus()
    signed: list[OrderSubmitted] = []

    def journal(event: Event) -> None:
        if isinstance(event, OrderSubmitted):
            signed.append(event)
            raise OSError("disk full")

    bus.subscribe(Event, journal, name="journal", critical=True)
    harness = await make_executor(chain, owner, bus=bus)
    request = order("SELL", TOKEN)
    await bus.publish(request)
    failed = await outcome(harness, request.order_id)
    assert isinstance(failed, OrderFailed)
    assert failed.reason == "JOURNAL_UNAVAILABLE"
    assert harness.recorder.of(OrderSubmitted) == []  # withheld from everyone after
    w3 = AsyncWeb3(AsyncHTTPProvider(chain.url))
    try:
        assert await w3.eth.get_transaction_count(owner.address) == 1  # the approval only
        with pytest.raises(TransactionNotFound):
            await w3.eth.get_transaction(signed[0].venue_order_id)
    finally:
        await w3.provider.disconnect()


async def test_duplicate_order_id_is_never_sent_twice(chain, trader, make_executor):
    harness = await make_executor(chain, trader)
    request = order("SELL", TOKEN)
    await harness.bus.publish(request)
    await harness.bus.publish(request)
    await outcome(harness, request.order_id)
    await asyncio.sleep(0.2)
    assert len(harness.recorder.of(OrderSubmitted)) == 1
    assert len(harness.recorder.of(OrderFilled)) == 1


async def test_200_concurrent_orders_all_fill_with_consecutive_nonces(chain, make_executor):
    rich = await new_trader(chain, base=1_000 * TOKEN, quote=10**6 * TOKEN)
    harness = await make_executor(chain, rich)
    requests = [
        order("BUY", 20 * TOKEN) if i % 2 else order("SELL", TOKEN // 50) for i in range(200)
    ]
    for request in requests:
        harness.bus.publish_nowait(request)
    ids = {r.order_id for r in requests}
    deadline = asyncio.get_running_loop().time() + 60
    while len({e.order_id for e in harness.recorder.of(OrderFilled | OrderFailed)} & ids) < 200:
        assert asyncio.get_running_loop().time() < deadline, "orders did not settle in 60 s"
        await asyncio.sleep(0.05)

    assert [f for f in harness.recorder.of(OrderFailed)] == []
    fills = harness.recorder.of(OrderFilled)
    assert len(fills) == 200
    assert {f.order_id for f in fills} == ids
    nonces = sorted(s.nonce for s in harness.recorder.of(OrderSubmitted))
    assert nonces == list(range(nonces[0], nonces[0] + 200))  # unique, no gaps
    assert harness.executor.nonces.resyncs == 0
    assert harness.executor.approvals.sent == 2  # one per token, not one per order
    assert len({f.venue_order_id for f in fills}) == 200
    assert all(harness.executor.order_status(i) is OrderStatus.FILLED for i in ids)
    filled_total = harness.registry.get_sample_value(
        "trade_engine_dex_orders_total", {"component": "dex", "outcome": "filled"}
    )
    assert filled_total == 200
    latency_count = harness.registry.get_sample_value(
        "trade_engine_dex_submit_to_receipt_seconds_count", {"component": "dex"}
    )
    assert latency_count == 200
