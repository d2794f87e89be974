"""Turns component entries of the engine config into component instances.

A component type is a name registered under the ``trade_engine.components`` entry
points (``pyproject.toml``; any installed package can add its own), and nothing else:
a config names a type, never a module, so a config file cannot make the engine
import code that was not installed to be a component. Resolving by name keeps
``engine`` free of imports from the packages that implement the components while
still letting the config wire them in. A component class has a ``Config`` pydantic
model for its settings and is built as ``Class(name, settings, context, depends_on)``.
"""

from __future__ import annotations

import difflib
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Protocol

from pydantic import BaseModel, ValidationError

from engine.component import Component, ComponentContext
from engine.config import ComponentConfig, describe_error, format_location, shorten

COMPONENT_TYPES_GROUP = "trade_engine.components"


def component_types() -> dict[str, EntryPoint]:
    """Registered component types by name (the ``trade_engine.components`` entry points)."""
    return {ep.name: ep for ep in entry_points(group=COMPONENT_TYPES_GROUP)}


class ComponentFactory(Protocol):
    Config: type[BaseModel]
    needs_wall_clock: bool

    def __call__(
        self, name: str, settings: Any, context: ComponentContext, depends_on: tuple[str, ...]
    ) -> Component: ...


class UnknownComponentTypeError(LookupError):
    pass


def resolve_component_type(type_name: str) -> ComponentFactory:
    """The component class registered as ``type_name``."""
    registered = component_types()
    entry_point = registered.get(type_name)
    if entry_point is None:
        close = difflib.get_close_matches(type_name, list(registered), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UnknownComponentTypeError(
            f"unknown component type {shorten(repr(type_name))}{hint} (registered: "
            f"{', '.join(sorted(registered))}; a package adds one under the "
            f"{COMPONENT_TYPES_GROUP!r} entry points)"
        )
    try:
        factory = entry_point.load()
    except (ImportError, AttributeError) as exc:  # an installed package is broken
        raise UnknownComponentTypeError(
            f"component type {type_name!r} ({entry_point.value}) cannot be loaded: {exc}"
        ) from None
    config_model = getattr(factory, "Config", None)
    if not (isinstance(factory, type) and issubclass(factory, Component)) or not (
        isinstance(config_model, type) and issubclass(config_model, BaseModel)
    ):
        raise UnknownComponentTypeError(
            f"{entry_point.value!r} (registered as {type_name!r}) is not a component class "
            "with a pydantic 'Config' model"
        )
    return factory  # type: ignore[return-value]


def validate_component_settings(entry: ComponentConfig, where: tuple[int | str, ...]) -> list[str]:
    """Problems with one component entry's type and settings, as config error lines."""
    try:
        factory = resolve_component_type(entry.type)
    except UnknownComponentTypeError as exc:
        return [f"{format_location((*where, 'type'))}: {exc}"]
    try:
        factory.Config.model_validate(entry.config)
    except ValidationError as exc:
        prefix = (*where, "config")
        return [describe_error(err, factory.Config, prefix) for err in exc.errors()]
    return []


def build_component(entry: ComponentConfig, context: ComponentContext) -> Component:
    factory = resolve_component_type(entry.type)
    settings = factory.Config.model_validate(entry.config)
    return factory(entry.name, settings, context, entry.depends_on)
