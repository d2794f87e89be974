"""The verdict on a research result: evidence of skill or not, decided by stated rules.

Every backtest, walk-forward and Monte Carlo output carries one: a ``status`` a machine
can read and one plain sentence. The rules, at level ``LEVEL`` (0.95) unless told:

1. **Enough data**: at least ``MIN_BARS`` (30) scored bars, and every figure the rules
   below read is defined. If not, the status is "insufficient data" and nothing else is
   judged.
2. **Out of sample**: no scored bar lies inside the model's training span, and the method
   does not leak time (the seed's random-sample Monte Carlo does). In-sample figures are
   not evidence.
3. **Accuracy**: the lower end of the accuracy's 95% interval lies above the best naive
   baseline on the same bars: always up or always down, whichever scores more.
4. **Sharpe**: P(true Sharpe > buy-and-hold's) ≥ ``LEVEL``. For one backtest or
   walk-forward, with N trials counted on the same data, this is the deflated Sharpe
   ratio measured from buy-and-hold's Sharpe (taken as fixed, not a paired test): the
   probability that the true Sharpe beats buy-and-hold's plus the best Sharpe N unskilled
   trials would show by luck. With N = 1 nothing is deflated and it is the probabilistic
   Sharpe ratio, and is named so. For a Monte Carlo it is the share of paired samples
   in which the model's Sharpe beats buy-and-hold's (not deflated for other trials).

"evidence of skill" iff rules 2, 3 and 4 all pass; otherwise "no evidence of skill".
Both 3 and 4 are needed: a model can call the direction better than chance and still lose
to its fees, and a long-only model can beat holding's Sharpe by sitting out one crash
without calling the direction at all.

:func:`judge` applies the rules to :class:`Evidence`; :func:`judge_figures` and
:func:`judge_montecarlo` build the evidence from a run's ``result.json`` shapes. All are
pure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from research.metrics import sharpe_name, sharpe_skill_probability

LEVEL = 0.95
MIN_BARS = 30

Status = Literal["evidence of skill", "no evidence of skill", "insufficient data"]
SKILL: Status = "evidence of skill"
NO_SKILL: Status = "no evidence of skill"
INSUFFICIENT: Status = "insufficient data"


@dataclass(frozen=True)
class Evidence:
    """What the rules read, every figure on the same bars."""

    bars: int  # scored bars (per sample, for a Monte Carlo)
    accuracy: float | None
    accuracy_ci_low: float | None
    accuracy_ci_high: float | None
    up_rate: float | None  # share of bars that went up: always-up's accuracy
    sharpe: float | None  # annualised, the model's
    buy_and_hold_sharpe: float | None  # annualised
    p_sharpe_above_buy_and_hold: float | None
    sharpe_test: str  # how that probability was computed
    in_sample_bars: int = 0
    leaks_time: bool = False


@dataclass(frozen=True)
class RuleResult:
    rule: str  # "enough data" | "out of sample" | "accuracy" | "sharpe"
    passed: bool
    detail: str


@dataclass(frozen=True)
class Verdict:
    status: Status
    sentence: str
    level: float
    rules: tuple[RuleResult, ...]
    evidence: Evidence

    @property
    def skill(self) -> bool:
        return self.status == SKILL

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "skill": self.skill,
            "sentence": self.sentence,
            "level": self.level,
            "rules": {r.rule: {"passed": r.passed, "detail": r.detail} for r in self.rules},
            "evidence": asdict(self.evidence),
        }


def _defined(*values: float | None) -> bool:
    return all(v is not None and math.isfinite(v) for v in values)


def naive_baseline(up_rate: float) -> tuple[str, float]:
    """The better of always up and always down on bars with this up-rate."""
    return ("always-up", up_rate) if up_rate >= 0.5 else ("always-down", 1.0 - up_rate)


def _pct(value: float) -> str:
    return f"{100 * value:.1f}"


def _accuracy_rule(accuracy: float, low: float, high: float, up_rate: float) -> RuleResult:
    name, baseline = naive_baseline(up_rate)
    passed = low > baseline
    verb = "exceeds" if passed else "does not exceed"
    detail = (
        f"accuracy {_pct(accuracy)}% [{_pct(low)}, {_pct(high)}] {verb} {name} {_pct(baseline)}%"
    )
    return RuleResult("accuracy", passed, detail)


def _sharpe_rule(sharpe: float, hold: float, p: float, test: str, level: float) -> RuleResult:
    passed = p >= level
    side = "above" if sharpe > hold else "below"
    detail = (
        f"Sharpe {sharpe:.2f} is {side} buy-and-hold's {hold:.2f} "
        f"(P = {p:.3f} {'>=' if passed else '<'} {level:g}, {test})"
    )
    return RuleResult("sharpe", passed, detail)


def _sample_rule(e: Evidence) -> RuleResult:
    problems = []
    if e.leaks_time:
        problems.append("the method leaks time (models train on bars after those they test)")
    if e.in_sample_bars:
        problems.append(
            f"{e.in_sample_bars} of {e.bars} bars are inside the model's training span (in-sample)"
        )
    return RuleResult("out of sample", not problems, "; ".join(problems) or "all bars")


def judge(evidence: Evidence, level: float = LEVEL, min_bars: int = MIN_BARS) -> Verdict:
    """Apply the module's rules to ``evidence`` at ``level``."""
    if not 0.5 < level < 1:
        raise ValueError(f"level must be in (0.5, 1), got {level}")
    e = evidence
    figures = (e.accuracy, e.accuracy_ci_low, e.accuracy_ci_high, e.up_rate)
    figures += (e.sharpe, e.buy_and_hold_sharpe, e.p_sharpe_above_buy_and_hold)
    if e.bars < min_bars or not _defined(*figures):
        detail = (
            f"{e.bars} bars, fewer than the {min_bars} the rules need"
            if e.bars < min_bars
            else "accuracy, up-rate or Sharpe test undefined on these bars"
        )
        rule = RuleResult("enough data", False, detail)
        return Verdict(INSUFFICIENT, f"{INSUFFICIENT}: {detail}", level, (rule,), e)
    accuracy, low, high, up, sharpe, hold, p = (v for v in figures if v is not None)  # all are
    rules = (
        RuleResult("enough data", True, f"{e.bars} bars"),
        _sample_rule(e),
        _accuracy_rule(accuracy, low, high, up),
        _sharpe_rule(sharpe, hold, p, e.sharpe_test, level),
    )
    status = SKILL if all(r.passed for r in rules) else NO_SKILL
    clauses = [r.detail for r in rules[1:] if r.rule != "out of sample" or not r.passed]
    return Verdict(status, f"{status}: " + "; ".join(clauses), level, rules, e)


