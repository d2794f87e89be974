"""Fixtures several test modules share.

The imports are inside the fixtures: these modules are slow to import, and most tests
never ask for what they build.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.processes import SESSION_MARKER, mark_session, session_leftovers

if TYPE_CHECKING:
    import pandas as pd

    from research.walkforward import Dataset


def pytest_configure(config: pytest.Config) -> None:
    mark_session()  # before any test starts a process


@pytest.fixture(scope="session", autouse=True)
def no_process_outlives_the_session() -> Iterator[None]:
    """Fail the run when a process a test started still runs once every test and
    fixture is done (a daemon's orphaned anvil, a server never stopped); kill it."""
    yield
    marker = os.environ[SESSION_MARKER]
    deadline = time.monotonic() + 5.0  # time to exit for what was just stopped
    while (leftovers := session_leftovers(marker)) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in leftovers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if leftovers:
        named = "\n".join(f"  pid {pid}: {what}" for pid, what in leftovers.items())
        pytest.fail(f"processes started by this test session outlived it (killed now):\n{named}")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models directory holding the small model the paper loop trades on (trained once
    per session: see :func:`tests.paper_support.shared_small_model`)."""
    from tests.paper_support import shared_small_model

    return shared_small_model(tmp_path_factory)


@pytest.fixture(scope="module")
def daily() -> pd.DataFrame:
    """The daily BTC-USD sample as a candle frame."""
    from adapters.replay.market_data import SAMPLES_DIR
    from engine.candles import read_candles

    frame, _, _ = read_candles(SAMPLES_DIR / "BTC-USD_1d.csv")
    return frame


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    """The daily BTC-USD sample prepared for walk-forward on the stationary feature set."""
    from adapters.replay.market_data import SAMPLES_DIR
    from engine.candles import read_candles
    from research.walkforward import prepare_dataset

    frame, timeframe, _ = read_candles(SAMPLES_DIR / "BTC-USD_1d.csv")
    return prepare_dataset(frame, timeframe, "stationary")
