"""Renewal policies replayed on synthetic probabilities: never, newest, gated."""

from __future__ import annotations

import numpy as np
import pytest

from ml.pnl import net_returns
from ml.promotion import CanarySettings, GateSettings, canary_fraction
from research.policies import ModelTrack, ReplayBars, SignalRule, replay_policy
from research.policy_figures import (
    baseline_figures,
    compare,
    compare_all,
    policy_figures,
    verdict,
)

GATE = GateSettings(shadow_bars=60, tests=("mcnemar",), alpha=0.05)
CANARY = CanarySettings(initial_fraction=0.25, ramp_bars=40, accuracy_margin=0.02)
RULE = SignalRule(trade_on="medium", fee=0.003)


def market(n: int = 1000, seed: int = 1) -> ReplayBars:
    rng = np.random.default_rng(seed)
    closes = 100.0 * np.cumprod(1.0 + rng.normal(0.0, 0.01, n + 1))
    return ReplayBars.from_closes(closes)


def knowing(bars: ReplayBars, start: int, miss_every: int = 10, label: str = "good") -> ModelTrack:
    """Right on every bar but every ``miss_every``-th: about 90% accurate."""
    up = bars.up[start:].astype(bool)
    misses = np.arange(len(up)) % miss_every == miss_every - 1
    return ModelTrack(label, start, np.where(up ^ misses, 0.9, 0.1))


def coin(bars: ReplayBars, start: int, seed: int, label: str = "coin") -> ModelTrack:
    rng = np.random.default_rng(seed)
    return ModelTrack(label, start, rng.uniform(0.3, 0.7, len(bars) - start))


def turning_bad(bars: ReplayBars, start: int, from_bar: int) -> ModelTrack:
    """Right until ``from_bar``, wrong on every bar after."""
    up = bars.up[start:].astype(bool)
    wrong = np.arange(start, len(bars)) >= from_bar
    return ModelTrack("turns", start, np.where(up ^ wrong, 0.9, 0.1))


def events(run, kind):
    return [e for e in run.events if e.kind == kind]


def test_gated_promotes_a_truly_better_challenger_and_newest_swaps_at_every_point():
    bars = market()
    models = [coin(bars, 0, seed=2), knowing(bars, 200), knowing(bars, 500, label="good2")]
    gated = replay_policy("gated", bars, models, RULE, GATE, CANARY)
    newest = replay_policy("newest", bars, models, RULE, GATE, CANARY)
    never = replay_policy("never", bars, models, RULE, GATE, CANARY)

    promoted = events(gated, "promoted")
    assert [e.model for e in promoted] == [1]
    assert promoted[0].bar == 200 + GATE.shadow_bars - 1
    assert promoted[0].statistics["mcnemar"]["p_value"] < GATE.alpha
    # model 2 is no better than model 1 (same rule): refused
    assert [e.model for e in events(gated, "rejected")] == [2]
    assert [e.model for e in events(gated, "kept")] == [1]
    assert gated.in_service[200 + GATE.shadow_bars - 1] == 0  # the gate's own bar: champion
    assert gated.in_service[200 + GATE.shadow_bars] == 1
    assert gated.in_service[-1] == 1

    assert [(e.bar, e.model) for e in events(newest, "swap")] == [(200, 1), (500, 2)]
    assert newest.in_service[199:201].tolist() == [0, 1]
    assert newest.in_service[-1] == 2
    assert set(never.in_service) == {0}
    # the better model earns more than the coin it replaced, on the same bars
    assert gated.returns[400:].sum() > never.returns[400:].sum()


def test_a_challenger_with_random_probabilities_is_never_promoted():
    bars = market(seed=3)
    models = [knowing(bars, 0)] + [coin(bars, s, seed=s) for s in (150, 350, 550, 750)]
    gated = replay_policy("gated", bars, models, RULE, GATE, CANARY)
    never = replay_policy("never", bars, models, RULE, GATE, CANARY)

    assert len(events(gated, "rejected")) == 4
    assert not events(gated, "promoted")
    assert set(gated.in_service) == {0}
    assert not gated.in_canary.any()
    np.testing.assert_array_equal(gated.returns, never.returns)


