"""What the executor knows about each order it handles, and what the journal keeps."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from adapters.evm.sender import SentTx


class OrderStatus(StrEnum):
    QUOTING = "QUOTING"
    SUBMITTED = "SUBMITTED"
    PENDING = "PENDING"
    FILLED = "FILLED"
    FAILED = "FAILED"


TERMINAL = (OrderStatus.FILLED, OrderStatus.FAILED)


@dataclass(frozen=True, slots=True)
class SubmittedRecord:
    """What the journal keeps of an ``OrderSubmitted``: enough to reconcile."""

    order_id: str
    tx_hash: str
    nonce: int


@dataclass
class TrackedOrder:
    order_id: str
    correlation_id: str = ""
    status: OrderStatus = OrderStatus.QUOTING
    nonce: int | None = None
    sent: list[SentTx] = field(default_factory=list)
    tx_hashes: list[str] = field(default_factory=list)
    reason: str = ""
    can_replace: bool = True
