"""One self-contained HTML page per research run, plots embedded as base64 PNG.

Reads a run directory (``result.json`` + ``bars.csv``) and writes ``report.html``: the
verdict (:mod:`research.verdict`) first, the figures beside their baselines, the
deflated (or, over one trial, probabilistic) Sharpe ratio, and plots — equity vs
buy-and-hold, drawdown, rolling accuracy, calibration, fold accuracies (walk-forward),
or the bootstrap distributions (Monte Carlo). Bars inside the model's training span are
counted in the figures table, shaded on the equity and drawdown plots and flagged per
fold. Matplotlib runs headless (Agg).
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
from research.tables import IN_SAMPLE_ROW, figures_cells, in_sample_cell, sharpe_line
from research.verdict import judge_document

ROLLING_BARS = 60
CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;
text-align:right}th:first-child,td:first-child{text-align:left}.warn{background:#fff3cd;
padding:8px;border:1px solid #e0c060}img{max-width:100%}code{background:#f4f4f4}
.verdict{padding:10px;border:2px solid #999;font-size:1.1em}.skill{border-color:#2a8a2a}
.no-skill{border-color:#b03030}tr.in-sample td{background:#fde2e2}
"""
IN_SAMPLE_COLOUR = "#f4a6a6"


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


def _table(
    header: Sequence[str], rows: Sequence[Sequence[Any]], marked: Sequence[bool] = ()
) -> str:
    """An HTML table; rows flagged in ``marked`` get the in-sample class (shaded)."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    flags = list(marked) + [False] * (len(rows) - len(marked))
    body = "".join(
        ('<tr class="in-sample">' if flag else "<tr>")
        + "".join(f"<td>{html.escape(str(c))}</td>" for c in row)
        + "</tr>"
        for row, flag in zip(rows, flags, strict=True)
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _times(bars: pd.DataFrame) -> pd.Series | np.ndarray:
    if "timestamp" in bars.columns:
        return pd.to_datetime(bars["timestamp"], utc=True)
    return np.arange(len(bars))


def _shade_in_sample(ax: Any, bars: pd.DataFrame, t: pd.Series | np.ndarray) -> None:
    """Shade the bars inside the model's training span (``bars.csv``'s ``in_sample``)."""
    if "in_sample" not in bars.columns:
        return
    flags = bars["in_sample"].astype(bool).to_numpy()
    times = np.asarray(t)
    label = "in-sample (model's training span)"
    for run in np.split(np.arange(len(flags)), np.flatnonzero(np.diff(flags)) + 1):
        if len(run) and flags[run[0]]:
            span = times[run[0]], times[run[-1]]
            ax.axvspan(*span, color=IN_SAMPLE_COLOUR, alpha=0.4, label=label)
            label = None  # one legend entry


def _equity_plot(bars: pd.DataFrame) -> str:
    t = _times(bars)

    def draw(fig: Figure) -> None:
        ax = fig.add_subplot()
        ax.plot(t, bars["equity"], label="model (after fees)")
        ax.plot(t, bars["buy_and_hold_equity"], label="buy & hold (= always up)", alpha=0.8)
        _shade_in_sample(ax, bars, t)
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
        _shade_in_sample(ax, bars, t)
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
    header = ["fold", "train", "test", "in-sample", "accuracy", "95% CI", "always up", "return"]
    header.append("b&h return")
    rows = []
    for f in folds:
        m, b = f["figures"]["model"], f["figures"]["buy_and_hold"]
        up = f["figures"]["always_up"]["accuracy"]
        rows.append(
            [
                f["fold"],
                f"{f['train_first'][:10]}..{f['train_last'][:10]} ({f['train_rows']})",
                f"{f['test_first'][:10]}..{f['test_last'][:10]} ({f['test_rows']})",
                _fold_in_sample(f),
                f"{m['accuracy']:.3f}",
                f"[{m['accuracy_ci_low']:.3f}, {m['accuracy_ci_high']:.3f}]",
                f"{up:.3f}",
                f"{100 * m['compounded_return']:.1f}%",
                f"{100 * b['compounded_return']:.1f}%",
            ]
        )
    return header, rows


def _fold_in_sample(fold: Mapping[str, Any]) -> str:
    if "in_sample_bars" not in fold:  # a run from before folds were flagged
        return "n/a"
    return in_sample_cell(fold["in_sample_bars"], fold["test_rows"])


def _verdict(document: Mapping[str, Any]) -> str:
    """The verdict box: the run's own, or judged now for a run written before verdicts."""
    verdict = document.get("verdict")
    if not isinstance(verdict, Mapping):  # `policies` keeps a list of lines under that key
        judged = judge_document(document)
        if judged is None:
            return ""
        verdict = judged.to_dict()
    css = "skill" if verdict["skill"] else "no-skill"
    rules = [
        [name, "pass" if r["passed"] else "fail", r["detail"]]
        for name, r in verdict["rules"].items()
    ]
    return (
        f'<p class="verdict {css}"><b>Verdict:</b> {html.escape(verdict["sentence"])}</p>'
        + _table(["rule", f"at {verdict['level']:g}", "detail"], rules)
    )


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
    parts.append(_verdict(document))
    for key in ("warning",):
        if document.get(key):
            parts.append(f'<p class="warn">{html.escape(document[key])}</p>')
    if document.get("in_sample_bars"):
        parts.append(
            f'<p class="warn">{document["in_sample_bars"]} bars are inside the model\'s '
            "training span: those figures are in-sample (shaded on the plots).</p>"
        )
    if "figures" in document:
        parts.append("<h2>Figures beside the baselines</h2>")
        header, rows = figures_cells(document["figures"], document.get("in_sample_bars"))
        marked = [row[0] == IN_SAMPLE_ROW and bool(document["in_sample_bars"]) for row in rows]
        parts.append(_table(header, rows, marked))
    if "deflated_sharpe" in document:
        d = document["deflated_sharpe"]
        parts.append(
            "<p>"
            + html.escape(
                sharpe_line(d)[0].upper()
                + sharpe_line(d)[1:]
                + f". Variance of the trials' per-bar Sharpe: {d['sharpe_variance']:.3g}."
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
        marked = [bool(f.get("in_sample_bars")) for f in document["folds"]]
        parts.append(_table(*_fold_rows(document["folds"]), marked))
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
