"""kill -9 in the middle of a paper-trading replay, restart: same journal, same equity."""

from __future__ import annotations

import json
import signal
import sqlite3
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from engine.journal import RUN_EVENT_TYPES
from tests.paper_support import paper_config
from tests.processes import EngineProcess, free_port

pytestmark = pytest.mark.integration

END = "2021-03-31T23:00:00Z"  # 2021-01-01..03-31: 2,160 hourly bars


def write(config: dict, path: Path) -> Path:
    config = {**config, "api": {"enabled": False}, "log": {"format": "json", "level": "warning"}}
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def trading_rows(journal: Path) -> list[tuple[str, dict]]:
    """Every event but the per-run ones, in journal order, without the bus sequence."""
    conn = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    marks = ",".join("?" * len(RUN_EVENT_TYPES))
    rows = conn.execute(
        f"SELECT type, body FROM events WHERE type NOT IN ({marks}) ORDER BY id", RUN_EVENT_TYPES
    ).fetchall()
    conn.close()
    out = []
    for kind, body in rows:
        event = json.loads(body)
        event.pop("seq")
        out.append((kind, event))
    return out


def bars_journalled(journal: Path) -> int:
    if not journal.exists():
        return 0
    try:
        conn = sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=0.1)
        count = conn.execute("SELECT COUNT(*) FROM events WHERE type = 'Bar'").fetchone()[0]
        conn.close()
        return int(count)
    except sqlite3.OperationalError:
        return 0  # the file exists but the schema is not written yet


def test_kill_9_mid_replay_then_restart_ends_with_the_uninterrupted_journal_and_equity(
    models, tmp_path
):
    uninterrupted = tmp_path / "a.sqlite"
    config_a = write(paper_config(models, uninterrupted, END), tmp_path / "a.yaml")
    run = EngineProcess("replay", "--config", str(config_a))
    assert run.wait(timeout=180) == 0, "".join(run.lines[-20:])
    expected = trading_rows(uninterrupted)
    total_bars = sum(1 for kind, _ in expected if kind == "Bar")
    assert total_bars > 2000
    assert any(kind == "OrderFilled" for kind, _ in expected)

    crashed = tmp_path / "b.sqlite"
    config_b = write(paper_config(models, crashed, END), tmp_path / "b.yaml")
    victim = EngineProcess("replay", "--config", str(config_b))
    deadline = time.monotonic() + 120
    while bars_journalled(crashed) < total_bars // 3:
        assert victim.proc.poll() is None, "the replay ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    victim.send(signal.SIGKILL)
    assert victim.wait(timeout=10) == -signal.SIGKILL
    at_kill = bars_journalled(crashed)
    assert at_kill < total_bars  # killed mid-replay, with trades on disk

    restarted = EngineProcess("replay", "--config", str(config_b))
    assert restarted.wait(timeout=180) == 0, "".join(restarted.lines[-20:])
    assert not [line for line in restarted.lines if "resume_diverged" in line]
    resumed = trading_rows(crashed)
    assert len(resumed) == len(expected)
    assert resumed == expected  # journal, positions and equity: event for event
    final_portfolio = [event for kind, event in resumed if kind == "PortfolioUpdate"][-1]
    assert final_portfolio == [e for k, e in expected if k == "PortfolioUpdate"][-1]


def test_the_running_paper_daemon_shows_the_trading_series_on_metrics(models, tmp_path):
    config = paper_config(models, tmp_path / "j.sqlite", END)
    config["clock"] = "live"
    for entry in config["components"]:
        if entry["type"] == "replay":
            entry["config"]["speed"] = 3_600_000  # a thousand hourly bars a second
    port = free_port()
    config = {**config, "api": {"port": port}, "log": {"format": "json", "level": "warning"}}
    path = tmp_path / "paper.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    daemon = EngineProcess("run", "--config", str(path))
    try:
        deadline = time.monotonic() + 60
        while True:
            assert time.monotonic() < deadline, "".join(daemon.lines[-20:])
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                    metrics = r.read().decode()
            except OSError:
                time.sleep(0.2)
                continue
            buys = [
                line
                for line in metrics.splitlines()
                if line.startswith('trade_engine_portfolio_fills_total{side="BUY"}')
            ]
            if buys and float(buys[0].split()[-1]) > 0:  # the series exists from 0: wait
                break
            time.sleep(0.2)
        for series in (
            'trade_engine_bus_published_events_total{event_type="Signal"}',
            "trade_engine_risk_signals_total",
            "trade_engine_risk_orders_total",
            'trade_engine_risk_rejections_total{reason="MAX_POSITION"}',
            "trade_engine_portfolio_fills_total",
            "trade_engine_portfolio_equity_quote",
            "trade_engine_portfolio_drawdown_ratio",
            'trade_engine_risk_state{state="ACTIVE"}',
        ):
            assert series in metrics, series
        daemon.send(signal.SIGTERM)
        assert daemon.wait(timeout=5) == 0
    finally:
        daemon.kill()
