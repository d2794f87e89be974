"""Serving a registered model: load once, keep it in memory, predict one row fast.

``TabularPredictor.load(...).predict_proba(pd.DataFrame([row]))`` re-reads model files
from disk on every call unless the models are persisted, and builds a DataFrame with
inferred dtypes each time. The wrapper persists the models once, reuses a one-row
frame with fixed float64 columns, and asks the chosen model directly. It refuses a
model trained on a different feature set than the one the engine computes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from engine.events import Action, Confidence
from ml.registry import ModelRegistry, ModelVersion, RegistryError


class ModelLoadError(RuntimeError):
    """The model cannot be served: missing, corrupt, or trained for other features."""


class FeatureMismatchError(ModelLoadError):
    pass


class TimeframeMismatchError(ModelLoadError):
    """The model was trained on bars of another timeframe than the data it is given."""


def check_timeframe(version: ModelVersion, timeframe: str, *, allow: bool, override: str) -> str:
    """Refuse ``version`` on bars of ``timeframe`` when it was trained on others: its
    features count windows in bars, so an hourly model on daily bars sees spans 24 times
    longer than it learned on, without a word. Raises :class:`TimeframeMismatchError`
    naming ``override`` (how to run it anyway); with ``allow`` returns the problem for a
    warning instead. "" when they match or the model does not record its timeframe."""
    trained = version.timeframe
    if trained is None or trained == timeframe:
        return ""
    problem = (
        f"model {version.name}/{version.version} was trained on {trained} bars, "
        f"but the data is {timeframe}"
    )
    if allow:
        return problem
    raise TimeframeMismatchError(f"{problem}: train a model on {timeframe} bars, or {override}")


class ServingModel:
    """One loaded model version; ``predict_up(values)`` → probability of the next bar up."""

    def __init__(self, version: ModelVersion, predictor: Any) -> None:
        self.version = version
        self.predictor = predictor
        self.columns = version.feature_columns
        self.model_name: str = predictor.model_best
        self._positive = self._positive_class(predictor)
        self._row = pd.DataFrame(
            np.zeros((1, len(self.columns)), dtype=np.float64), columns=self.columns
        )

    @property
    def label(self) -> str:
        return f"{self.version.name}/{self.version.version}"

    @classmethod
    def load(
        cls,
        registry: ModelRegistry | str | Path,
        name: str,
        version: str | None = None,
        expected_feature_set: str | None = None,
    ) -> ServingModel:
        """Load ``version`` (default: the current one), persisted in memory.

        Raises :class:`ModelLoadError` with a clear reason when there is nothing to
        load, the files are corrupt, or the feature set differs from the expected one.
        """
        from autogluon.tabular import TabularPredictor  # heavy import, only when serving

        registry = registry if isinstance(registry, ModelRegistry) else ModelRegistry(registry)
        try:
            entry = registry.get(name, version) if version else registry.current(name)
        except RegistryError as exc:
            raise ModelLoadError(str(exc)) from None
        if entry is None:
            raise ModelLoadError(f"model {name!r} has no current version in {registry.root}")
        if expected_feature_set is not None and entry.feature_set != expected_feature_set:
            raise FeatureMismatchError(
                f"model {entry.name}/{entry.version} was trained on feature set "
                f"{entry.feature_set!r}, but the engine computes {expected_feature_set!r}"
            )
        try:
            predictor = TabularPredictor.load(
                str(entry.predictor_path), check_packages=False, verbosity=0
            )
            # max_memory=None: no memory check, which sizes each model by pickling it
            # whole while holding the GIL (a 110 ms stall of the event loop when the
            # supervisor loads a challenger in a thread; bench/retrain.py).
            predictor.persist(models="best", with_ancestors=True, max_memory=None)
        except Exception as exc:  # unpickling errors come in many types
            raise ModelLoadError(
                f"model {entry.name}/{entry.version} cannot be loaded from "
                f"{entry.predictor_path}: {type(exc).__name__}: {exc}"
            ) from None
        served = cls(entry, predictor)
        if list(predictor.original_features) != served.columns:
            raise FeatureMismatchError(
                f"model {entry.name}/{entry.version}: predictor "
                "features differ from its metadata's feature_columns"
            )
        return served

    @staticmethod
    def _positive_class(predictor: Any) -> Any:
        labels = list(predictor.class_labels)
        return 1 if 1 in labels else labels[-1]

    def _check(self, values: Mapping[str, float]) -> None:
        missing = [c for c in self.columns if c not in values]
        if missing:
            raise KeyError(f"missing features: {', '.join(missing)}")
        bad = [c for c in self.columns if not math.isfinite(values[c])]
        if bad:
            raise ValueError(f"features are not finite numbers: {', '.join(bad)}")

    def predict_up(self, values: Mapping[str, float]) -> float:
        """Probability that the next bar closes higher, for one feature row."""
        self._check(values)
        row = self._row
        row.iloc[0] = [values[c] for c in self.columns]
        proba = self.predictor.predict_proba(row, model=self.model_name, as_pandas=False)
        return float(proba[0, list(self.predictor.class_labels).index(self._positive)])

    def predict_up_many(self, rows: Sequence[Mapping[str, float]]) -> np.ndarray:
        """Probabilities of up for many rows in one call (micro-batches, research)."""
        for values in rows:
            self._check(values)
        frame = pd.DataFrame(
            [[values[c] for c in self.columns] for values in rows],
            columns=self.columns,
            dtype=np.float64,
        )
        return self.predict_frame(frame)

    def predict_frame(self, features: pd.DataFrame) -> np.ndarray:
        """Probabilities of up for a feature table with this model's columns."""
        frame = features.loc[:, self.columns].astype(np.float64)
        proba = self.predictor.predict_proba(frame, model=self.model_name, as_pandas=False)
        return np.asarray(proba[:, list(self.predictor.class_labels).index(self._positive)])


class ServedModelSettings(Protocol):
    """Where a served model comes from (a strategy's settings)."""

    model: str
    models_dir: str
    feature_set: str
    symbols: tuple[str, ...]


@runtime_checkable
class ModelServer(Protocol):
    """A component that serves a model (a strategy): the champion in force, its trade
    rule, and an atomic swap (the retrain supervisor promotes and rolls back through it)."""

    name: str

    @property
    def settings(self) -> ServedModelSettings: ...

    @property
    def model(self) -> ServingModel | None: ...

    def decide(self, probability_up: float) -> tuple[int, Confidence, Action]:
        """Prediction, confidence and action its trade rule draws from a probability."""
        ...

    def swap_model(self, model: ServingModel) -> None:
        """Serve ``model`` from the next event on (one assignment, between two events)."""
        ...


@runtime_checkable
class ModelServers(Protocol):
    """A component holding model servers by id (the strategy host)."""

    def model_server(self, server_id: str) -> ModelServer | None: ...
