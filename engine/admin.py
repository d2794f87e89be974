"""The admin API's guard: a bearer token from ``ENGINE_ADMIN_TOKEN``, or no admin API.

With no token set, every admin route answers 403 saying how to enable it. Otherwise a
request needs ``Authorization: Bearer <token>``; a missing or wrong one gets 401. The
comparison is constant-time (of the two tokens' SHA-256 digests, so even the length
does not leak), and the token is never logged or echoed. ``GET /status`` is guarded the
same way when the API listens on an address other machines can reach
(:func:`is_loopback`).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from typing import Any, Protocol

import structlog
from aiohttp import web
from pydantic import SecretStr

log = structlog.get_logger("engine.admin")

ADMIN_DISABLED = "admin API disabled: set ENGINE_ADMIN_TOKEN"


class AdminControls(Protocol):
    """What the admin routes act on (the engine implements it)."""

    def halt(self, reason: str) -> list[dict[str, Any]]: ...

    def resume(self) -> list[dict[str, Any]]: ...

    async def reload_configs(self, trigger: str) -> list[dict[str, Any]]: ...

    async def operate_model(
        self, model: str, action: str, version: str | None
    ) -> dict[str, Any] | None:
        """``promote``/``rollback``/``retrain`` through the component operating ``model``;
        None when none does. Raises ``LookupError`` when the action cannot be taken."""
        ...


def is_loopback(host: str) -> bool:
    """True for an address only this machine can reach: 127.0.0.0/8, ``::1``,
    ``localhost``. A wildcard (``0.0.0.0``, ``::``) or any other name is not."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8")).digest()


class BearerTokenGuard:
    """Checks admin requests against the configured token."""

    def __init__(self, token: SecretStr | None) -> None:
        value = token.get_secret_value() if token is not None else ""
        self._expected = _digest(value) if value else None

    @property
    def enabled(self) -> bool:
        return self._expected is not None

    def refusal(self, request: web.Request) -> web.Response | None:
        """The error response for a request that may not use the admin API, else None."""
        if self._expected is None:
            return web.json_response({"error": ADMIN_DISABLED}, status=403)
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(
            _digest(given.strip()), self._expected
        ):
            return None
        log.warning(
            "admin.unauthorized",
            path=request.path,
            remote=request.remote,
            authorization="missing" if not scheme else "wrong",
        )
        return web.json_response(
            {"error": "admin API: missing or wrong bearer token"},
            status=401,
            headers={"WWW-Authenticate": 'Bearer realm="trade-engine admin"'},
        )
