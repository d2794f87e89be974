"""Shared set-up for tests of the paper-trading loop of config/paper.yaml."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from adapters.market.replay import SAMPLES_DIR
from engine.config import load_engine_config
from strategies.model import TrainSettings
from strategies.model_registry import ModelRegistry
from strategies.train import train_from_file

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


def paper_config(models: Path, journal: Path, end: str) -> dict[str, Any]:
    """config/paper.yaml as shipped, pointed at temporary state, 2021 up to ``end``."""
    shipped = load_engine_config(ROOT / "config" / "paper.yaml").model_dump(mode="json")
    for entry in shipped["components"]:
        if entry["type"] == "journal":
            entry["config"]["path"] = str(journal)
        if entry["type"] == "replay":
            entry["config"].update(end=end, speed=None)
        if entry["type"] == "ml_direction":
            entry["config"].update(models_dir=str(models), train_if_missing=None)
    return {**shipped, "clock": "simulated"}
