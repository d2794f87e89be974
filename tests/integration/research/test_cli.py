"""The research commands end to end: backtest, walkforward, montecarlo, report, trials."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from adapters.replay.market_data import SAMPLES_DIR
from engine.candles import read_candles
from engine.cli import main
from ml.pipeline import train_and_register
from ml.registry import ModelRegistry
from ml.training import TrainSettings
from research.runs import read_run
from tests.paper_support import MODEL

pytestmark = pytest.mark.integration

DATA = SAMPLES_DIR / "BTC-USD_1d.csv"
TINY_JSON = '{"GBM": {"num_boost_round": 50}}'
STATUSES = {"evidence of skill", "no evidence of skill", "insufficient data"}


@pytest.fixture(scope="module")
def research(tmp_path_factory):
    return tmp_path_factory.mktemp("research")


@pytest.fixture(scope="module")
def walkforward_run(research):
    """A real `trade-engine walkforward` process fanning two folds out over two processes."""
    run_dir = research / "wf"
    command = [
        sys.executable, "-m", "engine", "walkforward", "--data", str(DATA),
        "--feature-set", "stationary", "--max-folds", "2", "--time-limit", "10",
        "--hyperparameters", TINY_JSON, "--workers", "2",
        "--report", str(run_dir), "--research-dir", str(research),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return run_dir, done


def test_walkforward_writes_every_figure_a_report_and_counts_a_trial(walkforward_run, research):
    run_dir, done = walkforward_run
    result = json.loads((run_dir / "result.json").read_text())
    assert result["kind"] == "walkforward"
    assert set(result["figures"]) == {"model", "buy_and_hold", "always_up"}
    assert len(result["folds"]) == 2
    assert result["folds"][0]["train_last_row"] + 1 < result["folds"][0]["test_first_row"]
    assert result["config"]["window"] == 252
    assert result["config"]["step"] == 30
    assert result["deflated_sharpe"]["n_trials"] >= 1
    html = (run_dir / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 5  # equity, drawdown, accuracy, calib., folds
    assert 'src="http' not in html  # self-contained
    assert "buy &amp; hold" in html
    assert "always up" in html
    assert "| figure | model | buy & hold | always up |" in done.stdout
    assert result["in_sample_bars"] == 0
    assert [f["in_sample"] for f in result["folds"]] == [False, False]
    assert result["verdict"]["status"] in STATUSES
    assert f"verdict: {result['verdict']['sentence']}" in done.stdout
    assert "<b>Verdict:</b>" in html
    _, bars = read_run(run_dir)
    assert bars is not None
    assert not bars["in_sample"].any()
    ledger = (research / "trials.jsonl").read_text().splitlines()
    assert any(json.loads(line)["kind"] == "walkforward" for line in ledger)


def assert_each_bar_earns_the_next_bars_return(run_dir) -> None:
    """A run's per-bar returns are close t -> close t+1 (what a position taken at close t
    earns), never the bar's own move: the seed's look-ahead bug."""
    _, bars = read_run(run_dir)
    assert bars is not None
    close = read_candles(DATA)[0]["close"].astype(float)
    next_bar = (close.shift(-1) / close - 1.0).loc[bars.index]
    np.testing.assert_allclose(bars["asset_return"], next_bar, rtol=1e-12)
    assert (bars["label"] == (bars["asset_return"] > 0)).all()


def test_walkforward_backtests_each_out_of_sample_bar_on_the_next_bars_return(walkforward_run):
    run_dir, _ = walkforward_run
    assert_each_bar_earns_the_next_bars_return(run_dir)


def test_block_bootstrap_montecarlo_reads_the_walkforward_run(walkforward_run, research, capsys):
    run_dir, _ = walkforward_run
    out = research / "mc"
    code = main(
        ["montecarlo", "--run", str(run_dir), "--samples", "200", "--report", str(out),
         "--research-dir", str(research), "--no-progress"]
    )  # fmt: skip
    assert code == 0
    result = json.loads((out / "result.json").read_text())
    mc = result["montecarlo"]
    assert mc["method"] == "block-bootstrap"
    assert mc["samples"] == 200
    assert set(mc["percentiles"]["model"]) == {"accuracy", "sharpe", "max_drawdown"}
    assert len(mc["distributions"]["model"]["sharpe"]) == 200
    assert "data:image/png;base64," in (out / "report.html").read_text()
    assert 0 < mc["up_rate"] < 1
    assert result["verdict"]["status"] in STATUSES
    assert result["verdict"]["rules"]["out of sample"]["passed"] is True
    captured = capsys.readouterr()
    assert "leaks time" not in captured.err
    assert f"verdict: {result['verdict']['sentence']}" in captured.out


def test_random_sample_montecarlo_warns_that_it_leaks_time(research, capsys):
    out = research / "mc-random"
    code = main(
        ["montecarlo", "--method", "random-sample", "--data", str(DATA), "--runs", "2",
         "--feature-set", "stationary", "--time-limit", "10", "--hyperparameters", TINY_JSON,
         "--workers", "0", "--report", str(out), "--research-dir", str(research),
         "--no-progress"]
    )  # fmt: skip
    assert code == 0
    assert "leaks time" in capsys.readouterr().err.lower()
    result = json.loads((out / "result.json").read_text())
    assert "LEAKS TIME" in result["montecarlo"]["description"]
    assert len(result["montecarlo"]["distributions"]["model"]["accuracy"]) == 2
    assert result["verdict"]["status"] == "no evidence of skill"
    assert "the method leaks time" in result["verdict"]["sentence"]


def test_backtest_of_a_registered_model_out_of_sample_beside_its_baselines(
    research, tmp_path, capsys
):
    frame, _, _ = read_candles(DATA)
    registry = ModelRegistry(tmp_path / "models")
    settings = TrainSettings(
        feature_set="stationary", time_limit=10, hyperparameters={"GBM": {"num_boost_round": 50}}
    )
    train_and_register(frame[frame["timestamp"] < "2021-01-01"], settings, registry, "btc", {})
    out = tmp_path / "bt"
    before = len(_ledger(research)) if (research / "trials.jsonl").exists() else 0
    code = main(
        ["backtest", "--model", "btc", "--models-dir", str(registry.root), "--data", str(DATA),
         "--start", "2021-01-01", "--fee-bps", "30", "--report", str(out),
         "--research-dir", str(research), "--no-progress"]
    )  # fmt: skip
    assert code == 0
    result = json.loads((out / "result.json").read_text())
    assert result["in_sample_bars"] == 0
    assert result["figures"]["model"]["bars"] == 729  # 2021-01-01 .. 2022-12-30
    assert result["config"]["rule"]["fee_bps"] == 30
    stdout = capsys.readouterr().out
    # One trial on this data (this test alone) is the PSR, more are deflated.
    name = "probabilistic" if len(after := _ledger(research)) == 1 else "deflated"
    assert f"{name} Sharpe ratio" in stdout
    assert "buy & hold" in stdout
    assert f"verdict: {result['verdict']['sentence']}" in stdout
    assert "| bars inside the model's training span | 0 of 729 |" in stdout
    assert len(after) == before + 1
    assert result["deflated_sharpe"]["n_trials"] == len(after)  # same data file for all
    assert_each_bar_earns_the_next_bars_return(out)

    # From 2020-10-01, the 91 bars to 2020-12-30 are ones the model trained on.
    in_sample = tmp_path / "bt-in-sample"
    code = main(
        ["backtest", "--model", "btc", "--models-dir", str(registry.root), "--data", str(DATA),
         "--start", "2020-10-01", "--report", str(in_sample), "--research-dir", str(research),
         "--no-progress"]
    )  # fmt: skip
    assert code == 0
    result, bars = read_run(in_sample)
    assert bars is not None
    assert result["in_sample_bars"] == int(bars["in_sample"].sum()) == 91
    assert bars["in_sample"].iloc[:91].all()
    assert not bars["in_sample"].iloc[91:].any()
    assert result["verdict"]["status"] == "no evidence of skill"
    assert result["verdict"]["rules"]["out of sample"]["passed"] is False
    assert "91 of 821 bars are inside the model's training span" in result["verdict"]["sentence"]
    assert "| 91 of 821: IN-SAMPLE |" in capsys.readouterr().out
    assert '<tr class="in-sample">' in (in_sample / "report.html").read_text()


def _ledger(research) -> list[str]:
    return (research / "trials.jsonl").read_text().splitlines()


def test_backtest_refuses_a_model_of_another_timeframe_unless_allowed(
    models, research, tmp_path, capsys
):
    """The shared model is hourly; DATA is daily."""
    common = [
        "backtest", "--model", MODEL, "--models-dir", str(models), "--data", str(DATA),
        "--start", "2022-06-01", "--research-dir", str(research), "--no-progress",
    ]  # fmt: skip
    assert main([*common, "--report", str(tmp_path / "refused")]) == 2
    err = capsys.readouterr().err
    assert "was trained on 1h bars, but the data is 1d" in err
    assert "pass --allow-timeframe-mismatch to backtest it anyway" in err
    assert not (tmp_path / "refused").exists()

    out = tmp_path / "allowed"
    assert main([*common, "--report", str(out), "--allow-timeframe-mismatch"]) == 0
    assert "WARNING: model btc-usdt-1h/" in capsys.readouterr().err
    result = json.loads((out / "result.json").read_text())
    assert result["model"]["timeframe"] == "1h"
    assert result["data"]["timeframe"] == "1d"
    assert result["config"]["allow_timeframe_mismatch"] is True


def test_report_command_rerenders_a_run(walkforward_run, tmp_path):
    run_dir, _ = walkforward_run
    target = tmp_path / "again.html"
    assert main(["report", str(run_dir), "--out", str(target)]) == 0
    assert target.read_text().startswith("<!doctype html>")
    assert main(["report", str(tmp_path / "missing")]) == 2
