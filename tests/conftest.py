"""Fixtures several test modules share.

The imports are inside the fixtures: these modules are slow to import, and most tests
never ask for what they build.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import pandas as pd

    from research.walkforward import Dataset


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
