"""structlog set-up: JSON lines for machines, a console renderer on a TTY.

Everything, including stdlib loggers of aiohttp and other libraries, goes through the
same processors to stdout. The last processor before rendering redacts secrets
(:mod:`engine.redaction`) wherever they appear, exception text included.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import Any

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from engine.redaction import Redactor

# Fields our code fills with transaction hashes: kept readable, though key-shaped.
HASH_FIELDS = frozenset({"tx", "tx_hash"})


class SecretRedactor:
    """structlog processor: every string of a log event goes through one :class:`Redactor`."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self.redactor = Redactor(secrets)

    def __call__(self, logger: WrappedLogger, name: str, event_dict: EventDict) -> EventDict:
        return {
            key: self.redactor.scrub_value(value, _hashes(value) if key in HASH_FIELDS else ())
            for key, value in event_dict.items()
        }


def _hashes(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple):
        return [v for v in value if isinstance(v, str)]
    return []


def configure_logging(
    level: str = "info", fmt: str = "auto", secrets: Iterable[str] | None = ()
) -> None:
    """Route structlog and stdlib logging to stdout as JSON (or console on a TTY).

    ``secrets=None`` turns redaction off, for tests that check what code itself logs.
    """
    as_json = fmt == "json" or (fmt == "auto" and not sys.stdout.isatty())
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback)
    )
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            *([] if secrets is None else [SecretRedactor(secrets)]),
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's access log is one line per request: too chatty for a scrape every 15 s.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
