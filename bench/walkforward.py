"""Walk-forward wall time with the seed's defaults: 1 local process vs 2, in the same run.

The seed's shape (252-bar rolling window, step 30, 60 s time limit a fold, the seed
feature set, ``medium_quality_faster_train``) on the shared daily BTC data, limited to
the first ``--folds`` folds so it fits in minutes. Each fold runs in its own spawned
process; with one worker a fold may use every core, with two each gets half. Prints a
markdown table.

    .venv/bin/python bench/walkforward.py --data ../shared/data/BTC-USD_1d.csv --folds 10
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from machine import describe_machine

from engine.candles import read_candles
from ml.training import TrainSettings
from research.defaults import SEED_STEP, SEED_TIME_LIMIT, SEED_WINDOW
from research.walkforward import (
    WalkForwardConfig,
    make_folds,
    prepare_dataset,
    walk_forward,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/BTC-USD_1d.csv"))
    parser.add_argument("--folds", type=int, default=10, help="first K folds (0: all)")
    parser.add_argument("--time-limit", type=float, default=SEED_TIME_LIMIT)
    parser.add_argument("--feature-set", default="seed")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()

    frame, timeframe, _ = read_candles(args.data)
    data = prepare_dataset(frame, timeframe, args.feature_set)
    all_folds = len(make_folds(data.features.index.to_numpy(), SEED_WINDOW, SEED_STEP))
    folds = args.folds or all_folds
    settings = TrainSettings(
        feature_set=args.feature_set,
        time_limit=args.time_limit,
        presets="medium_quality_faster_train",
    )
    rows = []
    for workers in args.workers:
        config = WalkForwardConfig(workers=workers, max_folds=folds, settings=settings)
        result = walk_forward(data, config, show_progress=True)
        fits = [f.outcome.seconds for f in result.folds]
        accuracy = result.pooled.model.accuracy or 0.0
        rows.append((workers, result.wall_seconds, statistics.median(fits), max(fits), accuracy))
    base = rows[0][1]
    print(f"### Walk-forward wall time, seed defaults ({describe_machine()})\n")
    print(
        f"`{args.data.name}`, {args.feature_set} features, window {SEED_WINDOW}, step "
        f"{SEED_STEP}, time limit {args.time_limit:g} s a fold, infer limit 2 ms, the first "
        f"{folds} of {all_folds} folds; each fold in its own spawned process.\n"
    )
    print("| processes | wall time | per fold | median fit | slowest fit | speed-up | OOS acc. |")
    print("|---|---|---|---|---|---|---|")
    for workers, wall, median_fit, slowest, accuracy in rows:
        print(
            f"| {workers} | {wall:.1f} s | {wall / folds:.2f} s | {median_fit:.1f} s | "
            f"{slowest:.1f} s | {base / wall:.2f}x | {100 * accuracy:.1f}% |"
        )


if __name__ == "__main__":
    main()
