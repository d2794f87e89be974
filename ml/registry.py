"""A file-system model registry: versions, metadata and an atomic ``current`` pointer.

Layout::

    models/<name>/<version>/predictor/      AutoGluon deployment clone
    models/<name>/<version>/metadata.json   timeframe, feature set, columns, label, span,
                                            data hash, metrics, package versions
    models/<name>/CURRENT                   the version in service (replaced atomically)
    models/<name>/promotions.jsonl          every promotion, for rollback and audit

A version directory is complete before it becomes visible: it is built under a
temporary name and renamed into place.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

METADATA_FILE = "metadata.json"
PREDICTOR_DIR = "predictor"
CURRENT_FILE = "CURRENT"
PROMOTIONS_FILE = "promotions.jsonl"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


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


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class ModelRegistry:
    """Versions of named models under one root directory."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _model_dir(self, name: str) -> Path:
        if not NAME_PATTERN.match(name):
            raise RegistryError(f"invalid model name {name!r}")
        return self.root / name

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

    def current(self, name: str) -> ModelVersion | None:
        pointer = self._model_dir(name) / CURRENT_FILE
        if not pointer.exists():
            return None
        return self.get(name, pointer.read_text(encoding="utf-8").strip())

    def add(
        self, name: str, predictor_dir: Path, metadata: dict[str, Any], promote: bool = True
    ) -> ModelVersion:
        """Move a finished predictor directory into the registry as a new version."""
        model_dir = self._model_dir(name)
        model_dir.mkdir(parents=True, exist_ok=True)
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

    def promote(
        self, name: str, version: str, reason: str = "manual", kind: str = "promote"
    ) -> ModelVersion:
        """Make ``version`` the one in service (atomic switch) and log it."""
        entry = self.get(name, version)
        model_dir = self._model_dir(name)
        _atomic_write(model_dir / CURRENT_FILE, version + "\n")
        record = {"version": version, "at": time.time(), "reason": reason, "kind": kind}
        with (model_dir / PROMOTIONS_FILE).open("a", encoding="utf-8") as log:
            log.write(json.dumps(record) + "\n")
        return entry

    def promotions(self, name: str) -> list[dict[str, Any]]:
        log = self._model_dir(name) / PROMOTIONS_FILE
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]

    def rollback(self, name: str) -> ModelVersion:
        """Return to the version in service before the current one; repeatable."""
        current = self.current(name)
        if current is None:
            raise RegistryError(f"model {name!r} has no current version to roll back from")
        stack: list[str] = []  # promotions still in effect, oldest first
        for record in self.promotions(name):
            if record.get("kind") == "rollback":
                stack.pop()
            else:
                stack.append(record["version"])
        if len(stack) < 2:
            raise RegistryError(f"model {name!r}: no earlier version to roll back to")
        return self.promote(
            name, stack[-2], reason=f"rollback from {current.version}", kind="rollback"
        )
