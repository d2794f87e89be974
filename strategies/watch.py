"""Watching a strategy config directory for changes (``watchfiles``: inotify, or polling)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from watchfiles import Change, awatch

from strategies.files import SUFFIX

# Longest a burst of changes may keep a reload waiting, however busy the directory is.
MAX_DEBOUNCE_MS = 1600


def is_strategy_file(_change: Change, path: str) -> bool:
    """Only visible ``*.yaml`` files count: editors' swap and temporary files do not."""
    name = Path(path).name
    return name.endswith(SUFFIX) and not name.startswith(".")


async def config_changes(
    directory: Path, *, quiet_ms: int, stop: asyncio.Event, force_polling: bool = False
) -> AsyncIterator[set[tuple[Change, str]]]:
    """Each burst of changes to ``directory``'s strategy files, once quiet for ``quiet_ms``."""
    async for changes in awatch(
        directory,
        watch_filter=is_strategy_file,
        debounce=max(MAX_DEBOUNCE_MS, quiet_ms),
        step=quiet_ms,
        stop_event=stop,
        recursive=False,
        force_polling=force_polling,
    ):
        yield changes
