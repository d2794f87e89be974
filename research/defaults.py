"""The seed's walk-forward shape, in a module light enough for the CLI parser to import."""

from __future__ import annotations

# 252 daily bars (a trading year) of training, re-fit every 30 bars, 60 s a fit.
SEED_WINDOW, SEED_STEP, SEED_TIME_LIMIT = 252, 30, 60.0
