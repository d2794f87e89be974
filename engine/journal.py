"""The event journal: every event appended to SQLite (WAL) as it is published.

The journal subscribes to everything with a *sync* handler and is meant to be the
first component to subscribe (only the engine's market view, a passive record of the
last bar and pool state, comes before it), so an event is on disk before any other
component (an executor above all) sees it: "an order is journalled before it is
sent". SQLite in WAL mode with ``synchronous=NORMAL`` makes each committed row survive
a killed process (a power cut may lose the last few); rows are committed in small
batches, and always before an `OrderRequest` or `OrderSubmitted` reaches anyone else.

Rows carry a journal-wide ``id`` (the bus sequence restarts with each run), the
run's id, the bus ``seq``, the event type, times, correlation id and the event as
JSON.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from engine.component import Component, ComponentContext, ComponentLookup
from engine.config import StrictModel
from engine.config_paths import NEW_FILE
from engine.events import Event, OrderRequest, OrderSubmitted, from_json, to_json

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

# Per-run events: journalled on every run, not part of a resumed run's catch-up.
RUN_EVENT_TYPES = ("ComponentStateChanged", "Heartbeat")

# These must be on disk before anyone acts on them.
_COMMIT_AT_ONCE: tuple[type[Event], ...] = (OrderRequest, OrderSubmitted)


def connect(path: str | Path) -> sqlite3.Connection:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(SCHEMA)
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
    def open(cls, path: str | Path) -> JournalReader:
        if not Path(path).exists():
            raise FileNotFoundError(f"no journal at {path}")
        return cls(connect(path))

    def rows(
        self,
        after_id: int = 0,
        types: tuple[str, ...] = (),
        limit: int | None = None,
        newest_first: bool = False,
    ) -> Iterator[JournalRow]:
        query = (
            "SELECT id, run_id, seq, type, ts_event, correlation_id, body FROM events WHERE id > ?"
        )
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

    def trading_keys(self) -> deque[tuple[str, str]]:
        """(type, correlation id) of every event but the per-run ones, in journal order."""
        marks = ",".join("?" * len(RUN_EVENT_TYPES))
        query = f"SELECT type, correlation_id FROM events WHERE type NOT IN ({marks}) ORDER BY id"
        return deque(self.conn.execute(query, RUN_EVENT_TYPES))

    def count(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM events").fetchone()[0])

    def last(self, type_name: str) -> JournalRow | None:
        return next(self.rows(types=(type_name,), limit=1, newest_first=True), None)


class JournalConfig(StrictModel):
    path: Annotated[str, NEW_FILE] = Field(
        "var/journal.sqlite", description="SQLite file (created if missing)."
    )
    commit_every: int = Field(
        64, gt=0, description="Commit after this many events (orders are committed at once)."
    )
    commit_interval_seconds: float = Field(
        0.5, gt=0, description="And at least this often while events arrive."
    )
    resume: bool = Field(
        True,
        description="On start, expect the engine to re-produce what the journal already "
        "holds (a deterministic catch-up from the start of the data) and append only what "
        "comes after it; false: append everything again.",
    )


class Journal(Component):
    """Appends every bus event to SQLite; subscribe it before anything that acts on orders."""

    Config = JournalConfig

    def __init__(
        self,
        name: str,
        settings: JournalConfig,
        context: ComponentContext,
        depends_on: tuple[str, ...] = (),
    ) -> None:
        super().__init__(name, settings, context, depends_on)
        self.path = Path(settings.path).resolve()
        self.run_id = uuid.uuid4().hex[:12]
        self.conn = connect(settings.path)
        self.reader = JournalReader(self.conn)
        self.written = 0
        self._uncommitted = 0
        self._last_commit = time.monotonic()
        self._flusher: asyncio.Task[None] | None = None
        # (type, correlation id) of every journalled event the catch-up must re-produce.
        self._expected: deque[tuple[str, str]] = (
            self.reader.trading_keys() if settings.resume else deque()
        )
        self.skipped = 0
        # Set once the catch-up is over (caught up or diverged), or at once when there is none.
        self.caught_up = asyncio.Event()
        self._advanced = asyncio.Event()  # set (and replaced) each time the catch-up moves
        if self._expected:
            self.log.info("journal.resuming", events_to_catch_up=len(self._expected))
        else:
            self.caught_up.set()
        # Subscribed here, not in on_start: the journal must be the first component to.
        self.subscribe(Event, self.append, name=f"{name}.append")

    async def on_start(self) -> None:
        self._flusher = asyncio.create_task(self._flush_periodically(), name=f"{self.name}.flush")

    async def on_stop(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
        self._unsubscribe_all()  # before closing: nothing may append to a closed file
        self._commit()
        self.conn.close()

    async def _flush_periodically(self) -> None:
        """Commit a quiet tail too: events are never left uncommitted for long."""
        while True:
            await asyncio.sleep(self.settings.commit_interval_seconds)
            self._commit()

    def append(self, event: Event) -> None:
        if self._expected and self._caught_up_on(event):
            return
        if not self.conn.in_transaction:
            self.conn.execute("BEGIN")
        self.conn.execute(
            "INSERT INTO events (run_id, seq, type, ts_event, ts_init, correlation_id, body) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                self.run_id,
                event.seq,
                type(event).__name__,
                event.ts_event,
                event.ts_init,
                event.correlation_id,
                to_json(event),
            ),
        )
        self.written += 1
        self._uncommitted += 1
        if (
            isinstance(event, _COMMIT_AT_ONCE)
            or self._uncommitted >= self.settings.commit_every
            or time.monotonic() - self._last_commit >= self.settings.commit_interval_seconds
        ):
            self._commit()

    def _caught_up_on(self, event: Event) -> bool:
        """True if ``event`` is the next one the journal already holds (skip it)."""
        kind = type(event).__name__
        if kind in RUN_EVENT_TYPES:
            return False
        if self._expected[0] == (kind, event.correlation_id):
            self._expected.popleft()
            self.skipped += 1
            self._advanced.set()
            self._advanced = asyncio.Event()
            if not self._expected:
                self.log.info("journal.caught_up", events=self.skipped)
                self.caught_up.set()
            return True
        self.log.error(
            "journal.resume_diverged",
            expected=self._expected[0],
            got=(kind, event.correlation_id),
            left=len(self._expected),
            detail="the engine did not re-produce the journal (model, data or config "
            "changed?); appending from here",
        )
        self._expected.clear()
        self.caught_up.set()
        self._advanced.set()
        return False

    async def turn_of(self, event: Event) -> None:
        """Return when ``event`` is the next one the catch-up expects, or it is over.

        A component that re-publishes journalled events of its own (the DEX executor's
        fills) waits for their turn: they land where the journal has them, however the
        original run's timing interleaved them with the bars."""
        key = (type(event).__name__, event.correlation_id)
        while self._expected and self._expected[0] != key:
            await self._advanced.wait()

    def _commit(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("COMMIT")
        self._uncommitted = 0
        self._last_commit = time.monotonic()


def journal_for(components: ComponentLookup, path: str | Path) -> Journal | None:
    """The journal component of this engine writing ``path``, if any."""
    target = Path(path).resolve()
    return next((j for j in components.of_type(Journal) if j.path == target), None)
