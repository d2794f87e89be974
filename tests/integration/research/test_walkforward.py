"""Walk-forward folds fanned out over local processes and over Ray give the same folds."""

from __future__ import annotations

import numpy as np
import pytest

from ml.training import TrainSettings
from research.walkforward import WalkForwardConfig, walk_forward

pytestmark = pytest.mark.integration

# One core per fold on both sides, so LightGBM's threading cannot make them differ.
TINY = TrainSettings(
    feature_set="stationary",
    time_limit=20,
    hyperparameters={"GBM": {"num_boost_round": 50}},
    num_cpus=1,
)


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_walk_forward_equals_the_local_process_one_fold_by_fold(dataset, local_ray):
    shape = {"window": 252, "step": 60, "max_folds": 2, "settings": TINY}
    local = walk_forward(dataset, WalkForwardConfig(workers=2, **shape), show_progress=False)
    on_ray = walk_forward(dataset, WalkForwardConfig(backend="ray", **shape), show_progress=False)
    assert len(local.folds) == len(on_ray.folds) == 2
    for a, b in zip(local.folds, on_ray.folds, strict=True):
        np.testing.assert_array_equal(a.span.train, b.span.train)
        np.testing.assert_array_equal(a.span.test, b.span.test)
        np.testing.assert_allclose(a.outcome.p_up, b.outcome.p_up, rtol=0, atol=1e-12)
        assert a.figures.accuracy == b.figures.accuracy
    assert local.pooled.model == on_ray.pooled.model
