"""Vectorised backtest of a long-only spot strategy driven by P(up) per bar.

Timing: the probability at bar t is known at bar t's close; the position it sets is
held from that close to the next one, so it earns ``forward_return(t -> t+1)``. (The
seed multiplied today's signal by today's return: it traded on a close it had not seen
yet.) The trade rule is the seed's: go long when p > ``enter`` (0.6), go flat when
p < ``exit`` (0.4), otherwise keep the position. Every position change is a swap that
pays ``fee_bps`` of the traded value (30 bps = a Uniswap V2 swap) and, optionally, a
fixed ``gas`` in quote units out of an ``initial_capital``. Every figure comes with
the buy-and-hold and always-up baselines computed on the same bars with the same costs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from engine.amm import FEE_BPS, value_kept
from ml.pnl import net_returns
from research import metrics

Z95 = 1.959963984540054


@dataclass(frozen=True)
class TradeRule:
    """The seed's hysteresis rule and the costs of a swap."""

    enter: float = 0.6
    exit: float = 0.4
    fee_bps: float = float(FEE_BPS)
    gas: float = 0.0  # quote units per swap
    initial_capital: float = 10_000.0  # quote units; gas is charged out of this
    # Fill model: None = the close less the fee; a depth = the paper executor's model, a
    # Uniswap V2 pool holding this much quote at the close, so size costs price impact.
    pool_depth_quote: float | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.exit <= self.enter <= 1.0:
            raise ValueError(f"need 0 <= exit <= enter <= 1, got {self.exit}, {self.enter}")
        if self.fee_bps < 0 or self.gas < 0 or self.initial_capital <= 0:
            raise ValueError("fees and gas must be >= 0 and initial_capital > 0")
        if self.pool_depth_quote is not None and self.pool_depth_quote <= 0:
            raise ValueError(f"pool_depth_quote must be > 0, got {self.pool_depth_quote}")

    @property
    def fee(self) -> float:
        return self.fee_bps / 10_000.0

    def swap_cost(self, notional_quote: float) -> float:
        """Fraction of a swap's value lost to the fee (and, with a pool, price impact).

        Constant product at the close (:func:`engine.amm.value_kept`): swapping ``n`` of
        value into a pool holding ``D`` (in quote terms) on the input side returns
        ``(1-f)·n·D / (D + (1-f)·n)``; the same formula whichever side is sold, since
        the pool is priced at the close.
        """
        if self.pool_depth_quote is None:
            return self.fee
        return 1.0 - value_kept(notional_quote, self.pool_depth_quote, self.fee)


def positions_from_probabilities(p_up: np.ndarray, enter: float, exit: float) -> np.ndarray:
    """1 (long) or 0 (flat) at every bar: long above ``enter``, flat below ``exit``, else hold.

    Starts flat. Vectorised: the last decisive bar's decision, carried forward.
    """
    p_up = np.asarray(p_up, dtype=float)
    decision = np.where(p_up > enter, 1.0, np.where(p_up < exit, 0.0, np.nan))
    return pd.Series(decision).ffill().fillna(0.0).to_numpy()


def simulate_equity(
    positions: np.ndarray, asset_returns: np.ndarray, rule: TradeRule
) -> tuple[np.ndarray, np.ndarray]:
    """Equity (starting at 1.0) and net per-bar returns of holding ``positions``.

    At bar t's close the position moves from ``positions[t-1]`` (flat before the first
    bar) to ``positions[t]``, paying ``fee * |change|`` of equity plus ``gas`` per swap,
    then earns ``positions[t] * asset_returns[t]`` until the next close.
    """
    positions = np.asarray(positions, dtype=float)
    asset_returns = np.asarray(asset_returns, dtype=float)
    if not np.isfinite(asset_returns).all():
        raise ValueError("asset returns must be finite (drop bars without a next close)")
    if rule.gas == 0 and rule.pool_depth_quote is None:
        equity = np.cumprod(1.0 + net_returns(positions, asset_returns, rule.fee))
    else:  # costs that depend on the equity reached: step through the bars
        change = np.abs(np.diff(positions, prepend=0.0))
        growth = 1.0 + positions * asset_returns
        gas = rule.gas / rule.initial_capital
        equity = np.empty_like(growth)
        value = 1.0
        for t in range(len(growth)):
            if change[t] > 0:
                notional = value * change[t] * rule.initial_capital
                value = value * (1.0 - rule.swap_cost(notional) * change[t]) - gas
            value *= growth[t]
            equity[t] = value
    previous = np.concatenate(([1.0], equity[:-1]))
    with np.errstate(divide="ignore", invalid="ignore"):
        returns = np.where(previous > 0, equity / previous - 1.0, 0.0)
    return equity, returns


