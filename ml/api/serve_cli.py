"""`trade-engine serve`: the prediction API alone, without market data or trading.

It runs the daemon (``engine.app.run_daemon``: signals, orderly stop) with one
component, ``prediction_api``, and the HTTP server, so `/predict` answers feature rows.
Nothing computes live features here, so the market form (``{"symbol": ...}``) is off:
`/openapi.json` does not offer it and `/predict` refuses it with a 400.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

DEFAULT_MODELS_DIR = "models"


def register(commands: Any) -> None:
    serve = commands.add_parser(
        "serve", help="serve a registered model's predictions over HTTP (POST /predict)"
    )
    serve.add_argument("--models-dir", default=DEFAULT_MODELS_DIR, help="model registry root")
    serve.add_argument("--model", required=True, help="model name in the registry")
    serve.add_argument("--version", help="model version (default: the current one)")
    serve.add_argument("--feature-set", default=None, help="default: the model's own")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="TCP port; 0 picks a free one")
    serve.add_argument("--max-batch-size", type=int, default=None, help="rows per model call")
    serve.add_argument("--max-wait-ms", type=float, default=None, help="batching wait")
    serve.add_argument("--inference", choices=["inline", "thread"], default=None)
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    serve.set_defaults(handler=_cmd_serve)


def serve_config(args: argparse.Namespace, feature_set: str) -> dict[str, Any]:
    """The engine config `serve` runs: the prediction component and the HTTP API."""
    settings: dict[str, Any] = {
        "model": args.model,
        "models_dir": str(args.models_dir),
        "version": args.version,
        "feature_set": feature_set,
        "market_references": False,
    }
    for option in ("max_batch_size", "max_wait_ms", "inference"):
        if getattr(args, option) is not None:
            settings[option] = getattr(args, option)
    return {
        "name": "serve",
        "log": {"level": args.log_level, "format": "auto"},
        "api": {"host": args.host, "port": args.port},
        "components": [{"name": "predict", "type": "prediction_api", "config": settings}],
    }


def _model_feature_set(args: argparse.Namespace) -> str:
    """The feature set the model was trained on, so `--feature-set` can be left out."""
    from ml.registry import ModelRegistry, RegistryError

    registry = ModelRegistry(args.models_dir)
    try:
        entry = registry.get(args.model, args.version) if args.version else None
        entry = entry or registry.current(args.model)
    except RegistryError as exc:
        raise LookupError(f"serve: {exc}") from None
    if entry is None:
        raise LookupError(f"serve: model {args.model!r} has no current version in {registry.root}")
    return entry.feature_set


def _cmd_serve(args: argparse.Namespace) -> int:
    from engine.config import ConfigError, Secrets
    from engine.config_loading import parse_engine_config
    from engine.logs import configure_logging

    try:
        feature_set = args.feature_set or _model_feature_set(args)
    except LookupError as exc:
        print(exc, file=sys.stderr)
        return 2
    try:
        config = parse_engine_config(serve_config(args, feature_set), "trade-engine serve")
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    secrets = Secrets.from_env()
    configure_logging(config.log.level, config.log.format, secrets.values())
    from engine.app import run_daemon

    return asyncio.run(run_daemon(config, secrets))
