"""Training the next-bar direction model with AutoGluon, without leaking time.

The seed trained ``TabularPredictor(label="target", problem_type="binary",
eval_metric="accuracy")`` and let AutoGluon pick its tuning rows at random, which
lets the model peek at rows from after the ones it is scored on. Here the tuning set
is always the most recent slice of the training span, passed as ``tuning_data``;
bagging and stacking are off (they resample rows at random too); torch model types
are excluded (not installed); and every training set goes through the leakage check
first. AutoGluon's own chatter goes to a log file; the user sees one progress line.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm import tqdm

from ml.labels import LABEL_COLUMN
from ml.leakage import assert_no_leakage

# The seed's preset; AutoGluon 1.6 calls it medium_quality.
PRESET_ALIASES = {"medium_quality_faster_train": "medium_quality"}
EXCLUDED_MODEL_TYPES = ("NN_TORCH", "FASTAI")


@dataclass(frozen=True)
class TrainSettings:
    """How a model is trained; stored in the model's metadata."""

    feature_set: str = "seed"
    horizon: int = 1
    time_limit: float = 300.0
    presets: str = "medium_quality"
    tuning_fraction: float = 0.2
    # Per-row latency budget AutoGluon must meet when it picks models; without one the
    # medium_quality ensemble took 84 ms a row (measured), far too slow to serve.
    infer_limit_ms: float | None = 2.0
    hyperparameters: Mapping[str, Any] | None = None  # None: the preset's model zoo
    num_cpus: int | None = None
    seed: int = 0
    check_leakage: bool = True
    excluded_model_types: tuple[str, ...] = EXCLUDED_MODEL_TYPES
    extra_fit_args: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0 < self.tuning_fraction < 1:
            raise ValueError(f"tuning_fraction must be in (0, 1), got {self.tuning_fraction}")
        if self.time_limit <= 0:
            raise ValueError(f"time_limit must be > 0, got {self.time_limit}")

    @property
    def resolved_presets(self) -> str:
        return PRESET_ALIASES.get(self.presets, self.presets)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["hyperparameters"] = (
            {k: str(v) for k, v in self.hyperparameters.items()} if self.hyperparameters else None
        )
        return data


def time_ordered_split(
    features: pd.DataFrame, labels: pd.Series, tuning_fraction: float, horizon: int = 1
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train and tuning tables: tuning is the LAST rows, with a purge gap of ``horizon``.

    The last ``horizon`` training rows are dropped: their labels look into the first
    tuning bars.
    """
    data = features.assign(**{LABEL_COLUMN: labels.to_numpy()})
    n_tune = max(1, round(len(data) * tuning_fraction))
    if len(data) - n_tune - horizon < 10:
        raise ValueError(f"too few rows to split for training: {len(data)}")
    train = data.iloc[: len(data) - n_tune - horizon]
    tuning = data.iloc[len(data) - n_tune :]
    return train, tuning


@contextmanager
def autogluon_output_to(log_file: Path) -> Iterator[None]:
    """Send AutoGluon's log records to ``log_file`` only, for the duration."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    logger = logging.getLogger("autogluon")
    handler = logging.FileHandler(log_file, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    saved = (logger.handlers[:], logger.propagate, logger.level)
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        handler.close()
        logger.handlers[:], logger.propagate, level = saved
        logger.setLevel(level)


@contextmanager
def progress_line(description: str, seconds: float, enabled: bool = True) -> Iterator[None]:
    """A tqdm bar that fills over the time budget while blocking work runs."""
    if not enabled:
        yield
        return
    bar = tqdm(total=round(seconds), desc=description, unit="s", leave=False, disable=None)
    done = threading.Event()

    def tick() -> None:
        started = time.monotonic()
        while not done.wait(0.5):
            bar.n = min(round(time.monotonic() - started), bar.total)
            bar.refresh()

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        bar.close()


def fit_predictor(
    train: pd.DataFrame,
    tuning: pd.DataFrame,
    settings: TrainSettings,
    path: Path,
    log_file: Path | None = None,
    show_progress: bool = False,
) -> Any:
    """Fit a TabularPredictor on time-ordered train/tuning tables; returns it."""
    check_label_classes(train[LABEL_COLUMN])
    from autogluon.tabular import TabularPredictor  # heavy import, only when training

    log_file = log_file or path.with_suffix(".log")
    progress = progress_line("training", settings.time_limit, show_progress)
    with autogluon_output_to(log_file), progress:
        predictor = TabularPredictor(
            label=LABEL_COLUMN,
            problem_type="binary",
            eval_metric="accuracy",
            path=str(path),
            verbosity=2,
        )
        fit_args: dict[str, Any] = {
            "tuning_data": tuning,
            "time_limit": settings.time_limit,
            "presets": settings.resolved_presets,
            "excluded_model_types": list(settings.excluded_model_types),
            "num_bag_folds": 0,
            "num_stack_levels": 0,
            "dynamic_stacking": False,
            "use_bag_holdout": False,
            "fit_weighted_ensemble": True,
            "ag_args_fit": {"random_seed": settings.seed},
        }
        if settings.hyperparameters is not None:
            fit_args["hyperparameters"] = dict(settings.hyperparameters)
        if settings.infer_limit_ms is not None:
            fit_args["infer_limit"] = settings.infer_limit_ms / 1000.0
            fit_args["infer_limit_batch_size"] = 1
        if settings.num_cpus is not None:
            fit_args["num_cpus"] = settings.num_cpus
        fit_args.update(settings.extra_fit_args)
        predictor.fit(train, **fit_args)
    return predictor


def check_label_classes(labels: pd.Series, where: str = "the training rows") -> None:
    """Refuse labels of one class (a constant price labels every bar "not up"): AutoGluon
    would stop on an ``AssertionError`` deep inside a binary fit."""
    classes = labels.unique()
    if len(classes) > 1:
        return
    if len(classes) == 0:
        raise ValueError(f"{where}: no labelled rows to train on")
    kind = "up (the next close is higher)" if classes[0] == 1 else "not up (no close ever rises)"
    raise ValueError(
        f"{where}: all {len(labels)} labels are {kind}; a direction model needs both classes. "
        "Is the price constant? Train on other data or a longer span"
    )


def check_training_set(features: pd.DataFrame, close: pd.Series, settings: TrainSettings) -> None:
    """The checks every training set passes before a model sees it."""
    if LABEL_COLUMN in features.columns:
        raise ValueError(f"the label column {LABEL_COLUMN!r} is among the features")
    if settings.check_leakage:
        assert_no_leakage(features, close, settings.horizon)
