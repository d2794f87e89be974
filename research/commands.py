"""What each research command computes, from parsed arguments to a result document.

The CLI module only parses and prints; these functions load the data, run the
research and return ``(document, per-bar table, trial)`` for the run directory.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from engine.candles import read_candles, utc_timestamp
from engine.timeframes import timeframe_seconds
from ml.labels import forward_return, make_dataset
from ml.training import TrainSettings
from research import runs
from research.backtest import BacktestResult, TradeRule, run_backtest
from research.trials import Trial

LEAK_WARNING = (
    "WARNING: --method random-sample is the seed's Monte Carlo: it samples rows at random "
    "from the whole history and splits the sample at random, so every model trains on bars "
    "from after the bars it is tested on. It leaks time; its figures are optimistic and "
    "are shown only for comparison with the seed. Use --method block-bootstrap."
)


def _trial(kind: str, sha: str, result: BacktestResult, description: dict[str, Any]) -> Trial:
    f = result.model
    return Trial(kind, sha, f.sharpe_per_bar, f.bars, f.skew, f.kurtosis, "", description)


def parse_model_spec(spec: str) -> tuple[str, str | None]:
    name, _, version = spec.partition("/")
    if not name:
        raise ValueError(f"--model must be NAME or NAME/VERSION, got {spec!r}")
    return name, version or None


def backtest_model(
    model: str,
    models_dir: Path,
    data: Path,
    rule: TradeRule,
    start: str | None = None,
    end: str | None = None,
    allow_timeframe_mismatch: bool = False,
) -> tuple[dict[str, Any], pd.DataFrame, Trial]:
    """Backtest a registered model version on a candle file, with both baselines; a model
    trained on another timeframe than the file's is refused unless allowed."""
    from ml.serving import ServingModel, check_timeframe

    name, version = parse_model_spec(model)
    served = ServingModel.load(models_dir, name, version)
    frame, timeframe, _ = read_candles(data)
    mismatch = check_timeframe(
        served.version,
        timeframe,
        allow=allow_timeframe_mismatch,
        override="pass --allow-timeframe-mismatch to backtest it anyway",
    )
    if mismatch:
        print(f"WARNING: {mismatch}: its figures mean little.", file=sys.stderr)
    horizon = int(served.version.metadata["label"].get("horizon", 1))
    features, labels = make_dataset(frame, served.version.feature_set, horizon)
    stamps = frame["timestamp"].loc[features.index]
    keep = np.ones(len(features), dtype=bool)
    if start:
        keep &= (stamps >= pd.Timestamp(start, tz="UTC")).to_numpy()
    if end:
        keep &= (stamps <= pd.Timestamp(end, tz="UTC")).to_numpy()
    features, labels, stamps = features[keep], labels[keep], stamps[keep]
    if features.empty:
        raise ValueError("no bars to backtest in the chosen span")
    p_up = served.predict_frame(features)
    result = run_backtest(
        pd.Series(p_up, index=features.index),
        forward_return(frame, 1).loc[features.index],
        labels,
        float(timeframe_seconds(timeframe)),
        rule,
    )
    span = served.version.metadata.get("training_span", {})
    last_trained = span.get("last_bar")
    in_sample_mask = (stamps <= pd.Timestamp(last_trained)).to_numpy() if last_trained else False
    in_sample = int(np.sum(in_sample_mask))
    if in_sample:
        print(
            f"WARNING: {in_sample} of {len(stamps)} bars are inside the model's training span "
            f"(up to {last_trained}): those figures are in-sample. Use --start after it.",
            file=sys.stderr,
        )
    described = runs.describe_data(data)
    document = {
        **runs.run_header("backtest"),
        "data": described,
        "model": {
            "name": served.version.name,
            "version": served.version.version,
            "timeframe": served.version.timeframe,
        },
        "model_training_span": span,
        "in_sample_bars": in_sample,
        "config": {
            "rule": dataclasses.asdict(rule),
            "start": start,
            "end": end,
            "allow_timeframe_mismatch": allow_timeframe_mismatch,
        },
        "figures": runs.backtest_figures(result),
    }
    bars = result.bars.assign(timestamp=stamps.to_numpy(), in_sample=in_sample_mask)
    bars.index.name = "row"
    trial = _trial("backtest", described["sha256"], result, {"model": model, "start": start})
    return document, bars, trial


