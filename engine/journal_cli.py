"""`trade-engine journal tail|export`: read the event journal without the daemon."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from engine.journal import JournalReader, JournalRow

DEFAULT_PATH = "var/journal.sqlite"


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
    export.add_argument("--out", type=argparse.FileType("w"), default=sys.stdout)
    export.set_defaults(handler=_cmd_export)


def _line(row: JournalRow) -> str:
    body = json.loads(row.body)
    return json.dumps({"id": row.id, "run_id": row.run_id, **body}, separators=(",", ":"))


def _open(path: str) -> JournalReader | None:
    try:
        return JournalReader.open(path)
    except FileNotFoundError as exc:
        print(f"journal: {exc}", file=sys.stderr)
        return None


def _cmd_tail(args: argparse.Namespace) -> int:
    reader = _open(args.path)
    if reader is None:
        return 2
    types = tuple(args.type)
    newest = list(reader.rows(types=types, limit=args.lines, newest_first=True))
    last_id = newest[0].id if newest else 0
    for row in reversed(newest):
        print(_line(row))
    while args.follow:
        time.sleep(0.5)
        for row in reader.rows(after_id=last_id, types=types):
            print(_line(row), flush=True)
            last_id = row.id
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    reader = _open(args.path)
    if reader is None:
        return 2
    count = 0
    for row in reader.rows(types=tuple(args.type)):
        args.out.write(_line(row) + "\n")
        count += 1
    print(f"exported {count} events", file=sys.stderr)
    return 0
