"""Shared set-up for tests of the paper-trading loop of config/paper.yaml."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from adapters.replay.market_data import SAMPLES_DIR
from engine.config_loading import load_engine_config
from ml.pipeline import train_from_file
from ml.registry import ModelRegistry
from ml.training import TrainSettings

ROOT = Path(__file__).resolve().parents[1]
MODEL = "btc-usdt-1h"


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
    return {**shipped, "clock": "simulated"}
