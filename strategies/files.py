"""Strategy config files: one strategy instance per ``*.yaml`` in a directory.

The instance is named after the file's stem (``btc-usdt-1h.yaml`` → ``btc-usdt-1h``,
the same rule as component names); the body is an ``ml_direction`` strategy's
settings plus ``on_remove``. A file is validated whole before anything uses it, and
every problem is one line naming the file and the field, as engine configs are:
``config/strategies/x.yaml: high_confidence: must be < 1, got 1.5``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError

from engine.config import COMPONENT_NAME, ConfigError, validation_problems
from engine.config_loading import parse_yaml
from strategies.ml_direction import MLDirectionConfig

SUFFIX = ".yaml"
_NAME = re.compile(COMPONENT_NAME)


class StrategyFileConfig(MLDirectionConfig):
    """The body of one strategy config file."""

    on_remove: Literal["keep", "close"] = Field(
        "keep",
        description="When the file is deleted: `keep` leaves the strategy's position open, "
        "`close` publishes a SELL for its symbols (sized by the risk manager).",
    )


@dataclass(frozen=True, slots=True)
class StrategyFile:
    """A validated strategy config file, with the hash of the bytes it was read from."""

    name: str
    path: Path
    content_hash: str
    settings: StrategyFileConfig


def content_hash(data: bytes) -> str:
    """sha256 of a file's bytes, hex: what ``sha256sum FILE`` prints."""
    return hashlib.sha256(data).hexdigest()


def instance_name(path: Path) -> str:
    """The strategy instance a file configures; ConfigError if the stem is not a valid name."""
    name = path.name.removesuffix(SUFFIX)
    if not _NAME.match(name):
        raise ConfigError(
            str(path),
            [f"file name: {name!r} is not a valid strategy name (must match {COMPONENT_NAME})"],
        )
    return name


def config_paths(directory: Path) -> list[Path]:
    """The ``*.yaml`` files of ``directory`` (not hidden ones: editors' temporary files)."""
    return sorted(
        p for p in directory.iterdir() if p.name.endswith(SUFFIX) and not p.name.startswith(".")
    )


def parse_strategy_file(path: Path, data: bytes) -> StrategyFile:
    """Validate ``data`` (the bytes read from ``path``) whole; ConfigError lists every problem."""
    source = str(path)
    name = instance_name(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(source, [f"not UTF-8 text: {exc.reason} at byte {exc.start}"]) from None
    mapping = parse_yaml(text, source)
    try:
        settings = StrategyFileConfig.model_validate(mapping)
    except ValidationError as exc:
        raise ConfigError(source, validation_problems(exc, StrategyFileConfig)) from None
    return StrategyFile(name, path, content_hash(data), settings)


def read_config_dir(directory: Path) -> dict[Path, bytes | OSError]:
    """Every strategy file's bytes (or why it could not be read); blocking, run off-loop.

    A file deleted between listing and reading is left out, as if listed after.
    """
    contents: dict[Path, bytes | OSError] = {}
    for path in config_paths(directory):
        try:
            contents[path] = path.read_bytes()
        except FileNotFoundError:
            continue
        except OSError as exc:
            contents[path] = exc
    return contents


def read_strategy_file(path: Path) -> StrategyFile:
    """Read and validate one file (the hash is of exactly the bytes validated)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read: {exc.strerror or exc}"]) from None
    return parse_strategy_file(path, data)
