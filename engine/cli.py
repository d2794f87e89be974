"""The ``trade-engine`` command line.

Exit codes: 0 success, 1 runtime failure, 2 bad usage or invalid config.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points
from pathlib import Path

from engine import __version__
from engine.config import ConfigError, EngineConfig, Secrets
from engine.config_loading import check_runnable, load_engine_config, load_runnable_config
from engine.journal_store import JournalFileError
from engine.logs import configure_logging
from engine.registry import UnknownComponentTypeError, resolve_component_type

DEFAULT_CONFIG = "config/engine.yaml"
EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2

COMMANDS_GROUP = "trade_engine.commands"
"""Entry points that add subcommands: each is ``register(commands)`` taking the subparsers
object and setting ``handler`` (args -> exit code) on its parsers. Loaded when the parser
is built, so engine/ names no module of another package."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trade-engine", description="Event-driven ML trading engine for DEXs."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run the daemon until SIGTERM/SIGINT")
    run.add_argument("--config", default=DEFAULT_CONFIG, help=f"default: {DEFAULT_CONFIG}")
    run.set_defaults(handler=_cmd_run)

    replay = commands.add_parser(
        "replay", help="run the daemon's components on a candle file, simulated clock, then exit"
    )
    replay.add_argument("--config", default=DEFAULT_CONFIG, help=f"default: {DEFAULT_CONFIG}")
    replay.add_argument("--data", help="candle file for the config's replay component")
    replay.set_defaults(handler=_cmd_replay)

    config = commands.add_parser("config", help="check config files, write their reference")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    check = config_commands.add_parser("check", help="validate engine config files")
    check.add_argument("paths", nargs="+", metavar="PATH")
    check.set_defaults(handler=_cmd_config_check)
    docs = config_commands.add_parser("docs", help="print docs/configuration.md")
    docs.add_argument("--out", type=Path, help="write to this file instead of stdout")
    docs.add_argument(
        "--check", type=Path, metavar="PATH", help="exit 1 if PATH differs from the models"
    )
    docs.set_defaults(handler=_cmd_config_docs)

    for entry_point in entry_points(group=COMMANDS_GROUP):
        entry_point.load()(commands)
    return parser


def _cmd_run(args: argparse.Namespace) -> int:
    try:
        config = load_runnable_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    secrets = Secrets.from_env()
    configure_logging(config.log.level, config.log.format, secrets.values())
    # Imported late: building the app pulls in aiohttp and every component module.
    from engine.app import run_daemon

    return asyncio.run(run_daemon(config, secrets))


def _cmd_replay(args: argparse.Namespace) -> int:
    """The daemon's own components under a SimulatedClock, as fast as the CPU allows."""
    try:
        config = replay_config(args.config, args.data)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    secrets = Secrets.from_env()
    configure_logging(config.log.level, config.log.format, secrets.values())
    from engine.app import run_daemon

    return asyncio.run(run_daemon(config, secrets, exit_when_sources_finish=True))


def replay_config(path: str, data: str | None) -> EngineConfig:
    """The config at ``path`` validated as it is, then on a simulated clock with ``data``
    as its replay component's file, then checked as runnable."""
    config = load_engine_config(path)
    components = list(config.components)
    replays = [i for i, c in enumerate(components) if c.enabled and c.type == "replay"]
    if data is not None:
        if len(replays) != 1:
            raise ConfigError(
                path, [f"--data needs exactly one replay component, found {len(replays)}"]
            )
        entry = components[replays[0]]
        components[replays[0]] = entry.model_copy(update={"config": {**entry.config, "path": data}})
    if not replays:
        raise ConfigError(path, ["a replay needs a component of type 'replay'"])
    config = config.model_copy(update={"clock": "simulated", "components": tuple(components)})
    if live_only := [c.name for c in config.enabled_components if needs_wall_clock(c.type)]:
        raise ConfigError(
            path,
            [
                f"components {', '.join(live_only)} act on a real chain, which cannot keep "
                "up with a simulated clock running as fast as the CPU allows: use "
                "`trade-engine run` (a replay component with a `speed`), or a paper "
                "config such as config/paper.yaml"
            ],
        )
    check_runnable(config, path)
    return config


def needs_wall_clock(component_type: str) -> bool:
    """True for component types that act on the outside world in real time."""
    try:
        return resolve_component_type(component_type).needs_wall_clock
    except UnknownComponentTypeError:
        return False  # config validation has said so already


def _cmd_config_check(args: argparse.Namespace) -> int:
    status = EXIT_OK
    for path in args.paths:
        try:
            config = load_runnable_config(path)
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            status = EXIT_USAGE
            continue
        names = ", ".join(c.name for c in config.enabled_components) or "none"
        print(f"{path}: OK (components: {names})")
    return status


def _cmd_config_docs(args: argparse.Namespace) -> int:
    from engine.config_docs import render_configuration_reference

    text = render_configuration_reference()
    if args.check is not None:
        current = args.check.read_text(encoding="utf-8") if args.check.exists() else ""
        if current != text:
            print(
                f"{args.check} is stale: run `trade-engine config docs --out {args.check}`",
                file=sys.stderr,
            )
            return EXIT_FAILURE
        print(f"{args.check}: up to date")
        return EXIT_OK
    if args.out is not None:
        args.out.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except JournalFileError as exc:  # `run`, `replay`: the engine's journal cannot be used
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
