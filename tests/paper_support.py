"""Shared set-up for tests of the paper-trading loop of config/paper.yaml, run in the
test's process or as a live daemon."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from adapters.replay.market_data import SAMPLES_DIR
from engine.config_loading import load_engine_config
from engine.events import OrderFilled
from ml.pipeline import train_from_file
from ml.registry import ModelRegistry
from ml.training import TrainSettings
from tests.paths import ROOT
from tests.processes import EngineProcess, free_port

MODEL = "btc-usdt-1h"
STRATEGY = "btc-usdt-1h"  # the shipped strategy config: config/strategies/btc-usdt-1h.yaml
DAEMON_END = "2022-12-31T23:00:00Z"
# slow enough to outlast a test's config rewrites, fast enough to trade through them
DAEMON_BARS_PER_SECOND = 20
DAEMON_COMPONENTS = {"journal", "heartbeat", "replay", "features", "strategy_host", "portfolio",
                     "paper_executor", "risk"}  # fmt: skip


def balances_after(fills: Iterable[OrderFilled]) -> dict[str, int]:
    """The paper portfolio's balances (base units): its 10,000 USDT plus every fill's flows."""
    usdt, btc = 10_000 * 10**6, 0
    for f in fills:
        if f.side == "BUY":
            usdt, btc = usdt - f.amount_in, btc + f.amount_out
        else:
            usdt, btc = usdt + f.amount_out, btc - f.amount_in
    return {"USDT": usdt, "BTC": btc}


def train_small_model(root: Path) -> Path:
    """A fast stationary model trained on the hourly sample before 2021, like the demo's."""
    settings = TrainSettings(
        feature_set="stationary", time_limit=20, hyperparameters={"GBM": {"num_boost_round": 50}}
    )
    train_from_file(
        SAMPLES_DIR / "BTC-USDT_1h.csv.gz", settings, ModelRegistry(root), MODEL, until="2021-01-01"
    )
    return root


def shared_small_model(tmp_path_factory: Any) -> Path:
    """:func:`train_small_model` once per test session (a fixture's factory argument)."""
    root = tmp_path_factory.getbasetemp() / "shared-small-model"
    if not root.exists():
        train_small_model(root)
    return root


def write_strategies(models: Path, directory: Path, **changes: Any) -> Path:
    """config/strategies/*.yaml copied to ``directory``, on ``models``, with ``changes``."""
    directory.mkdir(parents=True, exist_ok=True)
    for shipped in (ROOT / "config" / "strategies").glob("*.yaml"):
        settings = yaml.safe_load(shipped.read_text())
        settings.update(models_dir=str(models), train_if_missing=None, **changes)
        (directory / shipped.name).write_text(yaml.safe_dump(settings, sort_keys=False))
    return directory


def paper_config(models: Path, journal: Path, end: str, **strategy_changes: Any) -> dict[str, Any]:
    """config/paper.yaml as shipped, pointed at temporary state, 2021 up to ``end``.

    The strategy configs are copied next to the journal (``strategy_changes`` applied).
    """
    shipped = load_engine_config(ROOT / "config" / "paper.yaml").model_dump(mode="json")
    for entry in shipped["components"]:
        if entry["type"] == "journal":
            entry["config"]["path"] = str(journal)
        if entry["type"] == "replay":
            entry["config"].update(end=end, speed=None)
        if entry["type"] == "ml_direction":
            entry["config"].update(models_dir=str(models), train_if_missing=None)
        if entry["type"] == "strategy_host":
            strategies = journal.with_name(f"{journal.stem}-strategies")
            entry["config"]["dir"] = str(write_strategies(models, strategies, **strategy_changes))
        if entry["type"] == "prediction_api":
            entry["config"].update(models_dir=str(models))
    quiet_supervisors(shipped)
    return {**shipped, "clock": "simulated"}


def quiet_supervisors(config: dict[str, Any]) -> dict[str, Any]:
    """Every retrain supervisor of ``config`` with its triggers off: it runs and serves its
    metrics, but never trains in the middle of another test (tests/integration/ml covers
    retraining)."""
    for entry in config["components"]:
        if entry["type"] == "retrain_supervisor":
            entry["config"]["triggers"] = {
                "schedule": None, "max_model_age_days": None, "min_accuracy": None, "drift": False,
            }  # fmt: skip
    return config


def daemon_config(
    models: Path,
    tmp_path: Path,
    *,
    watch: bool,
    end: str = DAEMON_END,
    bars_per_second: int = DAEMON_BARS_PER_SECOND,
) -> tuple[Path, Path, Path]:
    """The paper loop for a daemon on a live clock at ``bars_per_second`` hourly bars up
    to ``end``, with its API on a free port; written to ``tmp_path``: (config,
    strategies dir, journal)."""
    journal = tmp_path / "journal.sqlite"
    config = paper_config(models, journal, end)
    config["components"] = [c for c in config["components"] if c["type"] in DAEMON_COMPONENTS]
    for entry in config["components"]:
        if entry["type"] == "replay":
            entry["config"]["speed"] = 3600 * bars_per_second
        if entry["type"] == "strategy_host":
            entry["config"]["watch"] = watch
            strategies = Path(entry["config"]["dir"])
    config.update(
        clock="live",
        api={"host": "127.0.0.1", "port": free_port()},
        log={"format": "json", "level": "info"},
    )
    path = tmp_path / "engine.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path, strategies, journal


def daemon_with_admin_token(
    models: Path, tmp_path: Path, *, watch: bool
) -> tuple[EngineProcess, str, Path]:
    """The :func:`daemon_config` daemon started with an admin token: (process, token,
    strategies dir)."""
    token = f"admin-{secrets.token_hex(16)}"
    config, strategies, _ = daemon_config(models, tmp_path, watch=watch)
    process = EngineProcess("run", "--config", str(config), env={"ENGINE_ADMIN_TOKEN": token})
    return process, token, strategies
