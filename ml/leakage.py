"""A check, run on every training set, that no feature carries information from the future.

A causal feature at bar t is built from what is known at t, so it can tell nothing
about the return after t that the price path up to t does not already tell. For each
feature the check takes the part of it that the past does not explain and measures
how well that part lines up with the one-bar return ``s`` bars ahead
(``s = 1..horizon``): a partial rank correlation, controlling for the returns at
``0..max_lag`` bars back. Two views of each feature are tested, its level (given also
its own previous value, so a slow level is explained by where it was) and its
bar-to-bar change.

A feature is reported as leaking when that partial correlation is both large
(``min_corr``) and far beyond chance for the rows available (``min_z`` standard
errors, ``corr * sqrt(degrees of freedom)``): tomorrow's close, the next return, a
copied label, a feature correlating about 0.6 with the next return, a centred moving
average. How much a sample can show is limited by its length. Measured on the bundled
daily and hourly samples (every rolling 252-bar window, step 30, and the whole
samples, and 1,000-bar windows): the honest feature sets stay below 5.1 standard
errors, against an alarm at 5.5; a feature
correlating 0.6 with the next return is caught on every daily window and on 1,553 of
1,555 hourly ones; a centred SMA-3 on every window, a centred SMA-5 on all but 10,
and a centred SMA-20, whose lead over the next bar is small, only on samples of a
few thousand bars (the whole samples). ``tests/unit/ml/test_leakage.py`` pins the
thresholds from both sides.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ml.labels import LABEL_COLUMN

MIN_ROWS_PER_LAG = 8  # a short sample controls for fewer lags rather than none


class LeakageError(ValueError):
    """Training data contains a feature that looks into the future."""


@dataclass(frozen=True)
class Leak:
    feature: str
    view: str  # "level", "change" (bar to bar), or "label" for a copied label column
    future_shift: int  # bars ahead the feature lines up with
    partial_corr: float
    z: float  # partial_corr in standard errors

    def __str__(self) -> str:
        if self.view == "label":
            return f"{self.feature!r} is the label column"
        return (
            f"{self.feature!r} ({self.view}) lines up with the return {self.future_shift} "
            f"bar(s) ahead beyond what the past explains (partial |corr| "
            f"{self.partial_corr:.3f}, {self.z:.1f} standard errors)"
        )


def _ranks(series: pd.Series) -> np.ndarray:
    """Ranks (NaN kept): correlating ranks is Spearman's, robust to a 100x price trend."""
    return series.rank().to_numpy(dtype=np.float64)


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


def _partial_corr(x: np.ndarray, y: np.ndarray, controls: np.ndarray) -> tuple[float, int]:
    """``|corr|`` of ``x`` and ``y`` once ``controls`` are regressed out of both, and its
    degrees of freedom (0: too few rows, or ``x`` fully explained by the controls)."""
    ok = np.isfinite(x) & np.isfinite(y) & np.isfinite(controls).all(axis=1)
    x, y, controls = x[ok], y[ok], controls[ok]
    dof = len(x) - controls.shape[1] - 1
    if dof < 10:
        return 0.0, 0
    # Least squares through the small normal equations: a LAPACK solve on the tall matrix
    # is up to 100 times slower with a multi-threaded BLAS on a busy machine.
    controls = controls / np.linalg.norm(controls, axis=0)
    both = np.column_stack([x, y])
    coef = np.linalg.lstsq(controls.T @ controls, controls.T @ both, rcond=None)[0]
    x_rest, y_rest = (both - controls @ coef).T
    if x_rest.var() <= 1e-6 * x.var() or y_rest.var() == 0:
        return 0.0, 0
    return float(abs(np.corrcoef(x_rest, y_rest)[0, 1])), dof


def find_leaks(
    features: pd.DataFrame,
    close: pd.Series,
    horizon: int = 1,
    max_lag: int = 30,
    min_corr: float = 0.15,
    min_z: float = 5.5,
    max_rows: int = 5000,
) -> list[Leak]:
    """Features whose unexplained part lines up with a future return (see the module doc).

    ``features`` and ``close`` share an index (the candle rows); only the last
    ``max_rows`` are examined (a leak is structural, a sample shows it).
    """
    features, close = features.iloc[-max_rows:], close.astype(float).iloc[-max_rows:]
    returns = _ranks(close.pct_change())
    lags = min(max_lag, len(close) // MIN_ROWS_PER_LAG)
    past = np.column_stack(
        [np.ones(len(returns)), *(_shifted(returns, lag) for lag in range(lags + 1))]
    )
    futures = {s: _shifted(returns, -s) for s in range(1, horizon + 1)}
    leaks: list[Leak] = []
    for column in features.columns:
        if column == LABEL_COLUMN:
            leaks.append(Leak(column, "label", 0, 1.0, float("inf")))
            continue
        feature = features[column].astype(float)
        level, change = _ranks(feature), _ranks(feature.diff())
        views = (
            ("level", level, np.column_stack([past, _shifted(level, 1)])),
            ("change", change, past),
        )
        found = [
            Leak(column, name, s, corr, corr * float(np.sqrt(dof)))
            for name, values, controls in views
            for s, future in futures.items()
            for corr, dof in [_partial_corr(values, future, controls)]
        ]
        alarms = [leak for leak in found if leak.partial_corr >= min_corr and leak.z >= min_z]
        if alarms:
            leaks.append(max(alarms, key=lambda leak: leak.z))
    return leaks


def assert_no_leakage(features: pd.DataFrame, close: pd.Series, horizon: int = 1) -> None:
    """Raise :class:`LeakageError` naming every leaking feature."""
    leaks = find_leaks(features, close, horizon)
    if leaks:
        raise LeakageError("features look into the future: " + "; ".join(map(str, leaks)))
