"""The seed's confidence levels for a predicted probability of the next bar going up, and
the action they lead to: one rule for the live strategy, the retraining supervisor and
research replays.

A prediction is "up" when ``p > 0.5``. It trades (BUY for up, SELL for not up) only
when its confidence is one of the levels traded on; otherwise it HOLDs.
"""

from __future__ import annotations

from typing import Literal

from engine.events import Action, Confidence

TradeOn = Literal["high", "medium"]


def confidence_level(probability_up: float, high: float, medium: float) -> Confidence:
    """``high`` when the predicted direction's probability ``max(p, 1 - p)`` is above
    ``high``, ``medium`` above ``medium``, else ``low``."""
    certainty = max(probability_up, 1.0 - probability_up)
    if certainty > high:
        return "high"
    if certainty > medium:
        return "medium"
    return "low"


def trading_levels(trade_on: TradeOn) -> frozenset[Confidence]:
    """The confidence levels that trade when the lowest one traded on is ``trade_on``."""
    return frozenset(("high",) if trade_on == "high" else ("high", "medium"))


def action_of(prediction: int, confidence: Confidence, trading: frozenset[Confidence]) -> Action:
    """BUY (prediction 1) or SELL (0) at a traded confidence level, else HOLD."""
    if confidence not in trading:
        return "HOLD"
    return "BUY" if prediction == 1 else "SELL"
