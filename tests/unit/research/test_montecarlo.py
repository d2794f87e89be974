"""Monte Carlo: the block bootstrap draws only out-of-sample bars, in contiguous blocks."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from ml.training import TrainSettings
from research.montecarlo import block_bootstrap, block_starts, sample_positions
from research.walkforward import WalkForwardConfig, walk_forward

TINY = TrainSettings(
    feature_set="stationary", time_limit=10, hyperparameters={"GBM": {"num_boost_round": 50}}
)
DAY = 86_400.0


@pytest.fixture(scope="module")
def run(dataset):
    config = WalkForwardConfig(workers=0, settings=TINY, window=252, step=60, max_folds=3)
    return walk_forward(dataset, config, show_progress=False)


def test_block_bootstrap_never_draws_a_bar_its_fold_model_trained_on(dataset, run):
    oos = run.oos
    positions = sample_positions(len(oos), samples=200, block_length=15, seed=3)
    drawn_rows = oos.index.to_numpy()[positions].ravel()
    drawn_folds = oos["fold"].to_numpy()[positions].ravel()
    rows = dataset.features.index
    trained_on = {f.span.fold: set(rows[f.span.train]) for f in run.folds}
    tested_on = {f.span.fold: set(rows[f.span.test]) for f in run.folds}
    last_label_bar = {f.span.fold: rows[f.span.train].max() + dataset.horizon for f in run.folds}
    assert len(set(drawn_rows)) > len(oos) * 0.9  # the samples do reach (nearly) every bar
    for row, fold in zip(drawn_rows, drawn_folds, strict=True):
        assert row in tested_on[fold]  # an out-of-sample bar of the fold that predicted it
        assert row not in trained_on[fold]
        assert row > last_label_bar[fold]  # after every bar the model's labels looked at


def test_block_bootstrap_samples_are_contiguous_blocks_of_the_ordered_bars():
    rng = np.random.default_rng(0)
    positions = block_starts(100, 50, 10, rng)
    assert positions.shape == (50, 100)
    blocks = positions.reshape(50, 10, 10)
    assert (np.diff(blocks, axis=2) == 1).all()  # each block is consecutive bars
    assert positions.min() >= 0
    assert positions.max() < 100


def test_block_bootstrap_figures_are_recomputed_from_the_drawn_bars(run):
    oos = run.oos
    result = block_bootstrap(oos, DAY, samples=100, block_length=15, seed=5)
    again = block_bootstrap(oos, DAY, samples=100, block_length=15, seed=5)
    assert result.distributions == again.distributions  # seeded, reproducible
    positions = block_starts(len(oos), 100, 15, np.random.default_rng(5))
    expected = oos["correct"].astype(float).to_numpy()[positions].mean(axis=1)
    np.testing.assert_allclose(result.distributions["model"]["accuracy"], expected)
    r = oos["strategy_return"].to_numpy()[positions[0]]
    sharpe = r.mean() / r.std(ddof=1) * math.sqrt(365)
    assert result.distributions["model"]["sharpe"][0] == pytest.approx(sharpe)
    model_sharpe = np.array(result.distributions["model"]["sharpe"])
    hold_sharpe = np.array(result.distributions["buy_and_hold"]["sharpe"])
    share = result.to_dict()["share_sharpe_above_buy_and_hold"]
    assert share == pytest.approx(np.mean(model_sharpe > hold_sharpe))  # paired samples
    p = result.percentiles()["model"]["accuracy"]
    assert p["p2.5"] <= p["p50"] <= p["p97.5"]
    # Centred on the observed out-of-sample accuracy.
    assert abs(p["p50"] - run.pooled.model.accuracy) < 0.03


def test_block_bootstrap_refuses_a_table_that_is_not_out_of_sample_bars():
    with pytest.raises(ValueError, match="walk-forward"):
        block_bootstrap(pd.DataFrame({"correct": [1, 0]}), DAY)
