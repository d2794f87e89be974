"""The promotion gate (McNemar, paired HAC return test), the canary ramp and its judgement."""

from __future__ import annotations

import numpy as np
import pytest

from ml.promotion import (
    CanarySettings,
    GateSettings,
    PairedRecord,
    canary_fraction,
    decide_promotion,
    judge_canary,
    mcnemar_one_sided,
    paired_return_test,
)

GATE = GateSettings(shadow_bars=100, tests=("mcnemar",), alpha=0.05)


def record(incumbent_correct, candidate_correct, incumbent_returns=None, candidate_returns=None):
    n = len(incumbent_correct)
    zeros = np.zeros(n)
    return PairedRecord.of(
        incumbent_correct,
        candidate_correct,
        zeros if incumbent_returns is None else incumbent_returns,
        zeros if candidate_returns is None else candidate_returns,
    )


def test_mcnemar_gives_a_small_p_to_a_clearly_better_candidate_and_counts_discordant_bars():
    rng = np.random.default_rng(0)
    incumbent = rng.random(400) < 0.5
    candidate = incumbent.copy()
    candidate[~incumbent] = rng.random(int((~incumbent).sum())) < 0.4  # right on extra bars
    result = mcnemar_one_sided(incumbent, candidate)
    assert result["incumbent_only_right"] == 0
    assert result["candidate_only_right"] > 50
    assert result["p_value"] < 1e-10
    reverse = mcnemar_one_sided(candidate, incumbent)
    assert reverse["p_value"] == pytest.approx(1.0)


def test_mcnemar_with_no_discordant_bar_gives_p_one():
    same = np.array([True, False, True])
    assert mcnemar_one_sided(same, same)["p_value"] == 1.0


def test_a_clearly_better_candidate_is_promoted():
    incumbent = np.arange(200) % 2 == 0  # right half the time
    candidate = np.arange(200) % 10 != 0  # right 90% of the time
    decision = decide_promotion(record(incumbent, candidate), GATE)
    assert decision.promote
    assert decision.statistics["mcnemar"]["p_value"] < GATE.alpha
    assert decision.statistics["candidate_accuracy"] == pytest.approx(0.9)


def test_an_equally_good_candidate_is_not_promoted():
    rng = np.random.default_rng(1)
    incumbent = rng.random(500) < 0.55
    candidate = np.roll(incumbent, 1)  # same accuracy, other bars
    decision = decide_promotion(record(incumbent, candidate), GATE)
    assert not decision.promote
    assert decision.reason.startswith("not better: mcnemar p=")


def test_failed_checks_refuse_even_a_clearly_better_candidate():
    better = record(np.zeros(200, dtype=bool), np.ones(200, dtype=bool))
    decision = decide_promotion(better, GATE, failed_checks=("leakage",))
    assert not decision.promote
    assert decision.reason == "checks failed: leakage"


def test_fewer_paired_bars_than_the_shadow_window_refuse():
    better = record(np.zeros(99, dtype=bool), np.ones(99, dtype=bool))
    decision = decide_promotion(better, GATE)
    assert not decision.promote
    assert "99 paired bars < shadow_bars 100" in decision.reason


def test_every_configured_test_must_pass():
    both = GateSettings(shadow_bars=100, tests=("mcnemar", "pnl"), alpha=0.05)
    rng = np.random.default_rng(2)
    returns = rng.normal(0.0, 0.01, 300)
    more_accurate = record(np.zeros(300, dtype=bool), np.ones(300, dtype=bool), returns, returns)
    decision = decide_promotion(more_accurate, both)
    assert not decision.promote
    assert decision.reason.startswith("not better: pnl p=")  # mcnemar passed, pnl did not
    higher = returns + 0.002 + rng.normal(0.0, 0.001, 300)
    earning = record(np.zeros(300, dtype=bool), np.ones(300, dtype=bool), returns, higher)
    assert decide_promotion(earning, both).promote


def test_paired_return_test_is_one_sided_and_small_only_for_a_higher_mean():
    rng = np.random.default_rng(3)
    incumbent = rng.normal(0.0, 0.01, 1000)
    candidate = incumbent + 0.001 + rng.normal(0.0, 0.002, 1000)
    up = paired_return_test(incumbent, candidate)
    down = paired_return_test(candidate, incumbent)
    assert up["mean_difference"] == pytest.approx(0.001, abs=2e-4)
    assert up["p_value"] < 1e-6
    assert down["p_value"] > 0.99
    assert up["hac_lags"] == 6  # floor(4 (1000/100)^(2/9)) = floor(6.67)
    assert up["t"] == pytest.approx(-down["t"])


def test_paired_return_test_with_a_constant_difference_has_no_standard_error():
    a = np.linspace(-0.01, 0.01, 50)
    assert paired_return_test(a, a)["p_value"] == 1.0
    assert paired_return_test(a, a + 0.001)["p_value"] == 0.0


def test_paired_return_test_allows_for_autocorrelated_differences():
    # The same mean difference made of long runs (autocorrelated) is less sure than
    # one of independent bars: HAC widens the standard error.
    rng = np.random.default_rng(4)
    independent = 0.0003 + rng.normal(0.0, 0.005, 2000)
    runs = 0.0003 + np.repeat(rng.normal(0.0, 0.005, 100), 20)
    zeros = np.zeros(2000)
    assert (
        paired_return_test(zeros, runs)["p_value"]
        > paired_return_test(zeros, independent)["p_value"]
    )


def test_the_canary_fraction_ramps_linearly_from_the_initial_fraction_to_one():
    settings = CanarySettings(initial_fraction=0.2, ramp_bars=4)
    fractions = [canary_fraction(i, settings) for i in range(7)]
    assert fractions == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0, 1.0, 1.0])
    assert canary_fraction(-3, settings) == pytest.approx(0.2)


def test_judge_canary_keeps_a_champion_within_the_margins():
    settings = CanarySettings(ramp_bars=100, accuracy_margin=0.02, return_margin=0.01)
    previous = np.arange(100) < 55  # 55%
    champion = np.arange(100) < 54  # 54%: 1 point worse, within 2
    kept = judge_canary(
        record(previous, champion, np.full(100, 0.0001), np.full(100, 0.00005)), settings
    )
    assert kept.promote
    assert kept.reason == "canary passed"


def test_judge_canary_rolls_back_on_an_accuracy_shortfall_beyond_the_margin():
    settings = CanarySettings(ramp_bars=100, accuracy_margin=0.02, return_margin=0.01)
    decision = judge_canary(record(np.arange(100) < 55, np.arange(100) < 52), settings)
    assert not decision.promote
    assert "accuracy 0.5200 < previous 0.5500" in decision.reason


def test_judge_canary_rolls_back_on_a_return_shortfall_beyond_the_margin():
    settings = CanarySettings(ramp_bars=100, accuracy_margin=0.02, return_margin=0.01)
    right = np.ones(100, dtype=bool)
    decision = judge_canary(
        record(right, right, np.full(100, 0.0001), np.full(100, -0.0001)), settings
    )
    assert not decision.promote  # summed: +1% against -1%, a 2% shortfall
    assert decision.reason.startswith("net return -0.0100 < previous 0.0100")


def test_paired_series_of_different_lengths_are_refused():
    with pytest.raises(ValueError, match="one length"):
        PairedRecord.of([True], [True, False], [0.0], [0.0])
