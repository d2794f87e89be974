"""The retrain supervisor in a real daemon process: ``kill -9`` during a training and
during a shadow window leaves the registry and the journal consistent, and operators
promote and roll back through the admin API (the CLI's ``--daemon``), with the strategy
and ``POST /predict`` serving the same model throughout."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from engine.candles import write_candles
from ml.labels import make_dataset
from ml.registry import ModelRegistry
from tests.processes import EngineProcess, free_port, process_alive, wait_until
from tests.retraining import (
    CHAMPION_BARS,
    FAST,
    MODEL,
    STRATEGY,
    engine_config,
    regime_candles,
    train_champion,
)

pytestmark = pytest.mark.integration

TOKEN = "supervisor-daemon-admin-token"


def daemon(tmp_path: Path, models: Path) -> tuple[Path, int, Path]:
    """A live-clock daemon replaying the reversal regime at 20 bars a second, its
    supervisor retraining only when an operator asks and never deciding on its own."""
    frame = regime_candles([("momentum", CHAMPION_BARS), ("reversal", 4000)])
    data = tmp_path / "candles.csv"
    write_candles(frame, data)
    port = free_port()
    supervisor = {
        "window_bars": 500,
        "time_limit": 20,
        "hyperparameters": FAST,
        "num_cpus": 1,
        "triggers": {"schedule": None, "max_model_age_days": None, "min_accuracy": None},
        "gate": {"shadow_bars": 100_000},
    }
    start = str(frame["timestamp"].iloc[CHAMPION_BARS - 600])  # bars to train on
    config = engine_config(tmp_path, data, models, start, supervisor, port)
    config["clock"] = "live"
    config["log"] = {"format": "json", "level": "info"}
    config["components"][1]["config"]["speed"] = 20 * 3600
    for entry in config["components"]:
        if entry["type"] == "journal":
            entry["config"]["resume"] = True
    path = tmp_path / "engine.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path, port, data


def call(port: int, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def served(port: int, row: dict[str, float]) -> tuple[str, str]:
    """(the strategy's model, /predict's model) as the daemon reports them."""
    _, status = call(port, "GET", "/status")
    strategy = next(c for c in status["components"] if c["name"] == "strategy")
    _, answer = call(port, "POST", "/predict", row)
    return strategy["status"]["strategies"][STRATEGY]["model_version"], answer["model_version"]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine", *args], capture_output=True, text=True, check=False,
        env={**os.environ, "ENGINE_ADMIN_TOKEN": TOKEN},
    )  # fmt: skip


def assert_registry_consistent(models: Path) -> ModelRegistry:
    """Every alias names a whole version, and nothing half-written is left."""
    registry = ModelRegistry(models)
    versions = {v.version for v in registry.versions(MODEL)}
    assert set(registry.aliases(MODEL).values()) <= versions
    assert not registry.incomplete(MODEL)
    return registry


def journal_events(journal: Path, kind: str) -> list[dict[str, Any]]:
    conn = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT body FROM events WHERE type = ? ORDER BY id", (kind,))
        return [json.loads(body) for (body,) in rows]
    finally:
        conn.close()


def training_workers(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (the spawn pool's training worker)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def test_kill_during_training_then_during_shadow_and_operators_on_the_daemon(tmp_path):
    models = tmp_path / "models"
    frame = regime_candles([("momentum", CHAMPION_BARS)])
    champion = train_champion(frame, models)
    config, port, _ = daemon(tmp_path, models)
    journal = tmp_path / "j.sqlite"
    env = {"ENGINE_ADMIN_TOKEN": TOKEN}
    features, _ = make_dataset(regime_candles([("momentum", 400)]), "stationary")
    row = features.iloc[-1].to_dict()

    # 1. kill -9 while the challenger trains: the worker dies with the daemon, and the
    #    restarted daemon removes what the training left, registering nothing.
    first = EngineProcess("run", "--config", str(config), env=env)
    try:
        first.wait_for_log("engine.running", timeout=60)
        time.sleep(1.0)  # bars to train on
        assert call(port, "POST", f"/admin/models/{MODEL}/retrain")[0] == 200
        first.wait_for_log("retrain.started", timeout=10)
        model_dir = models / MODEL
        wait_until(lambda: list(model_dir.glob(".train-*")), 60, "the training's work folder")
        workers = training_workers(first.proc.pid)
        assert workers, "the training runs in a child process"
        os.kill(first.proc.pid, signal.SIGKILL)
        first.proc.wait(10)
        wait_until(lambda: not any(map(process_alive, workers)), 10, "the worker to die too")
    finally:
        first.kill()
    assert list((models / MODEL).glob(".train-*"))  # left behind, hidden, not a version
    assert ModelRegistry(models).aliases(MODEL) == {"champion": champion}
    assert len(journal_events(journal, "RetrainStarted")) == 1
    assert not journal_events(journal, "ChallengerRegistered")

    # 2. Restarted: leftovers removed (said in the log); retrain; kill -9 in the shadow.
    second = EngineProcess("run", "--config", str(config), env=env)
    try:
        removed = second.wait_for_log("retrain.leftovers_removed", timeout=60)
        assert ".train-" in removed["paths"][0]
        second.wait_for_log("engine.running", timeout=60)
        assert_registry_consistent(models)
        time.sleep(1.0)
        assert call(port, "POST", f"/admin/models/{MODEL}/retrain")[0] == 200
        registered = second.wait_for_log("retrain.challenger_registered", timeout=120)
        challenger = registered["version"]
        wait_until(
            lambda: call(port, "GET", "/status")[1]["components"], 5, "status"
        )  # fmt: skip
        os.kill(second.proc.pid, signal.SIGKILL)
        second.proc.wait(10)
    finally:
        second.kill()
    registry = assert_registry_consistent(models)
    assert registry.aliases(MODEL) == {"champion": champion, "challenger": challenger}
    (journalled,) = journal_events(journal, "ChallengerRegistered")
    assert journalled["version"] == challenger

    # 3. Restarted: the challenger resumes its shadow; operators promote it and roll it
    #    back through the admin API; the strategy and /predict always serve the same one.
    third = EngineProcess("run", "--config", str(config), env=env)
    try:
        resumed = third.wait_for_log("retrain.challenger_resumed", timeout=60)
        assert resumed["version"] == challenger
        third.wait_for_log("engine.running", timeout=60)
        third.wait_for_log("journal.caught_up", timeout=60)
        assert served(port, row) == (f"{MODEL}/{champion}",) * 2
        promoted = cli("models", "promote", MODEL, "--daemon", f"http://127.0.0.1:{port}")
        assert promoted.returncode == 0, promoted.stderr
        assert json.loads(promoted.stdout)["supervisor"]["aliases"]["champion"] == challenger
        assert served(port, row) == (f"{MODEL}/{challenger}",) * 2
        rolled = cli("models", "rollback", MODEL, "--daemon", f"http://127.0.0.1:{port}")
        assert rolled.returncode == 0, rolled.stderr
        assert served(port, row) == (f"{MODEL}/{champion}",) * 2
        again = cli("models", "rollback", MODEL, "--daemon", f"http://127.0.0.1:{port}")
        assert again.returncode == 2
        assert "409" in again.stderr
        assert "no previous champion" in again.stderr
        third.send(signal.SIGTERM)
        assert third.wait(timeout=20) == 0
    finally:
        third.kill()
    registry = assert_registry_consistent(models)
    assert [c.kind for c in registry.history(MODEL)] == [
        "promote",
        "register",
        "promote",
        "rollback",
    ]
    assert [e["version"] for e in journal_events(journal, "ModelPromoted")] == [challenger]
    assert [e["to_version"] for e in journal_events(journal, "ModelRolledBack")] == [champion]
    history = cli("models", "history", MODEL, "--models-dir", str(models)).stdout
    assert f"{challenger}  from " in history
    assert "because: operator" in history
