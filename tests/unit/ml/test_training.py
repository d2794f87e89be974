"""Training-set guards that hold before AutoGluon is ever called."""

from __future__ import annotations

import pandas as pd
import pytest

from ml.labels import make_dataset
from ml.pipeline import train_from_file
from ml.registry import ModelRegistry
from ml.training import TrainSettings, fit_predictor, time_ordered_split
from tests.candle_frames import candle_frame, constant_price_file

DAYS = pd.date_range("2022-01-01", periods=400, freq="1D")


def test_train_refuses_a_constant_price_naming_the_file_before_fitting(tmp_path):
    registry = ModelRegistry(tmp_path / "models")
    settings = TrainSettings(feature_set="stationary")
    with pytest.raises(
        ValueError, match=r"flat\.csv: the \d+ training rows: all \d+ labels are not up"
    ):
        train_from_file(constant_price_file(tmp_path), settings, registry, "flat")
    assert registry.names() == []


def test_fit_refuses_labels_of_one_class_for_every_caller(tmp_path):
    """The walk-forward and Monte Carlo folds fit through the same gate."""
    rising = candle_frame(DAYS)  # every close above the last: every label is "up"
    features, labels = make_dataset(rising, "stationary")
    train, tuning = time_ordered_split(features, labels, 0.2)
    with pytest.raises(ValueError, match=r"^the training rows: all \d+ labels are up"):
        fit_predictor(train, tuning, TrainSettings(), tmp_path / "model")
