"""Finding another component of the same engine.

Components built from config get only a :class:`~engine.registry.ComponentContext`.
One that needs a handle on another (the risk manager on its portfolio, an executor on
the journal or the local chain) looks it up here, scoped to the engine by its bus, by
the component's class and a key (its name, or the journal's file).
"""

from __future__ import annotations

from typing import Any, TypeVar
from weakref import WeakKeyDictionary

from engine.bus import EventBus

C = TypeVar("C")

_BY_ENGINE: WeakKeyDictionary[EventBus, dict[tuple[type, str], Any]] = WeakKeyDictionary()


def register(bus: EventBus, kind: type[C], key: str, component: C) -> None:
    """Make ``component`` findable on ``bus``'s engine as a ``kind`` under ``key``."""
    _BY_ENGINE.setdefault(bus, {})[(kind, key)] = component


def find(bus: EventBus, kind: type[C], key: str) -> C | None:
    """The component of class ``kind`` registered under ``key`` on ``bus``'s engine."""
    found = _BY_ENGINE.get(bus, {}).get((kind, key))
    return found if isinstance(found, kind) else None
