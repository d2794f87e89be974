"""Files made to hang or stall a reader: a FIFO, deeply nested YAML, a billion laughs."""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from collections.abc import Iterator
from pathlib import Path


def nested_yaml(key: str, levels: int = 5000) -> str:
    """About 10 KB of flow sequences nested ``levels`` deep, as the value of ``key``."""
    return f"{key}: " + "[" * levels + "]" * levels + "\n"


def billion_laughs(key: str, levels: int = 7) -> str:
    """A few hundred bytes whose aliases expand to 10**levels values (the classic attack
    has 9 levels; 7 keep a broken guard from eating the test machine's memory)."""
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for level in range(1, levels):
        aliases = ", ".join([f"*a{level - 1}"] * 10)
        lines.append(f"a{level}: &a{level} [{aliases}]")
    return "\n".join(lines) + f"\n{key}: *a{levels - 1}\n"


@contextlib.contextmanager
def fifo(path: Path, unblock_after: float = 5.0) -> Iterator[Path]:
    """A FIFO at ``path`` (removed after); a reader blocked on it is let go after
    ``unblock_after`` s.

    A regression then fails a test on time instead of hanging the suite: a helper
    thread opens the FIFO for writing (and closes it) once a reader waits.
    """
    os.mkfifo(path)
    done = threading.Event()

    def unblock() -> None:
        if done.wait(unblock_after):
            return
        while not done.is_set():
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
            except OSError as exc:  # ENXIO: no reader yet
                if exc.errno not in (errno.ENXIO, errno.ENOENT):
                    raise
            done.wait(0.05)

    thread = threading.Thread(target=unblock, daemon=True)
    thread.start()
    try:
        yield path
    finally:
        done.set()
        thread.join(5)
        path.unlink(missing_ok=True)
