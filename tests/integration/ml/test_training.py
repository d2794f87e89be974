"""Training with AutoGluon on real daily candles, the registry entry, and serving it."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest

from adapters.replay.market_data import SAMPLES_DIR
from ml.labels import make_dataset
from ml.leakage import LeakageError
from ml.pipeline import train_and_register
from ml.registry import ModelRegistry
from ml.serving import FeatureMismatchError, ModelLoadError, ServingModel
from ml.training import TrainSettings, check_training_set, time_ordered_split
from tests.candle_frames import constant_price_file

# A small, fast model zoo: enough to exercise the whole pipeline in seconds.
FAST = {"time_limit": 20, "hyperparameters": {"GBM": {"num_boost_round": 50}}}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, daily):
    registry = ModelRegistry(tmp_path_factory.mktemp("models"))
    result = train_and_register(
        daily, TrainSettings(feature_set="seed", **FAST), registry, "btc", {"path": "sample"}
    )
    return registry, result


def test_tuning_rows_are_the_most_recent_with_a_purge_gap(daily):
    features, labels = make_dataset(daily, "seed")
    train, tuning = time_ordered_split(features, labels, 0.2, horizon=1)
    assert train.index.max() < tuning.index.min()
    assert tuning.index.min() - train.index.max() == 2  # one row purged between them
    assert tuning.index.max() == features.index.max()
    assert len(tuning) == round(len(features) * 0.2)


def test_trained_model_is_registered_with_full_metadata(trained):
    registry, result = trained
    entry = registry.current("btc")
    assert entry is not None
    assert entry.version == result.model.version
    meta = entry.metadata
    assert meta["feature_set"] == "seed"
    assert meta["feature_columns"][:5] == ["Open", "High", "Low", "Close", "Volume"]
    assert meta["label"] == {"kind": "next_bar_direction", "horizon": 1, "column": "target"}
    span = meta["training_span"]
    assert span["last_train_bar"] < span["first_tuning_bar"]
    assert 0.3 < meta["metrics"]["tuning_accuracy"] < 0.7
    assert meta["packages"]["autogluon.tabular"] == "1.6.3"
    assert meta["settings"]["infer_limit_ms"] == 2.0
    size = sum(p.stat().st_size for p in entry.predictor_path.rglob("*") if p.is_file())
    assert size < 5_000_000  # a deployment clone, not the whole training directory


def test_serving_predicts_one_row_like_the_batch(trained, daily):
    registry, _ = trained
    model = ServingModel.load(registry, "btc", expected_feature_set="seed")
    features, _ = make_dataset(daily, "seed")
    recent = features.iloc[-50:]
    batch = model.predict_frame(recent)
    one_by_one = np.array([model.predict_up(row) for row in recent.to_dict("records")])
    np.testing.assert_allclose(one_by_one, batch, rtol=1e-9)
    assert ((batch >= 0) & (batch <= 1)).all()


def test_serving_refuses_a_model_for_another_feature_set(trained):
    registry, _ = trained
    with pytest.raises(FeatureMismatchError, match=r"trained on feature set 'seed'.*'stationary'"):
        ServingModel.load(registry, "btc", expected_feature_set="stationary")


def test_serving_refuses_a_corrupt_model_with_a_clear_error(trained, tmp_path):
    registry, result = trained
    broken = ModelRegistry(tmp_path / "models")
    shutil.copytree(registry.root / "btc", broken.root / "btc")
    pkl = broken.root / "btc" / result.model.version / "predictor" / "predictor.pkl"
    pkl.write_bytes(b"not a pickle")
    with pytest.raises(ModelLoadError, match="cannot be loaded"):
        ServingModel.load(broken, "btc")
    with pytest.raises(ModelLoadError, match="no current version"):
        ServingModel.load(broken, "nothing-here")


def test_serving_rejects_missing_and_non_finite_features(trained, daily):
    registry, _ = trained
    model = ServingModel.load(registry, "btc")
    row = make_dataset(daily, "seed")[0].iloc[-1].to_dict()
    with pytest.raises(KeyError, match="RSI"):
        model.predict_up({k: v for k, v in row.items() if k != "RSI"})
    with pytest.raises(ValueError, match="MACD"):
        model.predict_up({**row, "MACD": float("nan")})


def test_a_planted_future_feature_is_caught_before_training(daily):
    features, _ = make_dataset(daily, "seed")
    planted = features.assign(tomorrow_close=daily["close"].shift(-1).loc[features.index])
    close = daily["close"].loc[features.index]
    with pytest.raises(LeakageError, match="tomorrow_close"):
        check_training_set(planted, close, TrainSettings())
    check_training_set(features, close, TrainSettings())  # the real set passes


def test_train_command_registers_and_models_commands_manage_versions(tmp_path):
    """The CLI end to end: AutoGluon's own log goes to a file, not the terminal."""
    models = tmp_path / "models"
    data = str(SAMPLES_DIR / "BTC-USD_1d.csv")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "engine", *args], capture_output=True, text=True, check=False
        )

    common = ["--data", data, "--out", str(models), "--name", "btc", "--time-limit", "8"]
    first = cli("train", *common, "--presets", "medium_quality_faster_train")
    assert first.returncode == 0, first.stderr
    assert "is called 'medium_quality' in AutoGluon 1.6" in first.stdout
    assert "registered btc/" in first.stdout
    assert "Fitting model" not in first.stdout + first.stderr  # AutoGluon's chatter is in the log
    second = cli("train", *common, "--feature-set", "stationary")
    assert second.returncode == 0, second.stderr
    listing = cli("models", "list", "--models-dir", str(models)).stdout.splitlines()
    assert len(listing) == 2
    assert listing[1].split()[1] == "champion"  # the newest
    assert listing[0].split()[1] == "previous"
    rolled = cli("models", "rollback", "--models-dir", str(models), "btc", "--reason", "test")
    assert rolled.returncode == 0, rolled.stderr
    assert listing[0].split()[0] == f"btc/{rolled.stdout.split()[-1]}"
    history = cli("models", "history", "--models-dir", str(models), "btc").stdout
    assert "because: test (from " in history
    assert history.count(" promote: trained") == 2
    again = cli("models", "rollback", "--models-dir", str(models), "btc")
    assert again.returncode == 2
    assert again.stderr == "models: model 'btc': no earlier version to roll back to\n"
    bad = cli("train", "--data", str(tmp_path / "missing.csv"), "--out", str(models))
    assert bad.returncode == 2
    assert "does not exist" in bad.stderr


