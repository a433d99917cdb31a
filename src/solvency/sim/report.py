"""Stress-lab report: one self-contained offline HTML page with a chart per series.

plotly.js is embedded once, inline (no CDN), as in :mod:`solvency.adapters.report`; each
chart is its own ``<div>`` drawn by ``Plotly.newPlot`` with its data inline. Several runs
(``--compare``) are drawn over each other, one colour per venue. Charts: index / mark /
trade price, liquidation volume, insurance fund, bad debt, ADL, accounts at risk, margin
rates in force and breaker states; with Monte Carlo runs, the bad-debt distribution.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import numpy as np
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from solvency.engine.breakers import STATES
from solvency.sim.metrics import StepSeries

__all__ = ["CHARTS", "write_report"]

_COLOURS: Final = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
                   "#17becf", "#7f7f7f")
CHARTS: Final[tuple[str, ...]] = (
    "prices", "liquidations", "insurance_fund", "bad_debt", "adl", "accounts_at_risk",
    "margin_rates", "breakers")
"""Chart ids, in page order (``bad_debt_distribution`` is added for Monte Carlo)."""

_TITLES: Final = {
    "prices": "Index, mark and trade price (relative to start)",
    "liquidations": "Liquidated notional per step",
    "insurance_fund": "Insurance fund balance (cash; dotted: with positions taken over)",
    "bad_debt": "Bad debt (cumulative)",
    "adl": "ADL notional per step",
    "accounts_at_risk": "Accounts at or above the margin-call ratio",
    "margin_rates": "Margin in force per unit notional (MM solid, IM dotted)",
    "breakers": "Breaker state (0 normal ... 4 halted)",
    "bad_debt_distribution": "Bad debt over Monte Carlo paths",
}


def _dates(ts: np.ndarray) -> list[str]:
    return [datetime.fromtimestamp(int(t) / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            for t in ts]


def _line(x: list[str], y: np.ndarray, name: str, colour: str, *, dash: str = "solid",
          shape: str = "linear") -> go.Scatter:
    return go.Scatter(x=x, y=np.asarray(y, dtype=np.float64).tolist(), name=name,
                      mode="lines", line={"color": colour, "width": 1.4, "dash": dash,
                                          "shape": shape})


def _traces(chart: str, label: str, s: StepSeries, colour: str) -> list[go.BaseTraceType]:
    x = _dates(s.ts_ms)
    dashes = ("solid", "dot", "dash", "dashdot")
    out: list[go.BaseTraceType] = []
    if chart == "prices":
        for j, m in enumerate(s.index):
            base = s.index[m][0] if s.index[m].shape[0] and s.index[m][0] > 0 else 1.0
            d = dashes[j % len(dashes)]
            out.append(_line(x, s.index[m] / base, f"{label} {m} index", "#999", dash=d))
            out.append(_line(x, s.mark[m] / base, f"{label} {m} mark", colour, dash=d))
            out.append(_line(x, s.trade[m] / base, f"{label} {m} trade", _COLOURS[1]
                             if colour == _COLOURS[0] else colour, dash=d))
    elif chart == "liquidations":
        out.append(go.Bar(x=x, y=s.liq_notional.tolist(), name=f"{label} liquidated",
                          marker={"color": colour, "line": {"width": 0}}))
    elif chart == "insurance_fund":
        out.append(_line(x, s.insurance_fund, f"{label} fund", colour))
        out.append(_line(x, s.insurance_fund_equity, f"{label} fund equity", colour,
                         dash="dot"))
    elif chart == "bad_debt":
        out.append(_line(x, s.bad_debt, f"{label} bad debt", colour))
    elif chart == "adl":
        out.append(go.Bar(x=x, y=s.adl_notional.tolist(), name=f"{label} ADL notional",
                          marker={"color": colour, "line": {"width": 0}}))
        out.append(_line(x, s.adl_haircut, f"{label} ADL haircut", colour, dash="dot"))
    elif chart == "accounts_at_risk":
        out.append(_line(x, s.at_risk.astype(np.float64), f"{label} at risk", colour))
    elif chart == "margin_rates":
        for j, m in enumerate(s.mm_rate):
            d = dashes[(2 * j) % len(dashes)]
            out.append(_line(x, s.mm_rate[m], f"{label} {m} MM", colour, dash=d))
            out.append(_line(x, s.im_rate[m], f"{label} {m} IM", colour, dash="dot"))
    elif chart == "breakers":
        for j, m in enumerate(s.breaker):
            out.append(_line(x, s.breaker[m].astype(np.float64), f"{label} {m}", colour,
                             dash=dashes[j % len(dashes)], shape="hv"))
    return out


def _figure(chart: str, runs: Mapping[str, StepSeries]) -> go.Figure:
    fig = go.Figure()
    for k, (label, s) in enumerate(runs.items()):
        for tr in _traces(chart, label, s, _COLOURS[k % len(_COLOURS)]):
            fig.add_trace(tr)
    layout: dict[str, Any] = {"title": _TITLES[chart], "height": 380,
                              "template": "plotly_white", "legend": {"orientation": "h"},
                              "margin": {"l": 60, "r": 20, "t": 50, "b": 40}}
    if chart == "breakers":
        layout["yaxis"] = {"tickvals": list(range(len(STATES))), "ticktext": list(STATES),
                           "range": [-0.2, len(STATES) - 0.8]}
    if chart == "margin_rates":
        layout["yaxis"] = {"tickformat": ".2%"}
    if chart in ("liquidations", "adl"):
        layout["barmode"] = "group"
    fig.update_layout(**layout)
    return fig


def _histogram(bad_debt: Mapping[str, Sequence[float]]) -> go.Figure:
    fig = go.Figure()
    for k, (label, xs) in enumerate(bad_debt.items()):
        fig.add_trace(go.Histogram(x=[float(v) for v in xs], name=label, opacity=0.7,
                                   marker={"color": _COLOURS[k % len(_COLOURS)]}))
    fig.update_layout(title=_TITLES["bad_debt_distribution"], height=380, barmode="overlay",
                      template="plotly_white", margin={"l": 60, "r": 20, "t": 50, "b": 40})
    return fig


def html_cell(v: Any) -> str:
    """A metric value as escaped HTML text for a table cell (thousands separators)."""
    if isinstance(v, bool) or v is None:
        return html.escape(str(v))
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.6g}" if abs(v) < 1 else f"{v:,.2f}"
    return html.escape(str(v))


def _table(metrics: Mapping[str, Mapping[str, Any]]) -> str:
    keys: list[str] = []
    for m in metrics.values():
        keys.extend(k for k, v in m.items() if k not in keys and not isinstance(v, dict | list))
    head = "<tr><th>metric</th>" + "".join(f"<th>{html.escape(n)}</th>" for n in metrics)
    rows = [f"<tr><td>{html.escape(k)}</td>" + "".join(
        f"<td>{html_cell(m.get(k))}</td>" for m in metrics.values()) + "</tr>" for k in keys]
    return f"<table>{head}</tr>{''.join(rows)}</table>"


def write_report(path: str | Path, *, title: str, runs: Mapping[str, StepSeries],
                 metrics: Mapping[str, Mapping[str, Any]], description: str = "",
                 bad_debt_paths: Mapping[str, Sequence[float]] | None = None) -> Path:
    """Write the report and return its path.

    Parameters
    ----------
    path : str or Path
        Output file (parent folders are created).
    title, description : str
        Page heading and a line under it.
    runs : Mapping[str, StepSeries]
        Label (venue) -> series drawn; several are overlaid.
    metrics : Mapping[str, Mapping[str, Any]]
        Label -> summary metrics for the table (scalars are shown).
    bad_debt_paths : Mapping[str, Sequence[float]] or None
        Label -> bad debt of each Monte Carlo path (adds a histogram).

    Raises
    ------
    ValueError
        If ``runs`` is empty.
    """
    if not runs:
        raise ValueError("report: no runs")
    figs = [(c, _figure(c, runs)) for c in CHARTS]
    if bad_debt_paths:
        figs.append(("bad_debt_distribution", _histogram(bad_debt_paths)))
    divs = []
    for chart, fig in figs:
        body = fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"chart-{chart}",
                           config={"displaylogo": False})
        divs.append(f"<section class='chart' data-chart='{chart}'>{body}</section>")
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;"
             "margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
             "td:first-child{text-align:left}")
    charts_json = html.escape(json.dumps([c for c, _ in figs]))
    doc = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
           f"</title><style>{style}</style><script type='text/javascript'>{get_plotlyjs()}"
           f"</script></head><body data-charts='{charts_json}'><h1>{html.escape(title)}</h1>"
           f"<p>{html.escape(description)}</p>{_table(metrics)}{''.join(divs)}"
           "</body></html>")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(doc, encoding="utf-8")
    return out
