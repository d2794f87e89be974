"""The executor when things go wrong: outages, stuck and mined-reverted transactions,
and restarts that must settle what an earlier process sent, exactly once."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from prometheus_client import CollectorRegistry

from adapters.evm.anvil import rpc_call
from adapters.uniswap_v2.executor import OrderStatus, SubmittedRecord, UniswapV2Executor
from adapters.uniswap_v2.recovery import journal_history
from engine.bus import EventBus
from engine.clock import LiveClock, SimulatedClock
from engine.component import ComponentContext
from engine.config import Secrets
from engine.events import OrderFailed, OrderFilled, OrderSubmitted, from_json
from engine.journal import RUN_EVENT_TYPES, Journal, JournalConfig, JournalReader
from tests.chain_helpers import (
    TOKEN,
    Chain,
    ExecutorHarness,
    Recorder,
    RpcProxy,
    executor_config,
    new_trader,
    order,
    outcome,
    raw_tx_hash,
)

pytest_plugins = ["tests.chain_fixtures"]

pytestmark = pytest.mark.integration


async def wait_until(predicate, within: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def node_has(chain: Chain, sent: OrderSubmitted) -> None:
    """Wait until the node holds a journalled transaction: the executor journals a swap
    before it sends it (write-ahead), so OrderSubmitted alone does not mean sent."""
    await wait_until(lambda: rpc_call(chain.url, "eth_getTransactionByHash", [sent.venue_order_id]))


PENDING = OrderStatus.PENDING


def metric(harness, name: str) -> float:
    value = harness.registry.get_sample_value(name, {"component": "dex"})
    assert value is not None, f"no {name}"
    return value


async def warm_up(harness) -> None:
    """One swap each way so approvals are mined before mining is switched off."""
    for side, amount in (("BUY", 10 * TOKEN), ("SELL", TOKEN // 10)):
        request = order(side, amount)
        await harness.bus.publish(request)
        assert isinstance(await outcome(harness, request.order_id), OrderFilled)


async def test_rpc_outage_while_swap_in_flight_goes_pending_then_fills_exactly_once(
    own_chain, make_executor
):
    trader = await new_trader(own_chain)
    harness = await make_executor(
        own_chain,
        trader,
        receipt_timeout_seconds=0.5,
        pending_poll_seconds=0.2,
        rpc_timeout_seconds=0.3,
        replace_after_seconds=0,
    )
    await warm_up(harness)
    own_chain.anvil.rpc("evm_setAutomine", False)
    request = order("BUY", 10 * TOKEN)
    await harness.bus.publish(request)
    sent = await harness.recorder.wait_for(
        lambda e: isinstance(e, OrderSubmitted) and e.order_id == request.order_id
    )
    await node_has(own_chain, sent)
    own_chain.anvil.freeze()
    try:
        await wait_until(lambda: harness.executor.order_status(request.order_id) is PENDING)
        await asyncio.sleep(1.0)  # polls time out against the frozen node
        assert harness.executor.receipts.failed_polls > 0
        assert harness.executor.order_status(request.order_id) is OrderStatus.PENDING
        assert not harness.recorder.of(OrderFailed)
        assert harness.executor.state == "DEGRADED"
        assert metric(harness, "trade_engine_dex_orders_pending") == 1
        # PENDING since before the 1 s sleep: the age the "pending too long" alert reads.
        assert metric(harness, "trade_engine_dex_oldest_pending_seconds") >= 1.0
    finally:
        own_chain.anvil.resume()
    await asyncio.to_thread(own_chain.anvil.rpc, "evm_mine")
    filled = await outcome(harness, request.order_id)
    assert isinstance(filled, OrderFilled)
    await asyncio.sleep(0.5)  # any duplicate would show up by now
    mine = [e for e in harness.recorder.of(OrderFilled) if e.order_id == request.order_id]
    sent = [e for e in harness.recorder.of(OrderSubmitted) if e.order_id == request.order_id]
    assert len(mine) == 1
    assert len(sent) == 1
    assert harness.executor.order_status(request.order_id) is OrderStatus.FILLED
    assert harness.executor.state == "RUNNING"
    assert metric(harness, "trade_engine_dex_orders_pending") == 0
    assert metric(harness, "trade_engine_dex_oldest_pending_seconds") == 0
    assert metric(harness, "trade_engine_dex_receipt_poll_failures_total") > 0


async def test_stuck_transaction_is_replaced_at_a_higher_fee_with_the_same_nonce(
    own_chain, make_executor
):
    trader = await new_trader(own_chain)
    harness = await make_executor(
        own_chain,
        trader,
        receipt_timeout_seconds=0.2,
        pending_poll_seconds=0.1,
        replace_after_seconds=0.3,
    )
    await warm_up(harness)
    own_chain.anvil.rpc("evm_setAutomine", False)
    request = order("SELL", TOKEN // 10)
    await harness.bus.publish(request)

    def submissions() -> list[OrderSubmitted]:
        return [e for e in harness.recorder.of(OrderSubmitted) if e.order_id == request.order_id]

    await wait_until(lambda: len(submissions()) >= 2)
    first, second = submissions()[:2]
    assert first.nonce == second.nonce
    assert first.venue_order_id != second.venue_order_id
    await node_has(own_chain, second)
    await asyncio.to_thread(own_chain.anvil.rpc, "evm_mine")
    filled = await outcome(harness, request.order_id)
    assert isinstance(filled, OrderFilled)
    assert filled.venue_order_id in {s.venue_order_id for s in submissions()[1:]}
    assert rpc_call(own_chain.url, "eth_getTransactionReceipt", [first.venue_order_id]) is None
    await asyncio.sleep(0.3)
    assert len([e for e in harness.recorder.of(OrderFilled) if e.order_id == request.order_id]) == 1


async def test_mined_revert_is_decoded_by_replaying_the_call(own_chain, make_executor):
    trader = await new_trader(own_chain)
    chain_now = int(
        rpc_call(own_chain.url, "eth_getBlockByNumber", ["latest", False])["timestamp"], 16
    )
    clock = SimulatedClock(start_ns=chain_now * 10**9)
    harness = await make_executor(own_chain, trader, clock=clock, deadline_seconds=30)
    await warm_up(harness)
    own_chain.anvil.rpc("evm_setAutomine", False)
    request = order("SELL", TOKEN // 10)
    await harness.bus.publish(request)
    sent = await harness.recorder.wait_for(
        lambda e: isinstance(e, OrderSubmitted) and e.order_id == request.order_id
    )
    await node_has(own_chain, sent)
    # The block that includes it comes after the swap's deadline: it reverts on chain.
    own_chain.anvil.rpc("evm_setNextBlockTimestamp", chain_now + 600)
    await asyncio.to_thread(own_chain.anvil.rpc, "evm_mine")
    failed = await outcome(harness, request.order_id)
    assert isinstance(failed, OrderFailed)
    assert failed.reason == "EXPIRED"
    submitted = harness.recorder.of(OrderSubmitted)[-1]
    receipt = rpc_call(own_chain.url, "eth_getTransactionReceipt", [submitted.venue_order_id])
    assert receipt["status"] == "0x0"  # it really was mined and reverted


async def test_reconcile_in_a_fresh_executor_publishes_each_fill_once_and_never_resends(
    own_chain, make_executor
):
    trader = await new_trader(own_chain)
    first = await make_executor(own_chain, trader)
    await warm_up(first)
    own_chain.anvil.rpc("evm_setAutomine", False)

    async def send_then_crash(harness, side: str, amount: int) -> SubmittedRecord:
        request = order(side, amount)
        await harness.bus.publish(request)
        sent = await harness.recorder.wait_for(
            lambda e: isinstance(e, OrderSubmitted) and e.order_id == request.order_id
        )
        await node_has(own_chain, sent)
        await harness.executor.stop()  # the process dies before the receipt
        return SubmittedRecord(sent.order_id, sent.venue_order_id, sent.nonce)

    mined = await send_then_crash(first, "BUY", 10 * TOKEN)
    own_chain.anvil.rpc("evm_mine")
    second = await make_executor(own_chain, trader)
    unmined = await send_then_crash(second, "SELL", TOKEN // 10)
    sent_count = int(
        rpc_call(own_chain.url, "eth_getTransactionCount", [trader.address, "pending"]), 16
    )

    fresh = await make_executor(own_chain, trader)
    statuses = await fresh.executor.reconcile([mined, unmined])
    assert statuses == {mined.order_id: OrderStatus.FILLED, unmined.order_id: OrderStatus.PENDING}
    # Reconciling the same records again (e.g. a second pass) changes nothing.
    assert (await fresh.executor.reconcile([mined, unmined]))[mined.order_id] is OrderStatus.FILLED

    own_chain.anvil.rpc("evm_mine")
    await outcome(fresh, unmined.order_id)
    await asyncio.sleep(0.3)
    fills = fresh.recorder.of(OrderFilled)
    assert sorted(f.order_id for f in fills) == sorted([mined.order_id, unmined.order_id])
    assert {f.venue_order_id for f in fills} == {mined.tx_hash, unmined.tx_hash}
    assert fresh.recorder.of(OrderSubmitted) == []  # nothing was sent again
    final_count = int(
        rpc_call(own_chain.url, "eth_getTransactionCount", [trader.address, "latest"]), 16
    )
    assert final_count == sent_count


async def test_reconcile_reports_a_nonce_taken_by_another_transaction_as_dropped(
    own_chain, make_executor
):
    trader = await new_trader(own_chain)
    harness = await make_executor(own_chain, trader)
    await warm_up(harness)
    used = int(rpc_call(own_chain.url, "eth_getTransactionCount", [trader.address, "latest"]), 16)
    record = SubmittedRecord("lost", "0x" + "ab" * 32, used - 1)
    assert (await harness.executor.reconcile([record])) == {"lost": OrderStatus.FAILED}
    assert harness.recorder.of(OrderFailed)[-1].reason == "DROPPED"


async def test_restart_reconciles_from_the_journal_and_records_the_fill_exactly_once(
    own_chain, tmp_path
):
    """A run sends a swap and dies before its receipt; the next run re-derives the same
    orders (as the engine's catch-up does) and settles the swap from the journal: one
    fill, appended after what the journal held; no swap ever sent again; nothing lost.

    The "death" here is a stop that settles nothing; test_dex_daemon.py kill -9s a
    real daemon."""
    trader = await new_trader(own_chain)
    journal_path = tmp_path / "journal.sqlite"

    async def run() -> tuple[ExecutorHarness, Journal]:
        bus = EventBus()
        context = ComponentContext(
            bus, LiveClock(), CollectorRegistry(),
            Secrets.from_env({"ENGINE_PRIVATE_KEY": trader.private_key}),
        )  # fmt: skip
        journal = Journal("journal", JournalConfig(path=str(journal_path)), context)
        recorder = Recorder(bus)
        settings = executor_config(own_chain, journal_path=str(journal_path))
        executor = UniswapV2Executor("dex", settings, context)
        await journal.start()
        await executor.start()
        return ExecutorHarness(executor, bus, recorder, context.metrics_registry), journal

    first, journal = await run()
    requests = [order("BUY", 10 * TOKEN), order("SELL", TOKEN // 10)]
    for warm in requests:  # mined: approvals done before mining is switched off
        await first.bus.publish(warm)
        assert isinstance(await outcome(first, warm.order_id), OrderFilled)
    own_chain.anvil.rpc("evm_setAutomine", False)
    request = order("BUY", 10 * TOKEN)
    requests.append(request)
    await first.bus.publish(request)
    sent = await first.recorder.wait_for(
        lambda e: isinstance(e, OrderSubmitted) and e.order_id == request.order_id
    )
    await node_has(own_chain, sent)
    await first.executor.stop()  # the process dies before the receipt...
    await journal.stop()  # ...with the submission already on disk (committed at once)
    sent_count = int(
        rpc_call(own_chain.url, "eth_getTransactionCount", [trader.address, "pending"]), 16
    )
    own_chain.anvil.rpc("evm_mine")
    held = len(JournalReader.open(journal_path).trading_keys())

    second, journal = await run()
    assert not journal.caught_up.is_set()
    assert second.recorder.of(OrderFilled) == []  # nothing settles before the catch-up
    fills = []
    for again in requests:  # the catch-up re-derives the same orders...
        await second.bus.publish(again)
        fills.append(await outcome(second, again.order_id))
    assert journal.caught_up.is_set()
    assert journal.skipped == held  # ...and the executor re-produced all the journal held
    assert all(isinstance(f, OrderFilled) for f in fills)
    assert fills[-1].venue_order_id == sent.venue_order_id
    assert [e.venue_order_id for e in second.recorder.of(OrderSubmitted)][-1] == sent.venue_order_id
    await second.executor.stop()
    await journal.stop()

    third, journal = await run()  # a further restart: everything settled, nothing to do
    for again in requests:
        await third.bus.publish(again)
        await outcome(third, again.order_id)
    await asyncio.sleep(0.2)
    assert journal.skipped == held + 1  # the fill appended last time is re-produced too
    assert [f.order_id for f in third.recorder.of(OrderFilled)] == [r.order_id for r in requests]
    await third.executor.stop()
    await journal.stop()

    final_count = int(
        rpc_call(own_chain.url, "eth_getTransactionCount", [trader.address, "latest"]), 16
    )
    assert final_count == sent_count  # the swap was never sent again
    reader = JournalReader.open(journal_path)
    rows = [(r.type, getattr(r.event(), "order_id", None)) for r in reader.rows()]
    mine = [kind for kind, order_id in rows if order_id == request.order_id]
    assert mine == ["OrderRequest", "OrderSubmitted", "OrderFilled"]
    trading = [row for row in rows if row[0] not in RUN_EVENT_TYPES]
    assert trading[-1] == ("OrderFilled", request.order_id)  # appended after the catch-up
    history = journal_history(journal_path, request.symbol)
    assert all(isinstance(events[-1], OrderFilled | OrderFailed) for events in history.values())


@pytest.mark.parametrize(
    ("rpc_timeout", "quote_timeout"),
    [(0.3, 20.0), (3.0, 1.5)],
    ids=["send-times-out", "quote-deadline-passes-during-the-send"],
)
async def test_node_freezing_between_journal_write_and_send_still_fills_exactly_once(
    own_chain, make_executor, rpc_timeout, quote_timeout
):
    """The swap is journalled, then the node freezes before the send reaches it: the
    send is ambiguous, the order PENDING; once the node is back the same transaction
    (same hash) is mined, possibly re-broadcast, and filled exactly once. The quote
    deadline passing while the send hangs changes nothing: a signed swap is never
    failed by it."""
    trader = await new_trader(own_chain)
    harness = await make_executor(
        own_chain,
        trader,
        receipt_timeout_seconds=0.5,
        pending_poll_seconds=0.2,
        rpc_timeout_seconds=rpc_timeout,
        quote_timeout_seconds=quote_timeout,
        replace_after_seconds=0,
    )
    await warm_up(harness)
    request = order("BUY", 10 * TOKEN)

    frozen: list[str] = []

    def freeze_on_journal_write(event: OrderSubmitted) -> None:
        if event.order_id == request.order_id and not frozen:
            frozen.append(event.venue_order_id)
            own_chain.anvil.freeze()  # sync handler: runs before the executor sends

    harness.bus.subscribe(OrderSubmitted, freeze_on_journal_write, name="freezer")
    nonce_before = int(
        rpc_call(own_chain.url, "eth_getTransactionCount", [trader.address, "latest"]), 16
    )
    await harness.bus.publish(request)
    try:
        await wait_until(lambda: harness.executor.order_status(request.order_id) is PENDING)
        assert frozen
        await asyncio.sleep(0.5)
    finally:
        own_chain.anvil.resume()
    filled = await outcome(harness, request.order_id)
    assert isinstance(filled, OrderFilled)
    await asyncio.sleep(0.5)  # a duplicate would show by now
    sent = [e for e in harness.recorder.of(OrderSubmitted) if e.order_id == request.order_id]
    assert len(sent) == 1
    assert filled.venue_order_id == sent[0].venue_order_id
    assert len([e for e in harness.recorder.of(OrderFilled) if e.order_id == request.order_id]) == 1
    nonce_after = int(
        rpc_call(own_chain.url, "eth_getTransactionCount", [trader.address, "latest"]), 16
    )
    assert nonce_after == nonce_before + 1


async def test_an_unreachable_node_degrades_the_executor_until_it_answers_again(
    own_chain, make_executor
):
    """What /ready reports as "chain reachable": the executor probes the node."""
    trader = await new_trader(own_chain)
    harness = await make_executor(
        own_chain, trader, health_check_seconds=0.1, rpc_timeout_seconds=0.3
    )
    executor = harness.executor
    assert executor.state == "RUNNING"
    own_chain.anvil.freeze()
    try:
        await wait_until(lambda: executor.state == "DEGRADED", within=5)
        assert "chain unreachable" in executor.health().reason
        assert executor.status()["chain_problem"].startswith("chain unreachable")
    finally:
        own_chain.anvil.resume()
    await wait_until(lambda: executor.state == "RUNNING", within=5)
    assert executor.status()["chain_problem"] is None
    assert executor.status()["account"] == trader.address


async def test_orders_on_a_frozen_node_fail_with_quote_timeout_within_the_bound(
    own_chain, make_executor
):
    """A dead node must not leave orders QUOTING (risk counts them as pending): each one
    fails within ``quote_timeout_seconds``, even behind a first approval that hangs,
    and the executor trades again once the node answers."""
    trader = await new_trader(own_chain)
    bound = 1.0
    harness = await make_executor(
        own_chain, trader, quote_timeout_seconds=bound, rpc_timeout_seconds=30
    )
    requests = [order("BUY", 10 * TOKEN) for _ in range(3)]
    own_chain.anvil.freeze()
    try:
        started = asyncio.get_running_loop().time()
        for request in requests:
            await harness.bus.publish(request)
        failures = [await outcome(harness, r.order_id, within=bound + 5) for r in requests]
        took = asyncio.get_running_loop().time() - started
        assert [f.reason for f in failures] == ["QUOTE_TIMEOUT"] * 3, failures
        assert took < bound + 0.5, f"failed after {took:.2f} s"
        assert "not quoted and signed within 1.0 s" in failures[0].detail
        assert not harness.recorder.of(OrderSubmitted)
        assert {harness.executor.order_status(r.order_id) for r in requests} == {OrderStatus.FAILED}
    finally:
        own_chain.anvil.resume()
    # The approval is never cut by an order's deadline (it could be mid-send): it
    # went on in the background and completes now, before any new order.
    await wait_until(lambda: harness.executor.approvals.approved, within=10)
    after = order("BUY", 10 * TOKEN)
    await harness.bus.publish(after)
    assert isinstance(await outcome(harness, after.order_id), OrderFilled)


@pytest.mark.parametrize("outage", ["frozen", "killed"])
async def test_a_dead_node_degrades_the_executor_within_two_health_check_intervals(
    own_chain, make_executor, outage
):
    """What /ready reports: the probe gives up on a silent node before the next is due
    (here long before the 10 s RPC timeout), so it is DEGRADED within two intervals."""
    trader = await new_trader(own_chain)
    interval = 1.0
    harness = await make_executor(own_chain, trader, health_check_seconds=interval)
    executor = harness.executor
    await asyncio.sleep(interval * 1.3)  # between probes, a first one answered
    assert executor.state == "RUNNING"
    started = asyncio.get_running_loop().time()
    if outage == "frozen":
        own_chain.anvil.freeze()
    else:
        own_chain.anvil.stop()
    try:
        await wait_until(lambda: executor.state == "DEGRADED", within=5)
        took = asyncio.get_running_loop().time() - started
        assert took <= 2 * interval, f"DEGRADED after {took:.2f} s"
        assert "chain unreachable" in executor.health().reason
    finally:
        if outage == "frozen":
            own_chain.anvil.resume()


def journalled_submissions(path: Path) -> set[str]:
    """Tx hashes of the OrderSubmitted rows committed to the journal, read as another
    process would: a read-only connection of its own."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT body FROM events WHERE type = 'OrderSubmitted'").fetchall()
    finally:
        conn.close()
    return {from_json(body).venue_order_id for (body,) in rows}