@dataclass(frozen=True)
class Figures:
    """Every headline figure of one strategy on one span of bars."""

    accuracy: float | None
    accuracy_ci_low: float | None
    accuracy_ci_high: float | None
    total_return: float  # sum of net per-bar returns
    compounded_return: float  # final equity / initial - 1
    cagr: float
    sharpe: float  # annualised
    sharpe_se: float  # annualised standard error
    sharpe_ci_low: float
    sharpe_ci_high: float
    sortino: float  # annualised
    max_drawdown: float
    exposure: float  # fraction of bars in the market
    trades: int  # swaps (entries + exits)
    bars: int
    sharpe_per_bar: float
    skew: float
    kurtosis: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def figures(
    returns: np.ndarray,
    equity: np.ndarray,
    positions: np.ndarray,
    bar_seconds: float,
    correct: np.ndarray | None,
) -> Figures:
    """Headline figures from net per-bar returns, the equity path and the positions."""
    n = len(returns)
    per_year = metrics.bars_per_year(bar_seconds)
    accuracy = lo = hi = None
    if correct is not None and len(correct):
        hits = int(np.sum(correct))
        accuracy = hits / len(correct)
        ci = metrics.wilson_interval(hits, len(correct))
        lo, hi = ci.low, ci.high
    final = float(equity[-1]) if n else 1.0
    years = n / per_year
    cagr = (final ** (1.0 / years) - 1.0 if final > 0 else -1.0) if years > 0 else 0.0
    sr = metrics.sharpe_per_bar(returns)
    skew, kurt = metrics.skew_kurtosis(returns)
    se = metrics.sharpe_standard_error(sr, n, skew, kurt) * math.sqrt(per_year)
    sr_annual = sr * math.sqrt(per_year)
    return Figures(
        accuracy=accuracy,
        accuracy_ci_low=lo,
        accuracy_ci_high=hi,
        total_return=float(np.sum(returns)),
        compounded_return=final - 1.0,
        cagr=float(cagr),
        sharpe=sr_annual,
        sharpe_se=se,
        sharpe_ci_low=sr_annual - Z95 * se,
        sharpe_ci_high=sr_annual + Z95 * se,
        sortino=metrics.sortino_per_bar(returns) * math.sqrt(per_year),
        max_drawdown=metrics.max_drawdown(np.concatenate(([1.0], equity))),
        exposure=float(np.mean(positions > 0)) if n else 0.0,
        trades=int(np.count_nonzero(np.diff(positions, prepend=0.0))),
        bars=n,
        sharpe_per_bar=sr,
        skew=skew,
        kurtosis=kurt,
    )


@dataclass(frozen=True)
class BacktestResult:
    """Per-bar table and the figures of the model beside its baselines."""

    bars: pd.DataFrame  # p_up, label, prediction, correct, position, asset_return, ...
    model: Figures
    buy_and_hold: Figures
    always_up: Figures
    rule: TradeRule
    bar_seconds: float

    def summary(self) -> dict[str, Any]:
        """The figures side by side: {figure: {model, buy_and_hold, always_up}}."""
        rows = {"model": self.model, "buy_and_hold": self.buy_and_hold}
        rows["always_up"] = self.always_up
        names = list(Figures.__dataclass_fields__)
        return {k: {who: getattr(f, k) for who, f in rows.items()} for k in names}

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": asdict(self.rule),
            "bar_seconds": self.bar_seconds,
            "model": self.model.to_dict(),
            "buy_and_hold": self.buy_and_hold.to_dict(),
            "always_up": self.always_up.to_dict(),
        }


def run_backtest(
    p_up: np.ndarray | pd.Series,
    asset_returns: np.ndarray | pd.Series,
    labels: np.ndarray | pd.Series,
    bar_seconds: float,
    rule: TradeRule | None = None,
    index: pd.Index | None = None,
) -> BacktestResult:
    """Backtest P(up) per bar against the next bar's return, with both baselines.

    ``asset_returns[t]`` is the return from bar t's close to bar t+1's close
    (:func:`ml.labels.forward_return` with horizon 1); ``labels[t]`` is the
    model's target at bar t (1 = up). A prediction is "up" when p > 0.5.
    """
    rule = rule or TradeRule()
    if index is None and isinstance(p_up, pd.Series):
        index = p_up.index
    p = np.asarray(p_up, dtype=float)
    r = np.asarray(asset_returns, dtype=float)
    y = np.asarray(labels, dtype=int)
    if not len(p) == len(r) == len(y):
        raise ValueError(f"lengths differ: p_up {len(p)}, returns {len(r)}, labels {len(y)}")
    if len(p) == 0:
        raise ValueError("nothing to backtest: no bars")
    prediction = (p > 0.5).astype(int)
    correct = prediction == y
    position = positions_from_probabilities(p, rule.enter, rule.exit)
    equity, returns = simulate_equity(position, r, rule)
    hold = np.ones_like(position)
    bh_equity, bh_returns = simulate_equity(hold, r, rule)
    always = positions_from_probabilities(np.ones_like(p), rule.enter, rule.exit)
    au_equity, au_returns = simulate_equity(always, r, rule)
    bars = pd.DataFrame(
        {
            "p_up": p,
            "label": y,
            "prediction": prediction,
            "correct": correct,
            "position": position,
            "asset_return": r,
            "strategy_return": returns,
            "equity": equity,
            "buy_and_hold_equity": bh_equity,
        },
        index=index,
    )
    return BacktestResult(
        bars=bars,
        model=figures(returns, equity, position, bar_seconds, correct),
        buy_and_hold=figures(bh_returns, bh_equity, hold, bar_seconds, None),
        always_up=figures(au_returns, au_equity, always, bar_seconds, y == 1),
        rule=rule,
        bar_seconds=bar_seconds,
    )
