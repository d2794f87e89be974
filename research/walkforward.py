"""Walk-forward evaluation: train on a window, predict the bars after it, slide, repeat.

Fold k trains on ``window`` rows (rolling) or every row so far (expanding) and predicts
the next ``step`` rows, which no model has trained on. Purge: a training row whose
label window ``[t, t + horizon]`` reaches the first test bar is dropped; embargo: a
further ``embargo`` bars between the last training label and the first test bar. Every
fold's training set goes through :func:`ml.training.check_training_set` (the
leakage check) before AutoGluon sees it. The out-of-sample predictions of all folds,
concatenated in time, go through the same backtest as a single model would (pooled).
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from engine.timeframes import timeframe_seconds
from ml.labels import forward_return, make_dataset
from ml.training import (
    TrainSettings,
    check_training_set,
    fit_predictor,
    time_ordered_split,
)
from research.backtest import BacktestResult, Figures, TradeRule, run_backtest
from research.defaults import SEED_STEP, SEED_TIME_LIMIT, SEED_WINDOW
from research.executor import Backend, cpus_per_task, run_tasks


@dataclass(frozen=True)
class Dataset:
    """Features, labels and what the backtest needs, on the same candle rows."""

    features: pd.DataFrame  # index: candle row numbers
    labels: pd.Series
    close: pd.Series
    asset_returns: pd.Series  # close t -> close t+1
    timestamps: pd.Series
    bar_seconds: float
    horizon: int


def prepare_dataset(
    frame: pd.DataFrame, timeframe: str, feature_set: str, horizon: int = 1
) -> Dataset:
    """Features and labels of a candle frame, warm-up and unlabelled rows dropped."""
    features, labels = make_dataset(frame, feature_set, horizon)
    rows = features.index
    return Dataset(
        features=features,
        labels=labels,
        close=frame["close"].astype(float).loc[rows],
        asset_returns=forward_return(frame, 1).loc[rows],
        timestamps=frame["timestamp"].loc[rows],
        bar_seconds=float(timeframe_seconds(timeframe)),
        horizon=horizon,
    )


@dataclass(frozen=True)
class FoldSpan:
    """Which rows (positions in the dataset) one fold trains on and predicts."""

    fold: int
    train: np.ndarray
    test: np.ndarray

    @property
    def in_sample(self) -> np.ndarray:
        """Per test position: inside this fold's training span (never, as folds are made)."""
        return self.test <= self.train.max()


def make_folds(
    rows: np.ndarray,
    window: int,
    step: int,
    horizon: int = 1,
    embargo: int = 0,
    expanding: bool = False,
    purge: bool = True,
) -> list[FoldSpan]:
    """Fold boundaries over candle row numbers ``rows`` (ascending).

    With purge, a row ``i`` may train for a test block starting at row ``j`` only if
    ``i + horizon + embargo < j``: its label window ``[i, i + horizon]`` ends before the
    test block (and its embargo) begins. Without purge (the seed), the training window
    ends right before the test block and ``embargo`` rows are skipped.
    """
    if window < 10 or step < 1 or horizon < 1 or embargo < 0:
        raise ValueError(f"bad walk-forward shape: window {window}, step {step}, embargo {embargo}")
    rows = np.asarray(rows)
    n = len(rows)
    gap = horizon + embargo if purge else embargo

    def eligible(test_start: int) -> int:
        """How many leading positions may train for a test block starting there."""
        if purge:
            return int(np.searchsorted(rows, rows[test_start] - gap, side="left"))
        return max(0, test_start - embargo)

    start = next((t for t in range(n) if eligible(t) >= window), None)
    if start is None:
        raise ValueError(f"{n} rows are too few for a {window}-row window plus a {gap}-row gap")
    folds = []
    for k, test_start in enumerate(range(start, n, step)):
        end = eligible(test_start)
        first = 0 if expanding else end - window
        folds.append(
            FoldSpan(k, np.arange(first, end), np.arange(test_start, min(test_start + step, n)))
        )
    return folds


@dataclass(frozen=True)
class FoldTask:
    fold: int
    train_features: pd.DataFrame
    train_labels: pd.Series
    train_close: pd.Series
    test_features: pd.DataFrame
    settings: TrainSettings


@dataclass(frozen=True)
class FoldOutcome:
    fold: int
    p_up: np.ndarray
    tuning_accuracy: float
    best_model: str
    seconds: float