def run_walkforward_command(
    args: argparse.Namespace, settings: TrainSettings, rule: TradeRule
) -> tuple[dict[str, Any], pd.DataFrame, Trial]:
    """Walk-forward over ``args.data`` with the seed's defaults unless told otherwise."""
    from research.walkforward import (
        WalkForwardConfig,
        prepare_dataset,
        walk_forward,
    )

    frame, timeframe, _ = read_candles(args.data)
    data = prepare_dataset(frame, timeframe, settings.feature_set, settings.horizon)
    config = WalkForwardConfig(
        window=args.window,
        step=args.step,
        expanding=args.expanding,
        purge=not args.no_purge,
        embargo=args.embargo,
        workers=args.workers,
        backend="ray" if args.ray_address else "local",
        ray_address=args.ray_address,
        max_folds=args.max_folds,
        settings=settings,
        rule=rule,
    )
    result = walk_forward(data, config, show_progress=not args.no_progress)
    described = runs.describe_data(args.data)
    document = {
        **runs.run_header("walkforward"),
        "data": described,
        **runs.walkforward_document(result, data.timestamps),
    }
    description = {
        "feature_set": settings.feature_set,
        "window": args.window,
        "step": args.step,
        "expanding": args.expanding,
        "time_limit": settings.time_limit,
    }
    trial = _trial("walkforward", described["sha256"], result.pooled, description)
    return document, result.oos, trial


def run_montecarlo_command(
    args: argparse.Namespace, rule: TradeRule, settings: TrainSettings
) -> dict[str, Any]:
    """Block bootstrap of a walk-forward run, or the seed's leaking random-sample method."""
    from research import montecarlo

    if args.method == "block-bootstrap":
        if args.run is None:
            raise ValueError("--method block-bootstrap needs --run (a walk-forward run directory)")
        source, bars = runs.read_run(args.run)
        if source.get("kind") != "walkforward" or bars is None:
            raise ValueError(f"{args.run} is not a walk-forward run with out-of-sample bars")
        bar_seconds = float(timeframe_seconds(source["data"]["timeframe"]))
        result = montecarlo.block_bootstrap(
            bars,
            bar_seconds,
            samples=args.samples,
            block_length=args.block_length,
            seed=args.seed,
            show_progress=not args.no_progress,
        )
        return {
            **runs.run_header("montecarlo"),
            "method": "block-bootstrap",
            "source_run": str(args.run),
            "data": source["data"],
            "in_sample_bars": int(bars["in_sample"].sum()) if "in_sample" in bars else 0,
            "montecarlo": result.to_dict(),
        }
    if args.data is None:
        raise ValueError("--method random-sample needs --data")
    print(LEAK_WARNING, file=sys.stderr)
    frame, timeframe, _ = read_candles(args.data)
    result = montecarlo.random_sample(
        frame,
        timeframe,
        settings,
        rule,
        runs=args.runs,
        sample_fraction=args.sample_fraction,
        test_fraction=args.test_fraction,
        seed=args.seed,
        workers=args.workers,
        ray_address=args.ray_address,
        show_progress=not args.no_progress,
    )
    return {
        **runs.run_header("montecarlo"),
        "method": "random-sample",
        "warning": LEAK_WARNING,
        "data": runs.describe_data(args.data),
        "montecarlo": result.to_dict(),
    }