def judge_figures(
    figures: Mapping[str, Mapping[str, Any]],
    n_trials: int = 1,
    trial_variance: float = 0.0,
    in_sample_bars: int = 0,
    level: float = LEVEL,
) -> Verdict:
    """The verdict on a backtest or walk-forward: ``figures`` is ``{"model", "buy_and_hold",
    "always_up"}`` as in ``result.json``; N trials and the variance of their per-bar
    Sharpe ratios deflate the Sharpe test (N = 1: the probabilistic Sharpe ratio)."""
    model, hold = figures["model"], figures["buy_and_hold"]
    p = sharpe_skill_probability(
        model["sharpe_per_bar"],
        int(model["bars"]),
        model["skew"],
        model["kurtosis"],
        benchmark=hold["sharpe_per_bar"],
        n_trials=n_trials,
        trial_variance=trial_variance,
    )
    evidence = Evidence(
        bars=int(model["bars"]),
        accuracy=model.get("accuracy"),
        accuracy_ci_low=model.get("accuracy_ci_low"),
        accuracy_ci_high=model.get("accuracy_ci_high"),
        up_rate=figures["always_up"].get("accuracy"),
        sharpe=model["sharpe"],
        buy_and_hold_sharpe=hold["sharpe"],
        p_sharpe_above_buy_and_hold=p,
        sharpe_test=f"{sharpe_name(n_trials)} vs buy-and-hold",
        in_sample_bars=in_sample_bars,
    )
    return judge(evidence, level)


def judge_montecarlo(
    montecarlo: Mapping[str, Any], in_sample_bars: int = 0, level: float = LEVEL
) -> Verdict:
    """The verdict on a Monte Carlo result (``result.json``'s ``montecarlo``): the accuracy
    interval is the samples' 2.5-97.5 percentiles, the Sharpe test the share of paired
    samples above buy-and-hold, and the Sharpe ratios shown are the samples' medians."""
    percentiles = montecarlo["percentiles"]
    accuracy = percentiles["model"]["accuracy"]
    leaks = montecarlo["method"] == "random-sample"
    what = "random-sample runs" if leaks else "paired block-bootstrap samples"
    evidence = Evidence(
        bars=int(montecarlo.get("bars", 0)),
        accuracy=accuracy["p50"],
        accuracy_ci_low=accuracy["p2.5"],
        accuracy_ci_high=accuracy["p97.5"],
        up_rate=montecarlo.get("up_rate"),
        sharpe=percentiles["model"]["sharpe"]["p50"],
        buy_and_hold_sharpe=percentiles["buy_and_hold"]["sharpe"]["p50"],
        p_sharpe_above_buy_and_hold=montecarlo.get("share_sharpe_above_buy_and_hold"),
        sharpe_test=f"share of {what} above buy-and-hold, medians shown",
        in_sample_bars=in_sample_bars,
        leaks_time=leaks,
    )
    return judge(evidence, level)


def judge_document(document: Mapping[str, Any]) -> Verdict | None:
    """The verdict on a run's ``result.json`` (None for a kind that has none)."""
    in_sample = int(document.get("in_sample_bars") or 0)
    if "montecarlo" in document:
        return judge_montecarlo(document["montecarlo"], in_sample)
    if "figures" in document and "deflated_sharpe" in document:
        d = document["deflated_sharpe"]
        return judge_figures(
            document["figures"], int(d["n_trials"]), float(d["sharpe_variance"]), in_sample
        )
    return None