def run_fold(task: FoldTask) -> FoldOutcome:
    """Check, split, fit and predict one fold (runs in a worker process)."""
    started = time.perf_counter()
    check_training_set(task.train_features, task.train_close, task.settings)
    settings = task.settings
    train, tuning = time_ordered_split(
        task.train_features, task.train_labels, settings.tuning_fraction, settings.horizon
    )
    with tempfile.TemporaryDirectory(prefix=f"wf-fold{task.fold}-") as work:
        predictor = fit_predictor(train, tuning, settings, Path(work) / "model")
        proba = predictor.predict_proba(task.test_features, as_pandas=False)
        labels = list(predictor.class_labels)
        p_up = np.asarray(proba[:, labels.index(1 if 1 in labels else labels[-1])], dtype=float)
        tuning_accuracy = float(np.mean(predictor.predict(tuning).to_numpy() == tuning["target"]))
        best = str(predictor.model_best)
    return FoldOutcome(task.fold, p_up, tuning_accuracy, best, time.perf_counter() - started)


@dataclass(frozen=True)
class WalkForwardConfig:
    window: int = SEED_WINDOW
    step: int = SEED_STEP
    expanding: bool = False
    purge: bool = True
    embargo: int = 0
    workers: int = 2
    backend: Backend = "local"
    ray_address: str | None = None
    max_folds: int | None = None  # only the first N folds (benchmarks, smoke runs)
    settings: TrainSettings = field(
        default_factory=lambda: TrainSettings(
            time_limit=SEED_TIME_LIMIT, presets="medium_quality_faster_train"
        )
    )
    rule: TradeRule = field(default_factory=TradeRule)

    def to_json(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["settings"] = self.settings.to_json()
        data["rule"] = dataclasses.asdict(self.rule)
        return data


@dataclass(frozen=True)
class FoldResult:
    span: FoldSpan
    outcome: FoldOutcome
    backtest: BacktestResult  # this fold's test rows alone, starting flat

    @property
    def figures(self) -> Figures:
        return self.backtest.model


@dataclass(frozen=True)
class WalkForwardResult:
    config: WalkForwardConfig
    folds: list[FoldResult]
    pooled: BacktestResult  # every out-of-sample bar, in time order
    oos: pd.DataFrame  # per out-of-sample bar: fold, timestamp, p_up, label, returns, ...
    wall_seconds: float


def walk_forward(
    data: Dataset, config: WalkForwardConfig, show_progress: bool = True
) -> WalkForwardResult:
    """Run every fold (in parallel), then backtest each fold and the pooled predictions."""
    started = time.perf_counter()
    spans = make_folds(
        data.features.index.to_numpy(),
        config.window,
        config.step,
        data.horizon,
        config.embargo,
        config.expanding,
        config.purge,
    )
    if config.max_folds is not None:
        spans = spans[: config.max_folds]
    workers = max(1, config.workers)
    cpus = config.settings.num_cpus or cpus_per_task(workers)
    settings = dataclasses.replace(config.settings, horizon=data.horizon, num_cpus=cpus)
    tasks = [
        FoldTask(
            fold=span.fold,
            train_features=data.features.iloc[span.train],
            train_labels=data.labels.iloc[span.train],
            train_close=data.close.iloc[span.train],
            test_features=data.features.iloc[span.test],
            settings=settings,
        )
        for span in spans
    ]
    outcomes = run_tasks(
        run_fold,
        tasks,
        workers=config.workers,
        backend=config.backend,
        ray_address=config.ray_address,
        description="walk-forward folds",
        show_progress=show_progress,
        task_cpus=cpus,
    )
    folds = []
    for span, outcome in zip(spans, outcomes, strict=True):
        rows = data.features.index[span.test]
        folds.append(FoldResult(span, outcome, _backtest_rows(data, rows, outcome.p_up, config)))
    test_positions = np.concatenate([s.test for s in spans])
    rows = data.features.index[test_positions]
    p_up = np.concatenate([o.p_up for o in outcomes])
    pooled = _backtest_rows(data, rows, p_up, config)
    oos = pooled.bars.assign(
        fold=np.concatenate([np.full(len(s.test), s.fold) for s in spans]),
        in_sample=np.concatenate([s.in_sample for s in spans]),
        timestamp=data.timestamps.loc[rows].to_numpy(),
    )
    oos.index.name = "row"
    return WalkForwardResult(config, folds, pooled, oos, time.perf_counter() - started)


def _backtest_rows(
    data: Dataset, rows: pd.Index, p_up: np.ndarray, config: WalkForwardConfig
) -> BacktestResult:
    return run_backtest(
        pd.Series(p_up, index=rows),
        data.asset_returns.loc[rows],
        data.labels.loc[rows],
        data.bar_seconds,
        config.rule,
    )
