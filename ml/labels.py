"""Targets for supervised learning, built only from the future and never used as features.

``next_bar_direction``: 1 if the close ``horizon`` bars ahead is strictly higher than
this bar's close, else 0 (a flat close counts as not up). The last ``horizon`` bars
have no future: their label is missing and they are dropped, never labelled 0.
"""

from __future__ import annotations

import pandas as pd

from ml.features import compute, get_feature_set

LABEL_COLUMN = "target"


def went_up(reference_close: float, close: float) -> int:
    """The label rule for one pair of closes: 1 if ``close`` is strictly higher."""
    return int(close > reference_close)


def next_bar_direction(frame: pd.DataFrame, horizon: int = 1) -> pd.Series:
    """Direction of the close ``horizon`` bars ahead; ``<NA>`` where there is no future."""
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    close = frame["close"].astype(float)
    future = close.shift(-horizon)
    label = (future > close).astype("Int8")
    label[future.isna()] = pd.NA
    return label.rename(LABEL_COLUMN)


def forward_return(frame: pd.DataFrame, horizon: int = 1) -> pd.Series:
    """Simple return from this bar's close to the close ``horizon`` bars ahead (NaN at the end).

    What a position opened at this bar's close earns: the backtest's P&L per bar.
    """
    close = frame["close"].astype(float)
    return (close.shift(-horizon) / close - 1.0).rename("forward_return")


def make_dataset(
    frame: pd.DataFrame, feature_set: str = "seed", horizon: int = 1
) -> tuple[pd.DataFrame, pd.Series]:
    """Features and labels aligned on the same rows, warm-up and unlabelled rows dropped."""
    features = compute(frame, feature_set)
    if LABEL_COLUMN in features.columns:
        raise ValueError(f"feature set {feature_set!r} has a column named {LABEL_COLUMN!r}")
    label = next_bar_direction(frame, horizon)
    keep = features.notna().all(axis=1) & label.notna()
    columns = list(get_feature_set(feature_set).columns)
    return features.loc[keep, columns], label.loc[keep].astype(int)
