"""Turns component entries of the engine config into component instances.

A component type is a name registered under the ``trade_engine.components`` entry
points (``pyproject.toml``; any installed package can add its own) or an import path
``package.module:Class``. Resolving by name keeps ``engine`` free of imports from the
packages that implement the components while still letting the config wire them in.
A component class has a ``Config`` pydantic model for its settings and is built as
``Class(name, settings, context, depends_on)``.
"""

from __future__ import annotations

import importlib
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Protocol

from pydantic import BaseModel, ValidationError

from engine.component import Component, ComponentContext
from engine.config import ComponentConfig, describe_error, format_location

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
    """The component class for a registered type name or a ``module:Class`` path."""
    registered = component_types().get(type_name)
    path = registered.value if registered is not None else type_name
    module_name, _, attr = path.partition(":")
    if not attr:
        known = ", ".join(sorted(component_types()))
        raise UnknownComponentTypeError(
            f"unknown component type {type_name!r} (registered: {known}; "
            "or give 'package.module:Class')"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UnknownComponentTypeError(f"cannot import {module_name!r}: {exc}") from None
    factory = getattr(module, attr, None)
    if factory is None:
        raise UnknownComponentTypeError(f"module {module_name!r} has no {attr!r}")
    config_model = getattr(factory, "Config", None)
    if not (isinstance(factory, type) and issubclass(factory, Component)) or not (
        isinstance(config_model, type) and issubclass(config_model, BaseModel)
    ):
        raise UnknownComponentTypeError(
            f"{path!r} is not a component class with a pydantic 'Config' model"
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
