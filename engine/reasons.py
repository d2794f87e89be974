"""Stable reason codes: why risk refused a signal, and why an order failed.

Dashboards, alerts, docs/metrics.md and tests match on these strings, so a value never
changes once published. Events carry them as plain strings (``str(reason)``).
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Stable reason codes of ``RiskRejected`` (dashboards and tests match on them)."""

    HALTED = "HALTED"
    REDUCING_ONLY = "REDUCING_ONLY"
    DAILY_LOSS_LIMIT = "DAILY_LOSS_LIMIT"
    DRAWDOWN_HALT = "DRAWDOWN_HALT"
    JOURNAL_UNAVAILABLE = "JOURNAL_UNAVAILABLE"  # a halt: the journal could not write
    SUBSCRIBER_FAILED = "SUBSCRIBER_FAILED"  # a halt: another critical subscriber failed
    UNKNOWN_SYMBOL = "UNKNOWN_SYMBOL"
    DUPLICATE_SIGNAL = "DUPLICATE_SIGNAL"
    STALE_MARKET_DATA = "STALE_MARKET_DATA"
    GAS_PRICE_CAP = "GAS_PRICE_CAP"
    RATE_LIMIT = "RATE_LIMIT"
    INSUFFICIENT_BALANCE = "INSUFFICIENT_BALANCE"
    NO_POSITION = "NO_POSITION"
    MIN_ORDER_SIZE = "MIN_ORDER_SIZE"
    MAX_ORDER_NOTIONAL = "MAX_ORDER_NOTIONAL"
    MAX_POSITION = "MAX_POSITION"
    NO_POOL_RESERVES = "NO_POOL_RESERVES"
    MAX_PRICE_IMPACT = "MAX_PRICE_IMPACT"
    MAX_SLIPPAGE = "MAX_SLIPPAGE"


class OrderFailReason(StrEnum):
    """Reason codes of ``OrderFailed`` that the paper and live executors report.

    A swap the chain reverts reports the revert message's trailing code, so
    ``OrderFailed.reason`` may also be a router code not named here.
    """

    # The request itself (both executors, before quoting).
    UNKNOWN_SYMBOL = "UNKNOWN_SYMBOL"
    INVALID_AMOUNT = "INVALID_AMOUNT"
    INVALID_SLIPPAGE = "INVALID_SLIPPAGE"
    # The pool or router would revert (both executors).
    INSUFFICIENT_LIQUIDITY = "INSUFFICIENT_LIQUIDITY"
    INSUFFICIENT_INPUT_AMOUNT = "INSUFFICIENT_INPUT_AMOUNT"
    INSUFFICIENT_OUTPUT_AMOUNT = "INSUFFICIENT_OUTPUT_AMOUNT"
    EXPIRED = "EXPIRED"
    TRANSFER_FROM_FAILED = "TRANSFER_FROM_FAILED"
    # Before sending (live executor).
    POOL_NOT_SETTLED = "POOL_NOT_SETTLED"
    APPROVAL_FAILED = "APPROVAL_FAILED"
    APPROVAL_PENDING = "APPROVAL_PENDING"
    GAS_PRICE_ABOVE_CAP = "GAS_PRICE_ABOVE_CAP"
    RPC_UNAVAILABLE = "RPC_UNAVAILABLE"
    QUOTE_TIMEOUT = "QUOTE_TIMEOUT"  # not quoted and signed within quote_timeout_seconds
    RPC_ERROR = "RPC_ERROR"
    INSUFFICIENT_BALANCE = "INSUFFICIENT_BALANCE"
    INSUFFICIENT_ALLOWANCE = "INSUFFICIENT_ALLOWANCE"
    JOURNAL_UNAVAILABLE = "JOURNAL_UNAVAILABLE"  # the journal could not record it: not sent
    # Sending (live executor): the node refused the transaction.
    SEND_REJECTED = "SEND_REJECTED"
    INSUFFICIENT_FUNDS_FOR_GAS = "INSUFFICIENT_FUNDS_FOR_GAS"
    NONCE_RESYNC_FAILED = "NONCE_RESYNC_FAILED"
    # After sending (live executor).
    DROPPED = "DROPPED"
    NOT_SENT = "NOT_SENT"
    NO_SWAP_EVENT = "NO_SWAP_EVENT"
    REVERTED = "REVERTED"
    OUT_OF_GAS = "OUT_OF_GAS"
    INTERNAL_ERROR = "INTERNAL_ERROR"
