"""One self-contained HTML page per research run, plots embedded as base64 PNG.

Reads a run directory (``result.json`` + ``bars.csv``) and writes ``report.html``: the
figures beside their baselines, the deflated Sharpe ratio, and plots — equity vs
buy-and-hold, drawdown, rolling accuracy, calibration, fold accuracies (walk-forward),
or the bootstrap distributions (Monte Carlo). Matplotlib runs headless (Agg).
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from research.metrics import drawdown_series
from research.runs import read_run
from research.tables import figures_cells

ROLLING_BARS = 60
CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;
text-align:right}th:first-child,td:first-child{text-align:left}.warn{background:#fff3cd;
padding:8px;border:1px solid #e0c060}img{max-width:100%}code{background:#f4f4f4}
"""


def _png(draw: Callable[[Figure], None], size: tuple[float, float] = (10, 3.6)) -> str:
    fig = plt.figure(figsize=size, dpi=90)
    try:
        draw(fig)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
    finally:
        plt.close(fig)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="plot" src="data:image/png;base64,{data}">'


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _times(bars: pd.DataFrame) -> pd.Series | np.ndarray:
    if "timestamp" in bars.columns:
        return pd.to_datetime(bars["timestamp"], utc=True)
    return np.arange(len(bars))


def _equity_plot(bars: pd.DataFrame) -> str:
    t = _times(bars)

    def draw(fig: Figure) -> None:
        ax = fig.add_subplot()
        ax.plot(t, bars["equity"], label="model (after fees)")
        ax.plot(t, bars["buy_and_hold_equity"], label="buy & hold (= always up)", alpha=0.8)
        ax.set_yscale("log")
        ax.set_title("Equity, starting at 1 (log scale)")
        ax.legend()

    return _png(draw)


def _drawdown_plot(bars: pd.DataFrame) -> str:
    t = _times(bars)

    def draw(fig: Figure) -> None:
        ax = fig.add_subplot()
        ax.fill_between(t, -drawdown_series(bars["equity"].to_numpy()), label="model", alpha=0.5)
        bh = -drawdown_series(bars["buy_and_hold_equity"].to_numpy())
        ax.plot(t, bh, label="buy & hold", color="C1", lw=0.8)
        ax.set_title("Drawdown from the running peak")
        ax.legend()

    return _png(draw)


