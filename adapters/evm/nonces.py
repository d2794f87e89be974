"""Nonces for one account, handed out under one ``asyncio.Lock`` so orders never collide.

The lock is held from choosing a nonce until the node has accepted (or ambiguously
not answered) the transaction signed with it, so a rejected transaction never leaves
a gap. ``pending`` remembers every hash sent per nonce (a replacement adds one) until
the nonce is mined. "nonce too low" means someone else used the account: ``resync``
reads the pending count from the chain.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


class NonceManager:
    """Local view of the next nonce, the pending ones, and how often it resynced."""

    def __init__(self, fetch_pending_count: Callable[[], Awaitable[int]]) -> None:
        self._fetch = fetch_pending_count
        self.lock = asyncio.Lock()
        self._next: int | None = None
        self.pending: dict[int, list[str]] = {}
        self.resyncs = 0

    async def next_nonce(self) -> int:
        """The nonce to use now; call with :attr:`lock` held."""
        assert self.lock.locked(), "next_nonce() needs the lock"
        if self._next is None:
            self._next = await self._fetch()
        return self._next

    def consume(self, nonce: int, tx_hash: str) -> None:
        """Record that ``tx_hash`` went out with ``nonce``; call with the lock held."""
        assert self._next == nonce, f"consume({nonce}) but next is {self._next}"
        self.pending.setdefault(nonce, []).append(tx_hash)
        self._next = nonce + 1

    def add_replacement(self, nonce: int, tx_hash: str) -> None:
        self.pending.setdefault(nonce, []).append(tx_hash)

    def mined(self, nonce: int) -> None:
        self.pending.pop(nonce, None)

    async def resync(self) -> int:
        """Re-read the next nonce from the chain (after "nonce too low"); lock held."""
        assert self.lock.locked(), "resync() needs the lock"
        self.resyncs += 1
        fetched = await self._fetch()
        self._next = fetched
        return fetched

    @property
    def next_known(self) -> int | None:
        return self._next
