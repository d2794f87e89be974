"""A journal that cannot write stops trading: the paper daemon under `prlimit --fsize`,
as on a full disk, then restarted without the limit."""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from engine.events import Bar, OrderFilled, OrderRequest, PortfolioUpdate, from_json
from engine.journal import RUN_EVENT_TYPES
from tests.paper_support import balances_after, daemon_config
from tests.processes import EngineProcess, wait_until

pytestmark = pytest.mark.integration

END = "2021-01-14T23:00:00Z"  # 336 hourly bars, with trades in the first days
BARS = 336
BARS_PER_SECOND = 150  # the limit is set in the first second: bars still flow after it


def get(port: int, path: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def post(port: int, path: str, token: str) -> tuple[int, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        method="POST",
        headers={"Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def status(port: int) -> tuple[int, dict[str, Any]]:
    """The bus sequence and the risk manager's status."""
    _, body = get(port, "/status")
    risk = next(c for c in body["components"] if c["name"] == "risk")
    return body["bus_sequence"], risk["status"]


def journal_rows(journal: Path, sql: str = "", *params: Any) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=1)
    try:
        return conn.execute(
            f"SELECT id, type, body FROM events {sql} ORDER BY id", params
        ).fetchall()
    finally:
        conn.close()


def fills_journalled(journal: Path) -> bool:
    try:
        return bool(journal_rows(journal, "WHERE type = 'OrderFilled'"))
    except sqlite3.OperationalError:
        return False  # no file, or no schema yet


def config_port(config: Path) -> int:
    return int(yaml.safe_load(config.read_text())["api"]["port"])


def test_a_journal_that_cannot_write_halts_trading_and_a_restart_catches_up(models, tmp_path):
    prlimit = shutil.which("prlimit")
    assert prlimit, "prlimit (util-linux) is needed to cap the daemon's file size"
    config, _, journal = daemon_config(
        models, tmp_path, watch=False, end=END, bars_per_second=BARS_PER_SECOND
    )
    port = config_port(config)
    token = "journal-failure-admin-token"
    daemon = EngineProcess("run", "--config", str(config), env={"ENGINE_ADMIN_TOKEN": token})
    try:
        wait_until(lambda: fills_journalled(journal), 30, "a first fill in the journal")
        # As on a full disk: no file of the daemon may grow past one byte from now on.
        subprocess.run([prlimit, "--pid", str(daemon.proc.pid), "--fsize=1"], check=True)
        failure = daemon.wait_for_log("journal.write_failed", timeout=10)
        first = daemon.wait_for_log("bus.handler_failed", timeout=5)
        assert first["subscriber"] == "journal.append"

        wait_until(lambda: get(port, "/ready")[0] == 503, 5, "/ready 503")
        _, ready = get(port, "/ready")
        states = {c["name"]: c["state"] for c in ready["components"]}
        assert states["journal"] == "FAULTED", ready
        sequence, risk = status(port)
        assert risk["state"] == "HALTED"
        # Halted by the very event that could not be written.
        assert risk["reason"].startswith("JOURNAL_UNAVAILABLE: journal.append failed")
        assert f"(seq {first['seq']})" in risk["reason"]

        journalled = journal_rows(journal)
        time.sleep(1.0)  # more bars are published, and reach no one
        later_sequence, later_risk = status(port)
        assert later_sequence > sequence + 50
        assert later_risk == risk  # nothing approved, not even a signal seen
        assert journal_rows(journal) == journalled  # and nothing written
        # An operator's resume is refused while the journal still fails: 409, still HALTED.
        code, body = post(port, "/admin/resume", token)
        assert code == 409, body
        assert body["risk"][0]["state"] == "HALTED"
        assert body["risk"][0]["resumed"] is False
        assert status(port)[1]["state"] == "HALTED"
        orders_written = [r for r in journalled if r[1] == "OrderRequest"]
        withheld = [r for r in daemon.records() if r.get("event") == "risk.order_withheld"]
        assert sum(risk["approved"].values()) == len(orders_written) + len(withheld)
        assert failure["path"] == str(journal)
        daemon.send(signal.SIGTERM)
        assert daemon.wait(timeout=10) == 0
    finally:
        daemon.kill()

    # Restarted without the limit: the catch-up re-produces what was lost, then goes on.
    restarted = EngineProcess("run", "--config", str(config))
    try:
        restarted.wait_for_log("journal.caught_up", timeout=30)
        restarted.wait_for_log("replay.finished", timeout=30)
        wait_until(lambda: get(port, "/ready")[0] == 200, 5, "/ready 200")
        assert status(port)[1]["state"] != "HALTED"
        restarted.send(signal.SIGTERM)
        assert restarted.wait(timeout=10) == 0
    finally:
        restarted.kill()
    assert not [r for r in restarted.records() if r.get("event") == "journal.resume_diverged"]
    assert_journal_consistent(journal)


def assert_journal_consistent(journal: Path) -> None:
    """Every bar once, every order once and filled after it, and the last portfolio
    update equal to the starting balances plus every journalled fill."""
    marks = ",".join("?" * len(RUN_EVENT_TYPES))
    where = f"WHERE type NOT IN ({marks})"
    events = [from_json(body) for _, _, body in journal_rows(journal, where, *RUN_EVENT_TYPES)]
    bars = Counter(e.correlation_id for e in events if isinstance(e, Bar))
    assert len(bars) == BARS
    assert set(bars.values()) == {1}
    orders = {e.order_id: i for i, e in enumerate(events) if isinstance(e, OrderRequest)}
    assert len(orders) == sum(isinstance(e, OrderRequest) for e in events) > 0
    fills = {i: e for i, e in enumerate(events) if isinstance(e, OrderFilled)}
    assert len({f.order_id for f in fills.values()}) == len(fills)
    assert all(orders[f.order_id] < i for i, f in fills.items())
    last = [e for e in events if isinstance(e, PortfolioUpdate)][-1]
    assert last.balances == balances_after(fills.values())