def test_train_command_refuses_a_constant_price_file_with_one_clear_line(tmp_path):
    data = constant_price_file(tmp_path)
    command = [sys.executable, "-m", "engine", "train", "--data", str(data),
               "--out", str(tmp_path / "models"), "--feature-set", "stationary"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert done.stderr.startswith(f"train: {data}: the ")
    assert "labels are not up" in done.stderr
    assert "Is the price constant?" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "models").exists()


async def test_strategy_turns_replayed_features_into_signals_with_the_seed_rule(trained):
    from prometheus_client import CollectorRegistry

    from adapters.replay.market_data import ReplayConfig, ReplayMarketData
    from engine.bus import EventBus
    from engine.clock import SimulatedClock
    from engine.component import ComponentContext, ComponentGraph
    from engine.config import Secrets
    from engine.events import Features, Signal
    from ml.feature_engine import FeatureEngine, FeatureEngineConfig
    from strategies.ml_direction import MLDirectionConfig, MLDirectionStrategy

    registry, result = trained
    ctx = ComponentContext(EventBus(), SimulatedClock(), CollectorRegistry(), Secrets())
    features: list[Features] = []
    signals: list[Signal] = []
    ctx.bus.subscribe(Features, features.append)
    ctx.bus.subscribe(Signal, signals.append)
    replay = ReplayMarketData(
        "market",
        ReplayConfig(path="samples/BTC-USD_1d.csv", symbol="BTC/USD", start="2022-01-01"),
        ctx,
    )
    strategy = MLDirectionStrategy(
        "ml", MLDirectionConfig(model="btc", models_dir=str(registry.root), trade_on="medium"), ctx
    )
    graph = ComponentGraph(
        [replay, FeatureEngine("features", FeatureEngineConfig(), ctx), strategy]
    )
    await graph.start()
    await replay.finished.wait()
    await ctx.bus.drain()
    await graph.stop()

    assert len(signals) == len(features) > 250
    for feature, signal in zip(features, signals, strict=True):
        assert signal.correlation_id == feature.correlation_id
        assert signal.model_version == f"btc/{result.model.version}"
        certainty = max(signal.probability_up, 1 - signal.probability_up)
        expected = "high" if certainty > 0.7 else "medium" if certainty > 0.5 else "low"
        assert signal.confidence == expected
        if signal.confidence == "low":
            assert signal.action == "HOLD"
        else:
            assert signal.action == ("BUY" if signal.probability_up > 0.5 else "SELL")


async def test_strategy_refuses_to_start_on_a_model_for_other_features(trained):
    from prometheus_client import CollectorRegistry

    from engine.bus import EventBus
    from engine.clock import SimulatedClock
    from engine.component import ComponentContext, ComponentState
    from engine.config import Secrets
    from strategies.ml_direction import MLDirectionConfig, MLDirectionStrategy

    registry, _ = trained
    ctx = ComponentContext(EventBus(), SimulatedClock(), CollectorRegistry(), Secrets())
    settings = MLDirectionConfig(
        model="btc", models_dir=str(registry.root), feature_set="stationary"
    )
    strategy = MLDirectionStrategy("ml", settings, ctx)
    with pytest.raises(FeatureMismatchError):
        await strategy.start()
    assert strategy.state is ComponentState.FAULTED
    assert "trained on feature set 'seed'" in strategy.health().reason
