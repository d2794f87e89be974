"""A check, run on every training set, that no feature carries information from the future.

A causal feature at bar t is built from bars up to t, so it lines up with the price
path at t or before better than with the price path after t. For each feature the
check measures the rank correlation of the feature, and of its bar-to-bar change,
with the one-bar return shifted by
``s`` bars, for past and present shifts (``s = 0..max_lag``) and future shifts
(``s = -1..-horizon``). A feature whose strongest alignment is with the future, and
clearly so, is reported as leaking: tomorrow's close, the next return, a label copied
into the features, a centred moving average.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ml.labels import LABEL_COLUMN


class LeakageError(ValueError):
    """Training data contains a feature that looks into the future."""


@dataclass(frozen=True)
class Leak:
    feature: str
    series: str  # what it lines up with: "return" (or "label" for a copied label)
    future_shift: int  # bars ahead the feature lines up with
    future_corr: float
    best_past_corr: float

    def __str__(self) -> str:
        return (
            f"{self.feature!r} lines up with the {self.series} {self.future_shift} bar(s) "
            f"ahead (|corr| {self.future_corr:.3f}) better than with any past or present "
            f"{self.series} (|corr| {self.best_past_corr:.3f})"
        )


def _ranks(series: pd.Series) -> np.ndarray:
    """Ranks (NaN kept): correlating ranks is Spearman's, robust to a 100x price trend."""
    return series.rank().to_numpy(dtype=np.float64)


def _abs_corr(a: np.ndarray, b: np.ndarray) -> float:
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 10:
        return 0.0
    a, b = a[ok], b[ok]
    if a.std() == 0 or b.std() == 0:
        return 0.0
    return float(abs(np.corrcoef(a, b)[0, 1]))


def _shifted(values: np.ndarray, shift: int) -> np.ndarray:
    """``values`` moved ``shift`` bars later (negative: earlier), NaN-padded."""
    out = np.full_like(values, np.nan)
    if shift > 0:
        out[shift:] = values[:-shift]
    elif shift < 0:
        out[:shift] = values[-shift:]
    else:
        out[:] = values
    return out


def find_leaks(
    features: pd.DataFrame,
    close: pd.Series,
    horizon: int = 1,
    max_lag: int = 30,
    min_corr: float = 0.5,
    margin: float = 0.002,
    max_rows: int = 5000,
) -> list[Leak]:
    """Features that align with the future close/return better than with the past.

    ``features`` and ``close`` share an index (the candle rows); only the last
    ``max_rows`` are examined (a leak is structural, a sample shows it). ``min_corr``
    ignores chance alignments; ``margin`` ignores ties.
    """
    features, close = features.iloc[-max_rows:], close.astype(float).iloc[-max_rows:]
    bases = {"return": _ranks(close.pct_change())}
    leaks: list[Leak] = []
    for column in features.columns:
        if column == LABEL_COLUMN:
            leaks.append(Leak(column, "label", 0, 1.0, 0.0))
            continue
        feature = features[column].astype(float)
        # A level that peeks (tomorrow's close) hides among today's level, which it
        # nearly equals; its bar-to-bar change does not: that is tomorrow's return.
        views = (("return", _ranks(feature)), ("return", _ranks(feature.diff())))
        for name, values in views:
            base = bases[name]
            past = max(_abs_corr(values, _shifted(base, lag)) for lag in range(max_lag + 1))
            future, shift = max(
                (_abs_corr(values, _shifted(base, -s)), s) for s in range(1, horizon + 1)
            )
            if future >= min_corr and future > past + margin:
                leaks.append(Leak(column, name, shift, future, past))
                break
    return leaks


def assert_no_leakage(features: pd.DataFrame, close: pd.Series, horizon: int = 1) -> None:
    """Raise :class:`LeakageError` naming every leaking feature."""
    leaks = find_leaks(features, close, horizon)
    if leaks:
        raise LeakageError("features look into the future: " + "; ".join(map(str, leaks)))
