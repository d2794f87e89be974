"""Strategy config files: validation with field paths, the atomic swap, the directory
component (start, file watch add/change/delete, on_remove: close)."""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from structlog.testing import capture_logs

from adapters.replay.market_data import ReplayConfig, ReplayMarketData
from engine.bus import EventBus
from engine.clock import LiveClock, SimulatedClock
from engine.component import ComponentContext, ComponentGraph, ComponentState
from engine.config import ConfigError, Secrets
from engine.events import Features, Signal
from ml.feature_engine import FeatureEngine, FeatureEngineConfig
from strategies import host as host_module
from strategies.files import parse_strategy_file, read_config_dir, read_strategy_file
from strategies.host import (
    InvalidStrategyConfigsError,
    StrategyHost,
    StrategyHostConfig,
)
from strategies.ml_direction import MLDirectionConfig, MLDirectionStrategy, confidence_of
from tests.hostile_files import billion_laughs, fifo, nested_yaml
from tests.paper_support import MODEL
from tests.paths import ROOT

VALID = {"model": MODEL, "feature_set": "stationary", "trade_on": "medium"}


def problems(path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_strategy_file(path, text.encode())
    return str(info.value).splitlines()


# -- validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"high_confidence": "very"}, "x.yaml: high_confidence: input should be a valid number"),
        ({"high_confidence": 1.5}, "x.yaml: high_confidence: must be < 1, got 1.5"),
        ({"medium_confidence": 0.4}, "x.yaml: medium_confidence: must be >= 0.5, got 0.4"),
        ({"high_confidense": 0.8},
         "x.yaml: high_confidense: unknown field (did you mean 'high_confidence'?)"),
        ({"high_confidence": 0.6, "medium_confidence": 0.6},
         "x.yaml: medium_confidence: must be below high_confidence (0.6), got 0.6"),
        ({"on_remove": "sell"}, "x.yaml: on_remove: input should be 'keep' or 'close'"),
        ({"model": None}, "x.yaml: model: input should be a valid string"),
        ({"api_token": "abc"}, "x.yaml: api_token: secrets are not accepted in config files"),
    ],
    ids=["bad type", "out of range", "below range", "unknown field", "medium >= high",
         "bad choice", "null", "secret"],
)  # fmt: skip
def test_invalid_settings_are_refused_with_file_and_field_path(tmp_path, body, expected):
    path = tmp_path / "x.yaml"
    (line,) = problems(path, yaml.safe_dump({**VALID, **body}))
    assert line.startswith(f"{tmp_path}/{expected}"), line


def test_broken_yaml_and_a_missing_model_and_a_bad_name_are_refused(tmp_path):
    (line,) = problems(tmp_path / "x.yaml", "model: [unclosed\n")
    assert "x.yaml: line 2, column 1: invalid YAML" in line
    (line,) = problems(tmp_path / "x.yaml", "- a list\n")
    assert line.endswith("x.yaml: top level must be a mapping, got list")
    (line,) = problems(tmp_path / "x.yaml", "trade_on: high\n")
    assert line.endswith("x.yaml: model: required field is missing")
    (line,) = problems(tmp_path / "Bad Name.yaml", yaml.safe_dump(VALID))
    assert "file name: 'Bad Name' is not a valid strategy name" in line
    (line,) = problems(tmp_path / "x.yaml", "model: a\nmodel: b\n")
    assert "duplicate key 'model'" in line


def test_every_problem_of_a_file_is_listed(tmp_path):
    lines = problems(tmp_path / "x.yaml", yaml.safe_dump({"high_confidence": 2, "extra": 1}))
    assert len(lines) == 3  # model missing, high_confidence too big, extra unknown


def test_a_valid_file_gives_its_instance_name_settings_and_the_sha256_of_its_bytes(tmp_path):
    path = tmp_path / "btc-fast.yaml"
    path.write_text(yaml.safe_dump({**VALID, "on_remove": "close"}))
    parsed = read_strategy_file(path)
    assert parsed.name == "btc-fast"
    assert parsed.settings.on_remove == "close"
    assert parsed.settings.trade_on == "medium"
    assert parsed.content_hash == hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_shipped_strategy_config_is_valid():
    parsed = read_strategy_file(ROOT / "config" / "strategies" / "btc-usdt-1h.yaml")
    assert parsed.settings.model == "btc-usdt-1h"
    assert parsed.settings.train_if_missing is not None


