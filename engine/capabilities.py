"""What a component may offer the daemon beyond its lifecycle, as protocols.

The engine (``engine/app.py``) finds these by ``isinstance`` on the components it runs,
so it names no class of another package: a risk manager can be halted and resumed, a
component can add to ``GET /status`` or offer HTTP routes, a strategy host reloads its
configs, and a replay ends by itself.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol, runtime_checkable

from aiohttp import web


@runtime_checkable
class Haltable(Protocol):
    """A risk manager: ``POST /admin/halt`` and ``/admin/resume`` act on it."""

    name: str
    risk_state: Any
    state_reason: str

    def halt(self, reason: str = ...) -> None: ...

    def resume(self) -> bool:
        """Back to trading; False when refused (the state is kept)."""
        ...


@runtime_checkable
class ReportsStatus(Protocol):
    """Adds its own entry to ``GET /status``."""

    def status(self) -> dict[str, Any]: ...


@runtime_checkable
class OffersRoutes(Protocol):
    """Serves HTTP routes on the engine's API (``POST /predict``)."""

    def http_routes(self) -> list[web.RouteDef]: ...


@runtime_checkable
class ReloadsConfigs(Protocol):
    """Re-reads its config files on ``POST /admin/reload`` and SIGHUP."""

    async def reload_configs(self, trigger: str) -> dict[str, Any]: ...


@runtime_checkable
class OperatesModel(Protocol):
    """Promotes, rolls back and retrains one model on operators' request (the retrain
    supervisor): ``POST /admin/models/{model}/promote|rollback|retrain``. Each raises
    ``LookupError`` with a message when the action cannot be taken (nothing to roll back
    to, no challenger)."""

    @property
    def model_name(self) -> str: ...

    async def operator_promote(self, version: str | None) -> dict[str, Any]: ...

    async def operator_rollback(self) -> dict[str, Any]: ...

    async def operator_retrain(self) -> dict[str, Any]: ...


@runtime_checkable
class FiniteSource(Protocol):
    """A source that ends by itself (a replay): ``finished`` is set when it has."""

    finished: asyncio.Event
