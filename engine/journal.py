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

A journal that cannot write (disk full, file-size limit, I/O error) must stop trading:
its subscription is *critical* (see :mod:`engine.bus`), so the event whose write failed
and every later one are withheld from the other subscribers, the journal is FAULTED and
the risk manager halts (``JOURNAL_UNAVAILABLE``). A failed commit loses SQLite's open
transaction, so the rows of events already delivered are kept in memory and written
again, before anything else, by each later attempt: when one succeeds the journal is
RUNNING again, holding exactly what the engine acted on (trading stays halted until an
operator resumes). Opening, reading and salvaging the file: :mod:`engine.journal_store`.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
import uuid
from collections import deque
from pathlib import Path
from typing import Annotated

from pydantic import Field

from engine.component import Component, ComponentContext, ComponentLookup
from engine.config import StrictModel
from engine.config_paths import NEW_FILE
from engine.events import (
    ChallengerRegistered,
    Event,
    ModelPromoted,
    ModelRolledBack,
    OrderRequest,
    OrderSubmitted,
    PromotionDecided,
    SizingChanged,
    to_json,
)
from engine.journal_store import (
    INSERT,
    RUN_EVENT_TYPES,
    JournalFileError,
    JournalReader,
    JournalRow,
    Row,
    connect,
    file_error,
)

# RUN_EVENT_TYPES, JournalFileError, JournalReader, JournalRow: engine.journal_store's.
__all__ = [
    "RUN_EVENT_TYPES",
    "Journal",
    "JournalConfig",
    "JournalFileError",
    "JournalReader",
    "JournalRow",
    "JournalWriteError",
    "journal_for",
]


class JournalWriteError(RuntimeError):
    """A journal write failed: the event is withheld from everyone after the journal."""


# These must be on disk before anyone acts on them; the model lifecycle's (rare) follow
# a registry change already made, so a kill right after loses neither.
_COMMIT_AT_ONCE: tuple[type[Event], ...] = (
    OrderRequest,
    OrderSubmitted,
    ChallengerRegistered,
    PromotionDecided,
    ModelPromoted,
    ModelRolledBack,
    SizingChanged,
)


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
        fresh = _nothing_to_resume(self.path)
        self.conn = connect(self.path)
        self.reader = JournalReader(self.conn)
        self.written = 0
        self._batch: list[Row] = []  # rows of delivered events not yet committed
        self._broken: Exception | None = None  # the last failed write, until one succeeds
        self._last_commit = time.monotonic()
        self._flusher: asyncio.Task[None] | None = None
        # (type, correlation id) of every journalled event the catch-up must re-produce.
        try:
            self._expected: deque[tuple[str, str]] = (
                self.reader.trading_keys() if settings.resume else deque()
            )
        except sqlite3.Error as exc:
            self.conn.close()
            raise file_error(self.path, exc) from None
        self.skipped = 0
        # Set once the catch-up is over (caught up or diverged), or at once when there is none.
        self.caught_up = asyncio.Event()
        self._advanced = asyncio.Event()  # set (and replaced) each time the catch-up moves
        if self._expected:
            self.log.info("journal.resuming", events_to_catch_up=len(self._expected))
        else:
            self.caught_up.set()
            if settings.resume:
                reason = fresh or "it holds no trading events yet"
                self.log.warning("journal.starting_fresh", path=str(self.path), reason=reason)
        # Subscribed here, not in on_start: the journal must be the first component to.
        # Critical: an event it cannot write reaches no one else (see engine.bus).
        self.subscribe(Event, self.append, name=f"{name}.append", critical=True)

    async def on_start(self) -> None:
        self._flusher = asyncio.create_task(self._flush_periodically(), name=f"{self.name}.flush")

    async def on_stop(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
        self._unsubscribe_all()  # before closing: nothing may append to a closed file
        try:
            if self._broken is not None:
                self._write_again([])
            else:
                self._commit()
        except (JournalWriteError, sqlite3.Error) as exc:
            self.log.error(
                "journal.rows_lost",
                path=str(self.path),
                rows=len(self._batch),
                error=str(exc),
                detail="events the engine handled but could not journal; a restart with "
                "resume: true re-produces them",
            )
        self.conn.close()

    async def _flush_periodically(self) -> None:
        """Commit a quiet tail too: events are never left uncommitted for long."""
        while True:
            await asyncio.sleep(self.settings.commit_interval_seconds)
            if self._broken is not None:
                continue  # the next event tries again
            try:
                self._commit()
            except sqlite3.Error as exc:
                self._failed(exc)
                self.fault(f"cannot write {self.path}: {type(exc).__name__}: {exc}")

    def append(self, event: Event) -> None:
        """Write ``event``; raises :class:`JournalWriteError` if it cannot be written."""
        if self._expected and self._caught_up_on(event):
            return
        row: Row = (
            self.run_id,
            event.seq,
            type(event).__name__,
            event.ts_event,
            event.ts_init,
            event.correlation_id,
            to_json(event),
        )
        if self._broken is not None:
            self._write_again([row])
            return
        try:
            if not self.conn.in_transaction:
                self.conn.execute("BEGIN")
            self.conn.execute(INSERT, row)
            self._batch.append(row)
            self.written += 1
            if (
                isinstance(event, _COMMIT_AT_ONCE)
                or len(self._batch) >= self.settings.commit_every
                or time.monotonic() - self._last_commit >= self.settings.commit_interval_seconds
            ):
                self._commit()
        except sqlite3.Error as exc:
            if self._batch and self._batch[-1] is row:
                self._batch.pop()  # withheld from everyone: not part of what happened
                self.written -= 1
            raise self._failed(exc) from exc

    def _write_again(self, rows: list[Row]) -> None:
        """After a failure: the rows lost with the failed transaction, then ``rows``."""
        try:
            self.conn.execute("BEGIN")
            self.conn.executemany(INSERT, [*self._batch, *rows])
            self.conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise self._failed(exc) from exc
        self.log.warning(
            "journal.writing_again", path=str(self.path), rewritten=len(self._batch) + len(rows)
        )
        self.written += len(rows)
        self._batch.clear()
        self._broken = None
        self._last_commit = time.monotonic()
        self.fault_cleared()

    def _failed(self, exc: sqlite3.Error) -> JournalWriteError:
        """Note a failed write (SQLite has rolled the transaction back) and describe it."""
        if self.conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):  # if it fails, the next attempt says so
                self.conn.execute("ROLLBACK")
        if self._broken is None:
            self.log.error(
                "journal.write_failed",
                path=str(self.path),
                error=f"{type(exc).__name__}: {exc}",
                unwritten=len(self._batch),
                detail="trading stops until the journal writes again and an operator "
                "resumes; free disk space, or check the file and its directory",
            )
        self._broken = exc
        return JournalWriteError(f"cannot write the journal {self.path}: {exc}")

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
        self._batch.clear()
        self._last_commit = time.monotonic()


def _nothing_to_resume(path: Path) -> str:
    """Why a journal at ``path`` has nothing to resume from ("" if it may have)."""
    if not path.exists():
        return "no journal file: starting a new one"
    if path.is_file() and path.stat().st_size == 0:
        return "the journal file is empty (0 bytes): starting fresh"
    return ""


def journal_for(components: ComponentLookup, path: str | Path) -> Journal | None:
    """The journal component of this engine writing ``path``, if any."""
    target = Path(path).resolve()
    return next((j for j in components.of_type(Journal) if j.path == target), None)
