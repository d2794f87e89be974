"""A journal file that cannot be used: `run`, `journal tail` and `journal export` say so
in one line naming the file and what to do, exit 2, no traceback; `export --salvage`
writes what is readable."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from engine.cli import main as cli_main
from engine.events import Heartbeat, to_json
from engine.journal_store import connect
from tests.paths import ROOT

pytestmark = pytest.mark.integration

ROWS = 3_000
SALVAGE = "export --salvage"


def write_journal(path: Path, rows: int = ROWS) -> Path:
    """A journal of ``rows`` heartbeats, checkpointed into the one file."""
    conn = connect(path)
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO events (run_id, seq, type, ts_event, ts_init, correlation_id, body) "
        "VALUES ('run', ?, 'Heartbeat', ?, ?, '', ?)",
        [(i, i, i, to_json(Heartbeat(ts_event=i, ts_init=i, count=i))) for i in range(rows)],
    )
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return path


@pytest.fixture(scope="module")
def shared() -> Iterator[Path]:
    """A directory anyone may use, for the commands run as an unprivileged user."""
    root = Path(tempfile.mkdtemp(prefix="journal-files-"))
    root.chmod(0o777)
    yield root
    for child in root.rglob("*"):
        if child.is_dir():
            child.chmod(0o755)
    shutil.rmtree(root)


def damaged(kind: str, root: Path) -> Path:
    """A journal path of the given kind of trouble."""
    path = root / kind / "journal.sqlite"
    path.parent.mkdir()
    path.parent.chmod(0o777)  # but for the read-only case: the trouble is the file itself
    if kind == "directory":
        path.mkdir()
    elif kind == "garbage":
        path.write_bytes(os.urandom(200_000))
    elif kind == "truncated":
        write_journal(path)
        os.truncate(path, path.stat().st_size // 2)
        path.chmod(0o666)
    elif kind == "holed":  # three pages in the middle overwritten: rows before and after
        write_journal(path)
        with path.open("r+b") as file:
            file.seek(40 * 4096)
            file.write(os.urandom(3 * 4096))
        path.chmod(0o666)
    elif kind == "read-only":
        write_journal(path)
        path.chmod(0o444)
        path.parent.chmod(0o555)
    return path


KINDS = {
    "directory": "is a directory, not a journal file: move it aside",
    "garbage": "is not a journal (not an SQLite database",
    "truncated": "is damaged (truncated or overwritten",
    "holed": "is damaged (truncated or overwritten",
    "read-only": "cannot be opened (attempt to write a readonly database): give write access to",
}


def engine(*args: str) -> subprocess.CompletedProcess[str]:
    """`python -m engine ARGS`, as an unprivileged user when the tests run as root (root
    may write anywhere, so a read-only directory would not be one)."""
    unprivileged = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    argv = [*(unprivileged if os.geteuid() == 0 else []), sys.executable, "-m", "engine", *args]
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)


def assert_one_clear_line(result: subprocess.CompletedProcess[str], path: Path, says: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"journal {path}: ")
    assert says in lines[0]


@pytest.fixture(scope="module")
def cases(shared: Path) -> dict[str, Path]:
    return {kind: damaged(kind, shared) for kind in KINDS}


@pytest.mark.parametrize("kind", list(KINDS))
def test_run_on_an_unusable_journal_says_which_file_and_what_to_do(kind, cases, shared):
    path = cases[kind]
    config = shared / f"{kind}.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "journal-check",
                "api": {"enabled": False},
                "log": {"format": "json"},
                "components": [
                    {"name": "journal", "type": "journal", "config": {"path": str(path)}}
                ],
            }
        )
    )
    config.chmod(0o644)
    result = engine("run", "--config", str(config))
    if kind == "directory":  # the config check sees it first, before the journal opens
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip().splitlines() == [
            f"{config}: components[0].config.path: {str(path)!r} is a directory, not a regular file"
        ]
        return
    assert_one_clear_line(result, path, KINDS[kind])
    if kind in ("garbage", "truncated"):
        assert SALVAGE in result.stderr


@pytest.mark.parametrize(
    ("kind", "command"),
    [(kind, command) for kind in ("directory", "garbage", "truncated") for command in
     ("tail", "export")] + [("holed", "export")],  # tail reads only the intact newest rows
)  # fmt: skip
def test_reading_an_unusable_journal_says_which_file_and_prints_no_rows(
    kind, command, cases, capsys
):
    assert cli_main(["journal", command, "--path", str(cases[kind])]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # not part of the rows before dying
    assert captured.err.count("\n") == 1
    assert captured.err.startswith(f"journal {cases[kind]}: ")
    assert KINDS[kind] in captured.err


def test_a_journal_in_a_read_only_directory_can_still_be_read(cases):
    result = engine("journal", "tail", "-n", "2", "--path", str(cases["read-only"]))
    assert result.returncode == 0, result.stderr
    counts = [json.loads(line)["count"] for line in result.stdout.splitlines()]
    assert counts == [ROWS - 2, ROWS - 1]


@pytest.mark.parametrize("kind", ["truncated", "holed"])
def test_salvage_writes_every_readable_row_and_counts_the_rest(kind, cases, shared, capsys):
    out = shared / f"salvaged-{kind}.jsonl"
    assert cli_main(["journal", *SALVAGE.split(), "--path", str(cases[kind]),
                     "--out", str(out)]) == 0  # fmt: skip
    counts = [json.loads(line)["count"] for line in out.read_text().splitlines()]
    assert counts == sorted(counts)
    assert 0 < len(counts) < ROWS
    assert capsys.readouterr().err.strip() == (
        f"exported {len(counts)} events; {ROWS - len(counts)} rows could not be read"
    )
    if kind == "holed":  # read on past the damaged pages, to the last row
        assert counts[-1] == ROWS - 1
        assert len(counts) > ROWS * 0.9


def test_export_of_a_damaged_journal_leaves_no_partial_file(cases, shared):
    out = shared / "partial.jsonl"
    assert cli_main(["journal", "export", "--path", str(cases["holed"]),
                     "--out", str(out)]) == 2  # fmt: skip
    assert not out.exists()


def test_salvage_of_a_file_that_is_no_database_at_all_says_so(cases, capsys):
    assert cli_main(["journal", *SALVAGE.split(), "--path", str(cases["garbage"])]) == 2
    assert KINDS["garbage"] in capsys.readouterr().err
