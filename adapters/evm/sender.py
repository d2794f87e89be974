"""Signs and sends transactions for one account, one nonce at a time.

:meth:`TransactionSender.send` picks the nonce, signs locally and hands the raw
transaction to the node while holding the nonce lock, so concurrent orders get
consecutive nonces and a rejected transaction leaves no gap. A send that times out or
loses its connection is *ambiguous*: the node may have it, so the nonce counts as used
and the receipt is awaited like any other (a stuck one is replaced, never re-sent
with a new nonce).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import aiohttp
import structlog
from web3.exceptions import ProviderConnectionError

from adapters.evm.fees import Fees
from adapters.evm.keys import Signer
from adapters.evm.nonces import NonceManager
from adapters.evm.receipts import ReceiptWatcher
from adapters.evm.reverts import (
    is_already_known,
    is_insufficient_funds,
    is_nonce_too_low,
    rpc_error_message,
)
from adapters.evm.rpc import JsonRpc, RpcError
from engine.reasons import OrderFailReason

log = structlog.get_logger("adapters.evm.sender")

AMBIGUOUS_SEND_ERRORS: tuple[type[BaseException], ...] = (
    TimeoutError,
    aiohttp.ClientError,
    ConnectionError,
    ProviderConnectionError,
)


OnSigned = Callable[[int, str], Awaitable[None]]  # (nonce, tx hash), before the send


class SendRejectedError(RuntimeError):
    """The node refused the transaction; nothing was sent and no nonce was used."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class SentTx:
    """A transaction the node accepted (or may have: ``ambiguous``)."""

    nonce: int
    tx_hash: str
    tx: dict[str, Any]
    fees: Fees
    sent_at: float
    ambiguous: bool = False


class TransactionSender:
    def __init__(
        self,
        rpc: JsonRpc,
        signer: Signer,
        chain_id: int,
        nonces: NonceManager,
        receipts: ReceiptWatcher,
        max_nonce_retries: int = 3,
    ) -> None:
        self.rpc = rpc
        self.signer = signer
        self.chain_id = chain_id
        self.nonces = nonces
        self.receipts = receipts
        self.max_nonce_retries = max_nonce_retries

    def _sign(self, tx: dict[str, Any]) -> tuple[bytes, str]:
        signed = self.signer.sign(tx)
        return bytes(signed.raw_transaction), "0x" + bytes(signed.hash).hex()

    async def _send_raw(self, raw: bytes, tx_hash: str) -> bool:
        """True if accepted; False if ambiguous; raises RpcError when refused."""
        try:
            await self.rpc.send_raw(raw)
        except RpcError as exc:
            if is_already_known(exc):
                return True
            raise
        except AMBIGUOUS_SEND_ERRORS as exc:
            log.warning("tx.send_ambiguous", tx_hash=tx_hash, error=type(exc).__name__)
            return False
        return True

    async def _sign_and_send(
        self, tx: dict[str, Any], on_signed: OnSigned | None
    ) -> tuple[str, bool]:
        """Sign and send ``tx``, its receipt watched from before the send (so a fast
        miner cannot beat us); ``(tx_hash, accepted)``. An RpcError unwatches it.

        ``on_signed(nonce, tx_hash)`` runs between signing and sending: the executor
        journals the transaction there, so a crash can never leave a sent swap that the
        journal does not know (write-ahead)."""
        raw, tx_hash = self._sign(tx)
        self.receipts.watch(tx_hash)
        try:
            if on_signed is not None:
                await on_signed(tx["nonce"], tx_hash)
            return tx_hash, await self._send_raw(raw, tx_hash)
        except BaseException:  # refused, or not sent at all: nothing to watch
            self.receipts.forget(tx_hash)
            raise

    async def send(
        self,
        to: str,
        data: str,
        gas: int,
        fees: Fees,
        value: int = 0,
        on_signed: OnSigned | None = None,
    ) -> SentTx:
        """Sign with the next nonce and send; raises SendRejectedError if refused."""
        async with self.nonces.lock:
            for _attempt in range(self.max_nonce_retries):
                nonce = await self.nonces.next_nonce()
                tx = {
                    "type": 2,
                    "chainId": self.chain_id,
                    "nonce": nonce,
                    "to": to,
                    "data": data,
                    "value": value,
                    "gas": gas,
                    "maxFeePerGas": fees.max_fee_per_gas,
                    "maxPriorityFeePerGas": fees.max_priority_fee_per_gas,
                }
                try:
                    tx_hash, accepted = await self._sign_and_send(tx, on_signed)
                except RpcError as exc:
                    if is_nonce_too_low(exc):
                        fresh = await self.nonces.resync()
                        log.warning("nonce.resync", tried=nonce, chain_next=fresh)
                        continue
                    message = rpc_error_message(exc)
                    reason = (
                        OrderFailReason.INSUFFICIENT_FUNDS_FOR_GAS
                        if is_insufficient_funds(exc)
                        else OrderFailReason.SEND_REJECTED
                    )
                    raise SendRejectedError(reason, message) from None
                self.nonces.consume(nonce, tx_hash)
                self.receipts.nudge()
                return SentTx(nonce, tx_hash, tx, fees, time.monotonic(), not accepted)
        raise SendRejectedError(
            OrderFailReason.NONCE_RESYNC_FAILED, f"{self.max_nonce_retries} attempts"
        )

    async def rebroadcast(self, sent: SentTx) -> bool:
        """Send ``sent`` again byte for byte, to a node that lost it or never got it (an
        ambiguous send): same hash, same nonce, so it can still be mined only once.
        True if accepted; raises RpcError when refused (e.g. its nonce is used)."""
        raw, tx_hash = self._sign(sent.tx)  # deterministic (RFC 6979): the same bytes
        log.warning("tx.rebroadcast", tx_hash=tx_hash, nonce=sent.nonce)
        return await self._send_raw(raw, tx_hash)

    async def replace(
        self, sent: SentTx, fees: Fees, on_signed: OnSigned | None = None
    ) -> SentTx | None:
        """Re-sign ``sent`` with the same nonce and higher fees; None if the node refused.

        Only one transaction per nonce can be mined, so this can never execute an
        order twice.
        """
        async with self.nonces.lock:
            tx = {
                **sent.tx,
                "maxFeePerGas": fees.max_fee_per_gas,
                "maxPriorityFeePerGas": fees.max_priority_fee_per_gas,
            }
            try:
                tx_hash, accepted = await self._sign_and_send(tx, on_signed)
            except RpcError as exc:
                log.info("tx.replace_refused", nonce=sent.nonce, error=rpc_error_message(exc))
                return None
            self.nonces.add_replacement(sent.nonce, tx_hash)
            self.receipts.nudge()
            return replace(
                sent,
                tx_hash=tx_hash,
                tx=tx,
                fees=fees,
                sent_at=time.monotonic(),
                ambiguous=not accepted,
            )
