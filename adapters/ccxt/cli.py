"""``trade-engine fetch``: download exchange candle history into a candle file.

Exit codes follow ``engine.cli``: 0 done, 1 the exchange failed or stayed unreachable,
2 bad usage (unknown exchange, symbol or timeframe, bad date or file), 130 interrupted
(what was downloaded is kept; the same command resumes).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from adapters.ccxt.fetch import DownloadProgress

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def register(commands: Any) -> None:
    """Add the ``fetch`` subcommand to the ``trade-engine`` subparsers."""
    fetch = commands.add_parser(
        "fetch",
        help="download candle history from an exchange (ccxt) into a candle file",
        description="Download closed candles with ccxt into a .parquet/.csv/.csv.gz file. "
        "If the file exists, the download resumes after its last candle.",
    )
    fetch.add_argument("--exchange", required=True, help="ccxt exchange id, e.g. binance")
    fetch.add_argument("--symbol", required=True, help="unified symbol, e.g. BTC/USDT")
    fetch.add_argument("--timeframe", required=True, help="candle length, e.g. 1h")
    fetch.add_argument("--since", required=True, help="first candle, e.g. 2024-01-01 (UTC)")
    fetch.add_argument("--until", help="stop before this time (default: the last closed candle)")
    fetch.add_argument("--out", required=True, type=Path, help="candle file to write or extend")
    fetch.add_argument("--page-size", type=int, default=1000, help="candles per request")
    fetch.add_argument("--retries", type=int, default=5, help="retries per request")
    fetch.add_argument(
        "--api-base-url",
        help="send all requests to this base URL instead of the exchange (proxy, tests)",
    )
    fetch.add_argument("--options", help="JSON object merged into the ccxt client's options")
    fetch.add_argument("--no-progress", action="store_true", help="no progress bar")
    fetch.set_defaults(handler=_cmd_fetch)


def _cmd_fetch(args: argparse.Namespace) -> int:
    # Imported here: ccxt takes about a second to import, and every other
    # trade-engine command would pay for it.
    import ccxt

    from adapters.ccxt.client import UnknownExchangeError
    from adapters.ccxt.fetch import (
        DownloadProgress,
        FetchUsageError,
        download_history,
        parse_since,
    )

    progress = DownloadProgress()
    try:
        since_ms = parse_since(args.since)
        until_ms = parse_since(args.until) if args.until else None
        options = json.loads(args.options) if args.options else None
        if options is not None and not isinstance(options, dict):
            raise FetchUsageError("--options must be a JSON object")
        if args.page_size < 1:
            raise FetchUsageError("--page-size must be at least 1")
        asyncio.run(
            download_history(
                exchange_id=args.exchange,
                symbol=args.symbol,
                timeframe=args.timeframe,
                since_ms=since_ms,
                until_ms=until_ms,
                out=args.out,
                page_size=args.page_size,
                retries=max(0, args.retries),
                api_base_url=args.api_base_url,
                options=options,
                progress=progress,
                show_progress=not args.no_progress,
            )
        )
    except (FetchUsageError, UnknownExchangeError) as exc:
        return _fail(EXIT_USAGE, str(exc))
    except json.JSONDecodeError as exc:
        return _fail(EXIT_USAGE, f"--options is not valid JSON: {exc}")
    except KeyboardInterrupt:
        kept = f"kept {progress.total} candles in {args.out}" if progress.written else "nothing new"
        return _fail(EXIT_INTERRUPTED, f"interrupted: {kept}; run the same command to resume")
    except ccxt.NetworkError as exc:
        return _fail(
            EXIT_FAILURE,
            f"cannot reach {args.exchange} ({type(exc).__name__}: {exc}); "
            f"{_kept(progress, args.out)}",
        )
    except ccxt.BaseError as exc:
        return _fail(
            EXIT_FAILURE,
            f"{args.exchange} refused: {type(exc).__name__}: {exc}; {_kept(progress, args.out)}",
        )
    resumed = (
        f" (resumed after {progress.resumed_after:%Y-%m-%dT%H:%MZ})"
        if (progress.resumed_after is not None)
        else ""
    )
    print(f"{args.out}: {progress.added} new candles{resumed}, {progress.total} in the file")
    return EXIT_OK


def _kept(progress: DownloadProgress, out: Path) -> str:
    if progress.written:
        return f"kept {progress.total} candles in {out}; run again to resume"
    return "nothing was written"


def _fail(code: int, message: str) -> int:
    print(f"trade-engine fetch: {message}", file=sys.stderr)
    return code
