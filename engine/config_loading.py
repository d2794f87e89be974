"""Reading engine config files: YAML with errors that name the line, then validation.

:func:`load_engine_config` reads a file, validates it as an
:class:`~engine.config.EngineConfig` and each component's settings against its
registered type's ``Config`` model, and raises :class:`~engine.config.ConfigError`
with one line per problem. :func:`check_runnable` adds what only matters to a daemon
about to run it: at least one component, and the paths the components name exist
and are of the right kind (:mod:`engine.config_paths`).

Config files come from users and from watched directories, so reading one cannot
hang or exhaust the process: regular files only, at most :data:`MAX_CONFIG_BYTES`
(:mod:`engine.safe_files`), and YAML nested at most :data:`MAX_YAML_DEPTH` deep whose
aliases repeat at most :data:`MAX_ALIAS_VALUES` values (a "billion laughs" file is a
few hundred bytes that expand to 10^9 values).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from yaml.composer import ComposerError
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, SequenceNode
from yaml.scanner import ScannerError

from engine.config import ConfigError, EngineConfig, shorten, validation_problems
from engine.config_env import interpolate
from engine.config_paths import path_problems
from engine.registry import resolve_component_type, validate_component_settings
from engine.safe_files import read_regular_file

MAX_CONFIG_BYTES = 1024 * 1024
MAX_YAML_DEPTH = 64
MAX_ALIAS_VALUES = 10_000


class _SafeLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys, nesting deeper than :data:`MAX_YAML_DEPTH`
    and aliases that repeat more than :data:`MAX_ALIAS_VALUES` values in all."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._values: dict[int, int] = {}  # id(node) -> values it holds, aliases expanded
        self._repeated = 0  # values added by aliases so far

    # The scanner refuses deep nesting before the composer sees it: its bookkeeping of
    # possible keys costs time in proportion to the depth for every token.
    def fetch_flow_collection_start(self, TokenClass: Any) -> None:
        self._check_scanned_depth(self.flow_level + 1)
        super().fetch_flow_collection_start(TokenClass)

    def add_indent(self, column: int) -> bool:
        added = super().add_indent(column)
        if added:
            self._check_scanned_depth(self.flow_level)
        return added

    def _check_scanned_depth(self, flow_level: int) -> None:
        if flow_level + len(self.indents) > MAX_YAML_DEPTH:
            raise ScannerError(None, None, _TOO_DEEP, self.get_mark())

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        if self.check_event(AliasEvent):
            mark = self.peek_event().start_mark
            node = super().compose_node(parent, index)
            values = self._values.get(id(node))
            if values is None:
                raise ComposerError(None, None, "an alias inside the value it names", mark)
            self._repeated += values
            if self._repeated > MAX_ALIAS_VALUES:
                problem = f"aliases repeat more than {MAX_ALIAS_VALUES} values (the limit)"
                raise ComposerError(None, None, problem, mark)
            return node
        self._depth += 1
        if self._depth > MAX_YAML_DEPTH:
            raise ComposerError(None, None, _TOO_DEEP, self.peek_event().start_mark)
        node = super().compose_node(parent, index)
        self._depth -= 1
        if isinstance(node, SequenceNode):
            children: list[Node] = node.value
        elif isinstance(node, MappingNode):
            children = [child for pair in node.value for child in pair]
        else:
            children = []
        self._values[id(node)] = 1 + sum(self._values[id(child)] for child in children)
        return node


_TOO_DEEP = f"nested deeper than {MAX_YAML_DEPTH} levels (the limit)"


def _construct_mapping(loader: _SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {shorten(repr(key))}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node)


_SafeLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,  # type: ignore[arg-type]
)


def read_config_bytes(path: Path) -> bytes:
    """A config file's bytes: a regular file of at most :data:`MAX_CONFIG_BYTES`.

    Blocking (never on a FIFO or device: those are refused unopened); ConfigError
    naming the file otherwise.
    """
    try:
        return read_regular_file(path, MAX_CONFIG_BYTES)
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read: {exc.strerror or exc}"]) from None


def decode_text(data: bytes, source: str) -> str:
    """UTF-8 text of a config file's bytes; ConfigError naming ``source`` otherwise."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(source, [f"not UTF-8 text: {exc.reason} at byte {exc.start}"]) from None


def read_yaml(path: Path) -> dict[str, Any]:
    """Parse a YAML mapping, with errors that name the file, line and column."""
    return parse_yaml(decode_text(read_config_bytes(path), str(path)), str(path))


def parse_yaml(text: str, source: str) -> dict[str, Any]:
    """Parse YAML text already read (e.g. hashed first) as a mapping; errors name ``source``."""
    try:
        data = yaml.load(text, Loader=_SafeLoader)
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


def load_engine_config(path: str | Path, environ: Mapping[str, str] | None = None) -> EngineConfig:
    """Read, parse, interpolate ``${VAR}`` from ``environ`` (the process's by default;
    :mod:`engine.config_env`) and fully validate an engine config file."""
    path = Path(path)
    data = interpolate(read_yaml(path), os.environ if environ is None else environ, str(path))
    return parse_engine_config(data, str(path))


def check_runnable(config: EngineConfig, source: str = "<config>") -> None:
    """What a daemon needs beyond a valid file: at least one enabled component, and every
    path a component's settings name exists (or can be created) with the right kind."""
    if not config.enabled_components:
        raise ConfigError(
            source,
            [
                "components: none enabled, so the daemon would run nothing; add the "
                "components to run (docs/configuration.md lists the types)"
            ],
        )
    problems: list[str] = []
    for index, entry in enumerate(config.components):
        if entry.enabled:
            settings = resolve_component_type(entry.type).Config.model_validate(entry.config)
            problems += path_problems(settings, ("components", index, "config"))
    if problems:
        raise ConfigError(source, problems)


def load_runnable_config(path: str | Path) -> EngineConfig:
    """:func:`load_engine_config`, then :func:`check_runnable`: what `run` and `config
    check` read."""
    config = load_engine_config(path)
    check_runnable(config, str(path))
    return config
