"""Features: streaming equals batch, no look-ahead, labels kept out of features."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from adapters.replay.market_data import SAMPLES_DIR
from engine.candles import iter_bars, read_candles
from ml.features import FEATURE_SETS, StreamingFeatures, compute
from ml.labels import LABEL_COLUMN, forward_return, make_dataset, next_bar_direction

WARM_UP = 49  # SMA_50 needs 50 bars: the first full row is row 49


@pytest.fixture(scope="module")
def hourly() -> pd.DataFrame:
    frame, _, _ = read_candles(SAMPLES_DIR / "BTC-USDT_1h.csv.gz")
    return frame


def test_seed_set_has_exactly_the_seed_columns():
    assert FEATURE_SETS["seed"].columns == (
        "Open", "High", "Low", "Close", "Volume", "SMA_20", "SMA_50", "RSI",
        "MACD", "MACD_signal", "MACD_hist", "BB_upper", "BB_middle", "BB_lower",
    )  # fmt: skip


@pytest.mark.parametrize("feature_set", sorted(FEATURE_SETS))
def test_streaming_equals_batch_on_every_bar_of_the_hourly_file(hourly, feature_set):
    """Every streaming value equals compute() to 1e-9 relative, over all 46,981 bars."""
    batch = compute(hourly, feature_set)
    stream = StreamingFeatures(feature_set)
    rows = [stream.update(bar) for bar in iter_bars(hourly, "BTC/USDT", "1h")]
    first = next(i for i, row in enumerate(rows) if row is not None)
    assert first == WARM_UP
    assert batch.iloc[:first].isna().any(axis=1).all()  # batch is not warm earlier either
    assert all(row is not None for row in rows[first:])
    streamed = pd.DataFrame(rows[first:], index=batch.index[first:])
    expected = batch.iloc[first:]
    assert not expected.isna().any().any()
    np.testing.assert_allclose(streamed.to_numpy(), expected.to_numpy(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("feature_set", sorted(FEATURE_SETS))
def test_feature_at_t_does_not_change_when_later_bars_are_appended(hourly, feature_set):
    full = compute(hourly, feature_set)
    rng = np.random.default_rng(20240601)
    for cut in rng.integers(60, len(hourly), size=15):
        prefix = compute(hourly.iloc[:cut], feature_set)
        pd.testing.assert_frame_equal(prefix, full.iloc[:cut], rtol=1e-12)


@pytest.mark.parametrize("feature_set", sorted(FEATURE_SETS))
def test_changing_the_future_never_changes_past_features(daily, feature_set):
    cut = 1500
    altered = daily.copy()
    altered.loc[cut:, ["open", "high", "low", "close"]] *= 3.0
    altered.loc[cut:, "volume"] *= 0.1
    before = compute(daily, feature_set).iloc[:cut]
    after = compute(altered, feature_set).iloc[:cut]
    pd.testing.assert_frame_equal(before, after)


def test_label_is_next_close_direction_and_the_last_bar_has_none(daily):
    label = next_bar_direction(daily)
    close = daily["close"].to_numpy()
    assert label.iloc[:-1].tolist() == [int(b > a) for a, b in itertools.pairwise(close)]
    assert label.isna().tolist()[-1] is True
    assert label.isna().sum() == 1


def test_horizon_labels_drop_the_last_n_bars(daily):
    label = next_bar_direction(daily, horizon=5)
    assert label.isna().sum() == 5
    assert label.iloc[-6] == int(daily["close"].iloc[-1] > daily["close"].iloc[-6])


@pytest.mark.parametrize("feature_set", sorted(FEATURE_SETS))
def test_dataset_keeps_labels_out_of_features_and_drops_unlabelled_rows(daily, feature_set):
    features, labels = make_dataset(daily, feature_set)
    assert LABEL_COLUMN not in features.columns
    assert list(features.columns) == list(FEATURE_SETS[feature_set].columns)
    assert features.index.equals(labels.index)
    assert features.index[0] == WARM_UP
    assert features.index[-1] == len(daily) - 2  # the last bar has no label: dropped
    assert not features.isna().any().any()
    # No feature column carries the label: none equals it or its future close.
    future_close = daily["close"].shift(-1).loc[features.index]
    for column in features.columns:
        assert not np.allclose(features[column], labels)
        assert not np.allclose(features[column], future_close)


def test_forward_return_is_what_a_position_opened_at_the_close_earns(daily):
    ret = forward_return(daily)
    assert ret.iloc[0] == pytest.approx(daily["close"].iloc[1] / daily["close"].iloc[0] - 1)
    assert np.isnan(ret.iloc[-1])


def test_unknown_feature_set_is_a_clear_error(daily):
    with pytest.raises(ValueError, match="unknown feature set 'fancy'"):
        compute(daily, "fancy")
    with pytest.raises(ValueError, match="unknown feature set"):
        StreamingFeatures("fancy")


def test_short_frame_gives_nan_rows_not_an_error(daily):
    out = compute(daily.iloc[:10], "stationary")
    assert len(out) == 10
    assert out.isna().any(axis=1).all()
