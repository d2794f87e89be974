"""Hot-swapping strategy configs in a running daemon (real subprocess, real replay)."""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import random
import signal
import sqlite3
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.hostile_files import billion_laughs, nested_yaml
from tests.paper_support import STRATEGY, daemon_config, daemon_with_admin_token
from tests.processes import EngineProcess, wait_until

pytestmark = pytest.mark.integration


def http(port: int, path: str, method: str = "GET", token: str | None = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", method=method, headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def strategies_status(port: int) -> dict[str, Any]:
    _, body = http(port, "/status")
    (component,) = [c for c in body["components"] if c["name"] == "strategy"]
    return component["status"]


def write_atomically(path: Path, text: str) -> str:
    """Replace ``path`` in one rename (as editors do); the sha256 of what was written."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)
    return hashlib.sha256(text.encode()).hexdigest()


def metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
    raise AssertionError(f"no series {name}")


# One of each kind of invalid config, with the field path its rejection must name.
INVALID: list[tuple[str, dict[str, Any] | str, str]] = [
    ("bad type", {"high_confidence": "very"}, "high_confidence: "),
    ("out of range", {"high_confidence": 1.5}, "high_confidence: must be < 1, got 1.5"),
    ("unknown field", {"high_confidense": 0.8}, "high_confidense: unknown field"),
    ("broken YAML", "model: [unclosed\n", "invalid YAML"),
    ("medium >= high", {"high_confidence": 0.6, "medium_confidence": 0.65},
     "medium_confidence: must be below high_confidence"),
]  # fmt: skip


def versions(base: dict[str, Any]) -> list[tuple[str, dict[str, Any] | None, str]]:
    """100 versions, half invalid (kinds in turn), in a seeded shuffled order.

    Each is (text, settings if valid else None, expected error fragment if invalid).
    """
    out: list[tuple[str, dict[str, Any] | None, str]] = []
    for i in range(50):
        high = round(0.55 + 0.008 * i, 3)  # distinct content every time
        settings = {**base, "high_confidence": high, "medium_confidence": 0.5,
                    "trade_on": ("high", "medium")[i % 2]}  # fmt: skip
        out.append((yaml.safe_dump(settings, sort_keys=False), settings, ""))
        kind, change, expected = INVALID[i % len(INVALID)]
        body = change if isinstance(change, str) else yaml.safe_dump({**base, **change})
        out.append((f"# invalid {i}: {kind}\n{body}", None, expected))
    random.Random(7).shuffle(out)
    return out


def journal_rows(journal: Path) -> list[tuple[int, str, dict[str, Any]]]:
    conn = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    rows = conn.execute("SELECT seq, type, body FROM events ORDER BY id").fetchall()
    conn.close()
    return [(seq, kind, json.loads(body)) for seq, kind, body in rows]


def expected_confidence(p_up: float, settings: dict[str, Any]) -> str:
    certainty = max(p_up, 1 - p_up)
    if certainty > settings["high_confidence"]:
        return "high"
    return "medium" if certainty > settings["medium_confidence"] else "low"


def test_100_rewrites_during_a_replay_swap_every_valid_version_and_reject_every_invalid_one(
    models, tmp_path
):
    config, strategies, journal = daemon_config(models, tmp_path, watch=True)
    path = strategies / f"{STRATEGY}.yaml"
    base = yaml.safe_load(path.read_text())
    daemon = EngineProcess("run", "--config", str(config))
    try:
        port = daemon.wait_for_log("api.listening")["port"]
        daemon.wait_for_log("engine.running")
        wait_until(
            lambda: strategies_status(port)["strategies"][STRATEGY]["signals_published"] > 0,
            30,
            "signals flowing (features warmed up)",
        )
        in_force = {1: {**base, "on_remove": "keep"}}  # config version -> its settings
        hash_in_force = strategies_status(port)["strategies"][STRATEGY]["config_hash"]
        slowest = 0.0
        for text, settings, expected_error in versions(base):
            digest = write_atomically(path, text)
            if settings is not None:

                def swapped(digest: str = digest) -> bool:
                    return strategies_status(port)["strategies"][STRATEGY]["config_hash"] == digest

                slowest = max(slowest, wait_until(swapped, 1.0, f"version {digest[:8]} in force"))
                now = strategies_status(port)["strategies"][STRATEGY]
                assert now["config_version"] == len(in_force) + 1
                in_force[now["config_version"]] = {**base, **settings}
                hash_in_force = digest
            else:

                def rejected(digest: str = digest) -> bool:
                    return (
                        strategies_status(port)["rejected"].get(STRATEGY, {}).get("hash") == digest
                    )

                wait_until(rejected, 5.0, f"rejection of {text.splitlines()[0]}")
                status = strategies_status(port)
                (error,) = status["rejected"][STRATEGY]["errors"][:1]
                assert error.startswith(f"{path}: "), error
                assert expected_error in error, error
                # The old config keeps running.
                assert status["strategies"][STRATEGY]["config_hash"] == hash_in_force
            assert daemon.proc.poll() is None, "the daemon stopped"
        print(f"slowest swap: {slowest * 1000:.0f} ms")

        assert metric(port, 'trade_engine_config_reload_failures_total{trigger="file_watch"}') == 50
        assert metric(port, f'trade_engine_strategy_config_version{{strategy="{STRATEGY}"}}') == 51
        last_sequence = http(port, "/status")[1]["bus_sequence"]
        daemon.send(signal.SIGTERM)
        assert daemon.wait(timeout=20) == 0
    finally:
        daemon.kill()

    rejections = [r for r in daemon.records() if r.get("event") == "strategy_host.rejected"]
    assert len(rejections) == 50
    assert all(r["errors"] and r["kept_version"] >= 1 for r in rejections)

    rows = journal_rows(journal)
    sequences = [seq for seq, _, _ in rows]
    assert sequences == list(range(1, len(rows) + 1))  # contiguous: no event lost
    assert len(rows) >= last_sequence

    # Every signal was made wholly under one config version: its confidence and action
    # follow that version's thresholds, and versions only ever go forward.
    signals = [body for _, kind, body in rows if kind == "Signal"]
    seen_versions = [s["config_version"] for s in signals]
    assert seen_versions == sorted(seen_versions)
    assert len(set(seen_versions)) >= 10, "the replay should trade through many versions"
    for s in signals:
        settings = in_force[s["config_version"]]
        confidence = expected_confidence(s["probability_up"], settings)
        assert s["confidence"] == confidence, (s, settings)
        trading = ("high",) if settings["trade_on"] == "high" else ("high", "medium")
        if confidence in trading:
            assert s["action"] == ("BUY" if s["probability_up"] > 0.5 else "SELL")
        else:
            assert s["action"] == "HOLD"


def test_files_added_changed_and_deleted_take_effect_on_sighup(models, tmp_path):
    """watch: false, so only SIGHUP reloads: a new file starts a strategy, a change is
    applied, a deleted `on_remove: close` file stops it after a SELL the risk manager
    handles."""
    config, strategies, journal = daemon_config(models, tmp_path, watch=False)
    base = yaml.safe_load((strategies / f"{STRATEGY}.yaml").read_text())
    extra = strategies / "second.yaml"
    daemon = EngineProcess("run", "--config", str(config))
    try:
        port = daemon.wait_for_log("api.listening")["port"]
        daemon.wait_for_log("engine.running")
        assert list(strategies_status(port)["strategies"]) == [STRATEGY]

        write_atomically(extra, yaml.safe_dump({**base, "on_remove": "close"}))
        time.sleep(0.3)  # no watch: nothing happens by itself
        assert list(strategies_status(port)["strategies"]) == [STRATEGY]
        daemon.send(signal.SIGHUP)
        wait_until(lambda: "second" in strategies_status(port)["strategies"], 5, "second started")
        wait_until(
            lambda: strategies_status(port)["strategies"]["second"]["signals_published"] > 0,
            30,
            "the second strategy's signals",
        )

        digest = write_atomically(extra, yaml.safe_dump({**base, "on_remove": "close",
                                                         "trade_on": "high"}))  # fmt: skip
        daemon.send(signal.SIGHUP)

        def changed() -> bool:
            return strategies_status(port)["strategies"]["second"]["config_hash"] == digest

        wait_until(changed, 5, "the change applied")
        assert strategies_status(port)["strategies"]["second"]["config_version"] == 2

        extra.unlink()
        daemon.send(signal.SIGHUP)
        wait_until(lambda: "second" not in strategies_status(port)["strategies"], 5, "stopped")
        status = strategies_status(port)
        assert status["reloads"]["sighup"] == 3
        assert status["reload_failures"]["sighup"] == 0
        assert list(status["strategies"]) == [STRATEGY]
        daemon.send(signal.SIGTERM)
        assert daemon.wait(timeout=20) == 0
    finally:
        daemon.kill()

    stopped = daemon.wait_for_log("strategy_host.stopped")
    assert stopped["strategy"] == "second"
    assert stopped["on_remove"] == "close"
    assert stopped["sell_signals"] == ["BTC/USDT"]
    rows = journal_rows(journal)
    (close,) = [
        body for _, kind, body in rows
        if kind == "Signal" and body["strategy_id"] == "second"
        and "on_remove" in body["correlation_id"]
    ]  # fmt: skip
    assert close["action"] == "SELL"
    assert close["config_version"] == 2
    decisions = [
        (kind, body) for _, kind, body in rows
        if kind in ("OrderRequest", "RiskRejected")
        and body["correlation_id"] == close["correlation_id"]
    ]  # fmt: skip
    assert len(decisions) == 1, "the risk manager decided on the closing SELL"
    kind, decision = decisions[0]
    assert decision["strategy_id"] == "second"
    if kind == "OrderRequest":
        assert decision["side"] == "SELL"
    versions_of_second = {
        body["config_version"] for _, kind, body in rows
        if kind == "Signal" and body["strategy_id"] == "second"
    }  # fmt: skip
    assert versions_of_second <= {1, 2}


def health_latencies(port: int, stop: threading.Event) -> list[float]:
    """Seconds each GET /health took, back to back until ``stop``."""
    latencies: list[float] = []
    while not stop.is_set():
        started = time.monotonic()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as resp:
            resp.read()
        latencies.append(time.monotonic() - started)
    return latencies


def test_a_fifo_and_yaml_bombs_in_the_directory_neither_wedge_nor_stall_the_daemon(
    models, tmp_path
):
    """A FIFO named *.yaml once hung every later reload and kept a SIGTERMed daemon
    alive; a 10 KB nested file stalled the loop for seconds."""
    daemon, token, strategies = daemon_with_admin_token(models, tmp_path, watch=True)
    path = strategies / f"{STRATEGY}.yaml"
    base = yaml.safe_load(path.read_text())
    try:
        port = daemon.wait_for_log("api.listening")["port"]
        daemon.wait_for_log("engine.running")
        pipe = strategies / "x.yaml"
        os.mkfifo(pipe)  # the watch reloads at once; nobody ever writes to it

        status, body = http(port, "/admin/reload", "POST", token)
        assert status == 200, body
        assert body["reloads"][0]["skipped"] == [
            {"file": str(pipe), "reason": "not a regular file: it is a FIFO (named pipe)"}
        ]
        assert daemon.wait_for_log("strategy_host.skipped")["file"] == str(pipe)
        digest = write_atomically(path, yaml.safe_dump({**base, "high_confidence": 0.8}))

        def applied() -> bool:
            return strategies_status(port)["strategies"][STRATEGY]["config_hash"] == digest

        wait_until(applied, 5, "a valid edit applied by the watch")

        # Rejected with the line named, while /health keeps answering at once.
        (strategies / "nested.yaml").write_text(nested_yaml("model"))
        (strategies / "laughs.yaml").write_text(billion_laughs("model", levels=9))
        stop = threading.Event()
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            polling = pool.submit(health_latencies, port, stop)
            time.sleep(0.2)
            for _ in range(5):
                status, body = http(port, "/admin/reload", "POST", token)
                assert status == 422, body
                errors = {r["strategy"]: r["errors"] for r in body["reloads"][0]["rejected"]}
                assert errors == {
                    "laughs": [f"{strategies}/laughs.yaml: line 4, column 45: invalid YAML: "
                               "aliases repeat more than 10000 values (the limit)"],
                    "nested": [f"{strategies}/nested.yaml: line 1, column 71: invalid YAML: "
                               "nested deeper than 64 levels (the limit)"],
                }  # fmt: skip
                time.sleep(0.1)
            stop.set()
            latencies = sorted(polling.result())
        p99 = latencies[int(len(latencies) * 0.99)]
        print(f"/health: {len(latencies)} requests, p99 {p99 * 1000:.1f} ms")
        assert len(latencies) > 50
        assert p99 < 0.1
        assert strategies_status(port)["strategies"][STRATEGY]["config_hash"] == digest

        sent = time.monotonic()
        daemon.send(signal.SIGTERM)
        assert daemon.wait(timeout=15) == 0
        assert time.monotonic() - sent < 4.0  # the config's shutdown_timeout_seconds
    finally:
        daemon.kill()
