"""Figures of replayed renewal policies, paired comparisons between them, and a verdict.

Every policy is shown beside buy-and-hold on the same bars with the same fee. Two
policies are compared on the same bars, paired: net return per bar by
:func:`ml.promotion.paired_return_test` (HAC standard error) run in both directions,
and direction accuracy by :func:`ml.promotion.mcnemar_one_sided` in both directions;
a difference counts only when the two-sided p-value (twice the smaller one-sided one) is
below ``alpha``. Nothing else is called better or worse.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ml.pnl import net_returns
from ml.promotion import mcnemar_one_sided, paired_return_test
from research.metrics import bars_per_year, max_drawdown, sharpe_per_bar, wilson_interval
from research.policies import PolicyRun, ReplayBars

BUY_AND_HOLD = "buy_and_hold"


def _returns_figures(
    returns: np.ndarray, positions: np.ndarray, bar_seconds: float
) -> dict[str, Any]:
    equity = np.cumprod(1.0 + returns)
    return {
        "bars": len(returns),
        "final_equity": float(equity[-1]),
        "net_return": float(equity[-1] - 1.0),
        "sharpe": sharpe_per_bar(returns) * math.sqrt(bars_per_year(bar_seconds)),
        "max_drawdown": max_drawdown(np.concatenate([[1.0], equity])),
        "exposure": float(np.mean(positions)),
        "position_changes": int(np.count_nonzero(np.diff(positions, prepend=0.0))),
    }


def _accuracy(correct: np.ndarray) -> dict[str, Any]:
    hits, n = int(np.sum(correct)), len(correct)
    interval = wilson_interval(hits, n)
    return {
        "accuracy": hits / n if n else None,
        "accuracy_ci_low": interval.low,
        "accuracy_ci_high": interval.high,
    }


def policy_figures(run: PolicyRun, bars: ReplayBars, bar_seconds: float) -> dict[str, Any]:
    """Equity, accuracy with its Wilson 95% interval, Sharpe, and what the policy did."""
    return {
        **_returns_figures(run.returns, run.positions, bar_seconds),
        **_accuracy(run.correct),
        "models_in_service": len(np.unique(run.in_service)),
        "retrains": run.count("swap") + run.count("challenger"),
        "swaps": run.count("swap"),
        "promotions": run.count("promoted"),
        "rejections": run.count("rejected"),
        "rollbacks": run.count("rolled_back"),
        "canaries_kept": run.count("kept"),
        "challengers_replaced": run.count("replaced"),
        "bars_in_canary": int(np.sum(run.in_canary)),
    }


def buy_and_hold(bars: ReplayBars, fee: float) -> tuple[np.ndarray, np.ndarray]:
    """Positions and net returns of holding from the first bar (one entry fee)."""
    positions = np.ones(len(bars))
    return positions, net_returns(positions, bars.asset_returns, fee)


def baseline_figures(bars: ReplayBars, fee: float, bar_seconds: float) -> dict[str, Any]:
    """Buy-and-hold's figures; its accuracy is always-up's (it is long on every bar)."""
    positions, returns = buy_and_hold(bars, fee)
    return {
        **_returns_figures(returns, positions, bar_seconds),
        **_accuracy(bars.up == 1),
    }


def _two_sided(p_greater: float, p_less: float) -> float:
    return min(1.0, 2.0 * min(p_greater, p_less))


def _p(value: float) -> str:
    """``p=…`` as text; below double precision's resolution only ``p<1e-15``."""
    return "p<1e-15" if value < 1e-15 else f"p={value:.3g}"