def run_policies_command(
    args: argparse.Namespace, settings: TrainSettings
) -> tuple[dict[str, Any], pd.DataFrame, list[str]]:
    """Train a model at each schedule point (or find it cached under ``args.out``), replay
    the three renewal policies on the same bars, compare them; returns the document, the
    per-bar table and the verdict lines."""
    from ml.promotion import CanarySettings, GateSettings
    from research.policies import POLICIES, SignalRule, replay_policy
    from research.policy_figures import (
        BUY_AND_HOLD,
        baseline_figures,
        compare_all,
        policy_figures,
        verdict,
    )
    from research.policy_models import PolicyModels, replay_data, schedule_points

    started = time.perf_counter()
    gate = GateSettings(
        shadow_bars=args.shadow_bars, tests=tuple(args.gate_tests), alpha=args.alpha
    )
    canary = CanarySettings(
        initial_fraction=args.initial_fraction,
        ramp_bars=args.ramp_bars,
        accuracy_margin=args.accuracy_margin,
        return_margin=args.return_margin,
    )
    rule = SignalRule(
        args.high_confidence, args.medium_confidence, args.trade_on, args.fee_bps / 1e4
    )
    frame, timeframe, _ = read_candles(args.data)
    start, end = utc_timestamp(args.start), utc_timestamp(args.end)
    if len(args.end) == 10:  # a date: its whole day
        end += pd.Timedelta(days=1) - pd.Timedelta(1, "ns")
    data = replay_data(frame, settings.feature_set, start, end)
    described = runs.describe_data(args.data)
    points = schedule_points(start, data.timestamps.iloc[-1], args.schedule)
    models = PolicyModels(args.out, frame, timeframe, described, settings, args.window_bars)
    print(f"{len(points)} schedule points, {len(data.bars)} bars to replay", file=sys.stderr)
    tracks = [models.track(point, data) for point in points]
    trained = time.perf_counter() - started
    replays = {p: replay_policy(p, data.bars, tracks, rule, gate, canary) for p in POLICIES}
    bar_seconds = float(timeframe_seconds(timeframe))
    figures = {p: policy_figures(run, data.bars, bar_seconds) for p, run in replays.items()}
    figures[BUY_AND_HOLD] = baseline_figures(data.bars, rule.fee, bar_seconds)
    comparisons = compare_all(replays, data.bars, rule.fee, gate.alpha)
    lines = verdict(figures, comparisons, gate.alpha)
    stamps = data.timestamps.reset_index(drop=True)
    document = {
        **runs.run_header("policies"),
        "data": described,
        "config": {
            "start": str(start),
            "end": str(end),
            "schedule": args.schedule,
            "window_bars": args.window_bars,
            "settings": settings.to_json(),
            "rule": dataclasses.asdict(rule),
            "gate": gate.model_dump(),
            "canary": canary.model_dump(),
        },
        "replayed_bars": {
            "count": len(data.bars),
            "first": str(stamps.iloc[0]),
            "last": str(stamps.iloc[-1]),
        },
        "schedule_points": [str(p) for p in points],
        "models": models.log,
        "figures": figures,
        "comparisons": comparisons,
        "verdict": lines,
        "events": {
            p: [
                {
                    **dataclasses.asdict(e),
                    "time": str(stamps.iloc[e.bar]),
                    "version": tracks[e.model].label,
                }
                for e in run.events
            ]
            for p, run in replays.items()
            if p != "never"
        },
        "seconds": {"models": trained, "total": time.perf_counter() - started},
    }
    bars = pd.DataFrame(
        {"timestamp": stamps, "asset_return": data.bars.asset_returns, "up": data.bars.up}
    )
    for p, run in replays.items():
        bars[f"{p}_model"] = run.in_service
        bars[f"{p}_position"] = run.positions
        bars[f"{p}_return"] = run.returns
        bars[f"{p}_correct"] = run.correct.astype(int)
    bars["gated_canary"] = replays["gated"].in_canary.astype(int)
    bars.index = data.features.index
    bars.index.name = "row"
    return document, bars, lines
