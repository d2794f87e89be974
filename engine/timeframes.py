"""The one table of candle timeframes: their names, lengths and candle boundaries.

Names are ccxt's: ``1m 3m 5m 15m 30m 1h 2h 4h 6h 8h 12h 1d 3d 1w 1M``. An unknown
name raises :class:`UnknownTimeframeError`, which lists the known ones.

Every timeframe but ``1M`` has a fixed length. ``1M`` is a calendar month: a candle
opens on the first of a month at 00:00 UTC and closes when the next month opens, so it
lasts 28 to 31 days. Boundaries (:func:`close_ns`, :func:`misaligned`,
:func:`missing_between`) follow the calendar. Where one fixed number is unavoidable,
such as annualising returns or estimating how many candles a download will bring,
:func:`timeframe_seconds` gives ``1M`` as the mean Gregorian month: 30.4375 days
(365.25 / 12, 2 629 800 s). Nothing uses that number to place a candle.

A candle's open time must be:

* ``1m`` to ``1d``: a whole number of candles after the Unix epoch;
* ``3d`` and ``1w``: 00:00 UTC and a whole number of candles after the first candle
  of the series. Exchanges do not share an anchor (Binance's weeks start on Monday,
  others' on Sunday), so the data sets the phase;
* ``1M``: the first of a month, 00:00 UTC.
"""

from __future__ import annotations

import numpy as np

from engine.clock import NANOS_PER_SECOND

NANOS_PER_MS = 1_000_000
MONTH = "1M"
MEAN_MONTH_SECONDS = 2_629_800  # 30.4375 days: 365.25 / 12

_FIXED_SECONDS: dict[str, int] = {
    "1m": 60,
    "3m": 180,
    "5m": 300,
    "15m": 900,
    "30m": 1_800,
    "1h": 3_600,
    "2h": 7_200,
    "4h": 14_400,
    "6h": 21_600,
    "8h": 28_800,
    "12h": 43_200,
    "1d": 86_400,
    "3d": 259_200,
    "1w": 604_800,
}
TIMEFRAMES: tuple[str, ...] = (*_FIXED_SECONDS, MONTH)
_DAY_NS = _FIXED_SECONDS["1d"] * NANOS_PER_SECOND
_PHASE_FROM_DATA = frozenset({"3d", "1w"})


class UnknownTimeframeError(ValueError):
    """A timeframe name not in the table; the message lists the known ones."""

    def __init__(self, timeframe: str) -> None:
        self.timeframe = timeframe
        super().__init__(f"unknown timeframe {timeframe!r} (known: {', '.join(TIMEFRAMES)})")


def check_timeframe(timeframe: str) -> str:
    """``timeframe`` if it is in the table, else :class:`UnknownTimeframeError`."""
    if timeframe not in TIMEFRAMES:
        raise UnknownTimeframeError(timeframe)
    return timeframe


def timeframe_seconds(timeframe: str) -> int:
    """Length of one candle in seconds; ``1M`` is the mean month (see the module doc)."""
    if check_timeframe(timeframe) == MONTH:
        return MEAN_MONTH_SECONDS
    return _FIXED_SECONDS[timeframe]


def timeframe_ns(timeframe: str) -> int:
    """:func:`timeframe_seconds` in nanoseconds."""
    return timeframe_seconds(timeframe) * NANOS_PER_SECOND


def timeframe_for_seconds(seconds: int) -> str:
    """The name of a fixed length: the table's name where it has one (``604800`` →
    ``1w``), else the largest whole unit (``120`` → ``2m``, ``90`` → ``90s``)."""
    for name, length in _FIXED_SECONDS.items():
        if length == seconds:
            return name
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


# -- candle boundaries (vectorised over open times in ns) -------------------------------


def _months(open_ns: np.ndarray) -> np.ndarray:
    return np.asarray(open_ns, dtype=np.int64).astype("datetime64[ns]").astype("datetime64[M]")


def close_times_ns(open_ns: np.ndarray, timeframe: str) -> np.ndarray:
    """Close time of each candle: its open plus the length, the next month's start for 1M."""
    if check_timeframe(timeframe) == MONTH:
        return (_months(open_ns) + 1).astype("datetime64[ns]").astype(np.int64)
    return np.asarray(open_ns, dtype=np.int64) + timeframe_ns(timeframe)


def close_ns(open_ns: int, timeframe: str) -> int:
    """Close time of one candle (equally, the next candle's open time)."""
    return int(close_times_ns(np.array([open_ns], dtype=np.int64), timeframe)[0])


def close_ms(open_ms: int, timeframe: str) -> int:
    """:func:`close_ns` in milliseconds, ccxt's unit."""
    return close_ns(open_ms * NANOS_PER_MS, timeframe) // NANOS_PER_MS


def misaligned(open_ns: np.ndarray, timeframe: str) -> np.ndarray:
    """Per candle: True where the open time is not on a boundary (module doc)."""
    ns = np.asarray(open_ns, dtype=np.int64)
    if check_timeframe(timeframe) == MONTH:
        return _months(ns).astype("datetime64[ns]").astype(np.int64) != ns
    step = timeframe_ns(timeframe)
    if timeframe in _PHASE_FROM_DATA and len(ns):
        return (ns % _DAY_NS != 0) | ((ns - ns[0]) % step != 0)
    return ns % step != 0


def missing_between(open_ns: np.ndarray, timeframe: str) -> np.ndarray:
    """Candles missing between each pair of consecutive aligned open times."""
    ns = np.asarray(open_ns, dtype=np.int64)
    if check_timeframe(timeframe) == MONTH:
        return np.diff(_months(ns).astype(np.int64)) - 1
    return np.diff(ns) // timeframe_ns(timeframe) - 1


def most_common_step_ns(open_ns: np.ndarray) -> int:
    """The most common spacing of consecutive open times (needs two or more)."""
    values, counts = np.unique(np.diff(np.asarray(open_ns, dtype=np.int64)), return_counts=True)
    return int(values[np.argmax(counts)])


def infer_timeframe(open_ns: np.ndarray) -> str | None:
    """The timeframe of a series of open times, from its most common spacing: a fixed
    length, or 1M when every open is a month start 28 to 31 days after the last. None
    when nothing matches or there are fewer than two candles."""
    if len(open_ns) < 2:
        return None
    step = most_common_step_ns(open_ns)
    for name, seconds in _FIXED_SECONDS.items():
        if seconds * NANOS_PER_SECOND == step:
            return name
    if 28 * _DAY_NS <= step <= 31 * _DAY_NS and not misaligned(open_ns, MONTH).any():
        return MONTH
    return None
