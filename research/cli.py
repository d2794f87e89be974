"""``trade-engine backtest | walkforward | montecarlo | policies | report``: research commands.

Each run writes a directory (``--report DIR``, default ``<research-dir>/runs/<kind>-<time>``)
with ``result.json``, ``bars.csv`` and ``report.html``, and prints its figures beside
the buy-and-hold and always-up baselines and its verdict (:mod:`research.verdict`).
Backtests and walk-forwards are counted in ``<research-dir>/trials.jsonl`` for the
deflated Sharpe ratio. ``policies`` writes
``result.json``, ``bars.csv`` and ``result.md`` to ``--out``, which also caches its models,
and is not counted as a trial: it selects no strategy, its verdict rests on paired tests.
Exit codes follow ``engine.cli``: 0 done, 1 failed, 2 bad usage.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.amm import FEE_BPS

if TYPE_CHECKING:
    import pandas as pd

    from ml.training import TrainSettings
    from research.backtest import TradeRule
    from research.trials import Trial

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
DEFAULT_RESEARCH_DIR = Path("research")


def register(commands: Any) -> None:
    """Add the research subcommands to the ``trade-engine`` subparsers."""
    _register_backtest(commands)
    _register_walkforward(commands)
    _register_montecarlo(commands)
    _register_policies(commands)
    report = commands.add_parser("report", help="render a research run into report.html")
    report.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run's directory")
    report.add_argument("--out", type=Path, help="HTML file (default RUN_DIR/report.html)")
    report.set_defaults(handler=_cmd_report)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--report", type=Path, metavar="DIR", help="this run's output directory")
    parser.add_argument(
        "--research-dir",
        type=Path,
        default=DEFAULT_RESEARCH_DIR,
        help="holds trials.jsonl and default run directories (default: research)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _add_trade_rule(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--threshold",
        type=float,
        help="enter long above this P(up), exit below 1 - this (the seed: 0.6)",
    )
    parser.add_argument("--enter", type=float, default=0.6, help="enter long when P(up) > this")
    parser.add_argument("--exit", type=float, default=0.4, help="go flat when P(up) < this")
    parser.add_argument(
        "--fee-bps", type=float, default=float(FEE_BPS), help="fee per swap (30 = 0.3%%)"
    )
    parser.add_argument("--gas", type=float, default=0.0, help="gas per swap, quote units")
    parser.add_argument("--capital", type=float, default=10_000.0, help="initial quote capital")
    parser.add_argument(
        "--pool-depth",
        type=float,
        default=None,
        help="fill like the paper executor: a Uniswap V2 pool with this much quote at the "
        "close (size pays price impact); unset: the close less the fee",
    )


def _add_training(parser: argparse.ArgumentParser, time_limit: float) -> None:
    parser.add_argument("--feature-set", default="seed", help="seed | stationary")
    parser.add_argument("--horizon", type=int, default=1, help="label horizon in bars")
    parser.add_argument("--time-limit", type=float, default=time_limit, help="seconds per fit")
    parser.add_argument("--presets", default="medium_quality_faster_train")
    parser.add_argument(
        "--infer-limit-ms", type=float, default=2.0, help="per-row latency budget; 0: none"
    )
    parser.add_argument(
        "--hyperparameters", help='JSON AutoGluon hyperparameters, e.g. {"GBM": {}}'
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2, help="local processes (0: inline)")
    parser.add_argument("--ray-address", help="run on this Ray cluster instead ('auto' works)")


def _register_backtest(commands: Any) -> None:
    p = commands.add_parser("backtest", help="backtest a registered model on a candle file")
    p.add_argument("--model", required=True, help="NAME or NAME/VERSION (default: current)")
    p.add_argument("--models-dir", type=Path, default=Path("models"))
    p.add_argument("--data", type=Path, required=True, help="candle file")
    p.add_argument("--start", help="first bar to trade (e.g. 2022-01-01)")
    p.add_argument("--end", help="last bar to trade")
    p.add_argument(
        "--allow-timeframe-mismatch",
        action="store_true",
        help="backtest a model trained on another timeframe than the data's (refused otherwise)",
    )
    _add_trade_rule(p)
    _add_common(p)
    p.set_defaults(handler=_cmd_backtest)


def _register_walkforward(commands: Any) -> None:
    from research.defaults import SEED_STEP, SEED_TIME_LIMIT, SEED_WINDOW

    p = commands.add_parser("walkforward", help="walk-forward train/predict over a candle file")
    p.add_argument("--data", type=Path, required=True, help="candle file")
    p.add_argument("--window", type=int, default=SEED_WINDOW, help="training rows per fold")
    p.add_argument("--step", type=int, default=SEED_STEP, help="test rows per fold")
    p.add_argument("--expanding", action="store_true", help="train on all rows so far")
    p.add_argument("--no-purge", action="store_true", help="keep rows whose labels overlap test")
    p.add_argument("--embargo", type=int, default=0, help="extra bars between train and test")
    p.add_argument("--max-folds", type=int, help="only the first N folds")
    _add_training(p, SEED_TIME_LIMIT)
    _add_trade_rule(p)
    _add_common(p)
    p.set_defaults(handler=_cmd_walkforward)


def _register_montecarlo(commands: Any) -> None:
    p = commands.add_parser("montecarlo", help="distributions of accuracy, Sharpe, drawdown")
    p.add_argument(
        "--method",
        choices=("block-bootstrap", "random-sample"),
        default="block-bootstrap",
        help="block-bootstrap: resample a walk-forward run's out-of-sample bars (default); "
        "random-sample: the seed's method, which leaks time",
    )
    p.add_argument("--run", type=Path, help="walk-forward run directory (block-bootstrap)")
    p.add_argument("--samples", type=int, default=1000, help="bootstrap samples")
    p.add_argument("--block-length", type=int, help="bars per block (default: sqrt(n))")
    p.add_argument("--data", type=Path, help="candle file (random-sample)")
    p.add_argument("--runs", type=int, default=20, help="trainings (random-sample)")
    p.add_argument("--sample-fraction", type=float, default=0.8, help="(random-sample)")
    p.add_argument("--test-fraction", type=float, default=0.2, help="(random-sample)")
    _add_training(p, 10.0)
    _add_trade_rule(p)
    _add_common(p)
    p.set_defaults(handler=_cmd_montecarlo)


def _register_policies(commands: Any) -> None:
    from ml.promotion import CanarySettings, GateSettings

    gate, canary = GateSettings(), CanarySettings()
    p = commands.add_parser(
        "policies",
        help="replay never-retrain, newest-model and gated champion/challenger renewal on "
        "the same bars, after fees",
    )
    p.add_argument("--data", type=Path, required=True, help="candle file")
    p.add_argument("--start", required=True, help="first bar replayed and first model's cut")
    p.add_argument("--end", required=True, help="last bar replayed (a date: its whole day)")
    p.add_argument(
        "--schedule", default="monthly", help="monthly | weekly | daily | a cron expression (UTC)"
    )
    p.add_argument(
        "--window-bars", type=int, default=8760, help="candles each model trains on (rolling)"
    )
    p.add_argument("--out", type=Path, required=True, help="results, and the model cache")
    p.add_argument("--feature-set", default="stationary", help="seed | stationary")
    p.add_argument("--time-limit", type=float, default=20.0, help="seconds per fit")
    p.add_argument("--presets", default="medium_quality")
    p.add_argument(
        "--infer-limit-ms", type=float, default=2.0, help="per-row latency budget; 0: none"
    )
    p.add_argument("--hyperparameters", help='JSON AutoGluon hyperparameters, e.g. {"GBM": {}}')
    p.add_argument("--num-cpus", type=int, default=1, help="cores per fit")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shadow-bars", type=int, default=gate.shadow_bars)
    p.add_argument("--gate-tests", nargs="+", choices=("mcnemar", "pnl"), default=list(gate.tests))
    p.add_argument("--alpha", type=float, default=gate.alpha, help="gate and verdict level")
    p.add_argument("--initial-fraction", type=float, default=canary.initial_fraction)
    p.add_argument("--ramp-bars", type=int, default=canary.ramp_bars)
    p.add_argument("--accuracy-margin", type=float, default=canary.accuracy_margin)
    p.add_argument("--return-margin", type=float, default=canary.return_margin)
    p.add_argument("--high-confidence", type=float, default=0.7)
    p.add_argument("--medium-confidence", type=float, default=0.5)
    p.add_argument(
        "--trade-on", choices=("high", "medium"), default="medium", help="lowest level traded"
    )
    p.add_argument(
        "--fee-bps", type=float, default=float(FEE_BPS), help="fee per swap (30 = 0.3%%)"
    )
    p.set_defaults(handler=_cmd_policies, horizon=1)  # the replay scores the next bar


def _fail(command: str, code: int, message: str) -> int:
    print(f"trade-engine {command}: {message}", file=sys.stderr)
    return code


def _trade_rule(args: argparse.Namespace) -> TradeRule:
    from research.backtest import TradeRule

    enter, exit_ = args.enter, args.exit
    if args.threshold is not None:
        enter, exit_ = args.threshold, 1.0 - args.threshold
    return TradeRule(
        enter=enter,
        exit=exit_,
        fee_bps=args.fee_bps,
        gas=args.gas,
        initial_capital=args.capital,
        pool_depth_quote=args.pool_depth,
    )


def _train_settings(args: argparse.Namespace) -> TrainSettings:
    from ml.training import TrainSettings

    hyperparameters = json.loads(args.hyperparameters) if args.hyperparameters else None
    if hyperparameters is not None and not isinstance(hyperparameters, dict):
        raise ValueError("--hyperparameters must be a JSON object")
    return TrainSettings(
        feature_set=args.feature_set,
        horizon=args.horizon,
        time_limit=args.time_limit,
        presets=args.presets,
        infer_limit_ms=args.infer_limit_ms or None,
        hyperparameters=hyperparameters,
        seed=args.seed,
    )


def _finish(
    args: argparse.Namespace,
    kind: str,
    document: dict[str, Any],
    bars: pd.DataFrame | None,
    trial: Trial | None,
) -> Path:
    """Count the trial, judge the result, write the run, render its report, print it."""
    from research import runs
    from research.report import render_report
    from research.tables import figures_table, percentiles_table, sharpe_line
    from research.trials import TrialsLedger
    from research.verdict import judge_document

    run_dir = args.report or runs.default_run_dir(args.research_dir, kind)
    if trial is not None:
        trial = dataclasses.replace(trial, run_dir=str(run_dir))
        dsr = TrialsLedger(args.research_dir).record_and_deflate(trial)
        document["deflated_sharpe"] = runs.deflated_to_dict(dsr, document["figures"])
    verdict = judge_document(document)
    if verdict is not None:
        document["verdict"] = verdict.to_dict()
    runs.write_run(run_dir, document, bars)
    html = render_report(run_dir)
    if "figures" in document:
        print(figures_table(document["figures"], document.get("in_sample_bars")))
    if "montecarlo" in document:
        print(document["montecarlo"]["description"] + "\n")
        print(percentiles_table(document["montecarlo"]))
        share = document["montecarlo"]["share_sharpe_above_buy_and_hold"]
        print(f"\nsamples where the model's Sharpe beats buy & hold's: {share:.1%}")
    if "deflated_sharpe" in document:
        print("\n" + sharpe_line(document["deflated_sharpe"]))
    if verdict is not None:
        print(f"\nverdict: {verdict.sentence}")
    print(f"\n{run_dir}/result.json\n{html}")
    return run_dir


def _cmd_backtest(args: argparse.Namespace) -> int:
    from research.commands import backtest_model

    try:
        rule = _trade_rule(args)
        document, bars, trial = backtest_model(
            args.model,
            args.models_dir,
            args.data,
            rule,
            args.start,
            args.end,
            allow_timeframe_mismatch=args.allow_timeframe_mismatch,
        )
    except (ValueError, LookupError, OSError, RuntimeError) as exc:
        return _fail("backtest", EXIT_USAGE, str(exc))
    _finish(args, "backtest", document, bars, trial)
    return EXIT_OK


def _cmd_walkforward(args: argparse.Namespace) -> int:
    from ml.features import get_feature_set
    from research.commands import run_walkforward_command

    try:
        settings = _train_settings(args)
        rule = _trade_rule(args)
        get_feature_set(settings.feature_set)
        if not args.data.exists():
            raise ValueError(f"{args.data}: no such candle file")
    except ValueError as exc:
        return _fail("walkforward", EXIT_USAGE, str(exc))
    try:
        document, bars, trial = run_walkforward_command(args, settings, rule)
    except ValueError as exc:  # bad data or shape; LeakageError is a ValueError too
        return _fail("walkforward", EXIT_FAILURE, str(exc))
    _finish(args, "walkforward", document, bars, trial)
    return EXIT_OK


def _cmd_montecarlo(args: argparse.Namespace) -> int:
    from research.commands import run_montecarlo_command

    try:
        document = run_montecarlo_command(args, _trade_rule(args), _train_settings(args))
    except (ValueError, FileNotFoundError) as exc:
        return _fail("montecarlo", EXIT_USAGE, str(exc))
    _finish(args, "montecarlo", document, None, None)
    return EXIT_OK


def _cmd_policies(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from ml.features import get_feature_set
    from research import runs
    from research.commands import run_policies_command
    from research.tables import policies_table

    try:
        settings = dataclasses.replace(_train_settings(args), num_cpus=args.num_cpus)
        get_feature_set(settings.feature_set)
        if not args.data.exists():
            raise ValueError(f"{args.data}: no such candle file")
    except ValueError as exc:
        return _fail("policies", EXIT_USAGE, str(exc))
    try:
        document, bars, lines = run_policies_command(args, settings)
    except ValidationError as exc:
        return _fail("policies", EXIT_USAGE, str(exc))
    except ValueError as exc:  # bad data, span or schedule; LeakageError is a ValueError too
        return _fail("policies", EXIT_FAILURE, str(exc))
    runs.write_run(args.out, document, bars)
    table = policies_table(document["figures"])
    verdict = "\n".join(f"- {line}" for line in lines)
    (args.out / "result.md").write_text(
        f"`{document['command']}`\n\n{table}\n\nVerdict (paired tests on the same bars, "
        f"alpha {args.alpha:g}):\n\n{verdict}\n",
        encoding="utf-8",
    )
    print(f"{table}\n\n{verdict}\n")
    seconds = document["seconds"]
    print(f"wall {seconds['total']:.0f} s (models {seconds['models']:.0f} s)")
    print(f"{args.out}/result.json\n{args.out}/result.md")
    return EXIT_OK


def _cmd_report(args: argparse.Namespace) -> int:
    from research.report import render_report

    try:
        print(render_report(args.run_dir, args.out))
    except (FileNotFoundError, ValueError, KeyError) as exc:
        return _fail("report", EXIT_USAGE, str(exc))
    return EXIT_OK
