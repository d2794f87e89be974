"""The verdict: no edge gets "no evidence of skill", a planted edge gets skill, by stated rules."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from research import metrics
from research.backtest import BacktestResult, TradeRule, run_backtest
from research.montecarlo import block_bootstrap
from research.report import render_html
from research.runs import backtest_figures
from research.tables import figures_table, sharpe_line
from research.verdict import (
    INSUFFICIENT,
    NO_SKILL,
    SKILL,
    Evidence,
    judge,
    judge_document,
    judge_figures,
    judge_montecarlo,
)

DAY = 86_400.0
BARS = 1500


def _market(seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Daily returns (a random walk, no drift to speak of) and their up/down labels."""
    returns = np.random.default_rng(seed).normal(0.001, 0.03, BARS)
    return returns, (returns > 0).astype(int)


def _backtest(p_up: np.ndarray, returns: np.ndarray, labels: np.ndarray) -> BacktestResult:
    return run_backtest(p_up, returns, labels, DAY, TradeRule())


def _edge(labels: np.ndarray, hit_rate: float, seed: int = 1) -> np.ndarray:
    """P(up) that calls the next bar right with probability ``hit_rate``."""
    right = np.random.default_rng(seed).uniform(size=len(labels)) < hit_rate
    called_up = np.where(right, labels == 1, labels == 0)
    return np.where(called_up, 0.9, 0.1)


@pytest.mark.parametrize("model", ["noise", "shuffled"])
def test_a_model_without_an_edge_gets_no_evidence_of_skill(model):
    returns, labels = _market()
    rng = np.random.default_rng(2)
    p_up = rng.uniform(size=BARS) if model == "noise" else rng.permutation(_edge(labels, 0.7))
    verdict = judge_figures(backtest_figures(_backtest(p_up, returns, labels)))
    assert verdict.status == NO_SKILL
    assert not verdict.skill
    rules = {r.rule: r.passed for r in verdict.rules}
    assert rules == {"enough data": True, "out of sample": True, "accuracy": False, "sharpe": False}
    assert verdict.sentence.startswith("no evidence of skill: accuracy ")
    assert "does not exceed always-" in verdict.sentence
    assert "below buy-and-hold's" in verdict.sentence


def test_a_planted_edge_passes_every_rule():
    returns, labels = _market()
    verdict = judge_figures(backtest_figures(_backtest(_edge(labels, 0.62), returns, labels)))
    assert verdict.status == SKILL
    assert all(r.passed for r in verdict.rules)
    assert "exceeds always-" in verdict.sentence
    assert "above buy-and-hold's" in verdict.sentence
    document = verdict.to_dict()
    assert document["skill"] is True
    assert document["rules"]["accuracy"]["passed"] is True
    assert document["evidence"]["p_sharpe_above_buy_and_hold"] >= 0.95


def _evidence(low: float, p_sharpe: float, up_rate: float = 0.52) -> Evidence:
    return Evidence(
        bars=1000,
        accuracy=0.54,
        accuracy_ci_low=low,
        accuracy_ci_high=0.54 + (0.54 - low),
        up_rate=up_rate,
        sharpe=1.2,
        buy_and_hold_sharpe=1.0,
        p_sharpe_above_buy_and_hold=p_sharpe,
        sharpe_test="a stated test",
    )


def test_the_interval_not_the_estimate_must_clear_the_best_naive_baseline():
    rules = {r.rule: r.passed for r in judge(_evidence(low=0.51, p_sharpe=0.99)).rules}
    assert rules["accuracy"] is False  # 54% > 52%, but the interval reaches down to 51%
    assert judge(_evidence(low=0.53, p_sharpe=0.99)).status == SKILL
    down = judge(_evidence(low=0.53, p_sharpe=0.99, up_rate=0.46))  # always down scores 54%
    assert down.status == NO_SKILL
    assert "does not exceed always-down 54.0%" in down.sentence


def test_the_sharpe_probability_must_reach_the_level():
    assert judge(_evidence(low=0.53, p_sharpe=0.95)).status == SKILL
    below = judge(_evidence(low=0.53, p_sharpe=0.949))
    assert below.status == NO_SKILL
    assert "Sharpe 1.20 is above buy-and-hold's 1.00 (P = 0.949 < 0.95, a stated test)" in (
        below.sentence
    )
    assert judge(_evidence(low=0.53, p_sharpe=0.97), level=0.99).status == NO_SKILL


def test_one_trial_is_the_probabilistic_sharpe_ratio_and_more_trials_deflate_it():
    returns, labels = _market()
    figures = backtest_figures(_backtest(_edge(labels, 0.62), returns, labels))
    one = judge_figures(figures, n_trials=1)
    many = judge_figures(figures, n_trials=10, trial_variance=1e-3)
    assert "probabilistic Sharpe ratio vs buy-and-hold" in one.sentence
    assert "deflated" not in one.sentence
    assert "deflated Sharpe ratio over N = 10 trials" in many.sentence
    p_one = one.evidence.p_sharpe_above_buy_and_hold
    p_many = many.evidence.p_sharpe_above_buy_and_hold
    assert p_one == pytest.approx(
        metrics.probabilistic_sharpe_ratio(
            figures["model"]["sharpe_per_bar"],
            figures["buy_and_hold"]["sharpe_per_bar"],
            BARS,
            figures["model"]["skew"],
            figures["model"]["kurtosis"],
        )
    )
    assert p_many < p_one - 0.2  # ten tries make the same Sharpe weaker evidence
    assert many.status == NO_SKILL


