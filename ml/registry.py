"""A file-system model registry: versions, metadata, and aliases with their history.

Layout::

    models/<name>/<version>/predictor/      AutoGluon deployment clone
    models/<name>/<version>/metadata.json   timeframe, feature set, columns, label, span,
                                            data hash, metrics, package versions
    models/<name>/aliases.jsonl             append-only: every alias change, and the
                                            aliases in force after it

Aliases in MLflow's spirit: ``champion`` (the version in service), ``challenger`` (a
candidate in shadow), ``previous`` (the champion before, the rollback target). The
history file is their only home: each line holds a whole alias state, so the aliases
in force are the last line's, and one appended line is the atomic switch (written in
one ``write`` and fsynced; a torn last line, from a kill mid-write, is ignored). It
also answers which version was champion from when to when, and why
(:meth:`ModelRegistry.champion_periods`).

A version directory is complete before it becomes visible: it is built under a
temporary name and renamed into place; an alias is only ever set to a version that
exists, and :meth:`ModelRegistry.purge` never removes an aliased one. A registry
written before aliases (a ``CURRENT`` file) is read as its champion.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

METADATA_FILE = "metadata.json"
PREDICTOR_DIR = "predictor"
ALIASES_FILE = "aliases.jsonl"
LEGACY_CURRENT_FILE = "CURRENT"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
Alias = Literal["champion", "challenger", "previous"]
ALIASES: tuple[Alias, ...] = ("champion", "challenger", "previous")
# Leftovers of a registration or a training killed half-way: hidden, never a version.
INCOMPLETE_PATTERN = re.compile(r"^\.(.+\.staging|train-.+|purge-.+)$")


class RegistryError(LookupError):
    """A model or version is missing, malformed, or the request is invalid."""


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: str
    path: Path
    metadata: dict[str, Any]

    @property
    def predictor_path(self) -> Path:
        return self.path / PREDICTOR_DIR

    @property
    def feature_set(self) -> str:
        return str(self.metadata["feature_set"])

    @property
    def feature_columns(self) -> list[str]:
        return list(self.metadata["feature_columns"])

    @property
    def timeframe(self) -> str | None:
        """The timeframe of the bars it was trained on; None when not recorded (a model
        registered before it was, from data whose file is not described)."""
        recorded = self.metadata.get("timeframe") or self.metadata.get("data", {}).get("timeframe")
        return str(recorded) if recorded else None

    @property
    def trained_until_ns(self) -> int:
        """Open time of the last bar it was trained (tuned) on; 0 when not recorded."""
        last = self.metadata.get("training_span", {}).get("last_bar")
        if not last:
            return 0
        stamp = datetime.fromisoformat(str(last).replace("Z", "+00:00"))
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=UTC)
        return int(stamp.timestamp() * 1_000_000) * 1_000


@dataclass(frozen=True)
class AliasChange:
    """One line of the alias history: what changed, why, and the aliases after it."""

    seq: int
    at: float  # wall-clock seconds
    kind: str  # register | promote | rollback | discard | canary_passed | ...
    reason: str
    aliases: Mapping[str, str]  # alias → version, after the change
    engine_time: str | None = None  # the engine clock's time (a replay's simulated time)

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "at": self.at,
            "engine_time": self.engine_time,
            "kind": self.kind,
            "reason": self.reason,
            "aliases": dict(self.aliases),
        }


@dataclass(frozen=True)
class ChampionPeriod:
    """A version's time as champion: from ``start`` to ``end`` (None: still champion)."""

    version: str
    start: AliasChange
    end: AliasChange | None


