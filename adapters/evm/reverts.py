"""Short, stable reason codes for failed swaps, from revert messages and RPC errors.

``"execution reverted: UniswapV2Router: INSUFFICIENT_OUTPUT_AMOUNT"`` becomes the
reason ``INSUFFICIENT_OUTPUT_AMOUNT`` with the whole message as detail, so downstream
code matches on codes, and people read the detail. :func:`replay_revert` explains a
transaction that was mined but reverted.
"""

from __future__ import annotations

import re

import structlog

from adapters.evm.receipts import Receipt
from adapters.evm.rpc import JsonRpc, RevertError
from engine.reasons import OrderFailReason

log = structlog.get_logger("adapters.evm.reverts")

_CODE = re.compile(r"([A-Z][A-Z0-9_]{2,})\s*$")


def reason_code(message: str, default: str = OrderFailReason.REVERTED) -> str:
    """The trailing UPPER_CASE code of a revert message, or ``default``."""
    match = _CODE.search(message.strip())
    return match.group(1) if match else default


def rpc_error_message(exc: BaseException) -> str:
    """The node's message from a ``Web3RPCError`` (or the exception text)."""
    message = getattr(exc, "message", None) or str(exc)
    found = re.search(r"'message': '([^']*)'", message)
    return found.group(1) if found else message


def is_nonce_too_low(exc: BaseException) -> bool:
    text = rpc_error_message(exc).lower()
    return "nonce too low" in text or "nonce is too low" in text


def is_already_known(exc: BaseException) -> bool:
    text = rpc_error_message(exc).lower()
    return "already known" in text or "already imported" in text


def is_insufficient_funds(exc: BaseException) -> bool:
    return "insufficient funds" in rpc_error_message(exc).lower()


async def replay_revert(rpc: JsonRpc, receipt: Receipt) -> tuple[str, str]:
    """Reason and detail of a mined revert (status 0), found by replaying the call.

    A mined revert raises nothing; ``eth_call`` of the same transaction at the block
    before recovers the message when the transaction's own inputs caused it. When
    that passes (e.g. the deadline expired only in the mining block), the replay runs
    at the mining block itself. Gas used within 1/64 of the limit means out of gas.
    """
    try:
        tx = await rpc.get_transaction(receipt.tx_hash)
    except Exception as exc:
        return (
            OrderFailReason.REVERTED,
            f"{receipt.tx_hash} reverted (cannot load it: {type(exc).__name__})",
        )
    if tx is None:
        return (
            OrderFailReason.REVERTED,
            f"{receipt.tx_hash} reverted (transaction not found to replay)",
        )
    fields = {"from": tx["from"], "value": tx["value"]}
    for block in (receipt.block_number - 1, receipt.block_number):
        try:
            await rpc.call(tx["to"], tx["input"], block, **fields)
        except RevertError as exc:
            return reason_code(exc.message), f"{receipt.tx_hash} reverted: {exc.message}"
        except Exception as exc:
            log.info("revert.replay_failed", tx=receipt.tx_hash, error=type(exc).__name__)
    gas_limit = int(tx["gas"], 16)
    if receipt.gas_used * 64 >= gas_limit * 63:  # a call may keep only 1/64 back
        return (
            OrderFailReason.OUT_OF_GAS,
            f"{receipt.tx_hash} used {receipt.gas_used} of {gas_limit} gas",
        )
    return OrderFailReason.REVERTED, f"{receipt.tx_hash} reverted (reason not recovered by replay)"