def test_a_promoted_model_that_turns_bad_in_the_canary_is_rolled_back():
    bars = market(seed=4)
    promoted_at = 100 + GATE.shadow_bars - 1
    models = [coin(bars, 0, seed=5), turning_bad(bars, 100, from_bar=promoted_at + 1)]
    gated = replay_policy("gated", bars, models, RULE, GATE, CANARY)

    assert [e.bar for e in events(gated, "promoted")] == [promoted_at]
    rollbacks = events(gated, "rolled_back")
    canary_end = promoted_at + CANARY.ramp_bars
    assert [(e.bar, e.model) for e in rollbacks] == [(canary_end, 1)]
    assert "accuracy" in rollbacks[0].reason
    assert gated.in_service[canary_end] == 1
    assert gated.in_service[canary_end + 1] == 0
    assert int(gated.in_canary.sum()) == CANARY.ramp_bars
    assert np.flatnonzero(gated.in_canary).tolist() == list(range(promoted_at + 1, canary_end + 1))
    assert policy_figures(gated, bars, 3600.0)["bars_in_canary"] == CANARY.ramp_bars


def test_a_good_canary_is_kept_and_trades_a_ramping_fraction_paying_fees_on_the_change():
    bars = market(seed=6)
    models = [coin(bars, 0, seed=7), knowing(bars, 100)]
    gated = replay_policy("gated", bars, models, RULE, GATE, CANARY)

    first = 100 + GATE.shadow_bars
    assert [e.bar for e in events(gated, "kept")] == [first + CANARY.ramp_bars - 1]
    for i, t in enumerate(range(first, first + CANARY.ramp_bars)):
        assert gated.positions[t] in (0.0, pytest.approx(canary_fraction(i, CANARY)))
    assert set(gated.positions[first + CANARY.ramp_bars :]) <= {0.0, 1.0}
    assert 0.0 < gated.positions[first : first + 5].max() < 1.0
    np.testing.assert_allclose(
        gated.returns, net_returns(gated.positions, bars.asset_returns, RULE.fee)
    )


def test_a_challenger_still_in_shadow_at_the_next_schedule_point_is_replaced():
    bars = market(seed=8)
    models = [coin(bars, 0, seed=9), knowing(bars, 100), knowing(bars, 130, label="newer")]
    gated = replay_policy("gated", bars, models, RULE, GATE, CANARY)

    assert [(e.bar, e.model) for e in events(gated, "replaced")] == [(130, 1)]
    assert [(e.bar, e.model) for e in events(gated, "promoted")] == [
        (130 + GATE.shadow_bars - 1, 2)
    ]
    assert 1 not in set(gated.in_service)
    assert policy_figures(gated, bars, 3600.0)["challengers_replaced"] == 1


def test_a_gate_due_during_a_canary_waits_for_its_judgement():
    bars = market(seed=10)
    long_canary = CanarySettings(initial_fraction=0.25, ramp_bars=100)
    first_gate = 100 + GATE.shadow_bars - 1
    canary_end = first_gate + long_canary.ramp_bars
    second = first_gate + 10  # its shadow window ends inside the canary
    models = [coin(bars, 0, seed=11), knowing(bars, 100), coin(bars, second, seed=12)]
    gated = replay_policy("gated", bars, models, RULE, GATE, long_canary)

    assert second + GATE.shadow_bars - 1 < canary_end
    decision = events(gated, "rejected")
    assert [(e.bar, e.model) for e in decision] == [(canary_end, 2)]
    assert decision[0].statistics["bars"] == canary_end - second + 1


def test_with_trade_on_high_a_middling_probability_holds_the_position():
    bars = market(n=6, seed=13)
    p = np.array([0.9, 0.6, 0.4, 0.2, 0.65, 0.8])
    run = replay_policy(
        "never", bars, [ModelTrack("m", 0, p)], SignalRule(trade_on="high"), GATE, CANARY
    )
    np.testing.assert_array_equal(run.positions, [1.0, 1.0, 1.0, 0.0, 0.0, 1.0])
    medium = replay_policy(
        "never", bars, [ModelTrack("m", 0, p)], SignalRule(trade_on="medium"), GATE, CANARY
    )
    np.testing.assert_array_equal(medium.positions, [1.0, 1.0, 0.0, 0.0, 1.0, 1.0])


