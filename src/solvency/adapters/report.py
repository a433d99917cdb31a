"""Margin backtest reports: a self-contained offline HTML page (plotly) and a small SVG.

The HTML embeds plotly.js inline (``include_plotlyjs=True``): it opens without network
access. The SVG is a dependency-free line chart for documentation.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from solvency.core.dynamic_margin import MarginBacktest

__all__ = ["BacktestReport", "iso_utc", "write_html_report", "write_svg_figure"]

_COLOURS: Final = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


def iso_utc(ts_ms: int) -> str:
    """Format epoch milliseconds as ``YYYY-MM-DDTHH:MMZ``."""
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%MZ")


@dataclass(frozen=True, slots=True)
class BacktestReport:
    """What a report shows: the source, the settings and one run per model."""

    title: str
    source: str
    confidence: float
    horizon: str
    interval: str
    side: str
    ts_ms: npt.NDArray[np.int64]  # decision time per return (bar open of the return)
    close: npt.NDArray[np.float64]  # price at ts_ms
    runs: Sequence[MarginBacktest]


def _ms(ts: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    # epoch ms as float64 (exact below 2**53) on a date axis: plotly.js reads numbers there
    # as ms, and plotly.py writes a numpy array whole (a typed array from plotly 6 on)
    # instead of one ISO string per point
    return np.ascontiguousarray(ts, dtype=np.float64)


def _figure(rep: BacktestReport) -> go.Figure:
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.35, 0.65],
                        vertical_spacing=0.04,
                        subplot_titles=("close", f"{rep.side} loss vs margin rate"))
    fig.add_trace(go.Scatter(x=_ms(rep.ts_ms), y=np.asarray(rep.close, dtype=np.float64),
                             name="close", line={"color": "#555", "width": 1}), row=1, col=1)
    first = rep.runs[0]
    fig.add_trace(go.Scatter(x=_ms(rep.ts_ms[first.index]), y=first.losses,
                             name="loss (relative)", mode="lines",
                             line={"color": "#bbb", "width": 1}), row=2, col=1)
    for k, run in enumerate(rep.runs):
        colour = _COLOURS[k % len(_COLOURS)]
        x = _ms(rep.ts_ms[run.index])
        fig.add_trace(go.Scatter(x=x, y=run.rates, name=f"margin {run.model}",
                                 line={"color": colour, "width": 1.5}), row=2, col=1)
        hit = np.flatnonzero(run.exceptions)
        fig.add_trace(go.Scatter(
            x=x[hit], y=run.losses[hit], mode="markers",
            name=f"exceptions {run.model} ({hit.size})",
            marker={"color": colour, "symbol": "x", "size": 8}), row=2, col=1)
    fig.update_xaxes(type="date", hoverformat="%Y-%m-%d %H:%M UTC")
    fig.update_yaxes(type="log", row=1, col=1)
    fig.update_yaxes(tickformat=".0%", row=2, col=1)
    fig.update_layout(height=760, title=rep.title, legend={"orientation": "h"},
                      template="plotly_white", margin={"l": 60, "r": 20, "t": 80, "b": 40})
    return fig


def _summary_html(rep: BacktestReport) -> str:
    head = ("<tr><th>model</th><th>obs</th><th>exceptions</th><th>expected</th>"
            "<th>Kupiec LR (p)</th><th>Christoffersen LR (p)</th><th>LR cc (p)</th>"
            "<th>zone</th><th>ES Z1 (p)</th><th>ES Z2 (p)</th><th>mean rate</th>"
            "<th>max 1-step increase</th></tr>")
    rows = []
    for run in rep.runs:
        r = run.result
        inc = float(np.max(np.diff(run.rates), initial=0.0))
        rows.append(
            f"<tr><td>{html.escape(run.model)}</td><td>{r.observations}</td>"
            f"<td>{r.exceptions}</td><td>{r.expected_exceptions:.1f}</td>"
            f"<td>{r.kupiec_lr:.2f} ({r.kupiec_p:.3f})</td>"
            f"<td>{r.christoffersen_lr:.2f} ({r.christoffersen_p:.3f})</td>"
            f"<td>{r.conditional_coverage_lr:.2f} ({r.conditional_coverage_p:.3f})</td>"
            f"<td class='{r.zone}'>{r.zone}</td>"
            + "".join(f"<td>{c}</td>" for c in _es_cells(run))
            + f"<td>{float(np.mean(run.rates)):.2%}</td>"
            f"<td>{inc:.2%}</td></tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def _es_cells(run: MarginBacktest) -> tuple[str, str]:
    # Acerbi-Szekely Z1 and Z2 with their simulated p-values (solvency backtest)
    es = run.es
    if es is None:
        return "none", "none"
    z1 = "none" if es.z1 is None else f"{es.z1:.3f} ({es.z1_p:.3f})"
    return z1, f"{es.z2:.3f} ({es.z2_p:.3f})"


def _exceptions_html(rep: BacktestReport) -> str:
    parts = []
    for run in rep.runs:
        hit = np.flatnonzero(run.exceptions)
        rows = "".join(
            f"<tr><td>{iso_utc(int(rep.ts_ms[run.index[i]]))}</td>"
            f"<td>{run.losses[i]:.2%}</td><td>{run.rates[i]:.2%}</td></tr>" for i in hit)
        parts.append(f"<h3>{html.escape(run.model)}: {hit.size} exceptions</h3><table>"
                     f"<tr><th>from</th><th>loss</th><th>margin</th></tr>{rows}</table>")
    return "".join(parts)


def write_html_report(rep: BacktestReport, path: str | Path) -> Path:
    """Write the backtest report as one self-contained HTML file and return its path.

    plotly.js is embedded (no CDN), so the file works offline.
    """
    if not rep.runs:
        raise ValueError("report: no model runs")
    fig_html = _figure(rep).to_html(full_html=False, include_plotlyjs=True)
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;"
             "margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
             ".green{background:#cfc}.yellow{background:#ffc}.red{background:#fcc}")
    meta = (f"<p>source: {html.escape(rep.source)}; confidence {rep.confidence:g}; horizon "
            f"{html.escape(rep.horizon)}; interval {html.escape(rep.interval)}; side "
            f"{html.escape(rep.side)}</p>")
    doc = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>"
           f"{html.escape(rep.title)}</title><style>{style}</style></head><body>"
           f"<h1>{html.escape(rep.title)}</h1>{meta}{_summary_html(rep)}{fig_html}"
           f"<h2>Exceptions</h2>{_exceptions_html(rep)}</body></html>")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(doc, encoding="utf-8")
    return out


def write_svg_figure(
    rep: BacktestReport, path: str | Path, *, width: int = 900, height: int = 360
) -> Path:
    """Write a small static SVG: loss (grey), each model's margin rate and its exceptions."""
    if not rep.runs:
        raise ValueError("report: no model runs")
    pad_l, pad_r, pad_t, pad_b = 50, 10, 30, 30
    first = rep.runs[0]
    x_all = rep.ts_ms[first.index].astype(np.float64)
    x0, x1 = float(x_all[0]), float(x_all[-1])
    top = max(float(np.max(run.rates)) for run in rep.runs)
    top = max(top, float(np.max(first.losses)))
    top = top * 1.05 if top > 0 else 1.0

    def sx(v: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return pad_l + (v - x0) / max(x1 - x0, 1.0) * (width - pad_l - pad_r)

    def sy(v: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return height - pad_b - np.clip(v, 0.0, top) / top * (height - pad_t - pad_b)

    def path_d(x: npt.NDArray[np.float64], y: npt.NDArray[np.float64]) -> str:
        pts = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(sx(x), sy(y), strict=True))
        return f"M{pts}"

    items = [f"<path d='{path_d(x_all, first.losses)}' fill='none' stroke='#bbb' "
             "stroke-width='0.6'/>"]
    legend = []
    for k, run in enumerate(rep.runs):
        c = _COLOURS[k % len(_COLOURS)]
        x = rep.ts_ms[run.index].astype(np.float64)
        items.append(f"<path d='{path_d(x, run.rates)}' fill='none' stroke='{c}' "
                     "stroke-width='1'/>")
        hit = np.flatnonzero(run.exceptions)
        items.extend(f"<circle cx='{a:.1f}' cy='{b:.1f}' r='2.2' fill='{c}'/>"
                     for a, b in zip(sx(x[hit]), sy(run.losses[hit]), strict=True))
        legend.append(f"<text x='{pad_l + 10 + 150 * k}' y='18' fill='{c}' font-size='12'>"
                      f"{html.escape(run.model)} ({int(hit.size)} exc.)</text>")
    ticks = []
    for f in np.linspace(0.0, top, 5):
        y = float(sy(np.asarray(f)))
        ticks.append(f"<text x='{pad_l - 6}' y='{y + 4:.1f}' font-size='10' "
                     f"text-anchor='end'>{f:.0%}</text><line x1='{pad_l}' x2='{width - pad_r}'"
                     f" y1='{y:.1f}' y2='{y:.1f}' stroke='#eee'/>")
    for ts in np.linspace(x0, x1, 6):
        xt = float(sx(np.asarray(ts)))
        ticks.append(f"<text x='{xt:.1f}' y='{height - 10}' font-size='10' "
                     f"text-anchor='middle'>{iso_utc(int(ts))[:10]}</text>")
    svg = (f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
           f"viewBox='0 0 {width} {height}' font-family='sans-serif'>"
           f"<rect width='100%' height='100%' fill='white'/>{''.join(ticks)}"
           f"{''.join(items)}{''.join(legend)}</svg>\n")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(svg, encoding="utf-8")
    return out
