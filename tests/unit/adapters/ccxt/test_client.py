"""Retrying ccxt calls: exponential backoff with equal jitter, Retry-After as the floor."""

from __future__ import annotations

import email.utils
import random
from types import SimpleNamespace
from typing import Any

import ccxt
import pytest

from adapters.ccxt.client import (
    backoff_delay,
    call_with_retry,
    retry_after_seconds,
    retry_delay,
)

NOW = 1_700_000_000.0


def stub_exchange(headers: dict[str, str] | None = None) -> Any:
    """What the retry reads of a ccxt client: its id and the last answer's headers."""
    return SimpleNamespace(id="stub", last_response_headers=headers)


class Failing:
    """A call failing with ``errors`` in turn (setting the answer's headers), then "ok"."""

    def __init__(self, exchange: Any, *errors: tuple[Exception, dict[str, str] | None]) -> None:
        self.exchange = exchange
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if not self.errors:
            return "ok"
        error, headers = self.errors.pop(0)
        self.exchange.last_response_headers = headers
        raise error


class Sleeps(list[float]):
    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


async def retry(call: Failing, sleeps: Sleeps, **kwargs: Any) -> str:
    args: dict[str, Any] = {
        "retries": 5,
        "backoff_initial": 0.5,
        "backoff_max": 4.0,
        "random": lambda: 0.5,
        "sleep": sleeps,
    }
    return await call_with_retry(call.exchange, call, **{**args, **kwargs})


# -- Retry-After -----------------------------------------------------------------------


@pytest.mark.parametrize("error", [ccxt.RateLimitExceeded("429"), ccxt.DDoSProtection("418")])
async def test_retry_after_on_a_429_or_418_is_the_minimum_wait(error):
    call = Failing(stub_exchange(), (error, {"Retry-After": "7"}))
    sleeps = Sleeps()
    assert await retry(call, sleeps, random=lambda: 0.999) == "ok"
    assert sleeps == [7.0]  # the jittered backoff (< 1 s) asked for less


async def test_a_short_retry_after_does_not_shorten_the_backoff():
    call = Failing(stub_exchange(), (ccxt.RateLimitExceeded("429"), {"retry-after": "0.1"}))
    sleeps = Sleeps()
    await retry(call, sleeps)
    assert sleeps == [0.75]  # 0.5 + 0.5 * 0.5


def test_retry_after_as_an_http_date_counts_from_now():
    when = email.utils.formatdate(NOW + 30, usegmt=True)
    exchange = stub_exchange({"Retry-After": when})
    assert retry_after_seconds(exchange, ccxt.RateLimitExceeded("429"), now=NOW) == 30.0
    past = email.utils.formatdate(NOW - 30, usegmt=True)
    exchange = stub_exchange({"Retry-After": past})
    assert retry_after_seconds(exchange, ccxt.RateLimitExceeded("429"), now=NOW) == 0.0


@pytest.mark.parametrize("value", ["soon", "-5", "inf", "nan", ""])
def test_an_unreadable_or_meaningless_retry_after_is_ignored(value):
    exchange = stub_exchange({"Retry-After": value})
    assert retry_after_seconds(exchange, ccxt.RateLimitExceeded("429"), now=NOW) == 0.0


def test_retry_after_is_read_only_for_rate_limit_answers():
    # A timeout has no answer of its own: the headers are an earlier request's.
    exchange = stub_exchange({"Retry-After": "30"})
    assert retry_after_seconds(exchange, ccxt.RequestTimeout("slow")) == 0.0
    assert retry_after_seconds(exchange, ccxt.ExchangeNotAvailable("503")) == 0.0
    assert retry_after_seconds(stub_exchange(None), ccxt.RateLimitExceeded("429")) == 0.0


# -- jitter ----------------------------------------------------------------------------


def test_jitter_stays_between_the_backoff_and_twice_the_backoff():
    source = random.Random(7)
    for attempt in range(8):
        floor = backoff_delay(attempt, 0.5, 4.0)
        delays = [retry_delay(attempt, 0.5, 4.0, random=source.random) for _ in range(500)]
        assert floor <= min(delays) < floor * 1.1  # spread over the whole window ...
        assert floor * 1.9 < max(delays) < 2 * floor  # ... up to, not reaching, twice
    assert retry_delay(9, 0.5, 4.0, random=lambda: 0.0) == 4.0  # capped
    assert retry_delay(9, 0.5, 4.0, random=lambda: 0.999) < 8.0


async def test_the_injected_random_source_makes_the_waits_exact():
    errors = [(ccxt.ExchangeNotAvailable("503"), None)] * 5
    sleeps = Sleeps()
    await retry(
        Failing(stub_exchange(), *errors), sleeps, random=iter([0, 1e-9, 0.5, 0.25, 0.75]).__next__
    )
    assert sleeps == [0.5, 1.0 + 1e-9, 3.0, 5.0, 7.0]  # 0.5, 1, 2, 4, then capped at 4


# -- giving up -------------------------------------------------------------------------


async def test_gives_up_after_the_last_retry_with_the_last_error():
    errors = [(ccxt.RequestTimeout(f"timeout {i}"), None) for i in range(4)]
    call = Failing(stub_exchange(), *errors)
    sleeps = Sleeps()
    with pytest.raises(ccxt.RequestTimeout, match="timeout 3"):
        await retry(call, sleeps, retries=3)
    assert call.calls == 4  # the first attempt and three retries
    assert len(sleeps) == 3


async def test_an_error_that_cannot_fix_itself_is_not_retried():
    call = Failing(stub_exchange(), (ccxt.BadSymbol("no such market"), None))
    sleeps = Sleeps()
    with pytest.raises(ccxt.BadSymbol):
        await retry(call, sleeps)
    assert (call.calls, sleeps) == (1, [])