# -- the atomic swap -------------------------------------------------------------------


async def test_swaps_between_events_leave_every_signal_wholly_under_one_config(models):
    ctx = ComponentContext(EventBus(), SimulatedClock(), CollectorRegistry(), Secrets())
    signals: list[Signal] = []
    ctx.bus.subscribe(Signal, signals.append)
    replay = ReplayMarketData(
        "market",
        ReplayConfig(path="samples/BTC-USDT_1h.csv.gz", symbol="BTC/USDT",
                     start="2020-12-01T00:00:00Z", end="2021-01-31T00:00:00Z"),
        ctx,
    )  # fmt: skip
    first = MLDirectionConfig(models_dir=str(models), **VALID)
    strategy = MLDirectionStrategy("ml", first, ctx)
    graph = ComponentGraph(
        [replay, FeatureEngine("features", FeatureEngineConfig(feature_set="stationary"), ctx),
         strategy]
    )  # fmt: skip
    await graph.start()
    in_force = {1: first}
    while not replay.finished.is_set():
        await asyncio.sleep(0)  # let the replay publish a little
        version = len(in_force) + 1
        settings = first.model_copy(
            update={"high_confidence": 0.52 + (version % 40) * 0.01,
                    "trade_on": ("high", "medium")[version % 2]}
        )  # fmt: skip
        await strategy.apply_settings(settings, version=version, content_hash=str(version))
        in_force[version] = settings
    await ctx.bus.drain()
    await graph.stop()

    versions = [s.config_version for s in signals]
    assert versions == sorted(versions)
    assert len(set(versions)) > 20, "swaps should land between many events"
    for signal in signals:
        settings = in_force[signal.config_version]
        assert signal.confidence == confidence_of(signal.probability_up, settings)
        trading = ("high",) if settings.trade_on == "high" else ("high", "medium")
        expected = (
            ("BUY" if signal.prediction else "SELL") if signal.confidence in trading else "HOLD"
        )
        assert signal.action == expected


async def test_a_new_model_loads_off_the_loop_while_the_old_config_keeps_serving(models):
    ctx = ComponentContext(EventBus(), LiveClock(), CollectorRegistry(), Secrets())
    signals: list[Signal] = []
    ctx.bus.subscribe(Signal, signals.append)
    strategy = MLDirectionStrategy("ml", MLDirectionConfig(models_dir=str(models), **VALID), ctx)
    ctx.bus.start()
    await strategy.start()
    names = strategy.active.model.columns
    features = Features(ts_event=1, ts_init=1, symbol="BTC/USDT", timeframe="1h",
                        feature_set="stationary", values=dict.fromkeys(names, 0.0))  # fmt: skip
    # Another spelling of the same directory: a different model key, so a fresh load.
    renamed = MLDirectionConfig(models_dir=f"{models}/.", **VALID)
    swap = asyncio.create_task(strategy.apply_settings(renamed, version=2, content_hash="b"))
    await asyncio.sleep(0)  # the swap is now waiting for the model load in a thread
    assert not swap.done()
    strategy.on_features(features)
    await swap
    strategy.on_features(features)
    await ctx.bus.drain()
    assert [s.config_version for s in signals] == [1, 2]
    assert strategy.active.settings.models_dir == f"{models}/."
    await strategy.stop()
    await ctx.bus.close()


async def test_a_model_that_cannot_load_leaves_the_old_config_in_force(models):
    ctx = ComponentContext(EventBus(), LiveClock(), CollectorRegistry(), Secrets())
    strategy = MLDirectionStrategy("ml", MLDirectionConfig(models_dir=str(models), **VALID), ctx)
    await strategy.start()
    before = strategy.active
    with pytest.raises(Exception, match="no-such-model"):
        await strategy.apply_settings(
            MLDirectionConfig(models_dir=str(models), **{**VALID, "model": "no-such-model"}),
            version=2,
            content_hash="x",
        )
    assert strategy.active is before
    await strategy.stop()


# -- the directory component -----------------------------------------------------------


