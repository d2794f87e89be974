"""`trade-engine train` and `trade-engine models list|show|history|promote|rollback|retrain`.

``promote``, ``rollback`` and ``retrain`` act on a running daemon with ``--daemon URL``
(its admin API, the token from ``ENGINE_ADMIN_TOKEN``): the retrain supervisor there
swaps the model the strategy and ``POST /predict`` serve. Without it, ``promote`` and
``rollback`` change the registry's aliases offline (a daemon running on that registry
keeps its model until it restarts or reloads its strategy).
"""

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

    models = commands.add_parser(
        "models", help="list, show, promote, roll back or retrain models; their history"
    )
    sub = models.add_subparsers(dest="models_command", required=True)
    for name, handler, help_text in (
        ("list", _cmd_list, "every model and version, with its aliases"),
        ("show", _cmd_show, "a version's metadata (default: the champion)"),
        ("history", _cmd_history, "which version was champion from when to when, and why"),
        ("promote", _cmd_promote, "make a version the champion (default: the challenger)"),
        ("rollback", _cmd_rollback, "return to the previous champion"),
        ("retrain", _cmd_retrain, "start a retraining on a running daemon (--daemon)"),
    ):
        parser = sub.add_parser(name, help=help_text)
        parser.add_argument("--models-dir", default=DEFAULT_MODELS_DIR, type=Path)
        if name != "list":
            parser.add_argument("model", help="model name")
        if name in ("show", "promote"):
            parser.add_argument("version", nargs="?")
        if name in ("promote", "rollback", "retrain"):
            parser.add_argument(
                "--daemon",
                metavar="URL",
                required=name == "retrain",
                help="act on the daemon at URL (e.g. http://127.0.0.1:8080) through its "
                "admin API; token from ENGINE_ADMIN_TOKEN",
            )
        if name in ("promote", "rollback"):
            parser.add_argument("--reason", default="operator (CLI)", help="kept in the history")
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
            by_version: dict[str, list[str]] = {}
            for alias, version in registry.aliases(name).items():
                by_version.setdefault(version, []).append(alias)
            for entry in registry.versions(name):
                metrics = entry.metadata.get("metrics", {})
                aliases = ",".join(sorted(by_version.get(entry.version, [])))
                print(
                    f"{name}/{entry.version}  {aliases or '-':<20}  {entry.feature_set:<10}  "
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
            raise RegistryError(f"model {args.model!r} has no champion")
        print(json.dumps(entry.metadata, indent=2, sort_keys=True))

    return _guard(show)


def _cmd_history(args: argparse.Namespace) -> int:
    registry = _registry(args)

    def show() -> None:
        from datetime import UTC, datetime

        def when(change: Any) -> str:
            wall = datetime.fromtimestamp(change.at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            return f"{wall} (engine {change.engine_time})" if change.engine_time else wall

        periods = registry.champion_periods(args.model)
        if not periods:
            print(f"model {args.model!r} has no alias history in {registry.root}")
            return
        print("champions:")
        for period in periods:
            until = when(period.end) if period.end else "now"
            print(f"  {period.version}  from {when(period.start)} until {until}")
            print(f"      because: {period.start.reason}")
        print("changes:")
        for change in registry.history(args.model):
            aliases = " ".join(f"{k}={v}" for k, v in sorted(change.aliases.items()))
            print(f"  #{change.seq} {when(change)} {change.kind}: {change.reason}  [{aliases}]")

    return _guard(show)


def _on_daemon(url: str, model: str, action: str, body: dict[str, Any]) -> int:
    """POST the action to a running daemon's admin API; print its answer."""
    import os
    import urllib.error
    import urllib.request

    token = os.environ.get("ENGINE_ADMIN_TOKEN", "")
    if not token:
        print("models: set ENGINE_ADMIN_TOKEN to the daemon's admin token", file=sys.stderr)
        return 2
    request = urllib.request.Request(
        f"{url.rstrip('/')}/admin/models/{model}/{action}",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as resp:
            answer = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:500]
        print(f"models: the daemon answered {exc.code}: {detail}", file=sys.stderr)
        return 2
    except (urllib.error.URLError, OSError) as exc:
        print(f"models: cannot reach the daemon at {url}: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(answer, indent=2, sort_keys=True))
    return 0


def _cmd_promote(args: argparse.Namespace) -> int:
    if args.daemon:
        body = {"version": args.version} if args.version else {}
        return _on_daemon(args.daemon, args.model, "promote", body)
    registry = _registry(args)

    def promote() -> None:
        from ml.registry import RegistryError

        version = args.version or registry.aliases(args.model).get("challenger")
        if version is None:
            raise RegistryError(f"model {args.model!r} has no challenger: name a version")
        print(f"champion: {registry.promote(args.model, version, args.reason).version}")

    return _guard(promote)


def _cmd_rollback(args: argparse.Namespace) -> int:
    if args.daemon:
        return _on_daemon(args.daemon, args.model, "rollback", {})
    registry = _registry(args)
    return _guard(lambda: print(f"champion: {registry.rollback(args.model, args.reason).version}"))


def _cmd_retrain(args: argparse.Namespace) -> int:
    return _on_daemon(args.daemon, args.model, "retrain", {})
