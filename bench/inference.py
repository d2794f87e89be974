"""Single-row prediction latency: the serving wrapper vs a plain TabularPredictor.

Trains (or reuses, with ``--models-dir`` and ``--name``) a model on the bundled
BTC/USD daily sample with the default settings of `trade-engine train`, then times,
in the same run and on the same 500 most recent feature rows:

* ``ServingModel.predict_up(row)``: loaded once, persisted in memory, fixed one-row frame;
* ``TabularPredictor.load(path).predict_proba(pd.DataFrame([row]))``: how the seed
  served (loaded once too; models read from disk on each call, as AutoGluon does
  when not persisted).

Goal (issue 4): p99 <= 5 ms for the serving wrapper.

    .venv/bin/python bench/inference.py [--time-limit 60] [--feature-set seed]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from machine import describe_machine

from adapters.replay.market_data import SAMPLES_DIR
from engine.candles import read_candles
from ml.labels import make_dataset
from ml.pipeline import train_from_file
from ml.registry import ModelRegistry
from ml.serving import ServingModel
from ml.training import TrainSettings

DATA = SAMPLES_DIR / "BTC-USD_1d.csv"


def percentiles(samples_s: list[float]) -> tuple[float, float]:
    ms = np.array(samples_s) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def time_calls(call, rows: list[dict[str, float]], warmup: int = 20) -> list[float]:
    for row in rows[:warmup]:
        call(row)
    out = []
    for row in rows:
        started = time.perf_counter()
        call(row)
        out.append(time.perf_counter() - started)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time-limit", type=float, default=60.0)
    parser.add_argument("--feature-set", default="seed", choices=["seed", "stationary"])
    parser.add_argument("--infer-limit-ms", type=float, default=2.0, help="0: none")
    parser.add_argument("--models-dir", type=Path, help="reuse a registry instead of training")
    parser.add_argument("--name", default="bench-inference")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        registry = ModelRegistry(args.models_dir or Path(tmp) / "models")
        if registry.current(args.name) is None:
            settings = TrainSettings(
                feature_set=args.feature_set,
                time_limit=args.time_limit,
                infer_limit_ms=args.infer_limit_ms or None,
            )
            # In another process, as `trade-engine train` does: training in this process
            # leaves thread pools behind that slow single-row inference about tenfold.
            ctx = mp.get_context("spawn")
            with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
                pool.submit(train_from_file, DATA, settings, registry, args.name).result()
        served = ServingModel.load(registry, args.name)
        frame, _, _ = read_candles(DATA)
        features, _ = make_dataset(frame, served.version.feature_set)
        rows = features.iloc[-500:].to_dict("records")

        from autogluon.tabular import TabularPredictor

        plain = TabularPredictor.load(str(served.version.predictor_path), verbosity=0)
        wrapper = percentiles(time_calls(served.predict_up, rows))
        baseline = percentiles(time_calls(lambda r: plain.predict_proba(pd.DataFrame([r])), rows))

    meta = served.version.metadata
    print(f"# bench/inference.py: {describe_machine()}")
    print(
        f"# model: {meta['feature_set']} features, {served.model_name}, trained with "
        f"time_limit={meta['settings']['time_limit']}s presets={meta['settings']['presets']} "
        f"infer_limit_ms={meta['settings']['infer_limit_ms']}; 500 single-row calls each"
    )
    print()
    print("| path | p50 ms | p99 ms |")
    print("|---|---|---|")
    print(f"| ServingModel.predict_up (persisted) | {wrapper[0]:.2f} | {wrapper[1]:.2f} |")
    print(
        f"| TabularPredictor.load + predict_proba(pd.DataFrame([row])) | {baseline[0]:.2f} "
        f"| {baseline[1]:.2f} |"
    )
    ratio_p50, ratio_p99 = baseline[0] / wrapper[0], baseline[1] / wrapper[1]
    print(f"\nspeed-up at p50: {ratio_p50:.1f}x; at p99: {ratio_p99:.1f}x")


if __name__ == "__main__":
    main()
