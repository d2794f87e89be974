"""When a challenger may replace the champion, and when a new champion is rolled back.

Both decisions compare two models on the *same* bars (paired), scored by the same rules
as the live monitor (:func:`ml.labels.direction_of`) and the backtest (:mod:`ml.pnl`):

- **Promotion gate** (:func:`decide_promotion`), after a shadow window: each configured
  test must show the challenger better at significance ``alpha``, one-sided —
  ``mcnemar``: the exact McNemar test on per-bar correctness (of the bars where exactly
  one model was right, the challenger must win more than chance allows: a binomial test
  on the discordant pairs); ``pnl``: the mean per-bar difference of net shadow returns
  after fees, with a HAC (Newey-West) standard error since bar returns are not
  independent. A failed pre-check (leakage, feature set) refuses promotion outright.
- **Canary** (:func:`canary_fraction`, :func:`judge_canary`): a promoted champion trades
  a fraction of the normal size, ramping linearly to 1 over ``ramp_bars``; at the end
  of the ramp it is rolled back if its live accuracy or net return fell below the
  previous champion's, shadowed on the same bars, by more than the margins.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import Field
from scipy import stats

from engine.config import StrictModel

GateTest = Literal["mcnemar", "pnl"]


class GateSettings(StrictModel):
    shadow_bars: int = Field(
        500, ge=10, description="Bars the challenger predicts in shadow before the gate."
    )
    tests: tuple[GateTest, ...] = Field(
        ("mcnemar",),
        min_length=1,
        description="Tests that must each show the challenger better: `mcnemar` (paired "
        "per-bar correctness), `pnl` (paired net shadow returns after fees, HAC).",
    )
    alpha: float = Field(0.05, gt=0, lt=0.5, description="One-sided significance level.")


class CanarySettings(StrictModel):
    initial_fraction: float = Field(
        0.25, gt=0, le=1, description="Share of the normal order size a new champion starts at."
    )
    ramp_bars: int = Field(
        200, ge=1, description="Bars over which the size ramps to 100%; judged at the end."
    )
    accuracy_margin: float = Field(
        0.02,
        ge=0,
        le=1,
        description="Roll back if the new champion's accuracy over the ramp is below the "
        "previous champion's (in shadow, same bars) by more than this.",
    )
    return_margin: float = Field(
        0.01,
        ge=0,
        description="Roll back if its summed net return over the ramp is below the previous "
        "champion's by more than this (0.01 = one percent of equity).",
    )


@dataclass(frozen=True)
class PairedRecord:
    """Two models scored on the same bars: correctness and net return of each bar."""

    incumbent_correct: np.ndarray
    candidate_correct: np.ndarray
    incumbent_returns: np.ndarray
    candidate_returns: np.ndarray

    def __post_init__(self) -> None:
        sizes = {
            len(self.incumbent_correct),
            len(self.candidate_correct),
            len(self.incumbent_returns),
            len(self.candidate_returns),
        }
        if len(sizes) != 1:
            raise ValueError(f"paired series must have one length, got {sorted(sizes)}")

    @property
    def bars(self) -> int:
        return len(self.incumbent_correct)

    @classmethod
    def of(
        cls,
        incumbent_correct: Sequence[bool],
        candidate_correct: Sequence[bool],
        incumbent_returns: Sequence[float],
        candidate_returns: Sequence[float],
    ) -> PairedRecord:
        return cls(
            np.asarray(incumbent_correct, dtype=bool),
            np.asarray(candidate_correct, dtype=bool),
            np.asarray(incumbent_returns, dtype=float),
            np.asarray(candidate_returns, dtype=float),
        )


def mcnemar_one_sided(incumbent: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    """Exact McNemar: ``p`` that the candidate wins at least this many of the bars where
    exactly one model is right, were both equally good."""
    wins = int(np.sum(candidate & ~incumbent))
    losses = int(np.sum(incumbent & ~candidate))
    discordant = wins + losses
    p = (
        1.0
        if discordant == 0
        else float(stats.binomtest(wins, discordant, 0.5, alternative="greater").pvalue)
    )
    return {"candidate_only_right": wins, "incumbent_only_right": losses, "p_value": p}


def paired_return_test(incumbent: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    """One-sided test that the candidate's mean net return per bar is higher: the mean
    difference over its Newey-West standard error (lags ``floor(4 (n/100)^(2/9))``)."""
    import statsmodels.api as sm  # heavy import, only at a decision

    diff = candidate - incumbent
    n = len(diff)
    mean = float(diff.mean()) if n else 0.0
    if n < 3 or not np.any(diff != diff[0]):
        return {"mean_difference": mean, "t": 0.0, "p_value": 1.0 if mean <= 0 else 0.0}
    lags = math.floor(4 * (n / 100) ** (2 / 9))
    fit = sm.OLS(diff, np.ones(n)).fit(cov_type="HAC", cov_kwds={"maxlags": lags})
    t = float(fit.tvalues[0])
    return {"mean_difference": mean, "t": t, "p_value": float(stats.norm.sf(t)), "hac_lags": lags}


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str
    statistics: Mapping[str, Any] = field(default_factory=dict)


def decide_promotion(
    record: PairedRecord,
    settings: GateSettings,
    failed_checks: Sequence[str] = (),
) -> GateDecision:
    """Promote the candidate only if no pre-check failed and every configured test shows
    it better than the incumbent at ``alpha`` (one-sided)."""
    statistics: dict[str, Any] = {
        "bars": record.bars,
        "incumbent_accuracy": float(record.incumbent_correct.mean()) if record.bars else None,
        "candidate_accuracy": float(record.candidate_correct.mean()) if record.bars else None,
        "incumbent_return": float(record.incumbent_returns.sum()),
        "candidate_return": float(record.candidate_returns.sum()),
        "alpha": settings.alpha,
    }
    if failed_checks:
        return GateDecision(False, f"checks failed: {', '.join(failed_checks)}", statistics)
    if record.bars < settings.shadow_bars:
        return GateDecision(
            False, f"{record.bars} paired bars < shadow_bars {settings.shadow_bars}", statistics
        )
    failures = []
    for test in settings.tests:
        if test == "mcnemar":
            result = mcnemar_one_sided(record.incumbent_correct, record.candidate_correct)
        else:
            result = paired_return_test(record.incumbent_returns, record.candidate_returns)
        statistics[test] = result
        if not result["p_value"] < settings.alpha:
            failures.append(f"{test} p={result['p_value']:.4g} >= {settings.alpha:g}")
    if failures:
        return GateDecision(False, "not better: " + "; ".join(failures), statistics)
    passed = ", ".join(f"{t} p={statistics[t]['p_value']:.4g}" for t in settings.tests)
    return GateDecision(True, f"better at alpha {settings.alpha:g}: {passed}", statistics)


def canary_fraction(bars_since_promotion: int, settings: CanarySettings) -> float:
    """Share of the normal order size: ``initial_fraction`` ramping linearly to 1."""
    done = min(1.0, max(0, bars_since_promotion) / settings.ramp_bars)
    return settings.initial_fraction + (1.0 - settings.initial_fraction) * done


def judge_canary(record: PairedRecord, settings: CanarySettings) -> GateDecision:
    """At the end of the ramp: ``promote`` True keeps the new champion (incumbent is the
    previous champion in shadow, candidate the new one), False rolls it back."""
    statistics: dict[str, Any] = {
        "bars": record.bars,
        "champion_accuracy": float(record.candidate_correct.mean()) if record.bars else None,
        "previous_accuracy": float(record.incumbent_correct.mean()) if record.bars else None,
        "champion_return": float(record.candidate_returns.sum()),
        "previous_return": float(record.incumbent_returns.sum()),
    }
    if not record.bars:
        return GateDecision(True, "no scored bars in the canary window", statistics)
    shortfalls = []
    accuracy_gap = statistics["previous_accuracy"] - statistics["champion_accuracy"]
    if accuracy_gap > settings.accuracy_margin:
        shortfalls.append(
            f"accuracy {statistics['champion_accuracy']:.4f} < previous "
            f"{statistics['previous_accuracy']:.4f} by more than {settings.accuracy_margin:g}"
        )
    return_gap = statistics["previous_return"] - statistics["champion_return"]
    if return_gap > settings.return_margin:
        shortfalls.append(
            f"net return {statistics['champion_return']:.4f} < previous "
            f"{statistics['previous_return']:.4f} by more than {settings.return_margin:g}"
        )
    if shortfalls:
        return GateDecision(False, "; ".join(shortfalls), statistics)
    return GateDecision(True, "canary passed", statistics)