def test_sharpe_line_names_one_trial_the_probabilistic_sharpe_ratio():
    dsr = metrics.deflated_sharpe_ratio(0.05, 1000, 0.0, 3.0, [0.05])
    line = sharpe_line({**dsr.__dict__, "psr_vs_buy_and_hold": 0.12})
    assert line.startswith("probabilistic Sharpe ratio (one trial on this data")
    assert "deflated" not in line
    many = metrics.deflated_sharpe_ratio(0.05, 1000, 0.0, 3.0, [0.05, 0.01, 0.03, -0.02])
    assert sharpe_line({**many.__dict__}).startswith("deflated Sharpe ratio over N = 4 trials")


def test_in_sample_bars_are_no_evidence_and_are_marked_in_the_table():
    returns, labels = _market()
    figures = backtest_figures(_backtest(_edge(labels, 0.62), returns, labels))
    verdict = judge_figures(figures, in_sample_bars=200)
    assert verdict.status == NO_SKILL
    assert verdict.sentence.startswith(
        f"no evidence of skill: 200 of {BARS} bars are inside the model's training span"
    )
    assert f"| bars inside the model's training span | 200 of {BARS}: IN-SAMPLE | — | — |" in (
        figures_table(figures, 200)
    )
    assert f"| 0 of {BARS} |" in figures_table(figures, 0)


def test_too_few_bars_or_an_undefined_figure_is_insufficient_data():
    returns, labels = _market()
    short = judge_figures(
        backtest_figures(_backtest(_edge(labels[:20], 0.9), returns[:20], labels[:20]))
    )
    assert short.status == INSUFFICIENT
    assert short.sentence == "insufficient data: 20 bars, fewer than the 30 the rules need"
    undefined = Evidence(100, None, None, None, 0.5, 1.0, 0.5, 0.9, "test")
    assert judge(undefined).status == INSUFFICIENT
    with pytest.raises(ValueError, match="level must be in"):
        judge(undefined, level=1.5)


def _oos(result: BacktestResult) -> pd.DataFrame:
    return result.bars.assign(fold=0)


def test_monte_carlo_verdicts_from_the_block_bootstrap():
    returns, labels = _market()
    edge = block_bootstrap(_oos(_backtest(_edge(labels, 0.62), returns, labels)), DAY, 300)
    noise = _backtest(np.random.default_rng(4).uniform(size=BARS), returns, labels)
    none = block_bootstrap(_oos(noise), DAY, 300)
    skilled = judge_montecarlo(edge.to_dict())
    assert skilled.status == SKILL, skilled.sentence
    assert "share of paired block-bootstrap samples" in skilled.sentence
    assert judge_montecarlo(none.to_dict()).status == NO_SKILL
    in_sample = judge_montecarlo(edge.to_dict(), in_sample_bars=5)
    assert in_sample.status == NO_SKILL


def test_a_method_that_leaks_time_is_never_evidence():
    returns, labels = _market()
    edge = block_bootstrap(_oos(_backtest(_edge(labels, 0.62), returns, labels)), DAY, 300)
    leaky = {**edge.to_dict(), "method": "random-sample"}
    verdict = judge_montecarlo(leaky)
    assert verdict.status == NO_SKILL
    assert "the method leaks time" in verdict.sentence


def test_report_leads_with_the_verdict_and_marks_in_sample_bars():
    returns, labels = _market()
    result = _backtest(_edge(labels, 0.62), returns, labels)
    in_sample = np.arange(BARS) < 200
    dsr = metrics.deflated_sharpe_ratio(result.model.sharpe_per_bar, BARS, 0.0, 3.0, [0.1])
    document = {
        "kind": "backtest",
        "figures": backtest_figures(result),
        "in_sample_bars": 200,
        "deflated_sharpe": {**dsr.__dict__, "psr_vs_buy_and_hold": 0.5},
    }
    verdict = judge_document(document)
    assert verdict is not None
    assert verdict.status == NO_SKILL
    bars = result.bars.assign(in_sample=in_sample)
    page = render_html(document, bars)  # no stored verdict: judged while rendering
    assert '<p class="verdict no-skill"><b>Verdict:</b> no evidence of skill: 200 of' in page
    assert page.index("Verdict:") < page.index("Figures beside the baselines")
    assert '<tr class="in-sample"><td>bars inside the model&#x27;s training span</td>' in page
    assert "Probabilistic Sharpe ratio (one trial on this data" in page
    stored = {**document, "verdict": judge_figures(document["figures"]).to_dict()}
    assert '<p class="verdict skill">' in render_html(stored, None)  # the stored one wins