class ModelRegistry:
    """Versions of named models under one root directory."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _model_dir(self, name: str) -> Path:
        if not NAME_PATTERN.match(name):
            raise RegistryError(f"invalid model name {name!r}")
        return self.root / name

    def model_dir(self, name: str) -> Path:
        """The model's directory, created; training works in a hidden folder in it."""
        path = self._model_dir(name)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def names(self) -> list[str]:
        if not self.root.exists():
            return []
        return sorted(
            p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")
        )

    def versions(self, name: str) -> list[ModelVersion]:
        model_dir = self._model_dir(name)
        if not model_dir.exists():
            return []
        found = []
        for path in sorted(model_dir.iterdir()):
            if path.is_dir() and not path.name.startswith(".") and (path / METADATA_FILE).exists():
                found.append(self.get(name, path.name))
        return found

    def get(self, name: str, version: str) -> ModelVersion:
        path = self._model_dir(name) / version
        meta_file = path / METADATA_FILE
        if not meta_file.exists():
            raise RegistryError(f"model {name!r} has no version {version!r} (looked in {path})")
        try:
            metadata = json.loads(meta_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise RegistryError(f"{meta_file}: unreadable metadata: {exc}") from None
        for key in ("feature_set", "feature_columns", "label"):
            if key not in metadata:
                raise RegistryError(f"{meta_file}: metadata lacks {key!r}")
        return ModelVersion(name, version, path, metadata)

    def add(
        self, name: str, predictor_dir: Path, metadata: dict[str, Any], promote: bool = True
    ) -> ModelVersion:
        """Move a finished predictor directory into the registry as a new version;
        ``promote``: make it the champion."""
        model_dir = self.model_dir(name)
        version = self._new_version(model_dir)
        # A name of its own: a registration that died may have left its staging behind.
        staging = model_dir / f".{version}.{uuid.uuid4().hex[:8]}.staging"
        staging.mkdir()
        shutil.move(str(predictor_dir), staging / PREDICTOR_DIR)
        full = {**metadata, "name": name, "version": version}
        (staging / METADATA_FILE).write_text(json.dumps(full, indent=2, sort_keys=True) + "\n")
        os.replace(staging, model_dir / version)
        entry = self.get(name, version)
        if promote:
            self.promote(name, version, reason="trained")
        return entry

    @staticmethod
    def _new_version(model_dir: Path) -> str:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        version, n = stamp, 1
        while (model_dir / version).exists():
            n += 1
            version = f"{stamp}-{n}"
        return version

    # -- aliases ------------------------------------------------------------------------

    def history(self, name: str) -> list[AliasChange]:
        """Every alias change, oldest first (a torn last line is left out)."""
        path = self._model_dir(name) / ALIASES_FILE
        changes: list[AliasChange] = []
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    raw = json.loads(line)
                    change = AliasChange(
                        seq=int(raw["seq"]),
                        at=float(raw["at"]),
                        kind=str(raw["kind"]),
                        reason=str(raw["reason"]),
                        aliases=dict(raw["aliases"]),
                        engine_time=raw.get("engine_time"),
                    )
                    changes.append(change)
                except (ValueError, KeyError, TypeError):
                    continue  # a line torn by a kill mid-write: the change never happened
        elif (legacy := self._model_dir(name) / LEGACY_CURRENT_FILE).exists():
            version = legacy.read_text(encoding="utf-8").strip()
            at = legacy.stat().st_mtime
            changes.append(AliasChange(0, at, "promote", "CURRENT file", {"champion": version}))
        return changes

    def aliases(self, name: str) -> dict[str, str]:
        """The aliases in force: alias → version."""
        changes = self.history(name)
        return dict(changes[-1].aliases) if changes else {}

    def alias(self, name: str, alias: Alias) -> ModelVersion | None:
        version = self.aliases(name).get(alias)
        return None if version is None else self.get(name, version)

    def current(self, name: str) -> ModelVersion | None:
        """The champion: the version in service."""
        return self.alias(name, "champion")

    def _change(
        self,
        name: str,
        kind: str,
        reason: str,
        aliases: Mapping[str, str | None],
        engine_time: str | None,
    ) -> AliasChange:
        """Append one alias change (the atomic switch); ``None`` clears an alias."""
        for version in aliases.values():
            if version is not None:
                self.get(name, version)  # never point an alias at a missing version
        changes = self.history(name)
        state = dict(changes[-1].aliases) if changes else {}
        for alias, version in aliases.items():
            if version is None:
                state.pop(alias, None)
            else:
                state[alias] = version
        change = AliasChange(
            changes[-1].seq + 1 if changes else 1, time.time(), kind, reason, state, engine_time
        )
        path = self._model_dir(name) / ALIASES_FILE
        line = json.dumps(change.to_json(), sort_keys=True) + "\n"
        if path.exists() and path.stat().st_size and not path.read_bytes().endswith(b"\n"):
            line = "\n" + line  # after a torn line: start a line of its own
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        return change

    def set_challenger(
        self, name: str, version: str, reason: str, engine_time: str | None = None
    ) -> AliasChange:
        return self._change(name, "register", reason, {"challenger": version}, engine_time)

    def discard_challenger(
        self, name: str, reason: str, engine_time: str | None = None
    ) -> AliasChange:
        return self._change(name, "discard", reason, {"challenger": None}, engine_time)

    def note(
        self, name: str, kind: str, reason: str, engine_time: str | None = None
    ) -> AliasChange:
        """Record an event in the history without changing an alias (a canary passed)."""
        return self._change(name, kind, reason, {}, engine_time)

    def promote(
        self, name: str, version: str, reason: str = "manual", engine_time: str | None = None
    ) -> ModelVersion:
        """Make ``version`` the champion; the old one becomes ``previous``. Promoting the
        challenger clears that alias."""
        entry = self.get(name, version)
        aliases = self.aliases(name)
        if aliases.get("champion") == version:
            raise RegistryError(f"model {name!r}: {version} is already the champion")
        change: dict[str, str | None] = {"champion": version}
        if "champion" in aliases:
            change["previous"] = aliases["champion"]
        if aliases.get("challenger") == version:
            change["challenger"] = None
        self._change(name, "promote", reason, change, engine_time)
        return entry

    def _champion_stack(self, name: str) -> list[str]:
        """Champions still to roll back to, oldest first, the champion last."""
        stack: list[str] = []
        for change in self.history(name):
            if change.kind == "promote":
                stack.append(change.aliases["champion"])
            elif change.kind == "rollback" and stack:
                stack.pop()
        return stack

    def rollback(
        self, name: str, reason: str = "manual", engine_time: str | None = None
    ) -> ModelVersion:
        """Back to ``previous``; repeatable down the champions' history."""
        current = self.current(name)
        if current is None:
            raise RegistryError(f"model {name!r} has no champion to roll back from")
        stack = self._champion_stack(name)
        if len(stack) < 2:
            raise RegistryError(f"model {name!r}: no earlier version to roll back to")
        target, before = stack[-2], (stack[-3] if len(stack) > 2 else None)
        self._change(
            name,
            "rollback",
            f"{reason} (from {current.version})",
            {"champion": target, "previous": before},
            engine_time,
        )
        return self.get(name, target)

    def champion_periods(self, name: str) -> list[ChampionPeriod]:
        """Which version was champion from when to when, oldest first."""
        periods: list[ChampionPeriod] = []
        for change in self.history(name):
            champion = change.aliases.get("champion")
            if periods and periods[-1].version == champion:
                continue
            if periods and periods[-1].end is None:
                periods[-1] = ChampionPeriod(periods[-1].version, periods[-1].start, change)
            if champion is not None:
                periods.append(ChampionPeriod(champion, change, None))
        return periods

    # -- housekeeping -------------------------------------------------------------------

    def purge(self, name: str, keep: int) -> list[str]:
        """Remove all but the ``keep`` newest versions; never an aliased one. Returns the
        versions removed. Each is renamed out of sight first, then deleted, so a kill
        half-way leaves no half version."""
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        protected = set(self.aliases(name).values())
        removable = [v.version for v in self.versions(name) if v.version not in protected]
        removable = removable[: max(0, len(removable) - keep)]
        model_dir = self._model_dir(name)
        for version in removable:
            hidden = model_dir / f".purge-{version}"
            os.replace(model_dir / version, hidden)
            shutil.rmtree(hidden, ignore_errors=True)
        return removable

    def incomplete(self, name: str) -> list[Path]:
        """Leftovers of a registration, training or purge killed half-way."""
        model_dir = self._model_dir(name)
        if not model_dir.exists():
            return []
        return sorted(p for p in model_dir.iterdir() if INCOMPLETE_PATTERN.match(p.name))

    def remove_incomplete(self, name: str) -> list[Path]:
        """Delete :meth:`incomplete` leftovers; only when nothing registers meanwhile."""
        removed = self.incomplete(name)
        for path in removed:
            shutil.rmtree(path, ignore_errors=True)
        return removed
