"""From a candle file to a registered model version: the `trade-engine train` pipeline."""

from __future__ import annotations

import hashlib
import importlib.metadata
import platform
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from engine.candles import open_times_ns, read_candles, utc_timestamp
from engine.timeframes import infer_timeframe
from ml.labels import LABEL_COLUMN, make_dataset
from ml.registry import ModelRegistry, ModelVersion
from ml.training import (
    TrainSettings,
    autogluon_output_to,
    check_label_classes,
    check_training_set,
    fit_predictor,
    time_ordered_split,
)

PACKAGES = ("autogluon.tabular", "lightgbm", "xgboost-cpu", "catboost", "pandas", "numpy", "TA-Lib")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


@dataclass(frozen=True)
class TrainResult:
    model: ModelVersion
    tuning_accuracy: float
    train_rows: int
    tuning_rows: int


def train_and_register(
    frame: pd.DataFrame,
    settings: TrainSettings,
    registry: ModelRegistry,
    name: str,
    data_description: dict[str, Any],
    promote: bool = True,
    show_progress: bool = False,
    timeframe: str | None = None,
) -> TrainResult:
    """Features, checks, a time-ordered split, AutoGluon, a deployment clone, a registry entry.

    ``timeframe`` (the bars'; inferred from the frame when not given) goes into the
    metadata: a model is refused on bars of another timeframe."""
    timeframe = timeframe or infer_timeframe(open_times_ns(frame))
    features, labels = make_dataset(frame, settings.feature_set, settings.horizon)
    check_training_set(features, frame["close"].loc[features.index], settings)
    train, tuning = time_ordered_split(features, labels, settings.tuning_fraction, settings.horizon)
    source = data_description.get("path") or "the data"
    check_label_classes(train[LABEL_COLUMN], f"{source}: the {len(train)} training rows")
    # In the model's directory (hidden): a training killed half-way leaves a leftover
    # that ModelRegistry.remove_incomplete finds.
    with tempfile.TemporaryDirectory(dir=registry.model_dir(name), prefix=".train-") as work:
        work_dir = Path(work)
        predictor = fit_predictor(
            train,
            tuning,
            settings,
            work_dir / "full",
            log_file=work_dir / "full" / "autogluon.log",
            show_progress=show_progress,
        )
        log_file = work_dir / "full" / "autogluon.log"
        with autogluon_output_to(log_file):
            tuning_accuracy = float(predictor.evaluate(tuning, silent=True)["accuracy"])
            best = predictor.model_best
            leaderboard = predictor.leaderboard(tuning, silent=True)
            clone_dir = work_dir / "clone"
            predictor.clone_for_deployment(path=str(clone_dir))
        shutil.copy(log_file, clone_dir / "autogluon.log")
        stamps = frame["timestamp"]
        metadata = {
            "timeframe": timeframe,
            "feature_set": settings.feature_set,
            "feature_columns": list(features.columns),
            "label": {
                "kind": "next_bar_direction",
                "horizon": settings.horizon,
                "column": "target",
            },
            "training_span": {
                "first_bar": str(stamps.loc[train.index[0]]),
                "last_train_bar": str(stamps.loc[train.index[-1]]),
                "first_tuning_bar": str(stamps.loc[tuning.index[0]]),
                "last_bar": str(stamps.loc[tuning.index[-1]]),
                "train_rows": len(train),
                "tuning_rows": len(tuning),
            },
            "data": data_description,
            "metrics": {
                "tuning_accuracy": tuning_accuracy,
                "tuning_up_rate": float(tuning["target"].mean()),
                "best_model": best,
                "leaderboard": leaderboard[["model", "score_test", "score_val"]]
                .head(10)
                .to_dict("records"),
            },
            "settings": settings.to_json(),
            "packages": package_versions(),
        }
        entry = registry.add(name, clone_dir, metadata, promote=promote)
    return TrainResult(entry, tuning_accuracy, len(train), len(tuning))


def train_from_file(
    data: Path,
    settings: TrainSettings,
    registry: ModelRegistry,
    name: str,
    promote: bool = True,
    show_progress: bool = False,
    until: str | None = None,
) -> TrainResult:
    """Train on a candle file, on the candles opening before ``until`` when given."""
    frame, timeframe, gaps = read_candles(data)
    if until is not None:
        frame = frame.loc[frame["timestamp"] < utc_timestamp(until)].reset_index(drop=True)
    description = {
        "path": str(data),
        "sha256": file_sha256(data),
        "timeframe": timeframe,
        "rows": len(frame),
        "gaps": gaps.gaps,
        "missing_candles": gaps.missing_candles,
        "until": until,
    }
    return train_and_register(
        frame, settings, registry, name, description, promote, show_progress, timeframe
    )
