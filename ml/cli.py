"""`trade-engine train` and `trade-engine models list|show|promote|rollback`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

DEFAULT_MODELS_DIR = "models"


def register(commands: Any) -> None:
    train = commands.add_parser(
        "train", help="train a direction model on a candle file and register it"
    )
    train.add_argument(
        "--data", required=True, type=Path, help="candle file (.csv/.csv.gz/.parquet)"
    )
    train.add_argument("--feature-set", default="seed", choices=["seed", "stationary"])
    train.add_argument("--out", default=DEFAULT_MODELS_DIR, type=Path, help="model registry root")
    train.add_argument("--name", default=None, help="model name (default: from the data file)")
    train.add_argument("--time-limit", type=float, default=300.0, help="seconds (default 300)")
    train.add_argument(
        "--presets",
        default="medium_quality",
        help="AutoGluon presets; the seed's medium_quality_faster_train is accepted",
    )
    train.add_argument("--horizon", type=int, default=1, help="label horizon in bars")
    train.add_argument("--tuning-fraction", type=float, default=0.2)
    train.add_argument(
        "--infer-limit-ms",
        type=float,
        default=2.0,
        help="per-row latency AutoGluon's chosen model must meet (0: no limit)",
    )
    train.add_argument("--no-promote", action="store_true", help="register without promoting")
    train.set_defaults(handler=_cmd_train)

    models = commands.add_parser("models", help="list, show, promote or roll back models")
    sub = models.add_subparsers(dest="models_command", required=True)
    for name, handler, help_text in (
        ("list", _cmd_list, "every model and version, the current one marked"),
        ("show", _cmd_show, "a version's metadata (default: current)"),
        ("promote", _cmd_promote, "put a version in service"),
        ("rollback", _cmd_rollback, "return to the version in service before"),
    ):
        parser = sub.add_parser(name, help=help_text)
        parser.add_argument("--models-dir", default=DEFAULT_MODELS_DIR, type=Path)
        if name != "list":
            parser.add_argument("model", help="model name")
        if name in ("show", "promote"):
            parser.add_argument("version", nargs="?" if name == "show" else None)
        parser.set_defaults(handler=handler)


def _cmd_train(args: argparse.Namespace) -> int:
    from engine.candles import CandleFileError
    from ml.leakage import LeakageError
    from ml.pipeline import train_from_file
    from ml.registry import ModelRegistry
    from ml.training import TrainSettings

    name = args.name or args.data.name.split(".")[0]
    try:
        settings = TrainSettings(
            feature_set=args.feature_set,
            horizon=args.horizon,
            time_limit=args.time_limit,
            presets=args.presets,
            tuning_fraction=args.tuning_fraction,
            infer_limit_ms=args.infer_limit_ms or None,
        )
    except ValueError as exc:
        print(f"train: {exc}", file=sys.stderr)
        return 2
    if settings.resolved_presets != settings.presets:
        print(
            f"presets {settings.presets!r} is called {settings.resolved_presets!r} in AutoGluon 1.6"
        )
    registry = ModelRegistry(args.out)
    try:
        result = train_from_file(
            args.data, settings, registry, name, promote=not args.no_promote, show_progress=True
        )
    except (CandleFileError, LeakageError, ValueError) as exc:
        print(f"train: {exc}", file=sys.stderr)
        return 2
    model = result.model
    print(
        f"registered {model.name}/{model.version} ({model.metadata['metrics']['best_model']}): "
        f"tuning accuracy {result.tuning_accuracy:.4f} on {result.tuning_rows} most recent rows "
        f"(up-rate {model.metadata['metrics']['tuning_up_rate']:.4f}); "
        f"{'current' if not args.no_promote else 'not promoted'}; "
        f"AutoGluon log: {model.predictor_path / 'autogluon.log'}"
    )
    return 0


def _registry(args: argparse.Namespace) -> Any:
    from ml.registry import ModelRegistry

    return ModelRegistry(args.models_dir)


def _guard(action: Any) -> int:
    from ml.registry import RegistryError

    try:
        action()
    except RegistryError as exc:
        print(f"models: {exc}", file=sys.stderr)
        return 2
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    registry = _registry(args)

    def show() -> None:
        names = registry.names()
        if not names:
            print(f"no models in {registry.root}")
        for name in names:
            current = registry.current(name)
            for entry in registry.versions(name):
                mark = "*" if current and current.version == entry.version else " "
                metrics = entry.metadata.get("metrics", {})
                print(
                    f"{mark} {name}/{entry.version}  {entry.feature_set:<10}  "
                    f"tuning accuracy {metrics.get('tuning_accuracy', float('nan')):.4f}  "
                    f"{metrics.get('best_model', '')}"
                )

    return _guard(show)


def _cmd_show(args: argparse.Namespace) -> int:
    registry = _registry(args)

    def show() -> None:
        from ml.registry import RegistryError

        entry = (
            registry.get(args.model, args.version) if args.version else registry.current(args.model)
        )
        if entry is None:
            raise RegistryError(f"model {args.model!r} has no current version")
        print(json.dumps(entry.metadata, indent=2, sort_keys=True))

    return _guard(show)


def _cmd_promote(args: argparse.Namespace) -> int:
    registry = _registry(args)
    return _guard(lambda: print(f"current: {registry.promote(args.model, args.version).version}"))


def _cmd_rollback(args: argparse.Namespace) -> int:
    registry = _registry(args)
    return _guard(lambda: print(f"current: {registry.rollback(args.model).version}"))
