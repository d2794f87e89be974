"""Strategy config files: one strategy instance per ``*.yaml`` in a directory.

The instance is named after the file's stem (``btc-usdt-1h.yaml`` → ``btc-usdt-1h``,
the same rule as component names); the body is an ``ml_direction`` strategy's
settings plus ``on_remove``. A file is validated whole before anything uses it, and
every problem is one line naming the file and the field, as engine configs are:
``config/strategies/x.yaml: high_confidence: must be < 1, got 1.5``. Files are read
as engine configs are (:mod:`engine.config_loading`): regular files only, size- and
YAML-limited, so no file in the directory can hang or stall a reload.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError

from engine.config import COMPONENT_NAME, ConfigError, validation_problems
from engine.config_env import interpolate
from engine.config_loading import MAX_CONFIG_BYTES, decode_text, parse_yaml, read_config_bytes
from engine.safe_files import read_regular_file
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
    mapping = interpolate(parse_yaml(decode_text(data, source), source), os.environ, source)
    try:
        settings = StrategyFileConfig.model_validate(mapping)
    except ValidationError as exc:
        raise ConfigError(source, validation_problems(exc, StrategyFileConfig)) from None
    return StrategyFile(name, path, content_hash(data), settings)


def read_config_dir(directory: Path) -> dict[Path, bytes | OSError]:
    """Every strategy file's bytes (or why it could not be read); blocking, run off-loop.

    A file deleted between listing and reading is left out, as if listed after; one
    that is not a regular file (a FIFO, say) is never opened: its error is an
    :class:`~engine.safe_files.NotARegularFileError`.
    """
    contents: dict[Path, bytes | OSError] = {}
    for path in config_paths(directory):
        try:
            contents[path] = read_regular_file(path, MAX_CONFIG_BYTES)
        except FileNotFoundError:
            continue
        except OSError as exc:
            contents[path] = exc
    return contents


def read_strategy_file(path: Path) -> StrategyFile:
    """Read and validate one file (the hash is of exactly the bytes validated)."""
    return parse_strategy_file(path, read_config_bytes(path))
