"""What docs/metrics.md says the daemon serves, for tests of what queries it."""

from __future__ import annotations

import re

from tests.paths import ROOT

METRICS_DOC = ROOT / "docs" / "metrics.md"
METRIC_NAME = re.compile(r"\btrade_engine_[a-z0-9_]+")


def documented_series() -> dict[str, tuple[str, set[str]]]:
    """docs/metrics.md's tables: series name → (type, label names)."""
    rows = re.findall(
        r"^\| `(trade_engine_[a-z0-9_]+)` \| (\w+) \|([^|]*)\|", METRICS_DOC.read_text(), re.M
    )
    return {name: (kind, set(re.findall(r"`(\w+)`", labels))) for name, kind, labels in rows}
