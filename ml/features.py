"""Feature sets: one definition each, evaluated in batch (research) or bar by bar (live).

A feature set is an ordered list of steps over named series. The raw inputs are a
candle's ``open``, ``high``, ``low``, ``close`` and ``volume``; each step adds series:

* :class:`Indicator` — a TA-Lib function (batch API in :func:`compute`, the stateful
  ``talib.stream`` API in :class:`StreamingFeatures`; both give identical numbers);
* :class:`Lag` — a series' value ``periods`` bars ago;
* :class:`Derived` — a formula over the current values, written once with NumPy so it
  works on whole columns and on single values alike.

Every step only looks at the current and past bars, so a feature at bar t never
changes when later bars arrive (tests prove it, and that streaming equals batch).
Values are NaN (batch) or the row is ``None`` (streaming) until all inputs are warm.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import talib
from talib import abstract
from talib import stream as talib_stream

from engine.events import Bar

RAW_INPUTS: tuple[str, ...] = ("open", "high", "low", "close", "volume")
Values = Mapping[str, Any]  # name -> float (streaming) or np.ndarray (batch)


@dataclass(frozen=True)
class Indicator:
    """``outputs = talib.<function>(*inputs, **params)``."""

    function: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    params: Mapping[str, int | float] = field(default_factory=dict)

    @property
    def history_needed(self) -> int:
        """Bars of (non-NaN) input before TA-Lib gives the first value."""
        fn = abstract.Function(self.function)
        fn.set_parameters(dict(self.params))
        return int(fn.lookback) + 1


@dataclass(frozen=True)
class Lag:
    """``output`` = ``source`` as it was ``periods`` bars ago."""

    source: str
    periods: int
    output: str


@dataclass(frozen=True)
class Derived:
    """``output = formula(values)``, NumPy-only so it works on columns and scalars."""

    output: str
    formula: Callable[[Values], Any]


Step = Indicator | Lag | Derived


@dataclass(frozen=True)
class FeatureSet:
    name: str
    steps: tuple[Step, ...]
    columns: tuple[str, ...]  # what a model sees, in this order
    description: str = ""


def ratio(numerator: Any, denominator: Any) -> Any:
    """``numerator / denominator``, 0 where the denominator is 0 (flat markets)."""
    if isinstance(denominator, float):  # streaming: plain floats, no array overhead
        return numerator / denominator if denominator != 0 else 0.0
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    safe = np.where(denominator == 0, 1.0, denominator)
    return np.where(denominator == 0, 0.0, numerator / safe)


def log(x: Any) -> Any:
    """Natural log of a column or of one value (``math.log`` is 10x faster on a float)."""
    return math.log(x) if isinstance(x, float) else np.log(x)


def _copy(source: str, output: str) -> Derived:
    return Derived(output, lambda v: v[source])


_SEED_INDICATORS: tuple[Step, ...] = (
    Indicator("SMA", ("close",), ("SMA_20",), {"timeperiod": 20}),
    Indicator("SMA", ("close",), ("SMA_50",), {"timeperiod": 50}),
    Indicator("RSI", ("close",), ("RSI",), {"timeperiod": 14}),
    Indicator(
        "MACD",
        ("close",),
        ("MACD", "MACD_signal", "MACD_hist"),
        {"fastperiod": 12, "slowperiod": 26, "signalperiod": 9},
    ),
    Indicator("BBANDS", ("close",), ("BB_upper", "BB_middle", "BB_lower")),
)

SEED = FeatureSet(
    name="seed",
    description="The seed document's set: raw OHLCV and indicator levels (price-level "
    "dependent, so a tree model cannot extrapolate to unseen price ranges).",
    steps=(
        *(_copy(raw, raw.capitalize()) for raw in RAW_INPUTS),
        *_SEED_INDICATORS,
    ),
    columns=(
        "Open",
        "High",
        "Low",
        "Close",
        "Volume",
        "SMA_20",
        "SMA_50",
        "RSI",
        "MACD",
        "MACD_signal",
        "MACD_hist",
        "BB_upper",
        "BB_middle",
        "BB_lower",
    ),
)

RETURN_LAGS = (1, 3, 6, 12, 24)

STATIONARY = FeatureSet(
    name="stationary",
    description="Scale-free versions: returns, ratios to averages, oscillators and "
    "normalised volatility and volume, comparable across years and price levels.",
    steps=(
        *_SEED_INDICATORS,
        Indicator("ATR", ("high", "low", "close"), ("ATR_14",), {"timeperiod": 14}),
        Indicator("SMA", ("volume",), ("volume_sma_20",), {"timeperiod": 20}),
        Indicator("STDDEV", ("volume",), ("volume_std_20",), {"timeperiod": 20}),
        *(Lag("close", k, f"close_lag_{k}") for k in RETURN_LAGS),
        *(
            Derived(f"log_return_{k}", lambda v, k=k: log(v["close"] / v[f"close_lag_{k}"]))
            for k in RETURN_LAGS
        ),
        Indicator("STDDEV", ("log_return_1",), ("volatility_20",), {"timeperiod": 20}),
        Derived("close_to_sma_20", lambda v: v["close"] / v["SMA_20"] - 1.0),
        Derived("close_to_sma_50", lambda v: v["close"] / v["SMA_50"] - 1.0),
        Derived("sma_20_to_sma_50", lambda v: v["SMA_20"] / v["SMA_50"] - 1.0),
        Derived("rsi_14", lambda v: v["RSI"]),
        Derived("macd_rel", lambda v: v["MACD"] / v["close"]),
        Derived("macd_signal_rel", lambda v: v["MACD_signal"] / v["close"]),
        Derived("macd_hist_rel", lambda v: v["MACD_hist"] / v["close"]),
        Derived(
            "bb_percent_b",
            lambda v: ratio(v["close"] - v["BB_lower"], v["BB_upper"] - v["BB_lower"]),
        ),
        Derived("bb_width", lambda v: (v["BB_upper"] - v["BB_lower"]) / v["BB_middle"]),
        Derived("atr_rel", lambda v: v["ATR_14"] / v["close"]),
        Derived("range_rel", lambda v: (v["high"] - v["low"]) / v["close"]),
        Derived("body_rel", lambda v: v["close"] / v["open"] - 1.0),
        Derived(
            "volume_z_20", lambda v: ratio(v["volume"] - v["volume_sma_20"], v["volume_std_20"])
        ),
    ),
    columns=(
        *(f"log_return_{k}" for k in RETURN_LAGS),
        "volatility_20",
        "close_to_sma_20",
        "close_to_sma_50",
        "sma_20_to_sma_50",
        "rsi_14",
        "macd_rel",
        "macd_signal_rel",
        "macd_hist_rel",
        "bb_percent_b",
        "bb_width",
        "atr_rel",
        "range_rel",
        "body_rel",
        "volume_z_20",
    ),
)

FEATURE_SETS: dict[str, FeatureSet] = {fs.name: fs for fs in (SEED, STATIONARY)}


def get_feature_set(name: str) -> FeatureSet:
    try:
        return FEATURE_SETS[name]
    except KeyError:
        known = ", ".join(FEATURE_SETS)
        raise ValueError(f"unknown feature set {name!r} (known: {known})") from None


# -- batch ------------------------------------------------------------------------------


def compute(frame: pd.DataFrame, feature_set: str = "seed") -> pd.DataFrame:
    """Features for every row of a candle frame (NaN while warming up), same index."""
    fs = get_feature_set(feature_set)
    missing = [c for c in RAW_INPUTS if c not in frame.columns]
    if missing:
        raise ValueError(f"compute(): frame lacks columns {', '.join(missing)}")
    values: dict[str, np.ndarray] = {
        c: frame[c].to_numpy(dtype=np.float64, copy=True) for c in RAW_INPUTS
    }
    n = len(frame)
    for step in fs.steps:
        if isinstance(step, Indicator):
            inputs = [values[name] for name in step.inputs]
            outputs = _batch_indicator(step, inputs, n)
            for name, column in zip(step.outputs, outputs, strict=True):
                values[name] = column
        elif isinstance(step, Lag):
            lagged = np.full(n, np.nan)
            if step.periods < n:
                lagged[step.periods :] = values[step.source][: n - step.periods]
            values[step.output] = lagged
        else:
            with np.errstate(divide="ignore", invalid="ignore"):
                values[step.output] = np.broadcast_to(
                    np.asarray(step.formula(values), dtype=np.float64), (n,)
                ).copy()
    return pd.DataFrame({c: values[c] for c in fs.columns}, index=frame.index)


def _batch_indicator(step: Indicator, inputs: list[np.ndarray], n: int) -> list[np.ndarray]:
    # TA-Lib skips leading NaNs itself but refuses an all-NaN input (too short a frame).
    if n == 0 or np.isnan(np.vstack(inputs)).any(axis=0).all():
        return [np.full(n, np.nan) for _ in step.outputs]
    result = getattr(talib, step.function)(*inputs, **step.params)
    return list(result) if isinstance(result, tuple | list) else [result]


# -- streaming --------------------------------------------------------------------------


class _StreamingIndicator:
    """Buffers input until TA-Lib's stream can open, then updates it bar by bar."""

    __slots__ = ("_buffer", "_nan", "_needed", "handle", "step")

    def __init__(self, step: Indicator) -> None:
        self.step = step
        self._needed = step.history_needed
        self._buffer: list[tuple[float, ...]] = []
        self.handle: Any = None
        self._nan = (float("nan"),) * len(step.outputs)

    def update(self, inputs: tuple[float, ...]) -> tuple[float, ...]:
        if self.handle is not None:
            self.handle.update(*inputs)
            value = self.handle.value
            return value if isinstance(value, tuple) else (value,)
        if not self._buffer and any(x != x for x in inputs):
            return self._nan  # leading NaN is not history, as in the batch API
        self._buffer.append(inputs)
        if len(self._buffer) < self._needed:
            return self._nan
        columns = [np.array(col, dtype=np.float64) for col in zip(*self._buffer, strict=True)]
        self.handle = getattr(talib_stream, self.step.function)(*columns, **self.step.params)
        self._buffer = []
        value = self.handle.value
        return value if isinstance(value, tuple) else (value,)


