"""Figures side by side as a markdown table: the model never appears without its baselines."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

COLUMNS = (("model", "model"), ("buy_and_hold", "buy & hold"), ("always_up", "always up"))


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _accuracy(f: Mapping[str, Any]) -> str:
    if f.get("accuracy") is None:
        return "n/a"
    return f"{_pct(f['accuracy'])} [{_pct(f['accuracy_ci_low'])}, {_pct(f['accuracy_ci_high'])}]"


def _sharpe(f: Mapping[str, Any]) -> str:
    return f"{_num(f['sharpe'])} [{_num(f['sharpe_ci_low'])}, {_num(f['sharpe_ci_high'])}]"


ROWS: tuple[tuple[str, Callable[[Mapping[str, Any]], str]], ...] = (
    ("direction accuracy [95% CI]", _accuracy),
    ("compounded return", lambda f: _pct(f["compounded_return"])),
    ("sum of bar returns", lambda f: _pct(f["total_return"])),
    ("CAGR", lambda f: _pct(f["cagr"])),
    ("Sharpe, annualised [95% CI]", _sharpe),
    ("Sortino, annualised", lambda f: _num(f["sortino"])),
    ("max drawdown", lambda f: _pct(f["max_drawdown"])),
    ("exposure", lambda f: _pct(f["exposure"])),
    ("swaps", lambda f: str(f["trades"])),
    ("bars", lambda f: str(f["bars"])),
)


def figures_cells(figures: Mapping[str, Mapping[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Header and rows (first cell: the figure's name) for whichever strategies are present."""
    present = [(key, title) for key, title in COLUMNS if key in figures]
    header = ["figure", *(title for _, title in present)]
    rows = [[name, *(render(figures[key]) for key, _ in present)] for name, render in ROWS]
    return header, rows


def figures_table(figures: Mapping[str, Mapping[str, Any]]) -> str:
    """Markdown table of ``{"model": {...}, "buy_and_hold": {...}, "always_up": {...}}``."""
    header, rows = figures_cells(figures)
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---|" * (len(header) - 1)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def percentiles_table(montecarlo: Mapping[str, Any]) -> str:
    """Markdown table of a Monte Carlo result's percentiles, model beside buy-and-hold."""
    rows = []
    header: list[str] = []
    for who, by_figure in montecarlo["percentiles"].items():
        for name, percentiles in by_figure.items():
            header = header or list(percentiles)
            rows.append(
                f"| {who} | {name} | " + " | ".join(f"{v:.3f}" for v in percentiles.values())
            )
    lines = ["| strategy | figure | " + " | ".join(header) + " |"]
    lines.append("|---|---|" + "---|" * len(header))
    return "\n".join(lines + [row + " |" for row in rows])


POLICY_ROWS: tuple[tuple[str, Callable[[Mapping[str, Any]], str]], ...] = (
    ("final equity (start 1)", lambda f: f"{f['final_equity']:.3g}"),
    ("net return, compounded", lambda f: _pct(f["net_return"])),
    ("direction accuracy [95% CI]", _accuracy),
    ("Sharpe, annualised", lambda f: _num(f["sharpe"])),
    ("max drawdown", lambda f: _pct(f["max_drawdown"])),
    ("exposure", lambda f: _pct(f["exposure"])),
    ("position changes", lambda f: str(f["position_changes"])),
    ("retrains (models offered)", lambda f: str(f.get("retrains", "—"))),
    ("models that served", lambda f: str(f.get("models_in_service", "—"))),
    ("promotions", lambda f: str(f.get("promotions", "—"))),
    ("rejected by the gate", lambda f: str(f.get("rejections", "—"))),
    ("rollbacks", lambda f: str(f.get("rollbacks", "—"))),
    ("challengers replaced in shadow", lambda f: str(f.get("challengers_replaced", "—"))),
    ("bars in canary", lambda f: str(f.get("bars_in_canary", "—"))),
    ("bars", lambda f: str(f["bars"])),
)


def policies_table(figures: Mapping[str, Mapping[str, Any]]) -> str:
    """Markdown table of replayed policies, buy-and-hold last (its accuracy: always up)."""
    titles = {"buy_and_hold": "buy & hold (accuracy: always up)"}
    names = list(figures)
    lines = ["| figure | " + " | ".join(titles.get(n, f"`{n}`") for n in names) + " |"]
    lines.append("|---|" + "---|" * len(names))
    for label, render in POLICY_ROWS:
        lines.append(f"| {label} | " + " | ".join(render(figures[n]) for n in names) + " |")
    return "\n".join(lines)
