"""The trials ledger: every backtest and walk-forward run, counted for the deflated Sharpe.

Each run appends one JSON line to ``<research dir>/trials.jsonl``. The deflated Sharpe
ratio of a run uses every trial recorded on the same data (same file hash): their
number N and the variance of their per-bar Sharpe ratios. Trying many variants and
keeping the best is exactly what the deflation charges for, so nothing is ever removed.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from research.metrics import DeflatedSharpe, deflated_sharpe_ratio

LEDGER_FILE = "trials.jsonl"


@dataclass(frozen=True)
class Trial:
    kind: str  # "backtest" | "walkforward"
    data_sha256: str
    sharpe_per_bar: float
    n_obs: int
    skew: float
    kurtosis: float
    run_dir: str
    description: dict[str, Any]


class TrialsLedger:
    """Append-only JSONL of trials under a research directory."""

    def __init__(self, research_dir: str | Path) -> None:
        self.path = Path(research_dir) / LEDGER_FILE

    def append(self, trial: Trial) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        record = {"at": time.time(), **trial.__dict__}
        line = json.dumps(record, sort_keys=True, default=str) + "\n"
        # One write of one line in append mode: concurrent runs do not interleave lines.
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode("utf-8"))
        finally:
            os.close(fd)

    def records(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        lines = self.path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def sharpes(self, data_sha256: str) -> list[float]:
        """Per-bar Sharpe ratios of every trial recorded on this data."""
        return [
            float(r["sharpe_per_bar"]) for r in self.records() if r["data_sha256"] == data_sha256
        ]

    def record_and_deflate(self, trial: Trial) -> DeflatedSharpe:
        """Append ``trial``, then its deflated Sharpe over all trials on the same data."""
        self.append(trial)
        return deflated_sharpe_ratio(
            trial.sharpe_per_bar,
            trial.n_obs,
            trial.skew,
            trial.kurtosis,
            self.sharpes(trial.data_sha256),
        )