async def wait_for(predicate, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


def write(path: Path, settings: dict) -> str:
    text = yaml.safe_dump(settings)
    path.write_text(text)
    return hashlib.sha256(text.encode()).hexdigest()


async def test_the_directory_component_starts_swaps_adds_and_removes_strategies(models, tmp_path):
    base = {**VALID, "models_dir": str(models)}
    write(tmp_path / "one.yaml", base)
    (tmp_path / ".one.yaml.swp").write_text("editor junk")
    registry = CollectorRegistry()
    ctx = ComponentContext(EventBus(), LiveClock(), registry, Secrets())
    signals: list[Signal] = []
    ctx.bus.subscribe(Signal, signals.append)
    ctx.bus.start()
    component = StrategyHost("strategy", StrategyHostConfig(dir=str(tmp_path)), ctx)
    await component.start()
    assert list(component.instances) == ["one"]

    # An invalid change is rejected once (a repeated watch event does not re-count it).
    bad = write(tmp_path / "one.yaml", {**base, "high_confidence": 3})
    await wait_for(lambda: component.rejected.get("one", {}).get("hash") == bad)
    assert component.instances["one"].active.version == 1
    assert component.failures["file_watch"] == 1
    report = await component.reload_configs("admin")  # an explicit reload reports it again
    assert report["rejected"][0]["errors"] == [
        f"{tmp_path}/one.yaml: high_confidence: must be < 1, got 3"
    ]
    good = write(tmp_path / "one.yaml", {**base, "high_confidence": 0.9})
    await wait_for(lambda: component.instances["one"].active.content_hash == good)
    assert component.instances["one"].active.version == 2
    assert component.rejected == {}

    # A new file starts a strategy; deleting an on_remove: close file sells first.
    write(tmp_path / "two.yaml", {**base, "on_remove": "close", "symbols": ["BTC/USDT"]})
    await wait_for(lambda: "two" in component.instances)
    two = component.instances["two"]
    assert two.state is ComponentState.RUNNING
    (tmp_path / "two.yaml").unlink()
    await wait_for(lambda: "two" not in component.instances)
    assert two.state is ComponentState.STOPPED
    await ctx.bus.drain()
    (sell,) = [s for s in signals if s.strategy_id == "two"]
    assert (sell.action, sell.symbol, sell.config_version) == ("SELL", "BTC/USDT", 1)

    metrics = generate_latest(registry).decode()
    assert 'trade_engine_strategy_config_version{strategy="one"} 2.0' in metrics
    assert 'strategy="two"' not in metrics
    assert 'trade_engine_config_reload_failures_total{trigger="file_watch"} 1.0' in metrics
    assert 'trade_engine_config_reload_failures_total{trigger="admin"} 1.0' in metrics
    await component.stop()
    assert component.instances["one"].state is ComponentState.STOPPED
    await ctx.bus.close()


async def test_an_invalid_file_at_start_fails_the_start_naming_file_and_field(models, tmp_path):
    write(tmp_path / "ok.yaml", {**VALID, "models_dir": str(models)})
    write(tmp_path / "bad.yaml", {**VALID, "models_dir": str(models), "trade_on": "always"})
    ctx = ComponentContext(EventBus(), LiveClock(), CollectorRegistry(), Secrets())
    component = StrategyHost("strategy", StrategyHostConfig(dir=str(tmp_path), watch=False), ctx)
    with pytest.raises(InvalidStrategyConfigsError, match=r"bad.yaml: trade_on: input should be"):
        await component.start()
    assert component.state is ComponentState.FAULTED
    await component.stop()
    assert all(s.state is ComponentState.STOPPED for s in component.instances.values())
    missing = StrategyHost("s", StrategyHostConfig(dir=str(tmp_path / "nope")), ctx)
    with pytest.raises(FileNotFoundError, match="nope"):
        await missing.start()


# -- hostile files in the directory ------------------------------------------------------


def host_on(directory: Path) -> StrategyHost:
    ctx = ComponentContext(EventBus(), LiveClock(), CollectorRegistry(), Secrets())
    return StrategyHost("strategy", StrategyHostConfig(dir=str(directory), watch=False), ctx)


async def test_a_fifo_named_yaml_is_skipped_unopened_and_reloads_go_on(models, tmp_path):
    base = {**VALID, "models_dir": str(models)}
    one = tmp_path / "one.yaml"
    write(one, base)
    skipped = {"reason": "not a regular file: it is a FIFO (named pipe)"}
    with fifo(tmp_path / "x.yaml") as pipe, capture_logs() as logs:
        started = time.monotonic()
        component = host_on(tmp_path)
        await component.start()  # skipped at start too: not a reason to fail it
        assert list(component.instances) == ["one"]
        digest = write(one, {**base, "high_confidence": 0.9})
        report = await component.reload_configs("admin")
        assert time.monotonic() - started < 3, "a read waited for the FIFO's writer"
        assert report["ok"]
        assert report["skipped"] == [{"file": str(pipe), **skipped}]
        assert [a["strategy"] for a in report["applied"]] == ["one"]
        assert component.instances["one"].active.content_hash == digest
        assert {"event": "strategy_host.skipped", "file": str(pipe)}.items() <= next(
            entry for entry in logs if entry["event"] == "strategy_host.skipped"
        ).items()

    # A running strategy whose file became a FIFO keeps running on what it had.
    one.unlink()
    with fifo(one):
        report = await component.reload_configs("admin")
        assert report["skipped"] == [{"file": str(one), **skipped}]
        assert report["stopped"] == []
        assert component.instances["one"].state is ComponentState.RUNNING
        await component.stop()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (nested_yaml("model"), "line 1, column 71: invalid YAML: nested deeper than 64 levels"),
        (billion_laughs("model"), "line 4, column 45: invalid YAML: aliases repeat more than"),
        (
            "model: " + "x" * (1024 * 1024),
            "cannot read: 1 MB (1,048,583 bytes), larger than the 1 MB allowed",
        ),
        (  # within every limit, but half a second of parsing: never on the loop
            "model: m\nsymbolz: [" + ", ".join(["BTC/USDT"] * 10_000) + "]\n",
            "symbolz: unknown field (did you mean 'symbols'?)",
        ),
    ],
    ids=["nested", "billion laughs", "over 1 MB", "slow to parse"],
)
async def test_hostile_strategy_files_are_rejected_without_stalling_the_loop(
    models, tmp_path, text, expected
):
    write(tmp_path / "one.yaml", {**VALID, "models_dir": str(models)})
    component = host_on(tmp_path)
    await component.start()
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    gaps: list[float] = []

    async def tick() -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(0.001)
            gaps.append(time.monotonic() - before)

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0.01)
    report = await component.reload_configs("admin")
    await asyncio.sleep(0.01)
    ticker.cancel()
    (rejected,) = report["rejected"]
    (error,) = rejected["errors"]
    assert error.startswith(f"{bad}: {expected}"), error
    assert max(gaps) < 0.1, f"the loop stalled {max(gaps) * 1000:.0f} ms"
    assert list(component.instances) == ["one"]
    await component.stop()


