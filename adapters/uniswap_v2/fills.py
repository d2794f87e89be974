"""Reads what a swap did from the pair's ``Swap`` event in its receipt."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from eth_utils import keccak

from adapters.evm.receipts import Receipt

SWAP_TOPIC = "0x" + keccak(text="Swap(address,uint256,uint256,uint256,uint256,address)").hex()
SYNC_TOPIC = "0x" + keccak(text="Sync(uint112,uint112)").hex()


@dataclass(frozen=True, slots=True)
class SwapAmounts:
    """One swap seen from the base/quote side: BUY spent quote for base."""

    side: Literal["BUY", "SELL"]
    amount_in: int
    amount_out: int
    base_amount: int
    quote_amount: int


def words(data: str) -> list[int]:
    """ABI-encoded static words of a log's data, as integers."""
    raw = data[2:] if data.startswith("0x") else data
    return [int(raw[i : i + 64], 16) for i in range(0, len(raw), 64)]


def swap_amounts(amounts: list[int], base_is_token0: bool) -> SwapAmounts:
    """``[amount0In, amount1In, amount0Out, amount1Out]`` → base/quote amounts and side."""
    a0_in, a1_in, a0_out, a1_out = amounts[:4]
    base_in, quote_in = (a0_in, a1_in) if base_is_token0 else (a1_in, a0_in)
    base_out, quote_out = (a0_out, a1_out) if base_is_token0 else (a1_out, a0_out)
    if quote_in > 0:
        return SwapAmounts("BUY", quote_in, base_out, base_out, quote_in)
    return SwapAmounts("SELL", base_in, quote_out, base_in, quote_out)


def swap_from_receipt(receipt: Receipt, pair: str, base_is_token0: bool) -> SwapAmounts | None:
    """The (last) ``Swap`` the pair emitted in this receipt, or None."""
    pair = pair.lower()
    found = None
    for log in receipt.logs:
        if log.address == pair and log.topics and log.topics[0] == SWAP_TOPIC:
            found = swap_amounts(words(log.data), base_is_token0)
    return found


def quote_per_base(
    base_amount: int, quote_amount: int, base_decimals: int, quote_decimals: int
) -> float:
    """Effective price in quote tokens per base token."""
    if base_amount == 0:
        return 0.0
    return (quote_amount / 10**quote_decimals) / (base_amount / 10**base_decimals)
