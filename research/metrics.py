"""Performance statistics for per-bar returns: accuracy with its CI, Sharpe and friends.

Everything is annualised by the bar interval with a 365-day year (crypto trades every
day), with a zero risk-free rate. The bar interval is
:func:`engine.timeframes.timeframe_seconds`: a monthly (``1M``) bar counts as the mean
month of 30.4375 days, so a year holds 11.99 of them. Sharpe ratios are per bar unless the name says
``annual``; the deflated Sharpe ratio works on per-bar figures, as in the paper.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

SECONDS_PER_YEAR = 365 * 86_400
EULER_GAMMA = 0.5772156649015329


def bars_per_year(bar_seconds: float) -> float:
    """Bars in a 365-day year for a bar interval in seconds."""
    return SECONDS_PER_YEAR / bar_seconds


@dataclass(frozen=True)
class Interval:
    low: float
    high: float

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


def wilson_interval(successes: int, trials: int, z: float = 1.959963984540054) -> Interval:
    """Wilson score interval for a proportion (95% by default); (nan, nan) for no trials."""
    if trials <= 0:
        return Interval(math.nan, math.nan)
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return Interval(max(0.0, centre - half), min(1.0, centre + half))


def sharpe_per_bar(returns: np.ndarray) -> float:
    """Mean over standard deviation of per-bar returns (0 when there is no variation)."""
    returns = np.asarray(returns, dtype=float)
    if len(returns) < 2:
        return 0.0
    sd = returns.std(ddof=1)
    return float(returns.mean() / sd) if sd > 0 else 0.0


def sortino_per_bar(returns: np.ndarray) -> float:
    """Mean over downside deviation (root mean square of the negative part)."""
    returns = np.asarray(returns, dtype=float)
    if len(returns) < 2:
        return 0.0
    downside = math.sqrt(float(np.mean(np.minimum(returns, 0.0) ** 2)))
    return float(returns.mean() / downside) if downside > 0 else 0.0


def max_drawdown(equity: np.ndarray) -> float:
    """Largest fall from a running peak, as a positive fraction (0.25 = -25%)."""
    equity = np.asarray(equity, dtype=float)
    if len(equity) == 0:
        return 0.0
    peaks = np.maximum.accumulate(np.maximum(equity, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        falls = np.where(peaks > 0, 1.0 - equity / peaks, 0.0)
    return float(max(0.0, falls.max()))


def drawdown_series(equity: np.ndarray) -> np.ndarray:
    """Fall from the running peak at every bar (0 at new highs, positive below)."""
    equity = np.asarray(equity, dtype=float)
    peaks = np.maximum.accumulate(equity)
    return 1.0 - equity / peaks


def skew_kurtosis(returns: np.ndarray) -> tuple[float, float]:
    """Sample skewness and (non-excess) kurtosis; (0, 3) for too few or constant values."""
    returns = np.asarray(returns, dtype=float)
    if len(returns) < 3 or returns.std() == 0:
        return 0.0, 3.0
    return float(stats.skew(returns)), float(stats.kurtosis(returns, fisher=False))


def sharpe_standard_error(sharpe: float, n: int, skew: float = 0.0, kurtosis: float = 3.0) -> float:
    """Standard error of a per-bar Sharpe ratio under non-normal returns (Mertens 2002).

    ``sqrt((1 - skew*SR + (kurtosis - 1)/4 * SR^2) / (n - 1))``; for normal returns
    this is Lo's ``sqrt((1 + SR^2/2) / (n - 1))``.
    """
    if n < 2:
        return math.nan
    var = 1.0 - skew * sharpe + (kurtosis - 1.0) / 4.0 * sharpe * sharpe
    return math.sqrt(max(var, 0.0) / (n - 1))


def probabilistic_sharpe_ratio(
    sharpe: float, benchmark: float, n: int, skew: float = 0.0, kurtosis: float = 3.0
) -> float:
    """P(true per-bar Sharpe > benchmark) given the observed one (Bailey & López de Prado)."""
    se = sharpe_standard_error(sharpe, n, skew, kurtosis)
    if not math.isfinite(se) or se == 0:
        return math.nan
    return float(stats.norm.cdf((sharpe - benchmark) / se))


def expected_max_sharpe(n_trials: int, sharpe_variance: float) -> float:
    """Expected largest per-bar Sharpe among ``n_trials`` unskilled trials (the DSR's SR0).

    ``sqrt(V) * ((1 - gamma) * Z^-1(1 - 1/N) + gamma * Z^-1(1 - 1/(N e)))``; 0 for one
    trial (nothing was selected) or no variance between trials.
    """
    if n_trials < 2 or sharpe_variance <= 0:
        return 0.0
    z1 = stats.norm.ppf(1.0 - 1.0 / n_trials)
    z2 = stats.norm.ppf(1.0 - 1.0 / (n_trials * math.e))
    return float(math.sqrt(sharpe_variance) * ((1 - EULER_GAMMA) * z1 + EULER_GAMMA * z2))


def sharpe_name(n_trials: int) -> str:
    """What a PSR/DSR figure is called: with one trial nothing is deflated, so the
    "deflated" Sharpe ratio is just the probabilistic one and is named so."""
    if n_trials <= 1:
        return "probabilistic Sharpe ratio"
    return f"deflated Sharpe ratio over N = {n_trials} trials"


def sharpe_skill_probability(
    sharpe: float,
    n_obs: int,
    skew: float = 0.0,
    kurtosis: float = 3.0,
    benchmark: float = 0.0,
    n_trials: int = 1,
    trial_variance: float = 0.0,
) -> float:
    """P(true per-bar Sharpe > ``benchmark`` + the best that luck gives in N trials).

    The PSR against ``benchmark`` raised by :func:`expected_max_sharpe`: with one trial
    it is the probabilistic Sharpe ratio, with N it is the deflated one (Bailey & López
    de Prado 2014), measured from ``benchmark`` instead of from zero: the N unskilled
    trials are taken to have the benchmark's Sharpe, so their expected best is shifted
    by it. nan when the standard error is undefined (fewer than 2 observations).
    """
    threshold = benchmark + expected_max_sharpe(n_trials, trial_variance)
    return probabilistic_sharpe_ratio(sharpe, threshold, n_obs, skew, kurtosis)


@dataclass(frozen=True)
class DeflatedSharpe:
    """The deflated Sharpe ratio and what went into it."""

    dsr: float  # probability that the true Sharpe exceeds what luck alone would give
    n_trials: int
    sharpe_variance: float  # variance of the trials' per-bar Sharpe ratios
    expected_max_sharpe: float  # SR0, per bar
    sharpe: float  # this run's per-bar Sharpe
    n_obs: int

    @property
    def name(self) -> str:
        return sharpe_name(self.n_trials)


def deflated_sharpe_ratio(
    sharpe: float,
    n_obs: int,
    skew: float,
    kurtosis: float,
    trial_sharpes: Sequence[float],
) -> DeflatedSharpe:
    """Deflated Sharpe ratio (Bailey & López de Prado 2014) over the trials run so far.

    ``trial_sharpes`` are the per-bar Sharpe ratios of every trial on this data, this
    one included; N is their count and V their variance.
    """
    n_trials = max(1, len(trial_sharpes))
    variance = float(np.var(trial_sharpes, ddof=1)) if len(trial_sharpes) > 1 else 0.0
    sr0 = expected_max_sharpe(n_trials, variance)
    dsr = sharpe_skill_probability(sharpe, n_obs, skew, kurtosis, 0.0, n_trials, variance)
    return DeflatedSharpe(dsr, n_trials, variance, sr0, sharpe, n_obs)