async def test_a_swap_is_committed_to_the_journal_before_the_node_receives_it(
    own_chain, make_executor, tmp_path
):
    """Write-ahead: at the instant a signed swap reaches the node, its OrderSubmitted is
    already on disk, so a crash at any point leaves no swap the journal does not know."""
    trader = await new_trader(own_chain)
    journal_path = tmp_path / "journal.sqlite"
    on_disk_when_sent: dict[str, bool] = {}

    async def check_journal(method: str, params: list[Any]) -> bool:
        if method == "eth_sendRawTransaction":
            tx_hash = raw_tx_hash(params[0])
            on_disk_when_sent[tx_hash] = tx_hash in journalled_submissions(journal_path)
        return True

    proxy = RpcProxy(own_chain.url, check_journal)
    bus = EventBus()
    context = ComponentContext(bus, LiveClock(), CollectorRegistry(), Secrets())
    journal = Journal("journal", JournalConfig(path=str(journal_path)), context)
    await journal.start()  # subscribed first, as in the engine
    try:
        harness = await make_executor(own_chain, trader, bus=bus, rpc_url=await proxy.start())
        requests = [order("BUY", 10 * TOKEN), order("SELL", TOKEN // 10)]
        for request in requests:
            await bus.publish(request)
            assert isinstance(await outcome(harness, request.order_id), OrderFilled)
    finally:
        await journal.stop()
        await proxy.stop()
    swaps = {e.venue_order_id: e.order_id for e in harness.recorder.of(OrderSubmitted)}
    assert sorted(swaps.values()) == sorted(r.order_id for r in requests)
    assert {tx: on_disk_when_sent[tx] for tx in swaps} == dict.fromkeys(swaps, True)


async def test_reconcile_fails_a_journalled_swap_the_node_never_got_as_not_sent(
    own_chain, make_executor
):
    """The process journalled a signed swap and died before sending it: its nonce is free
    and the node does not hold it, so it can never be mined; the next order uses the nonce."""
    trader = await new_trader(own_chain)
    harness = await make_executor(own_chain, trader)
    await warm_up(harness)
    nonce = int(rpc_call(own_chain.url, "eth_getTransactionCount", [trader.address, "pending"]), 16)
    d = own_chain.deployment
    never_sent = Account.sign_transaction(
        {"type": 2, "chainId": d.chain_id, "nonce": nonce, "to": d.router, "data": "0x",
         "value": 0, "gas": 200_000, "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**9},
        trader.private_key,
    )  # fmt: skip
    record = SubmittedRecord("died-before-send", "0x" + bytes(never_sent.hash).hex(), nonce)

    assert await harness.executor.reconcile([record]) == {record.order_id: OrderStatus.FAILED}
    failed = harness.recorder.of(OrderFailed)[-1]
    assert (failed.order_id, failed.reason) == (record.order_id, "NOT_SENT")
    assert f"nonce {nonce}" in failed.detail
    request = order("BUY", TOKEN)
    await harness.bus.publish(request)
    assert isinstance(await outcome(harness, request.order_id), OrderFilled)
    submitted = [e for e in harness.recorder.of(OrderSubmitted) if e.order_id == request.order_id]
    assert [e.nonce for e in submitted] == [nonce]


async def test_a_send_lost_on_the_way_is_rebroadcast_byte_for_byte_and_fills_once(
    own_chain, make_executor
):
    """The first send of a swap never reaches the node (the request is lost and times
    out): the order waits PENDING, the same signed bytes are sent again, and it fills."""
    trader = await new_trader(own_chain)
    sent_raw: list[str] = []
    lose_next_send = asyncio.Event()

    async def lose_one_send(method: str, params: list[Any]) -> bool:
        if method != "eth_sendRawTransaction":
            return True
        sent_raw.append(params[0])
        if lose_next_send.is_set():
            lose_next_send.clear()
            return False
        return True

    proxy = RpcProxy(own_chain.url, lose_one_send)
    try:
        harness = await make_executor(
            own_chain,
            trader,
            rpc_url=await proxy.start(),
            rpc_timeout_seconds=0.3,
            receipt_timeout_seconds=0.5,
            pending_poll_seconds=0.2,
            replace_after_seconds=0,
        )
        await warm_up(harness)
        nonce_before = int(
            rpc_call(own_chain.url, "eth_getTransactionCount", [trader.address, "latest"]), 16
        )
        sent_raw.clear()
        lose_next_send.set()
        request = order("BUY", 10 * TOKEN)
        await harness.bus.publish(request)
        filled = await outcome(harness, request.order_id)
        await asyncio.sleep(0.3)  # a duplicate would show by now
    finally:
        await proxy.stop()
    assert isinstance(filled, OrderFilled)
    assert len(sent_raw) == 2
    assert sent_raw[0] == sent_raw[1]  # the very same signed transaction
    assert filled.venue_order_id == raw_tx_hash(sent_raw[0])
    submitted = [e for e in harness.recorder.of(OrderSubmitted) if e.order_id == request.order_id]
    assert [e.venue_order_id for e in submitted] == [filled.venue_order_id]
    assert [e for e in harness.recorder.of(OrderFilled) if e.order_id == request.order_id] == [
        filled
    ]
    nonce_after = int(
        rpc_call(own_chain.url, "eth_getTransactionCount", [trader.address, "latest"]), 16
    )
    assert nonce_after == nonce_before + 1