async def test_a_read_stuck_in_the_file_system_gives_up_and_never_holds_up_a_stop(
    models, tmp_path, monkeypatch
):
    """No real file blocks a read now (FIFOs are never opened), but a hung network file
    system does; a read that never returns stands in for it."""
    base = {**VALID, "models_dir": str(models)}
    write(tmp_path / "one.yaml", base)
    component = host_on(tmp_path)
    await component.start()
    release = threading.Event()
    threads: list[threading.Thread] = []

    def stuck(directory: Path) -> dict[Path, bytes]:
        threads.append(threading.current_thread())
        release.wait()
        return {}

    try:
        monkeypatch.setattr(host_module, "READ_TIMEOUT_SECONDS", 0.2)
        monkeypatch.setattr(host_module, "read_config_dir", stuck)
        report = await component.reload_configs("admin")
        assert report["error"] == (
            f"{tmp_path}: reading took over 0.2 s (a hung file system?); nothing changed"
        )
        assert component.failures["admin"] == 1
        assert threads[0].daemon, "a stuck read in a pool thread would keep the process alive"
        # the lock is free again: the next reload (the file system back) applies a change
        monkeypatch.setattr(host_module, "read_config_dir", read_config_dir)
        digest = write(tmp_path / "one.yaml", {**base, "high_confidence": 0.9})
        report = await component.reload_configs("admin")
        assert [a["config_hash"] for a in report["applied"]] == [digest]
        # a reload stuck while the host stops: the stop does not wait for it
        monkeypatch.setattr(host_module, "READ_TIMEOUT_SECONDS", 60)
        monkeypatch.setattr(host_module, "read_config_dir", stuck)
        pending = asyncio.create_task(component.reload_configs("admin"))
        await asyncio.sleep(0.05)
        started = time.monotonic()
        await component.stop()
        assert time.monotonic() - started < 1
        pending.cancel()
    finally:
        release.set()  # a failing run must not leave a thread that holds pytest's exit
