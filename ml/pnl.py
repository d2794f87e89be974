"""Net per-bar returns of a long-only position, after swap fees: one rule for the
backtest, the shadow scoring of a challenger and the promotion gate.

Timing: the position set at bar t's close is held to the next close and earns that
bar's return; moving from the previous position to it pays ``fee`` of the traded
value first. So one bar's growth is ``(1 - fee * |change|) * (1 + position * return)``.
"""

from __future__ import annotations

import numpy as np

from engine.events import Action


def position_after(action: Action, position: float) -> float:
    """The long-only position a signal leaves: BUY long, SELL flat, HOLD unchanged."""
    if action == "BUY":
        return 1.0
    if action == "SELL":
        return 0.0
    return position


def net_returns(
    positions: np.ndarray, asset_returns: np.ndarray, fee: float, start: float = 0.0
) -> np.ndarray:
    """Net return of each bar: ``positions[t]`` held over ``asset_returns[t]`` (the
    return to the next close), after the fee of moving to it from ``positions[t-1]``
    (``start`` before the first bar)."""
    positions = np.asarray(positions, dtype=float)
    change = np.abs(np.diff(positions, prepend=start))
    return (1.0 - fee * change) * (1.0 + positions * np.asarray(asset_returns, dtype=float)) - 1.0


def net_return(position: float, previous: float, asset_return: float, fee: float) -> float:
    """:func:`net_returns` for one bar (the streaming form, same rule)."""
    return (1.0 - fee * abs(position - previous)) * (1.0 + position * asset_return) - 1.0
