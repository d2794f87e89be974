"""Three model-renewal policies replayed on the same bars, with the same trade rule and fees.

Given each retrained model's P(up) on every bar from its training cut onward:

- ``never``: the first model trades every bar.
- ``newest``: at each schedule point the newest model replaces the one trading
  (FreqAI's behaviour).
- ``gated``: the newest model becomes the challenger and predicts in shadow beside the
  champion; after ``shadow_bars`` :func:`ml.promotion.decide_promotion` decides on the
  paired record of those bars. A promoted model trades a canary fraction
  (:func:`ml.promotion.canary_fraction`) for ``ramp_bars`` with the previous champion in
  shadow, then :func:`ml.promotion.judge_canary` keeps it or rolls it back.

Rules, shared with the live strategy and the backtest, not restated here: the model in
service turns P(up) into BUY/SELL/HOLD by :mod:`ml.confidence` and into a long-only
position by :func:`ml.pnl.position_after`; the position set at bar t's close earns the
return to the next close after the fee on its change (:func:`ml.pnl.net_returns`; a
canary's fractional position pays the fee on ``|change|``). A prediction is correct when
``p > 0.5`` matches :func:`ml.labels.next_bar_direction`.

Scoring in shadow and canary, as the live supervisor's scorer (``ml.supervisor``): the
model in service on its full-size position track, continuing; the shadowed model (the
challenger, or the previous champion during a canary) on its own full-size track,
starting flat on the window's first bar. The new champion trades a scaled position in
the canary, but is judged at full size. Conflicts, where this replay's rule is its own:
a challenger still in shadow when the next schedule point comes is replaced by the newer
model (counted; the live supervisor skips a trigger while a challenger or canary is
under way instead); a gate due while a canary runs waits for the canary's judgement,
then decides on every shadow bar so far.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from engine.events import Action
from ml.confidence import TradeOn, action_of, confidence_level, trading_levels
from ml.labels import forward_return, next_bar_direction
from ml.pnl import net_returns, position_after
from ml.promotion import (
    CanarySettings,
    GateSettings,
    PairedRecord,
    canary_fraction,
    decide_promotion,
    judge_canary,
)

Policy = Literal["never", "newest", "gated"]
POLICIES: tuple[Policy, ...] = ("never", "newest", "gated")


@dataclass(frozen=True)
class SignalRule:
    """How P(up) becomes an action (the ``ml_direction`` strategy's settings) and the fee
    a position change pays (0.003 = 30 bps, a Uniswap V2 swap)."""

    high_confidence: float = 0.7
    medium_confidence: float = 0.5
    trade_on: TradeOn = "medium"
    fee: float = 0.003

    def action(self, probability_up: float) -> Action:
        confidence = confidence_level(probability_up, self.high_confidence, self.medium_confidence)
        return action_of(int(probability_up > 0.5), confidence, trading_levels(self.trade_on))


@dataclass(frozen=True)
class ReplayBars:
    """The traded bars: each one's return to the next close and whether it went up."""

    asset_returns: np.ndarray
    up: np.ndarray  # 1 if the next close is strictly higher

    def __post_init__(self) -> None:
        if len(self.asset_returns) != len(self.up) or not len(self.up):
            raise ValueError("asset_returns and up must be non-empty and of one length")

    def __len__(self) -> int:
        return len(self.up)

    @classmethod
    def from_closes(cls, closes: np.ndarray) -> ReplayBars:
        """Bars 0..n-2 of ``n`` closes (the last close only ends the bar before it)."""
        frame = pd.DataFrame({"close": np.asarray(closes, dtype=float)})
        returns = forward_return(frame).to_numpy()[:-1]
        up = next_bar_direction(frame).to_numpy()[:-1].astype(int)
        return cls(returns, up)


@dataclass(frozen=True)
class ModelTrack:
    """One trained model: P(up) on every bar from ``start`` (its first bar after the
    training cut) to the last bar."""

    label: str
    start: int
    p_up: np.ndarray

    def p(self, bar: int) -> float:
        return float(self.p_up[bar - self.start])

    def correct(self, first: int, last: int, bars: ReplayBars) -> np.ndarray:
        """Whether its predicted direction came true on bars ``first..last``."""
        p = self.p_up[first - self.start : last - self.start + 1]
        return (p > 0.5).astype(int) == bars.up[first : last + 1]

    def positions(self, first: int, last: int, start: float, rule: SignalRule) -> np.ndarray:
        """Its own full-size positions on bars ``first..last``, from ``start`` before them."""
        out = np.empty(last - first + 1)
        position = start
        for i, bar in enumerate(range(first, last + 1)):
            position = position_after(rule.action(self.p(bar)), position)
            out[i] = position
        return out


@dataclass(frozen=True)
class PolicyEvent:
    bar: int
    kind: str  # swap | challenger | replaced | promoted | rejected | kept | rolled_back | ...
    model: int
    reason: str = ""
    statistics: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PolicyRun:
    """One policy's replay: per bar, and what happened."""

    policy: Policy
    in_service: np.ndarray  # index of the model whose prediction set the position
    positions: np.ndarray  # traded (canary-scaled) position held to the next close
    returns: np.ndarray  # net of fees
    correct: np.ndarray  # the model in service's direction came true
    in_canary: np.ndarray
    events: list[PolicyEvent]

    def count(self, kind: str) -> int:
        return sum(1 for e in self.events if e.kind == kind)


@dataclass
class _Shadow:
    model: int
    start: int


@dataclass
class _Canary:
    previous: int
    start: int


def replay_policy(
    policy: Policy,
    bars: ReplayBars,
    models: list[ModelTrack],
    rule: SignalRule,
    gate: GateSettings,
    canary: CanarySettings,
) -> PolicyRun:
    """Replay ``policy`` bar by bar over ``bars`` with ``models`` (in training order)."""
    n = len(bars)
    _check_models(models, n)
    arrivals = {m.start: k for k, m in enumerate(models) if k > 0}
    in_service = np.empty(n, dtype=int)
    intended = np.empty(n)  # the full-size position of the model in service
    fractions = np.ones(n)
    in_canary = np.zeros(n, dtype=bool)
    correct = np.empty(n, dtype=bool)
    events: list[PolicyEvent] = []
    champion, position = 0, 0.0
    shadow: _Shadow | None = None
    trial: _Canary | None = None
    for t in range(n):
        arrived = arrivals.get(t)
        if arrived is not None and policy == "newest":
            champion = arrived
            events.append(PolicyEvent(t, "swap", arrived))
        elif arrived is not None and policy == "gated":
            if shadow is not None:
                events.append(PolicyEvent(t, "replaced", shadow.model, f"by model {arrived}"))
            shadow = _Shadow(arrived, t)
            events.append(PolicyEvent(t, "challenger", arrived))
        p = models[champion].p(t)
        position = position_after(rule.action(p), position)
        in_service[t], intended[t] = champion, position
        correct[t] = int(p > 0.5) == bars.up[t]
        if trial is not None:
            fractions[t] = canary_fraction(t - trial.start, canary)
            in_canary[t] = True
            if t - trial.start + 1 >= canary.ramp_bars:
                record = _paired(
                    trial, t, bars, models[trial.previous], correct, intended, rule, False
                )
                decision = judge_canary(record, canary)
                kind = "kept" if decision.promote else "rolled_back"
                events.append(PolicyEvent(t, kind, champion, decision.reason, decision.statistics))
                champion = champion if decision.promote else trial.previous
                trial = None
        if shadow is not None and trial is None and t - shadow.start + 1 >= gate.shadow_bars:
            record = _paired(shadow, t, bars, models[shadow.model], correct, intended, rule, True)
            decision = decide_promotion(record, gate)
            kind = "promoted" if decision.promote else "rejected"
            events.append(PolicyEvent(t, kind, shadow.model, decision.reason, decision.statistics))
            if decision.promote:
                trial = _Canary(champion, t + 1)
                champion = shadow.model
            shadow = None
    if shadow is not None:
        events.append(PolicyEvent(n - 1, "shadow_unfinished", shadow.model))
    if trial is not None:
        events.append(PolicyEvent(n - 1, "canary_unfinished", champion))
    positions = intended * fractions
    return PolicyRun(
        policy,
        in_service,
        positions,
        net_returns(positions, bars.asset_returns, rule.fee),
        correct,
        in_canary,
        events,
    )


def _check_models(models: list[ModelTrack], n: int) -> None:
    if not models or models[0].start != 0:
        raise ValueError("the first model must predict from the first bar")
    starts = [m.start for m in models]
    if any(b <= a for a, b in itertools.pairwise(starts)):
        raise ValueError(f"models must start at strictly increasing bars, got {starts}")
    for m in models:
        if len(m.p_up) != n - m.start:
            raise ValueError(f"model {m.label}: {len(m.p_up)} predictions for {n - m.start} bars")


def _paired(
    window: _Shadow | _Canary,
    last: int,
    bars: ReplayBars,
    other: ModelTrack,
    in_service_correct: np.ndarray,
    intended: np.ndarray,
    rule: SignalRule,
    incumbent_first: bool,
) -> PairedRecord:
    """The model in service (its full-size track, continuing) beside ``other`` (its own
    track, from flat) on bars ``window.start..last``; ``incumbent_first``: the model in
    service is the incumbent, else the candidate."""
    first = window.start
    returns = bars.asset_returns[first : last + 1]
    held = float(intended[first - 1]) if first else 0.0
    served = (
        in_service_correct[first : last + 1],
        net_returns(intended[first : last + 1], returns, rule.fee, held),
    )
    own = other.positions(first, last, 0.0, rule)
    shadowed = (other.correct(first, last, bars), net_returns(own, returns, rule.fee, 0.0))
    incumbent, candidate = (served, shadowed) if incumbent_first else (shadowed, served)
    return PairedRecord.of(incumbent[0], candidate[0], incumbent[1], candidate[1])
