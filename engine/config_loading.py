"""Reading engine config files: YAML with errors that name the line, then validation.

:func:`load_engine_config` reads a file, validates it as an
:class:`~engine.config.EngineConfig` and each component's settings against its
registered type's ``Config`` model, and raises :class:`~engine.config.ConfigError`
with one line per problem.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from engine.config import ConfigError, EngineConfig, validation_problems
from engine.registry import validate_component_settings


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys instead of keeping the last one."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,  # type: ignore[arg-type]
)


def read_yaml(path: Path) -> dict[str, Any]:
    """Parse a YAML mapping, with errors that name the file, line and column."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(source, [f"cannot read: {exc.strerror or exc}"]) from None
    return parse_yaml(text, source)


def parse_yaml(text: str, source: str) -> dict[str, Any]:
    """Parse YAML text already read (e.g. hashed first) as a mapping; errors name ``source``."""
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(source, [f"{where}invalid YAML: {problem}"]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(source, [f"top level must be a mapping, got {type(data).__name__}"])
    return data


def parse_engine_config(data: dict[str, Any], source: str = "<config>") -> EngineConfig:
    """Validate a mapping as an :class:`EngineConfig`, including each component's settings."""
    try:
        config = EngineConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, validation_problems(exc, EngineConfig)) from None
    problems: list[str] = []
    for index, component in enumerate(config.components):
        problems += validate_component_settings(component, ("components", index))
    if problems:
        raise ConfigError(source, problems)
    return config


def load_engine_config(path: str | Path) -> EngineConfig:
    """Read, parse and fully validate an engine config file."""
    path = Path(path)
    return parse_engine_config(read_yaml(path), str(path))