def test_a_flat_close_counts_as_not_up_and_the_last_close_only_ends_a_bar():
    bars = ReplayBars.from_closes(np.array([10.0, 11.0, 11.0, 10.0]))
    assert len(bars) == 3
    assert bars.up.tolist() == [1, 0, 0]
    np.testing.assert_allclose(bars.asset_returns, [0.1, 0.0, -1 / 11])


def test_models_must_start_at_the_first_bar_in_order_and_cover_every_bar_after():
    bars = market(n=50)
    with pytest.raises(ValueError, match="first bar"):
        replay_policy("never", bars, [coin(bars, 5, seed=1)], RULE, GATE, CANARY)
    models = [coin(bars, 0, seed=1), coin(bars, 20, seed=2), coin(bars, 20, seed=3)]
    with pytest.raises(ValueError, match="strictly increasing"):
        replay_policy("never", bars, models, RULE, GATE, CANARY)
    short = ModelTrack("short", 0, np.full(10, 0.6))
    with pytest.raises(ValueError, match="predictions"):
        replay_policy("never", bars, [short], RULE, GATE, CANARY)


def test_identical_policies_are_called_identical_and_a_clear_winner_is_named():
    bars = market(seed=14)
    models = [knowing(bars, 0), coin(bars, 300, seed=15)]
    runs = {p: replay_policy(p, bars, models, RULE, GATE, CANARY) for p in ("never", "gated")}
    same = compare("gated", runs["gated"].returns, "never", runs["never"].returns, 0.05)
    assert same["verdict"] == "gated and never earned the same on every bar"

    newest = replay_policy("newest", bars, models, RULE, GATE, CANARY)
    result = compare(
        "never", runs["never"].returns, "newest", newest.returns, 0.05,
        runs["never"].correct, newest.correct,
    )  # fmt: skip
    assert result["verdict"].startswith("never earned more per bar than newest")
    assert "never more accurate" in result["verdict"]
    assert result["accuracy"]["a_only_right"] > result["accuracy"]["b_only_right"]


def test_the_verdict_says_when_no_policy_beats_buy_and_hold():
    bars = market(seed=16)
    models = [coin(bars, 0, seed=17)]
    runs = {p: replay_policy(p, bars, models, RULE, GATE, CANARY) for p in ("never", "newest")}
    figures = {p: policy_figures(r, bars, 3600.0) for p, r in runs.items()}
    figures["buy_and_hold"] = baseline_figures(bars, RULE.fee, 3600.0)
    lines = verdict(figures, compare_all(runs, bars, RULE.fee))
    assert lines[0] == "no policy beats buy-and-hold at 0.05 (paired, HAC)"
    assert any("containing 50%" in line for line in lines if line.startswith("never:"))

    good = {"never": replay_policy("never", bars, [knowing(bars, 0)], RULE, GATE, CANARY)}
    figures = {"never": policy_figures(good["never"], bars, 3600.0)}
    figures["buy_and_hold"] = baseline_figures(bars, RULE.fee, 3600.0)
    lines = verdict(figures, compare_all(good, bars, RULE.fee))
    assert lines[0] == "beats buy-and-hold at 0.05 (two-sided, HAC): never"
    assert "above 50%" in lines[1]


def test_in_shadow_the_challenger_starts_flat_and_the_champion_continues_its_position():
    bars = market(seed=18)
    always_up = ModelTrack("up", 0, np.full(len(bars), 0.9))
    also_up = ModelTrack("up2", 100, np.full(len(bars) - 100, 0.9))
    gated = replay_policy("gated", bars, [always_up, also_up], RULE, GATE, CANARY)

    (rejected,) = events(gated, "rejected")  # same calls on every bar: no discordant pair
    window = bars.asset_returns[100:160]
    entry = (1 - RULE.fee) * (1 + window[0]) - 1  # the challenger buys on its first bar
    assert rejected.statistics["incumbent_return"] == pytest.approx(window.sum())
    assert rejected.statistics["candidate_return"] == pytest.approx(entry + window[1:].sum())