StepRunner = Callable[[dict[str, Any]], None]


def _streaming_runner(step: Step) -> StepRunner:
    """A closure that advances one step by one bar, writing its outputs into ``values``."""
    if isinstance(step, Indicator):
        indicator = _StreamingIndicator(step)
        inputs, outputs = step.inputs, step.outputs
        if len(inputs) == 1 and len(outputs) == 1:  # the common case, kept lean
            source, output = inputs[0], outputs[0]

            def run_simple_indicator(values: dict[str, Any]) -> None:
                handle = indicator.handle
                if handle is None:
                    values[output] = indicator.update((values[source],))[0]
                else:
                    handle.update(values[source])
                    values[output] = handle.value

            return run_simple_indicator

        def run_indicator(values: dict[str, Any]) -> None:
            result = indicator.update(tuple([values[name] for name in inputs]))
            for name, value in zip(outputs, result, strict=True):
                values[name] = value

        return run_indicator
    if isinstance(step, Lag):
        window: deque[float] = deque(maxlen=step.periods + 1)
        source, output, periods = step.source, step.output, step.periods

        def run_lag(values: dict[str, Any]) -> None:
            window.append(values[source])
            values[output] = window[0] if len(window) > periods else math.nan

        return run_lag
    formula, output = step.formula, step.output

    def run_derived(values: dict[str, Any]) -> None:
        result = formula(values)
        values[output] = result if type(result) is float else float(result)

    return run_derived


class StreamingFeatures:
    """Live evaluator of a feature set: ``update(bar)`` → feature row, or None while warming."""

    def __init__(self, feature_set: str = "seed") -> None:
        self.feature_set = get_feature_set(feature_set)
        self._runners = [_streaming_runner(step) for step in self.feature_set.steps]
        self._columns = self.feature_set.columns
        self.bars_seen = 0

    def update(self, bar: Bar | Mapping[str, float]) -> dict[str, float] | None:
        """Add one closed bar; the features as of its close, or None until all are warm."""
        if isinstance(bar, Bar):
            values: dict[str, Any] = {
                "open": bar.open,
                "high": bar.high,
                "low": bar.low,
                "close": bar.close,
                "volume": bar.volume,
            }
        else:
            values = {name: float(bar[name]) for name in RAW_INPUTS}
        self.bars_seen += 1
        for run in self._runners:
            run(values)
        row = [values[name] for name in self._columns]
        if math.isnan(sum(row)):  # a NaN anywhere: still warming up
            return None
        return dict(zip(self._columns, row, strict=True))
