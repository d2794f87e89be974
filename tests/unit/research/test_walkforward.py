"""Walk-forward: fold boundaries with purge/embargo, the leakage check per fold, honesty."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml.leakage import LeakageError
from ml.training import TrainSettings
from research import walkforward
from research.walkforward import (
    FoldSpan,
    WalkForwardConfig,
    make_folds,
    walk_forward,
)

TINY = TrainSettings(
    feature_set="stationary", time_limit=10, hyperparameters={"GBM": {"num_boost_round": 50}}
)


@st.composite
def fold_shapes(draw: st.DrawFn) -> tuple[np.ndarray, int, int, int, int, bool]:
    steps = draw(st.lists(st.integers(1, 3), min_size=40, max_size=400))  # gaps in rows
    rows = np.cumsum(steps) + draw(st.integers(0, 50))
    window = draw(st.integers(10, 60))
    step = draw(st.integers(1, 40))
    horizon = draw(st.integers(1, 5))
    embargo = draw(st.integers(0, 5))
    expanding = draw(st.booleans())
    return rows, window, step, horizon, embargo, expanding


@settings(max_examples=200, deadline=None)
@given(fold_shapes())
def test_purged_folds_leave_no_train_label_overlapping_the_test_window(shape):
    rows, window, step, horizon, embargo, expanding = shape
    try:
        folds = make_folds(rows, window, step, horizon, embargo, expanding)
    except ValueError:
        # Only when even the last row has fewer than `window` rows far enough before it.
        assert np.sum(rows + horizon + embargo < rows[-1]) < window
        return
    previous_end = None
    for fold in folds:
        train_rows, test_rows = rows[fold.train], rows[fold.test]
        assert 1 <= len(test_rows) <= step
        assert len(train_rows) == window or (expanding and len(train_rows) >= window)
        # Bars touched by training labels ([i, i + horizon] for each train row i) and
        # bars of the test window widened by the embargo share nothing.
        label_bars = set(np.concatenate([np.arange(i, i + horizon + 1) for i in train_rows]))
        test_window = set(range(test_rows.min() - embargo, test_rows.max() + horizon + 1))
        assert not label_bars & test_window
        if previous_end is not None:  # test blocks follow each other without overlap
            assert fold.test[0] == previous_end
        previous_end = fold.test[-1] + 1
    assert previous_end == len(rows)  # every bar after the first window is tested once
    assert not any(fold.in_sample.any() for fold in folds)  # no test bar was trained on


def test_a_test_bar_inside_its_folds_training_span_is_flagged_in_sample():
    span = FoldSpan(0, train=np.arange(10, 40), test=np.arange(35, 45))
    np.testing.assert_array_equal(span.in_sample, np.arange(35, 45) <= 39)


def test_each_bar_earns_the_return_to_the_next_close_never_its_own(dataset, daily):
    """The returns walk-forward backtests with: the seed's look-ahead bug fed each bar's
    own move (close t-1 -> t) to a position taken at close t."""
    close = daily["close"].astype(float)
    rows = dataset.features.index
    next_bar = (close.shift(-1) / close - 1.0).loc[rows]
    pd.testing.assert_series_equal(dataset.asset_returns, next_bar, check_names=False)
    # The label is the direction of exactly the return the position earns.
    assert ((dataset.asset_returns > 0).astype(int) == dataset.labels).all()


def test_seed_shape_on_the_daily_sample_gives_89_folds_of_252_rows(dataset):
    folds = make_folds(dataset.features.index.to_numpy(), 252, 30)
    assert len(folds) == 89
    assert all(len(f.train) == 252 for f in folds)
    assert folds[0].test[0] == 252 + 1  # one row purged between train and test
    expanding = make_folds(dataset.features.index.to_numpy(), 252, 30, expanding=True)
    assert len(expanding[-1].train) == expanding[-1].test[0] - 1


def test_without_purge_the_last_train_label_reaches_into_the_test_block(dataset):
    rows = dataset.features.index.to_numpy()
    fold = make_folds(rows, 252, 30, purge=False)[0]
    assert rows[fold.train[-1]] + 1 == rows[fold.test[0]]  # its label is the test's first move


def test_planted_tomorrows_close_is_caught_by_the_check_on_a_later_folds_training_set(
    dataset, monkeypatch
):
    close = dataset.close
    cut = dataset.features.index[600]  # an honest copy of the close before this row, peeking after
    peek = close.where(close.index < cut, close.shift(-1)).ffill()
    leaky = dataclasses.replace(dataset, features=dataset.features.assign(peek_close=peek))
    checked: list[tuple[int, int]] = []  # first and last candle row of each training set
    original = walkforward.check_training_set

    def recording_check(features, close, settings):
        checked.append((int(features.index[0]), int(features.index[-1])))
        original(features, close, settings)

    monkeypatch.setattr(walkforward, "check_training_set", recording_check)
    monkeypatch.setattr(walkforward, "fit_predictor", lambda *a, **k: _Dummy(a[0]))
    config = WalkForwardConfig(workers=0, settings=TINY, window=252, step=60)
    with pytest.raises(LeakageError, match="peek_close"):
        walk_forward(leaky, config, show_progress=False)
    assert len(checked) >= 3  # the clean early folds passed the check and trained
    clean = [span for span in checked if span[1] < cut]
    assert len(clean) >= 5
    assert checked[: len(clean)] == clean  # every clean training set passed and trained
    caught_first, caught_last = checked[-1]
    assert caught_last >= cut  # refused for peeking rows, not by chance on clean ones
    # ... and no later than the first training set that peeks from its first row on.
    assert caught_first <= cut


class _Dummy:
    """Stands in for a fitted predictor in the leakage test (predicts 0.5)."""

    class_labels = (0, 1)
    model_best = "dummy"

    def __init__(self, train: pd.DataFrame) -> None:
        self.train = train

    def predict_proba(self, features: pd.DataFrame, as_pandas: bool = True) -> np.ndarray:
        return np.full((len(features), 2), 0.5)

    def predict(self, features: pd.DataFrame) -> pd.Series:
        return pd.Series(np.zeros(len(features), dtype=int))


def test_a_clean_feature_set_passes_the_check_in_every_fold(dataset, monkeypatch):
    checked: list[int] = []
    original = walkforward.check_training_set

    def counting_check(features, close, settings):
        checked.append(len(features))
        original(features, close, settings)

    monkeypatch.setattr(walkforward, "check_training_set", counting_check)
    monkeypatch.setattr(walkforward, "fit_predictor", lambda *a, **k: _Dummy(a[0]))
    config = WalkForwardConfig(workers=0, settings=TINY, window=252, step=120)
    result = walk_forward(dataset, config, show_progress=False)
    assert len(checked) == len(result.folds) == len(make_folds(dataset.features.index, 252, 120))


def test_shuffled_labels_give_accuracy_within_its_ci_of_a_coin_flip(dataset):
    rng = np.random.default_rng(7)
    shuffled = pd.Series(rng.permutation(dataset.labels.to_numpy()), index=dataset.labels.index)
    data = dataclasses.replace(dataset, labels=shuffled)
    config = WalkForwardConfig(workers=0, settings=TINY, window=252, step=60, max_folds=8)
    result = walk_forward(data, config, show_progress=False)
    figures = result.pooled.model
    assert figures.bars == 480
    assert figures.accuracy_ci_low <= 0.5 <= figures.accuracy_ci_high
    assert figures.accuracy_ci_high - figures.accuracy_ci_low < 0.1  # a CI that means something
    # Pooled out-of-sample bars are exactly the folds' test rows, in time order.
    assert result.oos.index.is_monotonic_increasing
    assert list(result.oos["fold"].unique()) == list(range(8))