def _rolling_accuracy_plot(bars: pd.DataFrame) -> str:
    t = _times(bars)
    window = min(ROLLING_BARS, max(2, len(bars) // 3))

    def draw(fig: Figure) -> None:
        ax = fig.add_subplot()
        ax.plot(t, bars["correct"].astype(float).rolling(window).mean(), label="model")
        up_rate = bars["label"].astype(float).rolling(window).mean()
        ax.plot(t, up_rate, label="always up", alpha=0.7)
        ax.axhline(0.5, color="grey", ls="--", lw=0.8)
        ax.set_title(f"Direction accuracy over the last {window} bars")
        ax.legend()

    return _png(draw)


def _calibration_plot(bars: pd.DataFrame) -> str:
    edges = np.linspace(0, 1, 11)
    bins = np.clip(np.digitize(bars["p_up"], edges) - 1, 0, 9)
    grouped = bars.assign(bin=bins).groupby("bin")
    mean_p = grouped["p_up"].mean()
    rate = grouped["label"].mean()
    counts = grouped["label"].size()

    def draw(fig: Figure) -> None:
        ax = fig.add_subplot()
        ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=0.8, label="perfect calibration")
        ax.scatter(mean_p, rate, s=10 + 200 * counts / counts.max(), label="bins (size: bars)")
        ax.axhline(bars["label"].mean(), color="C1", lw=0.8, label="base up-rate")
        ax.set_xlabel("predicted P(up)")
        ax.set_ylabel("observed up-rate")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_title("Calibration")
        ax.legend()

    return _png(draw, (6, 5))


def _fold_plot(folds: list[Mapping[str, Any]]) -> str:
    acc = np.array([f["figures"]["model"]["accuracy"] for f in folds], dtype=float)
    low = np.array([f["figures"]["model"]["accuracy_ci_low"] for f in folds], dtype=float)
    high = np.array([f["figures"]["model"]["accuracy_ci_high"] for f in folds], dtype=float)
    up = np.array([f["figures"]["always_up"]["accuracy"] for f in folds], dtype=float)
    x = np.array([f["fold"] for f in folds])

    def draw(fig: Figure) -> None:
        ax = fig.add_subplot()
        ax.errorbar(x, acc, yerr=[acc - low, high - acc], fmt="o", ms=3, label="model, 95% CI")
        ax.plot(x, up, "x", color="C1", label="always up")
        ax.axhline(0.5, color="grey", ls="--", lw=0.8)
        ax.set_xlabel("fold")
        ax.set_title("Out-of-sample direction accuracy per fold")
        ax.legend()

    return _png(draw)


def _histograms(mc: Mapping[str, Any]) -> str:
    dist = mc["distributions"]
    names = [("accuracy", "direction accuracy"), ("sharpe", "Sharpe (annualised)")]
    names.append(("max_drawdown", "max drawdown"))

    def draw(fig: Figure) -> None:
        for i, (key, title) in enumerate(names):
            ax = fig.add_subplot(1, 3, i + 1)
            for who, colour in (("model", "C0"), ("buy_and_hold", "C1")):
                values = dist.get(who, {}).get(key)
                if values:
                    ax.hist(values, bins=40, alpha=0.55, color=colour, label=who)
            ax.set_title(title)
            ax.legend(fontsize=7)

    return _png(draw, (12, 3.6))


def _percentile_rows(mc: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    rows = []
    header: list[str] = ["strategy", "figure"]
    for who, by_figure in mc["percentiles"].items():
        for figure_name, percentiles in by_figure.items():
            if len(header) == 2:
                header += list(percentiles)
            rows.append([who, figure_name, *(f"{v:.4f}" for v in percentiles.values())])
    return header, rows


def _fold_rows(folds: list[Mapping[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    header = ["fold", "train", "test", "accuracy", "95% CI", "always up", "return", "b&h return"]
    rows = []
    for f in folds:
        m, b = f["figures"]["model"], f["figures"]["buy_and_hold"]
        up = f["figures"]["always_up"]["accuracy"]
        rows.append(
            [
                f["fold"],
                f"{f['train_first'][:10]}..{f['train_last'][:10]} ({f['train_rows']})",
                f"{f['test_first'][:10]}..{f['test_last'][:10]} ({f['test_rows']})",
                f"{m['accuracy']:.3f}",
                f"[{m['accuracy_ci_low']:.3f}, {m['accuracy_ci_high']:.3f}]",
                f"{up:.3f}",
                f"{100 * m['compounded_return']:.1f}%",
                f"{100 * b['compounded_return']:.1f}%",
            ]
        )
    return header, rows


def render_html(document: Mapping[str, Any], bars: pd.DataFrame | None) -> str:
    """The report page for a run's result document and per-bar table."""
    kind = document.get("kind", "run")
    parts = [f"<h1>trade-engine {html.escape(kind)}</h1>"]
    data = document.get("data", {})
    parts.append(
        "<p>"
        + html.escape(
            f"{document.get('created', '')} · data {data.get('path', '?')} "
            f"({data.get('timeframe', '?')}, {data.get('first_bar', '')[:10]} to "
            f"{data.get('last_bar', '')[:10]}, sha256 {str(data.get('sha256', ''))[:12]}…)"
        )
        + f"</p><p><code>{html.escape(document.get('command', ''))}</code></p>"
    )
    for key in ("warning",):
        if document.get(key):
            parts.append(f'<p class="warn">{html.escape(document[key])}</p>')
    if document.get("in_sample_bars"):
        parts.append(
            f'<p class="warn">{document["in_sample_bars"]} bars are inside the model\'s '
            "training span: those figures are in-sample.</p>"
        )
    if "figures" in document:
        parts.append("<h2>Figures beside the baselines</h2>")
        parts.append(_table(*figures_cells(document["figures"])))
    if "deflated_sharpe" in document:
        d = document["deflated_sharpe"]
        parts.append(
            "<p>"
            + html.escape(
                f"Deflated Sharpe ratio {d['dsr']:.3f}: the probability that the true Sharpe "
                f"beats the best of {d['n_trials']} unskilled trial(s) on this data "
                f"(expected max per-bar Sharpe {d['expected_max_sharpe']:.4f}, variance of "
                f"the trials' Sharpe {d['sharpe_variance']:.3g}). Probability that the true "
                f"Sharpe beats buy-and-hold's: {d.get('psr_vs_buy_and_hold', float('nan')):.3f}."
            )
            + "</p>"
        )
    if "wall_seconds" in document:
        parts.append(f"<p>Wall time {document['wall_seconds']:.0f} s.</p>")
    if bars is not None and len(bars):
        parts.append("<h2>Equity and drawdown</h2>")
        parts += [_equity_plot(bars), _drawdown_plot(bars)]
        parts.append("<h2>Accuracy and calibration</h2>")
        parts += [_rolling_accuracy_plot(bars), _calibration_plot(bars)]
    if document.get("folds"):
        parts.append("<h2>Folds</h2>")
        parts.append(_fold_plot(document["folds"]))
        parts.append(_table(*_fold_rows(document["folds"])))
    if "montecarlo" in document:
        mc = document["montecarlo"]
        parts.append(f"<h2>Monte Carlo: {html.escape(document.get('method', ''))}</h2>")
        parts.append(f"<p>{html.escape(mc.get('description', ''))}</p>")
        share = mc.get("share_sharpe_above_buy_and_hold")
        if share is not None:
            parts.append(
                f"<p>Samples where the model's Sharpe beats buy &amp; hold's: {share:.1%}</p>"
            )
        parts.append(_histograms(mc))
        parts.append(_table(*_percentile_rows(mc)))
    title = f"trade-engine {kind}"
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{CSS}</style></head><body>{''.join(parts)}</body></html>\n"
    )


def render_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write ``report.html`` for a run directory; returns its path."""
    run_dir = Path(run_dir)
    document, bars = read_run(run_dir)
    target = Path(out) if out else run_dir / "report.html"
    target.write_text(render_html(document, bars), encoding="utf-8")
    return target
