"""The models a policy replay needs: one trained at each schedule point, cached.

At each schedule point T a model trains on the last ``window_bars`` candles that closed
strictly before T (asserted: no candle closing at or after T is in its window, so no
label looks past T either), and predicts every bar opening at or after T. Models go to a
registry under the output directory, named by everything that shapes them (data hash,
window, training settings), one version per schedule point; their predictions are kept
beside it. A rerun with the same settings trains nothing.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from croniter import croniter

from engine.timeframes import timeframe_seconds
from ml.labels import forward_return, make_dataset
from ml.pipeline import train_and_register
from ml.registry import ModelRegistry, ModelVersion
from ml.training import TrainSettings
from research.policies import ModelTrack, ReplayBars

SCHEDULES = {"monthly": "0 0 1 * *", "weekly": "0 0 * * 1", "daily": "0 0 * * *"}


def schedule_points(start: pd.Timestamp, end: pd.Timestamp, schedule: str) -> list[pd.Timestamp]:
    """``start`` (the first model), then every time ``schedule`` fires up to ``end``:
    ``monthly``, ``weekly``, ``daily`` or a cron expression (UTC)."""
    expression = SCHEDULES.get(schedule, schedule)
    if not croniter.is_valid(expression):
        raise ValueError(f"schedule {schedule!r}: not monthly/weekly/daily nor a cron expression")
    points = [start]
    fire = croniter(expression, start.to_pydatetime())
    while (point := pd.Timestamp(fire.get_next(datetime))) <= end:
        points.append(point)
    return points


def training_window(
    frame: pd.DataFrame, cut: pd.Timestamp, window_bars: int, bar: pd.Timedelta
) -> pd.DataFrame:
    """The last ``window_bars`` candles of ``frame`` (bars of length ``bar``) that closed
    strictly before ``cut``."""
    closed = frame.loc[frame["timestamp"] + bar < cut]
    window = closed.tail(window_bars).reset_index(drop=True)
    if len(window) < window_bars:
        raise ValueError(
            f"only {len(window)} candles close before {cut}, the window needs {window_bars}"
        )
    assert (window["timestamp"] + bar < cut).all(), "a training candle closes at or after the cut"
    return window


@dataclass(frozen=True)
class ReplayData:
    """The traded bars: candle rows from ``start`` to ``end`` with features and a next close."""

    features: pd.DataFrame  # index: candle rows
    timestamps: pd.Series
    bars: ReplayBars


def replay_data(
    frame: pd.DataFrame, feature_set: str, start: pd.Timestamp, end: pd.Timestamp
) -> ReplayData:
    features, labels = make_dataset(frame, feature_set)
    stamps = frame["timestamp"].loc[features.index]
    keep = ((stamps >= start) & (stamps <= end)).to_numpy()
    rows = features.index[keep]
    if rows.empty:
        raise ValueError(f"no bar with features and a next close between {start} and {end}")
    bars = ReplayBars(
        forward_return(frame).loc[rows].to_numpy(), labels.loc[rows].to_numpy().astype(int)
    )
    return ReplayData(features.loc[rows], stamps.loc[rows], bars)


class PolicyModels:
    """Trains (or finds) the model of each schedule point and its predictions."""

    def __init__(
        self,
        out: Path,
        frame: pd.DataFrame,
        timeframe: str,
        data_description: dict[str, Any],
        settings: TrainSettings,
        window_bars: int,
    ) -> None:
        self.frame = frame
        self.timeframe = timeframe
        self.bar = pd.Timedelta(seconds=timeframe_seconds(timeframe))
        self.data_description = data_description
        self.settings = settings
        self.window_bars = window_bars
        self.registry = ModelRegistry(out / "models")
        shape = {
            "data_sha256": data_description["sha256"],
            "window_bars": window_bars,
            "settings": settings.to_json(),
        }
        digest = hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()
        self.name = f"policy-{digest[:12]}"
        self.predictions_dir = out / "predictions" / self.name
        self.log: list[dict[str, Any]] = []

    def model_at(self, cut: pd.Timestamp) -> ModelVersion:
        """The model trained for ``cut``: from the registry, or trained now."""
        for version in self.registry.versions(self.name):
            if version.metadata["data"].get("until") == cut.isoformat():
                self.log.append(
                    {"cut": cut.isoformat(), "version": version.version, "cached": True}
                )
                return version
        window = training_window(self.frame, cut, self.window_bars, self.bar)
        description = {
            **self.data_description,
            "until": cut.isoformat(),
            "window_bars": self.window_bars,
            "window_first_bar": str(window["timestamp"].iloc[0]),
            "window_last_bar": str(window["timestamp"].iloc[-1]),
        }
        started = time.perf_counter()
        result = train_and_register(
            window, self.settings, self.registry, self.name, description, False,
            timeframe=self.timeframe,
        )  # fmt: skip
        seconds = time.perf_counter() - started
        metrics = result.model.metadata["metrics"]
        self.log.append(
            {
                "cut": cut.isoformat(),
                "version": result.model.version,
                "cached": False,
                "seconds": seconds,
                "best_model": metrics["best_model"],
                "tuning_accuracy": metrics["tuning_accuracy"],
            }
        )
        print(
            f"  model for {cut:%Y-%m-%d %H:%M}: {seconds:.1f} s, {metrics['best_model']}, "
            f"tuning accuracy {metrics['tuning_accuracy']:.3f}",
            file=sys.stderr,
        )
        return result.model

    def track(self, cut: pd.Timestamp, data: ReplayData) -> ModelTrack:
        """The model of ``cut`` with its P(up) on every replayed bar opening at or after it."""
        version = self.model_at(cut)
        start = int(data.timestamps.searchsorted(cut))
        if start >= len(data.timestamps):
            raise ValueError(f"no replayed bar opens at or after the schedule point {cut}")
        first_bar = data.timestamps.iloc[start]
        last_trained = pd.Timestamp(version.metadata["training_span"]["last_bar"])
        assert last_trained + self.bar < cut <= first_bar, (
            f"model {version.version}: trained up to {last_trained}, trades from {first_bar}"
        )
        rows = data.features.index[start:].to_numpy()
        cache = self.predictions_dir / f"{version.version}.npz"
        if cache.exists():
            stored = np.load(cache)
            if np.array_equal(stored["rows"], rows):
                return ModelTrack(version.version, start, stored["p_up"])
        from ml.serving import ServingModel  # loads AutoGluon

        served = ServingModel.load(
            self.registry, self.name, version.version, self.settings.feature_set
        )
        p_up = served.predict_frame(data.features.iloc[start:])
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, rows=rows, p_up=p_up)
        return ModelTrack(version.version, start, p_up)
