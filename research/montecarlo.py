"""Monte Carlo distributions of accuracy, Sharpe and max drawdown.

``block_bootstrap`` (the default) resamples contiguous blocks of a walk-forward run's
OUT-OF-SAMPLE bars: each bar's hit/miss and its net strategy return, as the run made
them. No model is refitted and no bar a model trained on can enter a sample, so it
leaks nothing; blocks keep the short-range dependence of returns (volatility clusters).

``random_sample`` is the seed's method, kept for comparison: it draws rows at random
from the whole history, splits the draw at random into train and test and trains a
model. Training rows then sit between and after test rows: the figures leak time.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from ml.training import TrainSettings, check_training_set, fit_predictor
from research.backtest import TradeRule, run_backtest
from research.executor import cpus_per_task, run_tasks
from research.metrics import bars_per_year
from research.walkforward import Dataset, prepare_dataset

PERCENTILES = (2.5, 5.0, 25.0, 50.0, 75.0, 95.0, 97.5)
FIGURES = ("accuracy", "sharpe", "max_drawdown")


@dataclass(frozen=True)
class MonteCarloResult:
    method: str
    description: str
    distributions: dict[str, dict[str, list[float]]]  # who -> figure -> values
    parameters: dict[str, Any] = field(default_factory=dict)

    def percentiles(self) -> dict[str, dict[str, dict[str, float]]]:
        return {
            who: {
                name: {f"p{q:g}": float(np.nanpercentile(values, q)) for q in PERCENTILES}
                for name, values in figures.items()
            }
            for who, figures in self.distributions.items()
        }

    def share_beating_buy_and_hold(self) -> float:
        """Fraction of samples (paired: same bars) where the model's Sharpe beats holding."""
        model = np.asarray(self.distributions["model"]["sharpe"])
        hold = np.asarray(self.distributions["buy_and_hold"]["sharpe"])
        return float(np.mean(model > hold)) if len(model) else math.nan

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "description": self.description,
            **self.parameters,
            "share_sharpe_above_buy_and_hold": self.share_beating_buy_and_hold(),
            "percentiles": self.percentiles(),
            "distributions": self.distributions,
        }


def block_starts(n: int, samples: int, block_length: int, rng: np.random.Generator) -> np.ndarray:
    """Positions (samples x n) of a moving-block bootstrap over ``n`` ordered bars."""
    if n < 1 or not 1 <= block_length <= n:
        raise ValueError(f"block length must be in [1, {n}], got {block_length}")
    blocks = math.ceil(n / block_length)
    starts = rng.integers(0, n - block_length + 1, size=(samples, blocks))
    positions = starts[:, :, None] + np.arange(block_length)
    return positions.reshape(samples, -1)[:, :n]


