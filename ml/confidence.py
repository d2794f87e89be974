"""The seed's confidence levels for a predicted probability of the next bar going up."""

from __future__ import annotations

from engine.events import Confidence


def confidence_level(probability_up: float, high: float, medium: float) -> Confidence:
    """``high`` when the predicted direction's probability ``max(p, 1 - p)`` is above
    ``high``, ``medium`` above ``medium``, else ``low``."""
    certainty = max(probability_up, 1.0 - probability_up)
    if certainty > high:
        return "high"
    if certainty > medium:
        return "medium"
    return "low"
