"""The action rule: confidence levels, the levels traded on, BUY/SELL/HOLD."""

from __future__ import annotations

import pytest

from ml.confidence import action_of, confidence_level, trading_levels


@pytest.mark.parametrize(
    ("p", "level"),
    [(0.95, "high"), (0.05, "high"), (0.6, "medium"), (0.4, "medium"), (0.5, "low")],
)
def test_confidence_is_the_predicted_directions_probability_against_the_thresholds(p, level):
    assert confidence_level(p, high=0.7, medium=0.5) == level


def test_trading_on_medium_trades_high_too_and_on_high_only_high():
    assert trading_levels("medium") == {"high", "medium"}
    assert trading_levels("high") == {"high"}


def test_a_traded_level_buys_up_and_sells_not_up_and_any_other_level_holds():
    on_high = trading_levels("high")
    assert action_of(1, "high", on_high) == "BUY"
    assert action_of(0, "high", on_high) == "SELL"
    assert action_of(1, "medium", on_high) == "HOLD"
    assert action_of(0, "medium", trading_levels("medium")) == "SELL"
    assert action_of(1, "low", trading_levels("medium")) == "HOLD"