def _sharpe_rows(returns: np.ndarray, per_year: float) -> np.ndarray:
    sd = returns.std(axis=1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        sharpe = np.where(sd > 0, returns.mean(axis=1) / sd, 0.0)
    return sharpe * math.sqrt(per_year)


def _drawdown_rows(returns: np.ndarray) -> np.ndarray:
    equity = np.cumprod(1.0 + returns, axis=1)
    equity = np.concatenate([np.ones((len(equity), 1)), equity], axis=1)
    peaks = np.maximum.accumulate(equity, axis=1)
    return (1.0 - equity / peaks).max(axis=1)


def sample_positions(
    n: int, samples: int, block_length: int | None = None, seed: int = 0
) -> np.ndarray:
    """The bar positions :func:`block_bootstrap` draws, for inspection and tests."""
    block_length = block_length or max(1, round(math.sqrt(n)))
    return block_starts(n, samples, block_length, np.random.default_rng(seed))


def block_bootstrap(
    bars: pd.DataFrame,
    bar_seconds: float,
    samples: int = 1000,
    block_length: int | None = None,
    seed: int = 0,
    show_progress: bool = False,
) -> MonteCarloResult:
    """Resample blocks of a walk-forward run's out-of-sample bars (``bars.csv``)."""
    needed = {"correct", "label", "strategy_return", "buy_and_hold_equity", "fold"}
    missing = needed - set(bars.columns)
    if missing:
        raise ValueError(f"not a walk-forward out-of-sample table: lacks {sorted(missing)}")
    n = len(bars)
    block_length = block_length or max(1, round(math.sqrt(n)))
    correct = bars["correct"].astype(float).to_numpy()
    returns = bars["strategy_return"].to_numpy(dtype=float)
    bh_equity = bars["buy_and_hold_equity"].to_numpy(dtype=float)
    bh_returns = bh_equity / np.concatenate(([1.0], bh_equity[:-1])) - 1.0
    per_year = bars_per_year(bar_seconds)
    rng = np.random.default_rng(seed)
    out: dict[str, dict[str, list[float]]] = {
        "model": {k: [] for k in FIGURES},
        "buy_and_hold": {k: [] for k in ("sharpe", "max_drawdown")},
    }
    chunk = 100
    for done in tqdm(range(0, samples, chunk), desc="bootstrap", disable=not show_progress):
        positions = block_starts(n, min(chunk, samples - done), block_length, rng)
        r, b = returns[positions], bh_returns[positions]
        out["model"]["accuracy"] += correct[positions].mean(axis=1).tolist()
        out["model"]["sharpe"] += _sharpe_rows(r, per_year).tolist()
        out["model"]["max_drawdown"] += _drawdown_rows(r).tolist()
        out["buy_and_hold"]["sharpe"] += _sharpe_rows(b, per_year).tolist()
        out["buy_and_hold"]["max_drawdown"] += _drawdown_rows(b).tolist()
    description = (
        f"{samples} moving-block bootstrap samples of the {n} out-of-sample bars of a "
        f"walk-forward run, blocks of {block_length} bars; each bar keeps the hit/miss and "
        "net return its fold's model gave it (no refit)."
    )
    parameters = {
        "samples": samples,
        "block_length": block_length,
        "bars": n,
        "seed": seed,
        "up_rate": float(bars["label"].mean()),  # always-up's accuracy on these bars
    }
    return MonteCarloResult("block-bootstrap", description, out, parameters)


@dataclass(frozen=True)
class RandomSampleTask:
    run: int
    data: Dataset
    train_positions: np.ndarray
    tuning_positions: np.ndarray
    test_positions: np.ndarray  # ascending
    settings: TrainSettings
    rule: TradeRule


def run_random_sample(task: RandomSampleTask) -> dict[str, float]:
    """Train on random rows, test on other random rows (the seed's Monte Carlo run)."""
    d = task.data
    train_rows = np.sort(task.train_positions)
    check_training_set(
        d.features.iloc[train_rows], d.close.iloc[train_rows], task.settings
    )  # the same check as every training set, even though random rows defeat it

    def table(positions: np.ndarray) -> pd.DataFrame:
        return d.features.iloc[positions].assign(target=d.labels.iloc[positions].to_numpy())

    with tempfile.TemporaryDirectory(prefix=f"mc-run{task.run}-") as work:
        predictor = fit_predictor(
            table(task.train_positions),
            table(task.tuning_positions),
            task.settings,
            Path(work) / "model",
        )
        test = d.features.iloc[task.test_positions]
        proba = predictor.predict_proba(test, as_pandas=False)
        labels = list(predictor.class_labels)
        p_up = proba[:, labels.index(1 if 1 in labels else labels[-1])]
    result = run_backtest(
        p_up,
        d.asset_returns.iloc[task.test_positions],
        d.labels.iloc[task.test_positions],
        d.bar_seconds,
        task.rule,
    )
    return {
        "accuracy": float(result.model.accuracy or 0.0),
        "sharpe": result.model.sharpe,
        "max_drawdown": result.model.max_drawdown,
        "bh_sharpe": result.buy_and_hold.sharpe,
        "bh_max_drawdown": result.buy_and_hold.max_drawdown,
        "up_rate": float(result.always_up.accuracy or 0.0),
        "bars": result.model.bars,
    }


def random_sample(
    frame: pd.DataFrame,
    timeframe: str,
    settings: TrainSettings,
    rule: TradeRule,
    runs: int = 20,
    sample_fraction: float = 0.8,
    test_fraction: float = 0.2,
    seed: int = 0,
    workers: int = 2,
    ray_address: str | None = None,
    show_progress: bool = True,
) -> MonteCarloResult:
    """The seed's Monte Carlo: random rows, random train/test split, one fit per run."""
    if not 0 < sample_fraction <= 1 or not 0 < test_fraction < 1:
        raise ValueError("sample and test fractions must be in (0, 1]")
    data = prepare_dataset(frame, timeframe, settings.feature_set, settings.horizon)
    n = len(data.features)
    rng = np.random.default_rng(seed)
    cpus = settings.num_cpus or cpus_per_task(max(1, workers))
    run_settings = dataclasses.replace(settings, num_cpus=cpus)
    tasks = []
    for run in range(runs):
        sample = rng.choice(n, size=round(n * sample_fraction), replace=False)
        n_test = round(len(sample) * test_fraction)
        test, rest = sample[:n_test], sample[n_test:]
        n_tune = max(1, round(len(rest) * settings.tuning_fraction))
        tasks.append(
            RandomSampleTask(
                run, data, rest[n_tune:], rest[:n_tune], np.sort(test), run_settings, rule
            )
        )
    outcomes = run_tasks(
        run_random_sample,
        tasks,
        workers=workers,
        backend="ray" if ray_address else "local",
        ray_address=ray_address,
        description="random-sample runs",
        show_progress=show_progress,
        task_cpus=cpus,
    )
    out = {
        "model": {k: [o[k] for o in outcomes] for k in FIGURES},
        "buy_and_hold": {
            "sharpe": [o["bh_sharpe"] for o in outcomes],
            "max_drawdown": [o["bh_max_drawdown"] for o in outcomes],
        },
    }
    description = (
        f"{runs} runs of the seed's method: {sample_fraction:.0%} of rows drawn at random, "
        f"{test_fraction:.0%} of the draw tested, the rest trained on (random rows: "
        "LEAKS TIME)."
    )
    parameters = {
        "runs": runs,
        "sample_fraction": sample_fraction,
        "seed": seed,
        "bars": min((o["bars"] for o in outcomes), default=0),  # tested per run
        "up_rate": float(np.mean([o["up_rate"] for o in outcomes])) if outcomes else None,
    }
    return MonteCarloResult("random-sample", description, out, parameters)
