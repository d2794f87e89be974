"""The REST side of ccxt: building a client and retrying its calls.

:func:`create_exchange` builds an async ccxt client with its rate limiter on, optionally
pointed at one base URL (a proxy, or the tests' local server). :func:`call_with_retry`
retries what can fix itself (dropped connections, timeouts, 429/418 and 5xx answers)
and the bar feed's reconnection loop waits by the same rule, :func:`retry_delay`:

* exponential backoff, doubling from ``initial`` up to ``maximum``;
* equal jitter on top: a uniform random extra of up to the same again, so clients that
  failed together do not retry together. The deterministic delay stays the floor (the
  configured first wait is the shortest one), the longest wait is twice ``maximum``;
* never shorter than the server's ``Retry-After`` on a 429 or 418.

The random source is a parameter (``random.random`` by default) so tests are exact.
"""

from __future__ import annotations

import asyncio
import difflib
import email.utils
import math
import random as random_module
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

import ccxt
import ccxt.async_support
import ccxt.pro
import structlog

T = TypeVar("T")
Random = Callable[[], float]  # uniform in [0, 1)
Sleep = Callable[[float], Awaitable[None]]

log = structlog.get_logger("adapters.ccxt.client")

# 429/418 (DDoSProtection, RateLimitExceeded), 5xx (ExchangeNotAvailable), timeouts and
# dropped connections all derive from NetworkError: worth retrying. Anything else ccxt
# raises (bad symbol, bad request) will not fix itself.
RETRYABLE_ERRORS: tuple[type[Exception], ...] = (ccxt.NetworkError,)
# The answers that carry a Retry-After worth obeying: 429 and Binance's 418 ban.
RATE_LIMIT_ERRORS: tuple[type[Exception], ...] = (ccxt.DDoSProtection, ccxt.RateLimitExceeded)


class UnknownExchangeError(ValueError):
    """The exchange id is not one ccxt knows."""


# -- building the client ---------------------------------------------------------------


def rebase_urls(urls: Any, base_url: str) -> Any:
    """``urls`` (ccxt's ``urls['api']`` tree) with every host replaced by ``base_url``.

    Paths are kept, so ``https://api.binance.com/api/v3`` becomes ``<base>/api/v3`` and
    ``wss://stream.binance.com:9443/ws`` becomes ``ws(s)://<base host>/ws``: one local
    server or proxy then stands in for all of an exchange's hosts, and no request can
    leave for the real ones.
    """
    if isinstance(urls, Mapping):
        return {key: rebase_urls(value, base_url) for key, value in urls.items()}
    if not isinstance(urls, str) or "://" not in urls:
        return urls
    base = urlsplit(base_url.rstrip("/"))
    original = urlsplit(urls)
    scheme = base.scheme
    if original.scheme in ("ws", "wss"):
        scheme = "wss" if base.scheme == "https" else "ws"
    query = f"?{original.query}" if original.query else ""
    return f"{scheme}://{base.netloc}{base.path}{original.path}{query}"


def create_exchange(
    exchange_id: str,
    *,
    streaming: bool = False,
    api_base_url: str | None = None,
    urls: Mapping[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
    rate_limit_ms: float | None = None,
    timeout_seconds: float = 10.0,
) -> ccxt.async_support.Exchange:
    """An async ccxt client with its rate limiter on (ccxt.pro's class if ``streaming``).

    ``api_base_url`` redirects every host (see :func:`rebase_urls`); ``urls`` is then
    deep-merged into ``urls['api']`` for finer overrides. Must be called inside the
    event loop that will use the client.
    """
    module = ccxt.pro if streaming else ccxt.async_support
    known = ccxt.pro.exchanges if streaming else ccxt.exchanges
    if exchange_id not in known:
        raise UnknownExchangeError(_unknown_exchange_message(exchange_id, streaming))
    config: dict[str, Any] = {
        "enableRateLimit": True,
        "timeout": int(timeout_seconds * 1000),
        "options": dict(options or {}),
    }
    if rate_limit_ms is not None:
        config["rateLimit"] = rate_limit_ms
    exchange: ccxt.async_support.Exchange = getattr(module, exchange_id)(config)
    if api_base_url:
        exchange.urls["api"] = rebase_urls(exchange.urls["api"], api_base_url)
    if urls:
        exchange.urls["api"] = exchange.deep_extend(exchange.urls["api"], dict(urls))
    return exchange


def _unknown_exchange_message(exchange_id: str, streaming: bool) -> str:
    if streaming and exchange_id in ccxt.exchanges:
        return f"exchange {exchange_id!r} has no ccxt.pro (websocket) support; use mode 'poll'"
    close = difflib.get_close_matches(exchange_id.lower(), ccxt.exchanges, n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    return f"unknown exchange {exchange_id!r}{hint}; see ccxt.exchanges for the list"


# -- retrying --------------------------------------------------------------------------


def backoff_delay(attempt: int, initial: float, maximum: float) -> float:
    """The deterministic delay before retry number ``attempt`` (0-based): doubling, capped."""
    return min(maximum, initial * 2**attempt)


def retry_after_seconds(
    exchange: ccxt.async_support.Exchange, error: Exception, now: float | None = None
) -> float:
    """The ``Retry-After`` of a 429/418 answer in seconds (0 when absent or unreadable).

    Both forms of the header are read: delay-seconds (``120``) and an HTTP date
    (``Wed, 21 Oct 2015 07:28:00 GMT``, counted from ``now``, the wall clock by default).
    ccxt records the failed answer's headers before it raises, so they belong to
    ``error``; other errors (timeouts, dropped connections) have no answer of their own.
    """
    if not isinstance(error, RATE_LIMIT_ERRORS):
        return 0.0
    headers = exchange.last_response_headers or {}
    value = next((str(v) for k, v in headers.items() if k.lower() == "retry-after"), None)
    if value is None:
        return 0.0
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return 0.0
        seconds = when.timestamp() - (time.time() if now is None else now)
    return seconds if math.isfinite(seconds) and seconds > 0 else 0.0


def retry_delay(
    attempt: int,
    initial: float,
    maximum: float,
    retry_after: float = 0.0,
    random: Random = random_module.random,
) -> float:
    """Seconds to wait before retry number ``attempt``: the backoff with equal jitter
    (``d + U[0, d)``, ``d`` = :func:`backoff_delay`), and at least ``retry_after``."""
    delay = backoff_delay(attempt, initial, maximum)
    return max(delay + delay * random(), retry_after)


async def call_with_retry(
    exchange: ccxt.async_support.Exchange,
    call: Callable[[], Awaitable[T]],
    *,
    retries: int,
    backoff_initial: float,
    backoff_max: float,
    what: str = "request",
    random: Random = random_module.random,
    sleep: Sleep = asyncio.sleep,
) -> T:
    """``await call()``, retrying network errors, 429s and 5xx after :func:`retry_delay`.

    After ``retries`` failed retries (``retries + 1`` attempts) the last error is raised.
    """
    for attempt in range(retries + 1):
        try:
            return await call()
        except RETRYABLE_ERRORS as exc:
            if attempt >= retries:
                raise
            delay = retry_delay(
                attempt,
                backoff_initial,
                backoff_max,
                retry_after_seconds(exchange, exc),
                random,
            )
            log.warning(
                "ccxt.retry",
                exchange=exchange.id,
                what=what,
                error=type(exc).__name__,
                attempt=attempt + 1,
                delay_s=delay,
            )
            await sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover
