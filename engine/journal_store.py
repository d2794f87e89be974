"""The journal's SQLite file: opening it, reading it back, and saying what is wrong with it.

:func:`connect` opens (or creates) it for the writing component, :class:`JournalReader`
reads it for a restart and for the CLI. A file that cannot be used (a directory, a
damaged or foreign file, no access) is a :class:`JournalFileError` whose one line names
the file and what to do; :meth:`JournalReader.salvage` gets out of a damaged file every
row that can still be read.
"""

from __future__ import annotations

import os
import sqlite3
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.events import Event, from_json

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    type TEXT NOT NULL,
    ts_event INTEGER NOT NULL,
    ts_init INTEGER NOT NULL,
    correlation_id TEXT NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS events_type ON events (type, id);
CREATE INDEX IF NOT EXISTS events_correlation ON events (correlation_id);
"""

# Per-run events: journalled on every run, not part of a resumed run's catch-up. The model
# lifecycle's too: a training's outcome, an operator's promotion or a shadow model's
# predictions are facts of the run that made them, not re-produced by replaying bars.
RUN_EVENT_TYPES = (
    "BalancesObserved",
    "ComponentStateChanged",
    "Heartbeat",
    "SubscriberFailed",
    "SubscriberRecovered",
    "ShadowSignal",
    "RetrainStarted",
    "RetrainFailed",
    "ChallengerRegistered",
    "PromotionDecided",
    "ModelPromoted",
    "ModelRolledBack",
    "SizingChanged",
)

INSERT = (
    "INSERT INTO events (run_id, seq, type, ts_event, ts_init, correlation_id, body) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)
Row = tuple[str, int, str, int, int, str, bytes]
SELECT_ROWS = "SELECT id, run_id, seq, type, ts_event, correlation_id, body FROM events"
SALVAGE_GIVE_UP = 100_000


class JournalFileError(ValueError):
    """The journal file cannot be used; the message names it and says what to do."""


def salvage_hint(path: Path) -> str:
    return (
        f"move it aside (`trade-engine journal export --salvage --path {path} --out FILE` "
        "writes what is readable) and start again"
    )


def file_error(
    path: Path, exc: sqlite3.Error | OSError, *, reading: bool = False
) -> JournalFileError:
    """What went wrong with the journal at ``path``, and what to do, in one line."""
    code = getattr(exc, "sqlite_errorname", "")
    if path.is_dir():
        problem = "is a directory, not a journal file"
        todo = "move it aside or set the journal's `path` to a file"
    elif code == "SQLITE_NOTADB":
        problem = "is not a journal (not an SQLite database: damaged, or another kind of file)"
        todo = salvage_hint(path)
    elif code.startswith("SQLITE_CORRUPT"):
        problem = f"is damaged (truncated or overwritten: {exc})"
        todo = salvage_hint(path)
    elif code.startswith(("SQLITE_CANTOPEN", "SQLITE_READONLY", "SQLITE_PERM")) or isinstance(
        exc, PermissionError
    ):
        problem = f"cannot be opened ({exc})"
        elsewhere = "copy it with its -wal file" if reading else "set the journal's `path`"
        todo = (
            f"give write access to it and to {path.parent} (SQLite keeps {path.name}-wal "
            f"and {path.name}-shm next to it) or {elsewhere} elsewhere"
        )
    elif isinstance(exc, OSError):
        problem = f"cannot be created ({exc})"
        todo = "check the journal's `path` and its directory"
    else:
        problem = f"cannot be used ({type(exc).__name__}: {exc})"
        todo = salvage_hint(path)
    return JournalFileError(f"journal {path}: {problem}: {todo}")


def connect(path: str | Path) -> sqlite3.Connection:
    """Open (creating if missing) the journal for writing, or :class:`JournalFileError`."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    except (sqlite3.Error, OSError) as exc:
        raise file_error(path, exc) from None
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(SCHEMA)
        conn.execute("SELECT MAX(id) FROM events").fetchone()  # reads the newest pages
    except sqlite3.Error as exc:
        conn.close()
        raise file_error(path, exc) from None
    return conn


def connect_read_only(path: str | Path, *, damaged: bool = False) -> sqlite3.Connection:
    """Open an existing journal for reading, or :class:`JournalFileError`.

    In a directory it may not write to, a journal with no ``-wal`` file left is read as
    immutable (SQLite cannot create the ``-shm`` file a WAL reader needs). ``damaged``:
    tolerate a file shorter than its header says (for salvage).
    """
    path = Path(path)
    if not path.exists():
        raise JournalFileError(f"journal {path}: no such file: check --path")
    if path.is_file() and path.stat().st_size == 0:
        raise JournalFileError(f"journal {path}: empty file (0 bytes): no events to read")
    wal = path.with_name(f"{path.name}-wal")
    settled = not (wal.exists() and wal.stat().st_size)  # everything is in the file itself
    mode = "immutable=1" if settled and not os.access(path.parent, os.W_OK) else "mode=ro"
    try:
        conn = sqlite3.connect(f"file:{path}?{mode}", uri=True, check_same_thread=False)
        if damaged:
            conn.execute("PRAGMA writable_schema=ON")  # the connection is read-only all the same
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
    except sqlite3.Error as exc:
        raise file_error(path, exc, reading=True) from None
    if "events" not in tables:
        conn.close()
        raise JournalFileError(
            f"journal {path}: an SQLite database but not a journal (no events table): check --path"
        )
    return conn


@dataclass(frozen=True)
class JournalRow:
    id: int
    run_id: str
    seq: int
    type: str
    ts_event: int
    correlation_id: str
    body: bytes

    def event(self) -> Event:
        return from_json(self.body)


class JournalReader:
    """Read access for rebuilding state after a restart, and for the CLI."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    @classmethod
    def open(cls, path: str | Path, *, damaged: bool = False) -> JournalReader:
        """Read-only; :class:`JournalFileError` if there is no usable journal at ``path``
        (``damaged``: open what :meth:`salvage` can read)."""
        return cls(connect_read_only(path, damaged=damaged))

    def rows(
        self,
        after_id: int = 0,
        types: tuple[str, ...] = (),
        limit: int | None = None,
        newest_first: bool = False,
    ) -> Iterator[JournalRow]:
        query = f"{SELECT_ROWS} WHERE id > ?"
        params: list[Any] = [after_id]
        if types:
            query += f" AND type IN ({','.join('?' * len(types))})"
            params += list(types)
        query += " ORDER BY id DESC" if newest_first else " ORDER BY id"
        if limit is not None:
            query += " LIMIT ?"
            params.append(limit)
        for row in self.conn.execute(query, params):
            yield JournalRow(*row)

    def salvage(self) -> Iterator[JournalRow | int]:
        """Every row that can still be read from a damaged journal, oldest first, with
        the number of unreadable rows (an int) where rows are missing.

        Rows are read in order until a damaged page stops the scan, then looked up one
        id at a time (each lookup walks the tree from its root, so it gets past the
        damaged part), reading in order again from each row found. Ids run up to the
        journal's last one (``sqlite_sequence``); if even that is unreadable, the search
        stops after ``SALVAGE_GIVE_UP`` unreadable ids in a row (not counted).
        """
        conn = self.conn
        try:
            top: int | None = conn.execute(
                "SELECT seq FROM sqlite_sequence WHERE name = 'events'"
            ).fetchone()[0]
        except (sqlite3.Error, TypeError):
            top = None
        last = 0
        while True:
            try:
                for row in self.rows(after_id=last):
                    yield row
                    last = row.id
                if top is None:
                    return  # read to the end: nothing says rows are missing
            except sqlite3.Error:
                pass
            missing = 0
            while True:  # the row after ``last`` cannot be reached in order: look it up
                last += 1
                if last > top if top is not None else missing >= SALVAGE_GIVE_UP:
                    if top is not None and missing:
                        yield missing
                    return
                try:
                    found = conn.execute(f"{SELECT_ROWS} WHERE id = ?", (last,)).fetchone()
                except sqlite3.Error:
                    found = None
                if found is not None:
                    if missing:
                        yield missing
                    yield JournalRow(*found)
                    break
                missing += 1

    def trading_keys(self) -> deque[tuple[str, str]]:
        """(type, correlation id) of every event but the per-run ones, in journal order."""
        marks = ",".join("?" * len(RUN_EVENT_TYPES))
        query = f"SELECT type, correlation_id FROM events WHERE type NOT IN ({marks}) ORDER BY id"
        return deque(self.conn.execute(query, RUN_EVENT_TYPES))

    def count(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM events").fetchone()[0])

    def last(self, type_name: str) -> JournalRow | None:
        return next(self.rows(types=(type_name,), limit=1, newest_first=True), None)
