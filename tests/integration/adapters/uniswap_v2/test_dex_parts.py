"""The executor's small parts on their own (no chain): fees, reasons, nonces, fills."""

from __future__ import annotations

import asyncio

import pytest
from eth_abi import encode

from adapters.evm.fees import GWEI, FeeCapExceededError, FeeOracle, Fees
from adapters.evm.nonces import NonceManager
from adapters.evm.reverts import is_nonce_too_low, reason_code
from adapters.evm.rpc import RpcError, revert_message
from adapters.uniswap_v2.fills import swap_amounts


def oracle(base_fee: int, cap_gwei: int = 100) -> FeeOracle:
    async def latest() -> tuple[int, int]:
        return base_fee, 1_700_000_000

    return FeeOracle(latest, priority_fee_wei=2 * GWEI, max_fee_cap_wei=cap_gwei * GWEI)


async def test_fees_are_twice_the_base_fee_plus_tip_capped():
    assert await oracle(10 * GWEI).current() == Fees(22 * GWEI, 2 * GWEI)
    assert await oracle(60 * GWEI).current() == Fees(100 * GWEI, 2 * GWEI)


async def test_base_fee_at_the_cap_refuses_instead_of_sending_a_stuck_transaction():
    with pytest.raises(FeeCapExceededError, match=r"base fee 100\.000 gwei >= cap"):
        await oracle(100 * GWEI).current()


def test_replacement_fees_rise_at_least_ten_percent_and_stop_at_the_cap():
    fees = Fees(50 * GWEI, 2 * GWEI)
    bumped = oracle(0).bumped(fees, 1.125)
    assert bumped is not None
    assert bumped.max_fee_per_gas >= fees.max_fee_per_gas * 1.1
    assert bumped.max_priority_fee_per_gas >= fees.max_priority_fee_per_gas * 1.1
    assert oracle(0).bumped(Fees(95 * GWEI, 2 * GWEI), 1.125) is None


def test_reason_codes_come_from_the_end_of_revert_messages():
    assert reason_code("execution reverted: UniswapV2Router: EXPIRED") == "EXPIRED"
    assert (
        reason_code("execution reverted: UniswapV2Router: INSUFFICIENT_OUTPUT_AMOUNT")
        == "INSUFFICIENT_OUTPUT_AMOUNT"
    )
    assert reason_code("execution reverted") == "REVERTED"


def test_revert_reason_is_decoded_from_error_data_when_the_message_lacks_it():
    data = "0x08c379a0" + encode(["string"], ["UniswapV2: K"]).hex()
    assert revert_message("execution reverted", data) == "execution reverted: UniswapV2: K"


def test_nonce_too_low_is_recognised_from_the_node_message():
    assert is_nonce_too_low(RpcError(-32003, "nonce too low"))
    assert not is_nonce_too_low(RpcError(-32003, "Insufficient funds for gas * price + value"))


async def test_nonce_manager_hands_out_consecutive_nonces_and_resyncs_from_the_chain():
    chain_count = [7]

    async def fetch() -> int:
        return chain_count[0]

    nonces = NonceManager(fetch)
    async with nonces.lock:
        assert await nonces.next_nonce() == 7
        nonces.consume(7, "0xa")
        assert await nonces.next_nonce() == 8
        chain_count[0] = 12  # someone else sent four transactions
        assert await nonces.resync() == 12
    assert nonces.pending == {7: ["0xa"]}
    assert nonces.resyncs == 1
    with pytest.raises(AssertionError, match="needs the lock"):
        await nonces.next_nonce()


async def test_concurrent_reservations_under_the_lock_never_share_a_nonce():
    async def fetch() -> int:
        return 0

    nonces = NonceManager(fetch)
    used: list[int] = []

    async def send(i: int) -> None:
        async with nonces.lock:
            nonce = await nonces.next_nonce()
            await asyncio.sleep(0)  # the send's network round trip
            nonces.consume(nonce, f"0x{i}")
            used.append(nonce)

    await asyncio.gather(*(send(i) for i in range(100)))
    assert sorted(used) == list(range(100))


@pytest.mark.parametrize("base_is_token0", [True, False])
def test_swap_amounts_read_side_and_amounts_for_either_token_order(base_is_token0):
    # amount0In, amount1In, amount0Out, amount1Out for a BUY: quote in, base out
    raw = [0, 500, 2, 0] if base_is_token0 else [500, 0, 0, 2]
    buy = swap_amounts(raw, base_is_token0)
    assert (buy.side, buy.amount_in, buy.amount_out) == ("BUY", 500, 2)
    raw = [3, 0, 0, 700] if base_is_token0 else [0, 3, 700, 0]
    sell = swap_amounts(raw, base_is_token0)
    assert (sell.side, sell.amount_in, sell.amount_out, sell.base_amount) == ("SELL", 3, 700, 3)
