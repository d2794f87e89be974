"""The vectorised backtest: position timing, the trade rule, fees and gas, the figures."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml.labels import forward_return, next_bar_direction
from research import metrics
from research.backtest import (
    TradeRule,
    positions_from_probabilities,
    run_backtest,
    simulate_equity,
)
from research.tables import figures_table

DAY = 86_400.0
NO_COSTS = TradeRule(fee_bps=0.0)


def _frame(close: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"close": close})


def test_signal_at_a_close_earns_the_next_bar_not_the_same_bar():
    # Up bars (+10%) are always followed by a flat bar. A signal that sees today's bar
    # ("today went up") is right about today and useless about tomorrow.
    close = [100.0]
    for _ in range(20):
        close += [close[-1] * 1.1, close[-1] * 1.1]
    frame = _frame(close)
    same_bar_return = frame["close"].pct_change().fillna(0.0).to_numpy()
    p_up = np.where(same_bar_return > 0, 0.9, 0.1)
    rows = slice(0, len(frame) - 1)  # the last bar has no next close
    result = run_backtest(
        p_up[rows],
        forward_return(frame, 1).to_numpy()[rows],
        next_bar_direction(frame).to_numpy()[rows],
        DAY,
        NO_COSTS,
    )
    # The seed's bug: today's signal times today's return shows +10% on every up bar.
    position = positions_from_probabilities(p_up, 0.6, 0.4)
    assert np.sum(position * same_bar_return) == pytest.approx(20 * 0.1)
    # Correct timing: held from each up bar's close over the flat bar after it: nothing.
    assert result.model.compounded_return == pytest.approx(0.0, abs=1e-12)
    assert result.model.exposure > 0.4  # it did trade; it just earned nothing
    assert result.buy_and_hold.compounded_return == pytest.approx(1.1**20 - 1)


def test_trade_rule_enters_above_enter_exits_below_exit_and_holds_between():
    p = np.array([0.5, 0.61, 0.55, 0.45, 0.39, 0.5, 0.6, 0.7, 0.4, 0.3])
    expected = np.array([0, 1, 1, 1, 0, 0, 0, 1, 1, 0], dtype=float)
    np.testing.assert_array_equal(positions_from_probabilities(p, 0.6, 0.4), expected)


def test_fees_cost_exactly_one_fee_per_side_on_a_hand_computed_round_trip():
    # 100 -> 110 -> 121 -> 121: long over the first two bars, then flat.
    returns = np.array([0.1, 0.1, 0.0])
    p_up = np.array([0.7, 0.7, 0.3])
    labels = np.array([1, 1, 0])
    gross = run_backtest(p_up, returns, labels, DAY, NO_COSTS)
    net = run_backtest(p_up, returns, labels, DAY, TradeRule(fee_bps=30.0))
    assert gross.model.compounded_return == pytest.approx(0.21)
    assert net.model.compounded_return == pytest.approx(1.21 * 0.997 * 0.997 - 1, abs=1e-15)
    assert net.model.trades == 2
    # Buy-and-hold pays its entry only: one side.
    assert net.buy_and_hold.compounded_return == pytest.approx(1.21 * 0.997 - 1, abs=1e-15)


def test_gas_is_charged_per_swap_out_of_the_initial_capital():
    returns = np.array([0.1, 0.1, 0.0])
    rule = TradeRule(fee_bps=30.0, gas=5.0, initial_capital=1000.0)
    result = run_backtest(np.array([0.7, 0.7, 0.3]), returns, np.array([1, 1, 0]), DAY, rule)
    after_entry = 1.0 * 0.997 - 0.005
    expected = (after_entry * 1.21) * 0.997 - 0.005
    assert result.model.compounded_return == pytest.approx(expected - 1, abs=1e-15)


def test_always_up_trades_like_buy_and_hold_and_scores_the_up_rate():
    rng = np.random.default_rng(1)
    returns = rng.normal(0.001, 0.03, 300)
    labels = (returns > 0).astype(int)
    result = run_backtest(rng.uniform(size=300), returns, labels, DAY)
    assert result.always_up.compounded_return == pytest.approx(
        result.buy_and_hold.compounded_return
    )
    assert result.always_up.accuracy == pytest.approx(labels.mean())
    assert result.buy_and_hold.accuracy is None


def test_figures_are_annualised_over_a_365_day_year():
    rng = np.random.default_rng(2)
    returns = rng.normal(0.002, 0.02, 730)
    result = run_backtest(np.ones(730), returns, np.ones(730, dtype=int), DAY, NO_COSTS)
    per_bar = returns.mean() / returns.std(ddof=1)
    assert result.buy_and_hold.sharpe == pytest.approx(per_bar * math.sqrt(365))
    hourly = run_backtest(np.ones(730), returns, np.ones(730, dtype=int), 3600.0, NO_COSTS)
    assert hourly.buy_and_hold.sharpe == pytest.approx(per_bar * math.sqrt(365 * 24))
    final = np.prod(1 + returns)
    assert result.buy_and_hold.cagr == pytest.approx(final**0.5 - 1)  # two years


def test_max_drawdown_is_the_largest_fall_from_a_peak():
    equity = np.array([1.0, 1.2, 0.9, 1.3, 1.04, 1.5])
    assert metrics.max_drawdown(equity) == pytest.approx(0.25)


def test_wilson_interval_matches_a_known_value_and_covers_the_estimate():
    ci = metrics.wilson_interval(60, 100)
    assert ci.low == pytest.approx(0.5020, abs=1e-4)
    assert ci.high == pytest.approx(0.6906, abs=1e-4)


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 500), st.integers(0, 500))
def test_wilson_interval_always_contains_the_observed_rate(n, k):
    k = min(k, n)
    ci = metrics.wilson_interval(k, n)
    assert ci.low - 1e-12 <= k / n <= ci.high + 1e-12


def test_sharpe_standard_error_is_lo_formula_for_normal_returns():
    se = metrics.sharpe_standard_error(0.1, 1001)
    assert se == pytest.approx(math.sqrt((1 + 0.5 * 0.01) / 1000))


def test_deflated_sharpe_falls_as_the_number_of_trials_grows():
    rng = np.random.default_rng(3)
    trials = list(rng.normal(0.0, 0.03, 100))
    one = metrics.deflated_sharpe_ratio(0.06, 1000, 0.0, 3.0, [0.06])
    many = metrics.deflated_sharpe_ratio(0.06, 1000, 0.0, 3.0, [*trials, 0.06])
    assert one.n_trials == 1
    assert one.expected_max_sharpe == 0.0
    assert one.dsr == pytest.approx(metrics.probabilistic_sharpe_ratio(0.06, 0.0, 1000))
    assert many.n_trials == 101
    assert many.expected_max_sharpe > 0.05  # about 2.5 standard deviations of the trials
    assert many.dsr < one.dsr - 0.3


def test_expected_max_sharpe_matches_the_papers_approximation():
    # Bailey & Lopez de Prado (2014): N = 100 trials, V = 1 -> E[max] ~ 2.53.
    assert metrics.expected_max_sharpe(100, 1.0) == pytest.approx(2.5306, abs=1e-3)


def test_fee_costs_show_in_equity_and_per_bar_returns_consistently():
    positions = np.array([1.0, 0.0, 1.0, 1.0])
    returns = np.array([0.05, -0.02, 0.01, 0.03])
    equity, net = simulate_equity(positions, returns, TradeRule(fee_bps=100.0))
    np.testing.assert_allclose(np.cumprod(1 + net), equity)
    assert equity[-1] == pytest.approx(0.99 * 1.05 * 0.99 * 0.99 * 1.01 * 1.03)


def test_summary_shows_every_figure_beside_both_baselines():
    result = run_backtest(np.array([0.7, 0.2]), np.array([0.01, 0.02]), np.array([1, 1]), DAY)
    summary = result.summary()
    assert set(summary["sharpe"]) == {"model", "buy_and_hold", "always_up"}
    table = figures_table(result.to_dict())
    assert "buy & hold" in table
    assert "always up" in table
    assert "Sharpe" in table


def test_amm_fill_model_charges_price_impact_like_the_paper_executor():
    """The backtest's pool fills equal the paper executor's integer AMM maths."""
    from engine.amm import get_amount_out

    rule = TradeRule(fee_bps=30.0, initial_capital=1000.0, pool_depth_quote=100_000.0)
    # Buying 1,000 quote of a token priced 2,000 from a pool holding 100,000 quote.
    units = 10**6
    quote_reserve, base_reserve = 100_000 * units, 50 * units  # 50 tokens at 2,000
    base_out = get_amount_out(1000 * units, quote_reserve, base_reserve)
    value_kept = base_out * 2000 / (1000 * units)
    assert 1.0 - rule.swap_cost(1000.0) == pytest.approx(value_kept, rel=1e-6)
    # A round trip: entry and exit each lose the fee plus the impact of their size.
    returns = np.array([0.1, 0.1, 0.0])
    result = run_backtest(np.array([0.7, 0.7, 0.3]), returns, np.array([1, 1, 0]), DAY, rule)
    after_entry = 1.0 - rule.swap_cost(1000.0)
    expected = after_entry * 1.21 * (1.0 - rule.swap_cost(after_entry * 1.21 * 1000.0))
    assert result.model.compounded_return == pytest.approx(expected - 1, abs=1e-12)
    # An infinitely deep pool is the plain fee; a shallow one costs more.
    deep = TradeRule(fee_bps=30.0, pool_depth_quote=1e15)
    assert deep.swap_cost(1000.0) == pytest.approx(0.003, abs=1e-12)
    assert rule.swap_cost(1000.0) > 0.003 + 0.009  # 1% of the pool: ~1% impact