def compare(
    name: str,
    returns: np.ndarray,
    other: str,
    other_returns: np.ndarray,
    alpha: float,
    correct: np.ndarray | None = None,
    other_correct: np.ndarray | None = None,
) -> dict[str, Any]:
    """``name`` against ``other`` on the same bars, paired; a ``verdict`` sentence."""
    result: dict[str, Any] = {"a": name, "b": other}
    diff = returns - other_returns
    if not np.any(diff):
        result["returns"] = {"identical": True}
        result["verdict"] = f"{name} and {other} earned the same on every bar"
        return result
    greater = paired_return_test(other_returns, returns)
    less = paired_return_test(returns, other_returns)
    p = _two_sided(greater["p_value"], less["p_value"])
    mean_bps = 1e4 * greater["mean_difference"]
    result["returns"] = {
        "mean_difference_bps": mean_bps,
        "t": greater["t"],
        "p_two_sided": p,
        "hac_lags": greater.get("hac_lags"),
    }
    if p < alpha:
        winner, loser = (name, other) if mean_bps > 0 else (other, name)
        sentence = f"{winner} earned more per bar than {loser}"
    else:
        sentence = f"{name} vs {other}: difference in net return within noise"
    sentence += f" ({name} minus {other}: {mean_bps:+.2f} bps a bar, HAC {_p(p)})"
    if correct is not None and other_correct is not None:
        up = mcnemar_one_sided(other_correct, correct)
        down = mcnemar_one_sided(correct, other_correct)
        p_acc = _two_sided(up["p_value"], down["p_value"])
        result["accuracy"] = {
            "a_only_right": up["candidate_only_right"],
            "b_only_right": up["incumbent_only_right"],
            "p_two_sided": p_acc,
        }
        a_wins, b_wins = up["candidate_only_right"], up["incumbent_only_right"]
        if a_wins + b_wins == 0:
            sentence += "; the same direction calls on every bar"
        elif p_acc < alpha:
            better = name if a_wins > b_wins else other
            sentence += f"; {better} more accurate (McNemar {_p(p_acc)})"
        else:
            sentence += f"; accuracy within noise (McNemar {_p(p_acc)})"
    result["verdict"] = sentence
    return result


def compare_all(
    runs: dict[str, PolicyRun], bars: ReplayBars, fee: float, alpha: float = 0.05
) -> list[dict[str, Any]]:
    """Each policy against buy-and-hold, then each pair of policies."""
    _, hold = buy_and_hold(bars, fee)
    names = list(runs)
    results = [compare(n, runs[n].returns, BUY_AND_HOLD, hold, alpha) for n in names]
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            ra, rb = runs[a], runs[b]
            results.append(compare(a, ra.returns, b, rb.returns, alpha, ra.correct, rb.correct))
    return results


def verdict(
    figures: dict[str, dict[str, Any]], comparisons: list[dict[str, Any]], alpha: float = 0.05
) -> list[str]:
    """Plain lines, each backed by a test or an interval above."""
    lines = []
    against_hold = [c for c in comparisons if c["b"] == BUY_AND_HOLD]
    beat = [
        c["a"]
        for c in against_hold
        if c["returns"].get("p_two_sided", 1.0) < alpha and c["returns"]["mean_difference_bps"] > 0
    ]
    if beat:
        lines.append(f"beats buy-and-hold at {alpha:g} (two-sided, HAC): {', '.join(beat)}")
    else:
        lines.append(f"no policy beats buy-and-hold at {alpha:g} (paired, HAC)")
    always_up = figures[BUY_AND_HOLD]["accuracy"]
    for name, f in figures.items():
        if name == BUY_AND_HOLD:
            continue
        low, high = f["accuracy_ci_low"], f["accuracy_ci_high"]
        where = (
            "above 50%"
            if low > 0.5
            else "below 50%"
            if high < 0.5
            else "containing 50% (no better than a coin)"
        )
        versus = "above" if low > always_up else "below" if high < always_up else "containing"
        lines.append(
            f"{name}: accuracy {f['accuracy']:.2%} [{low:.2%}, {high:.2%}], interval {where}, "
            f"{versus} always-up's {always_up:.2%}"
        )
    lines += [c["verdict"] for c in comparisons]
    return lines
