"""The daemon as a user runs it: a real process, real signals, real HTTP."""

from __future__ import annotations

import json
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.paths import ROOT
from tests.processes import (
    EngineProcess,
    MakeRunProcess,
    free_port,
    process_alive,
    write_config,
)

pytestmark = pytest.mark.integration


def http_get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


@pytest.fixture
def engine_config(tmp_path):
    """The shipped default config with a free port, JSON logs and a fast heartbeat."""
    return write_config(
        tmp_path / "engine.yaml",
        api={"port": free_port()},
        log={"format": "json"},
        components=[
            {"name": "heartbeat", "type": "heartbeat", "config": {"interval_seconds": 0.05}}
        ],
    )


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_daemon_serves_health_ready_metrics_and_stops_cleanly(engine_config, stop_signal):
    daemon = EngineProcess("run", "--config", str(engine_config))
    try:
        port = daemon.wait_for_log("api.listening")["port"]
        daemon.wait_for_log("engine.running")

        status, body = http_get(port, "/health")
        assert status == 200
        assert json.loads(body)["status"] == "alive"

        status, body = http_get(port, "/ready")
        assert status == 200
        ready = json.loads(body)
        assert ready["ready"] is True
        assert {c["name"]: c["state"] for c in ready["components"]} == {
            "heartbeat": "RUNNING",
            "api": "RUNNING",
        }

        time.sleep(0.3)  # a few heartbeats
        status, metrics = http_get(port, "/metrics")
        assert status == 200
        beats = [
            line
            for line in metrics.splitlines()
            if line.startswith('trade_engine_bus_published_events_total{event_type="Heartbeat"}')
        ]
        assert beats
        assert float(beats[0].split()[-1]) >= 3
        for series in (
            "trade_engine_bus_sequence",
            'trade_engine_component_state{component="heartbeat",state="RUNNING"} 1.0',
            "process_cpu_seconds_total",
            "trade_engine_build_info",
        ):
            assert series in metrics

        status, _ = http_get(port, "/nope")
        assert status == 404

        sent = time.monotonic()
        daemon.send(stop_signal)
        assert daemon.wait(timeout=5) == 0
        assert time.monotonic() - sent < 5
        stopped = daemon.wait_for_log("engine.stopped")
        assert stopped["clean"] is True
        states = [
            (r["component"], r["state"])
            for r in daemon.records()
            if r["event"] == "component.state"
        ]
        # Reverse dependency order: the API stops before the heartbeat it depends on.
        assert states.index(("api", "STOPPED")) < states.index(("heartbeat", "STOPPED"))
    finally:
        daemon.kill()


def test_invalid_config_exits_2_with_the_field_path(tmp_path):
    bad = write_config(tmp_path / "bad.yaml", api={"port": -5})
    daemon = EngineProcess("run", "--config", str(bad))
    try:
        assert daemon.wait(timeout=30) == 2
        assert f"{bad}: api.port: must be >= 0, got -5" in "".join(daemon.lines)
    finally:
        daemon.kill()


def test_port_in_use_fails_start_with_a_clear_log_line(engine_config, tmp_path):
    first = EngineProcess("run", "--config", str(engine_config))
    try:
        first.wait_for_log("engine.running")
        second = EngineProcess("run", "--config", str(engine_config))
        try:
            assert second.wait(timeout=30) == 1
            failure = second.wait_for_log("engine.start_failed")
            assert "address already in use" in failure["error"].lower()
        finally:
            second.kill()
    finally:
        first.send(signal.SIGTERM)
        first.wait(timeout=5)
        first.kill()


@pytest.mark.skipif(
    not (ROOT / ".venv" / ".installed").exists(), reason="needs the project's own .venv (make)"
)
def test_make_run_serves_health_and_stops_on_ctrl_c(engine_config):
    """`make run` as a user types it; Ctrl-C reaches make and the daemon, as in a terminal."""
    daemon = MakeRunProcess(engine_config)
    try:
        port = daemon.wait_for_log("api.listening", timeout=120)["port"]
        status, _ = http_get(port, "/health")
        assert status == 200
        daemon.send(signal.SIGINT)
        daemon.wait(timeout=5)
        assert daemon.wait_for_log("engine.stopped")["clean"] is True
    finally:
        daemon.kill()


def test_replay_command_runs_the_components_to_the_end_of_the_data_and_exits_0(tmp_path):
    config = write_config(
        tmp_path / "replay.yaml",
        api={"enabled": False},
        log={"format": "json", "level": "info"},
        components=[
            {"name": "market", "type": "replay", "config": {"path": "x", "symbol": "BTC/USD"}},
            {"name": "features", "type": "features"},
        ],
    )
    daemon = EngineProcess("replay", "--config", str(config), "--data", "samples/BTC-USD_1d.csv")
    try:
        assert daemon.wait(timeout=60) == 0
        finished = daemon.wait_for_log("engine.sources_finished")
        # 2,956 bars + 2,907 feature rows (after the 49-bar warm-up) + lifecycle events.
        assert finished["published"] > 2956 + 2907
        assert daemon.wait_for_log("engine.stopped")["clean"] is True
    finally:
        daemon.kill()


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (from /proc)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier}
        found |= frontier
    return found


def test_sigterm_while_the_first_model_trains_stops_at_once_and_ends_the_training(tmp_path):
    """A supervisor's SIGTERM during start-up must not wait for a minute of training."""
    strategies = tmp_path / "strategies"
    strategies.mkdir()
    (strategies / "btc-usdt-1h.yaml").write_text(
        yaml.safe_dump(
            {
                "model": "btc-usdt-1h",
                "models_dir": str(tmp_path / "models"),
                "feature_set": "stationary",
                "train_if_missing": {"data": "samples/BTC-USDT_1h.csv.gz", "time_limit": 120},
            }
        )
    )
    config = write_config(
        tmp_path / "train.yaml",
        api={"enabled": False},
        log={"format": "json"},
        components=[
            {"name": "features", "type": "features", "config": {"feature_set": "stationary"}},
            {"name": "strategy", "type": "strategy_host", "config": {"dir": str(strategies)}},
        ],
    )
    daemon = EngineProcess("run", "--config", str(config))
    try:
        daemon.wait_for_log("strategy.training_first_model", timeout=60)
        time.sleep(2.0)  # the training process is up and busy
        workers = descendants(daemon.proc.pid)
        assert workers, "no training process"
        stop_sent = time.monotonic()
        daemon.send(signal.SIGTERM)
        assert daemon.wait(timeout=20) == 0
        assert time.monotonic() - stop_sent < 10
        assert daemon.wait_for_log("engine.start_cancelled")
        assert daemon.wait_for_log("engine.stopped")["clean"] is True
        time.sleep(0.5)
        assert not [pid for pid in workers if process_alive(pid)], "a training process outlived it"
        assert not (tmp_path / "models" / "btc-usdt-1h" / "CURRENT").exists()
    finally:
        daemon.kill()
