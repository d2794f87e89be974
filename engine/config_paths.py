"""Paths in component settings: declared on the field, checked before a daemon runs.

A component's ``Config`` marks a path field with a :class:`PathRule` in its
annotation, e.g. ``dir: Annotated[str, EXISTING_DIRECTORY] = Field(...)``.
``trade-engine config check``, ``run`` and ``replay`` check every marked field with
:func:`path_problems`, so a missing candle file or a strategy directory that is a
file fails before anything starts, naming the field, and the engine needs to know no
component type to do it. Relative paths are relative to the working directory, as
the daemon resolves them.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from engine.candles import resolve_data_path
from engine.config import format_location, shorten
from engine.safe_files import file_kind

PATH_CHARS = 200  # a path shown in a message is cut to this


@dataclass(frozen=True, slots=True)
class PathRule:
    kind: Literal["file", "directory"]
    must_exist: bool
    data_roots: bool = False  # ``samples/NAME`` names a file of a registered data root
    private: bool = False  # no permission bit for group or others (a keystore)

    def describe(self) -> str:
        if self.private:
            return f"an existing {self.kind} only its owner may read, as `chmod 600` leaves it"
        if self.must_exist:
            return f"an existing {self.kind}"
        return f"a {self.kind}, or where one can be created"


EXISTING_FILE = PathRule("file", must_exist=True)
DATA_FILE = PathRule("file", must_exist=True, data_roots=True)
EXISTING_DIRECTORY = PathRule("directory", must_exist=True)
NEW_FILE = PathRule("file", must_exist=False)
NEW_DIRECTORY = PathRule("directory", must_exist=False)
# A keystore: its password is all that stands between another user and the key.
PRIVATE_FILE = PathRule("file", must_exist=True, private=True)


def open_to_others(mode: int) -> bool:
    """Whether a file's mode gives group or others any permission (keystores may not)."""
    return bool(mode & 0o077)


def _is_kind(mode: int, kind: str) -> bool:
    return stat.S_ISDIR(mode) if kind == "directory" else stat.S_ISREG(mode)


def _wanted(kind: str) -> str:
    return "a directory" if kind == "directory" else "a regular file"


def check_path(value: str | os.PathLike[str], rule: PathRule) -> str | None:
    """What is wrong with ``value`` under ``rule``, or None."""
    shown = shorten(repr(str(value)), PATH_CHARS)
    path = resolve_data_path(str(value)) if rule.data_roots else Path(value)
    if str(path) != str(value):
        shown += f" ({shorten(str(path), PATH_CHARS)})"
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):  # a/b where a is a file: no a/b either
        mode = None
    except OSError as exc:
        return f"{shown}: cannot check: {exc.strerror or exc}"
    if mode is not None:
        if not _is_kind(mode, rule.kind):
            return f"{shown} is {file_kind(mode)}, not {_wanted(rule.kind)}"
        if rule.private and open_to_others(mode):
            return (
                f"{shown} is open to group or others (mode {mode & 0o777:04o}): "
                f"run `chmod 600 {shorten(str(path), PATH_CHARS)}`"
            )
        return None
    if rule.must_exist:
        return f"{shown} does not exist"
    # Created when the component starts: the nearest existing ancestor must let it be.
    ancestor = path.absolute().parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return f"{shown} cannot be created: {shorten(str(ancestor), PATH_CHARS)} is not a directory"
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return f"{shown} cannot be created: {shorten(str(ancestor), PATH_CHARS)} is not writable"
    return None


def path_problems(settings: BaseModel, prefix: tuple[int | str, ...] = ()) -> list[str]:
    """One ``field.path: problem`` line per marked path in ``settings`` (and its sections)
    that breaks its rule."""
    problems: list[str] = []
    for name, field in type(settings).model_fields.items():
        value = getattr(settings, name)
        where = (*prefix, name)
        rule = next((m for m in field.metadata if isinstance(m, PathRule)), None)
        if rule is not None and value is not None:
            problem = check_path(value, rule)
            if problem is not None:
                problems.append(f"{format_location(where)}: {problem}")
        problems += _nested_problems(value, where)
    return problems


def _nested_problems(value: Any, where: tuple[int | str, ...]) -> list[str]:
    if isinstance(value, BaseModel):
        return path_problems(value, where)
    if isinstance(value, list | tuple):
        return [p for i, item in enumerate(value) for p in _nested_problems(item, (*where, i))]
    return []
