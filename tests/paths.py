"""Where the checkout is, for tests that read its shipped files or run from it."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
