"""Figures side by side as a markdown table: the model never appears without its baselines."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from research.metrics import sharpe_name

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


IN_SAMPLE_ROW = "bars inside the model's training span"


def in_sample_cell(in_sample_bars: int, bars: int) -> str:
    """``0 of 729``, or ``120 of 729: IN-SAMPLE`` when the model trained on some of them."""
    return f"{in_sample_bars} of {bars}" + (": IN-SAMPLE" if in_sample_bars else "")


def figures_cells(
    figures: Mapping[str, Mapping[str, Any]], in_sample_bars: int | None = None
) -> tuple[list[str], list[list[str]]]:
    """Header and rows (first cell: the figure's name) for whichever strategies are present;
    with ``in_sample_bars``, a last row counting the bars the model trained on."""
    present = [(key, title) for key, title in COLUMNS if key in figures]
    header = ["figure", *(title for _, title in present)]
    rows = [[name, *(render(figures[key]) for key, _ in present)] for name, render in ROWS]
    if in_sample_bars is not None:
        model = in_sample_cell(in_sample_bars, figures["model"]["bars"])
        rows.append([IN_SAMPLE_ROW, model, *("—" for _ in present[1:])])
    return header, rows


def figures_table(
    figures: Mapping[str, Mapping[str, Any]], in_sample_bars: int | None = None
) -> str:
    """Markdown table of ``{"model": {...}, "buy_and_hold": {...}, "always_up": {...}}``."""
    header, rows = figures_cells(figures, in_sample_bars)
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


def sharpe_line(deflated: Mapping[str, Any]) -> str:
    """The DSR (or, over one trial, the PSR) against a zero Sharpe, named for what it is,
    and the PSR against buy-and-hold's Sharpe (``runs.deflated_to_dict``'s fields)."""
    n = deflated["n_trials"]
    vs_hold = f"P(true Sharpe > buy & hold's) = {_num3(deflated.get('psr_vs_buy_and_hold'))}"
    name = sharpe_name(n)
    if n <= 1:
        return (
            f"{name} (one trial on this data, nothing to deflate): "
            f"P(true Sharpe > 0) = {_num3(deflated['dsr'])}; {vs_hold}"
        )
    return (
        f"{name} on this data: P(true Sharpe > "
        f"{deflated['expected_max_sharpe']:.4f} per bar, the best of {n} unskilled trials "
        f"by luck) = {_num3(deflated['dsr'])}; {vs_hold} (not deflated)"
    )


def _num3(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
