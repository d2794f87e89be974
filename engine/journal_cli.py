"""`trade-engine journal tail|export`: read the event journal without the daemon.

A journal that cannot be read (missing, damaged, not a journal) is one line on stderr
naming the file and what to do, and exit code 2. ``export`` writes nothing unless it
read everything: rows go to a temporary file first. ``export --salvage`` writes every
row that can still be read from a damaged journal and says how many could not.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

from engine.journal_store import (
    JournalFileError,
    JournalReader,
    JournalRow,
    file_error,
    salvage_hint,
)

DEFAULT_PATH = "var/journal.sqlite"
EXIT_OK, EXIT_UNREADABLE = 0, 2


def register(commands: Any) -> None:
    journal = commands.add_parser("journal", help="show or export the event journal")
    sub = journal.add_subparsers(dest="journal_command", required=True)
    tail = sub.add_parser("tail", help="the newest events, oldest first")
    tail.add_argument("--path", default=DEFAULT_PATH)
    tail.add_argument("-n", "--lines", type=int, default=20)
    tail.add_argument("--type", action="append", default=[], help="only this event type")
    tail.add_argument("--follow", "-f", action="store_true", help="keep printing new events")
    tail.set_defaults(handler=_cmd_tail)
    export = sub.add_parser("export", help="every event as JSON lines")
    export.add_argument("--path", default=DEFAULT_PATH)
    export.add_argument("--type", action="append", default=[], help="only this event type")
    export.add_argument("--out", type=Path, help="write to this file (default: stdout)")
    export.add_argument(
        "--salvage",
        action="store_true",
        help="from a damaged journal: write every row that can be read, and count the rest",
    )
    export.set_defaults(handler=_cmd_export)


def _line(row: JournalRow) -> str:
    body = json.loads(row.body)
    return json.dumps({"id": row.id, "run_id": row.run_id, **body}, separators=(",", ":"))


def _cmd_tail(args: argparse.Namespace) -> int:
    path = Path(args.path)
    types = tuple(args.type)
    try:
        reader = JournalReader.open(path)
        newest = [
            (row.id, _line(row))
            for row in reader.rows(types=types, limit=args.lines, newest_first=True)
        ]
        last_id = newest[0][0] if newest else 0
        for _, line in reversed(newest):
            print(line)
        while args.follow:
            time.sleep(0.5)
            for row in reader.rows(after_id=last_id, types=types):
                print(_line(row), flush=True)
                last_id = row.id
    except JournalFileError as exc:
        return _unreadable(exc)
    except (sqlite3.Error, ValueError) as exc:
        return _unreadable(_damaged(path, exc))
    return EXIT_OK


def _cmd_export(args: argparse.Namespace) -> int:
    path = Path(args.path)
    types = tuple(args.type)
    try:
        reader = JournalReader.open(path, damaged=args.salvage)
    except JournalFileError as exc:
        return _unreadable(exc)
    with tempfile.TemporaryFile("w+", encoding="utf-8") as spool:
        try:
            if args.salvage:
                count, unreadable = _salvage(reader, types, spool)
            else:
                count, unreadable = _export(reader, types, spool), 0
        except (sqlite3.Error, ValueError) as exc:
            return _unreadable(_damaged(path, exc))
        spool.seek(0)
        _write_out(spool, args.out)
    lost = f"; {unreadable} rows could not be read" if args.salvage else ""
    print(f"exported {count} events{lost}", file=sys.stderr)
    return EXIT_OK


def _export(reader: JournalReader, types: tuple[str, ...], out: IO[str]) -> int:
    count = 0
    for row in reader.rows(types=types):
        out.write(_line(row) + "\n")
        count += 1
    return count


def _write_out(spool: IO[str], out: Path | None) -> None:
    """Copy the spooled export to ``out`` (atomically) or stdout."""
    if out is None:
        shutil.copyfileobj(spool, sys.stdout)
        sys.stdout.flush()
        return
    partial = out.with_name(f".{out.name}.partial")
    with partial.open("w", encoding="utf-8") as target:
        shutil.copyfileobj(spool, target)
    os.replace(partial, out)


def _salvage(reader: JournalReader, types: tuple[str, ...], out: IO[str]) -> tuple[int, int]:
    """Write every readable row of ``types`` to ``out``: (rows written, rows unreadable)."""
    count = unreadable = 0
    for item in reader.salvage():
        if isinstance(item, int):
            unreadable += item
        elif not types or item.type in types:
            try:
                line = _line(item)
            except (TypeError, ValueError):  # not JSON, or not even text
                unreadable += 1
                continue
            out.write(line + "\n")
            count += 1
    return count, unreadable


def _damaged(path: Path, exc: sqlite3.Error | ValueError) -> JournalFileError:
    if isinstance(exc, sqlite3.Error):
        return file_error(path, exc)
    return JournalFileError(f"journal {path}: a row does not decode ({exc}): {salvage_hint(path)}")


def _unreadable(exc: JournalFileError) -> int:
    print(exc, file=sys.stderr)
    return EXIT_UNREADABLE
