"""Waits for transaction receipts: one poller for every transaction in flight.

Each poll asks the node for all awaited receipts in one JSON-RPC batch, so 200 orders
in flight cost one HTTP request per poll, not 200. A poll that fails (node down,
timeout) is logged and retried; a receipt that does not come simply keeps its
waiter waiting, which the executor turns into PENDING, never into a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

import structlog

log = structlog.get_logger("adapters.evm.receipts")

MAX_BATCH = 500


@dataclass(frozen=True, slots=True)
class Log:
    address: str  # lower-case hex
    topics: tuple[str, ...]
    data: str


@dataclass(frozen=True, slots=True)
class Receipt:
    tx_hash: str
    status: int
    block_number: int
    gas_used: int
    effective_gas_price: int
    logs: tuple[Log, ...]


def parse_receipt(raw: dict[str, Any]) -> Receipt:
    """A receipt from the node's raw JSON (hex quantities)."""
    return Receipt(
        tx_hash=raw["transactionHash"].lower(),
        status=int(raw["status"], 16),
        block_number=int(raw["blockNumber"], 16),
        gas_used=int(raw["gasUsed"], 16),
        effective_gas_price=int(raw.get("effectiveGasPrice") or "0x0", 16),
        logs=tuple(
            Log(entry["address"].lower(), tuple(t.lower() for t in entry["topics"]), entry["data"])
            for entry in raw.get("logs", ())
        ),
    )


class RpcFailedError(RuntimeError):
    """The node answered a batch with an error, or not at all."""


class ReceiptWatcher:
    """Resolves one future per awaited transaction hash when its receipt appears."""

    def __init__(self, provider: Any, poll_seconds: float = 0.5) -> None:
        self._provider = provider
        self.poll_seconds = poll_seconds
        self._waiting: dict[str, asyncio.Future[Receipt]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.failed_polls = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="receipts")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for future in self._waiting.values():
            future.cancel()
        self._waiting.clear()

    def watch(self, tx_hash: str) -> asyncio.Future[Receipt]:
        """The future of ``tx_hash``'s receipt (register before sending)."""
        key = tx_hash.lower()
        future = self._waiting.get(key)
        if future is None or future.done():
            if not self._waiting:
                self._wake.set()  # the poller idles while nothing is awaited
            future = asyncio.get_running_loop().create_future()
            self._waiting[key] = future
        return future

    def forget(self, tx_hash: str) -> None:
        future = self._waiting.pop(tx_hash.lower(), None)
        if future is not None and not future.done():
            future.cancel()

    def nudge(self) -> None:
        """Poll now: a transaction was just sent (with automine it is already mined)."""
        self._wake.set()

    async def fetch(self, tx_hashes: list[str]) -> dict[str, Receipt]:
        """Receipts of those hashes that are mined, in batches; raises RpcFailedError."""
        found: dict[str, Receipt] = {}
        for start in range(0, len(tx_hashes), MAX_BATCH):
            chunk = tx_hashes[start : start + MAX_BATCH]
            try:
                replies = await self._provider.make_batch_request(
                    [("eth_getTransactionReceipt", [h]) for h in chunk]
                )
            except Exception as exc:
                raise RpcFailedError(f"{type(exc).__name__}: {exc}") from None
            if not isinstance(replies, list):
                raise RpcFailedError(f"batch refused: {replies.get('error')}")
            for reply in replies:
                result = reply.get("result") if isinstance(reply, dict) else None
                if result:
                    receipt = parse_receipt(result)
                    found[receipt.tx_hash] = receipt
        return found

    async def _run(self) -> None:
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
        # cancellation that lands as its timeout fires, and stop() then waited forever
        # (seen as a rare hang with a 20 ms poll interval).
        while self._task is not None:
            try:
                if self._waiting:
                    async with asyncio.timeout(self.poll_seconds):
                        await self._wake.wait()
                else:
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self._poll_once()
            except Exception as exc:  # the poller must outlive any bad reply
                self.failed_polls += 1
                log.error("receipts.poll_crashed", error=f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(self.poll_seconds)

    async def _poll_once(self) -> None:
        hashes = [h for h, f in self._waiting.items() if not f.done()]
        if not hashes:
            return
        try:
            found = await self.fetch(hashes)
        except RpcFailedError as exc:
            self.failed_polls += 1
            log.warning("receipts.poll_failed", waiting=len(hashes), error=str(exc))
            await asyncio.sleep(self.poll_seconds)
            return
        for tx_hash, receipt in found.items():
            future = self._waiting.pop(tx_hash, None)
            if future is not None and not future.done():
                future.set_result(receipt)
