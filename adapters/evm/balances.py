"""An account's ETH and ERC-20 balances, read together at one block.

Every balance of one reading comes from the same block (``eth_call`` and
``eth_getBalance`` with that block's number), so a swap mined between two requests can
never show up in one balance and not in the other.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

from adapters.evm.rpc import BALANCE_OF, JsonRpc, calldata


@dataclass(frozen=True, slots=True)
class AccountBalances:
    """``tokens``: base units by the caller's key (a symbol or an address)."""

    account: str
    block: int
    eth_wei: int
    tokens: dict[str, int]


async def read_balances(
    rpc: JsonRpc, account: str, tokens: Mapping[str, str], block: int | None = None
) -> AccountBalances:
    """ETH and each of ``tokens`` (key → ERC-20 address) held by ``account`` at ``block``
    (the latest when None)."""
    if block is None:
        block = int(await rpc.request("eth_blockNumber", []), 16)
    tag = hex(block)
    data = calldata(BALANCE_OF, ["address"], [account])
    eth, *units = await asyncio.gather(
        rpc.request("eth_getBalance", [account, tag]),
        *(rpc.call(address, data, block) for address in tokens.values()),
    )
    return AccountBalances(
        account=account,
        block=block,
        eth_wei=int(eth, 16),
        tokens={key: int(value, 16) for key, value in zip(tokens, units, strict=True)},
    )
