"""A research run on disk: ``result.json`` (every figure) and ``bars.csv`` (per bar).

``trade-engine report`` renders a run directory into ``report.html``; Monte Carlo's
block bootstrap reads a walk-forward run's ``bars.csv`` (its out-of-sample bars).
"""

from __future__ import annotations

import json
import math
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from engine.candles import read_candles
from ml.pipeline import file_sha256, package_versions
from research.backtest import BacktestResult
from research.metrics import DeflatedSharpe, probabilistic_sharpe_ratio
from research.walkforward import WalkForwardResult

RESULT_FILE = "result.json"
BARS_FILE = "bars.csv"


def default_run_dir(research_dir: Path, kind: str) -> Path:
    return research_dir / "runs" / f"{kind}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"


def clean(value: Any) -> Any:
    """JSON-safe copy: NaN/inf become null, numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def describe_data(path: Path) -> dict[str, Any]:
    """What a run was computed on: file, hash, timeframe, span."""
    frame, timeframe, gaps = read_candles(path)
    return {
        "path": str(path),
        "sha256": file_sha256(path),
        "timeframe": timeframe,
        "rows": len(frame),
        "first_bar": str(frame["timestamp"].iloc[0]),
        "last_bar": str(frame["timestamp"].iloc[-1]),
        "gaps": gaps.gaps,
    }


def run_header(kind: str) -> dict[str, Any]:
    return {
        "kind": kind,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["trade-engine", *sys.argv[1:]]),
        "machine": f"{platform.node()} {platform.machine()}",
        "packages": package_versions(),
    }


def deflated_to_dict(dsr: DeflatedSharpe, figures: dict[str, Any]) -> dict[str, Any]:
    """The DSR (skill vs zero after N trials) and, beside it, the PSR vs buy-and-hold.

    A long-only strategy in a rising market beats a zero Sharpe by being long; the
    question that matters is whether it beats holding. ``psr_vs_buy_and_hold`` is the
    probability that the model's true Sharpe exceeds buy-and-hold's observed one (taken
    as a fixed benchmark, not a paired test).
    """
    model, hold = figures["model"], figures["buy_and_hold"]
    psr = probabilistic_sharpe_ratio(
        model["sharpe_per_bar"],
        hold["sharpe_per_bar"],
        model["bars"],
        model["skew"],
        model["kurtosis"],
    )
    return {**dsr.__dict__, "name": dsr.name, "psr_vs_buy_and_hold": psr}


def backtest_figures(result: BacktestResult) -> dict[str, Any]:
    return {"model": result.model.to_dict(), **_baselines(result)}


def _baselines(result: BacktestResult) -> dict[str, Any]:
    return {
        "buy_and_hold": result.buy_and_hold.to_dict(),
        "always_up": result.always_up.to_dict(),
    }


def walkforward_document(result: WalkForwardResult, timestamps: pd.Series) -> dict[str, Any]:
    """Every figure of a walk-forward run: config, pooled, per fold."""
    folds = []
    for fold in result.folds:
        span, out = fold.span, fold.outcome
        train_rows = timestamps.index[span.train]
        test_rows = timestamps.index[span.test]
        folds.append(
            {
                "fold": span.fold,
                "train_rows": len(span.train),
                "train_first": str(timestamps.loc[train_rows[0]]),
                "train_last": str(timestamps.loc[train_rows[-1]]),
                "train_first_row": int(train_rows[0]),
                "train_last_row": int(train_rows[-1]),
                "test_rows": len(span.test),
                "test_first": str(timestamps.loc[test_rows[0]]),
                "test_last": str(timestamps.loc[test_rows[-1]]),
                "test_first_row": int(test_rows[0]),
                "test_last_row": int(test_rows[-1]),
                "in_sample": bool(span.in_sample.any()),
                "in_sample_bars": int(span.in_sample.sum()),
                "tuning_accuracy": out.tuning_accuracy,
                "best_model": out.best_model,
                "fit_seconds": out.seconds,
                "figures": backtest_figures(fold.backtest),
            }
        )
    return {
        "config": result.config.to_json(),
        "figures": backtest_figures(result.pooled),
        "in_sample_bars": sum(f["in_sample_bars"] for f in folds),
        "folds": folds,
        "wall_seconds": result.wall_seconds,
    }


def write_run(run_dir: Path, document: dict[str, Any], bars: pd.DataFrame | None) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    if bars is not None:
        bars.to_csv(run_dir / BARS_FILE)
    text = json.dumps(clean(document), indent=2, sort_keys=False, allow_nan=False)
    (run_dir / RESULT_FILE).write_text(text + "\n", encoding="utf-8")


def read_run(run_dir: Path) -> tuple[dict[str, Any], pd.DataFrame | None]:
    """A run's result.json and, if it has one, its per-bar table (index: candle row)."""
    result_file = run_dir / RESULT_FILE
    if not result_file.exists():
        raise FileNotFoundError(f"{run_dir} is not a research run: no {RESULT_FILE}")
    document = json.loads(result_file.read_text(encoding="utf-8"))
    bars_file = run_dir / BARS_FILE
    bars = pd.read_csv(bars_file, index_col=0) if bars_file.exists() else None
    return document, bars
