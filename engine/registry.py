"""Turns component entries of the engine config into component instances.

A component type is a built-in short name or an import path ``package.module:Class``.
Resolving by path keeps ``engine`` free of imports from ``adapters`` and
``strategies`` while still letting the config wire them in. A component class has a
``Config`` pydantic model for its settings and is built as
``Class(name, settings, context, depends_on)``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import CollectorRegistry
from pydantic import BaseModel, ValidationError

from engine.bus import EventBus
from engine.clock import Clock
from engine.component import Component
from engine.config import ComponentConfig, Secrets, describe_error, format_location

BUILTIN_COMPONENTS: dict[str, str] = {
    "heartbeat": "engine.heartbeat:HeartbeatSource",
    "journal": "engine.journal:Journal",
    "ccxt": "adapters.market.ccxt_feed:CcxtBarFeed",
    "replay": "adapters.market.replay:ReplayMarketData",
    "features": "strategies.feature_engine:FeatureEngine",
    "ml_direction": "strategies.ml_direction:MLDirectionStrategy",
    "strategy_configs": "strategies.strategy_configs:StrategyConfigs",
    "model_monitor": "strategies.model_monitor:ModelMonitor",
    "uniswap_v2_executor": "adapters.execution.uniswap_v2:UniswapV2Executor",
    "uniswap_v2_pool": "adapters.market.uniswap_v2_pool:UniswapV2PoolFeed",
    "local_chain": "adapters.chain.local_chain:LocalChain",
    "risk": "engine.risk:RiskManager",
    "portfolio": "engine.portfolio:Portfolio",
    "paper_executor": "adapters.execution.paper:PaperExecutor",
    "prediction_api": "strategies.prediction_api:PredictionApi",
}


@dataclass(frozen=True, slots=True)
class ComponentContext:
    """What every component may use, handed over at construction."""

    bus: EventBus
    clock: Clock
    metrics_registry: CollectorRegistry
    secrets: Secrets


class ComponentFactory(Protocol):
    Config: type[BaseModel]
    needs_wall_clock: bool

    def __call__(
        self, name: str, settings: Any, context: ComponentContext, depends_on: tuple[str, ...]
    ) -> Component: ...


class UnknownComponentTypeError(LookupError):
    pass


def resolve_component_type(type_name: str) -> ComponentFactory:
    """The component class for a built-in name or ``module:Class`` path."""
    path = BUILTIN_COMPONENTS.get(type_name, type_name)
    module_name, _, attr = path.partition(":")
    if not attr:
        known = ", ".join(sorted(BUILTIN_COMPONENTS))
        raise UnknownComponentTypeError(
            f"unknown component type {type_name!r} (built-in: {known}; "
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
