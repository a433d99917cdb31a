"""Sweep outputs: tidy tables (CSV, Parquet) and the frontier plot (offline HTML).

* ``sweep.csv`` -- one row per (grid point, path) (:attr:`SweepResult.rows`);
  ``sweep_points.csv`` -- one row per grid point (:attr:`SweepResult.points`). Columns are
  the union of the rows' keys in order of first appearance; an empty cell is a missing
  value, booleans are ``true``/``false``, floats are written with ``repr`` (they read back
  exactly), arrays and tables as JSON. The same tables as Parquet (pyarrow) on request.
* ``frontier.html`` -- capital efficiency (time-average initial margin per unit notional;
  lower is more capital efficient) against bad-debt VaR99, one marker per grid point with
  its parameters on hover, the Pareto frontier drawn as a line, and the points table.
  plotly.js is inline (``include_plotlyjs=True``): the page opens without network access.
"""

from __future__ import annotations

import csv
import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Literal

import plotly.graph_objects as go

from solvency.sim.report import PAGE_STYLE, format_value, label_of
from solvency.sim.sweep import SweepResult

__all__ = [
    "FILES",
    "columns",
    "write_csv",
    "write_frontier",
    "write_parquet",
    "write_sweep",
]

Format = Literal["csv", "parquet"]
FILES: Final[dict[str, str]] = {"rows": "sweep", "points": "sweep_points",
                                 "frontier": "frontier.html"}
"""Output names: the two tables (without suffix) and the frontier page."""

_TABLE_KEYS: Final = ("paths", "liquidations", "bad_debt", "var95_bad_debt", "var99_bad_debt",
                      "insurance_fund_min", "adl_count", "capital_efficiency", "conserved",
                      "on_frontier")


def columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Return the union of the rows' keys, in order of first appearance."""
    seen: dict[str, None] = {}
    for r in rows:
        for k in r:
            seen.setdefault(k, None)
    return list(seen)


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, list | dict):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def write_csv(path: str | Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    """Write ``rows`` as CSV (see the module docstring) and return the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    cols = columns(rows)
    with out.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(cols)
        for r in rows:
            w.writerow([_csv_cell(r.get(c)) for c in cols])
    return out


def _arrow_column(values: list[Any]) -> Any:
    import pyarrow as pa

    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return pa.array(values, type=pa.bool_())
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return pa.array(values, type=pa.int64())
    if present and all(isinstance(v, int | float) and not isinstance(v, bool)
                       for v in present):
        return pa.array([None if v is None else float(v) for v in values],
                        type=pa.float64())
    if not present:
        return pa.array(values, type=pa.null())
    return pa.array([None if v is None else v if isinstance(v, str) else _csv_cell(v)
                     for v in values], type=pa.string())


def write_parquet(path: str | Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    """Write ``rows`` as a Parquet file (pyarrow) and return the path.

    Column types: bool, int64, float64 (ints and floats mixed), string (anything else,
    arrays and tables as JSON), null when a column has no value.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    cols = columns(rows)
    table = pa.table({c: _arrow_column([r.get(c) for r in rows]) for c in cols})
    pq.write_table(table, out)
    return out


def _asset(result: SweepResult) -> str:
    return str(next((r["settle_asset"] for r in result.rows if r.get("settle_asset")), ""))


def _shown(point: Mapping[str, Any], key: str, asset: str) -> str:
    """A metric of a grid point as the stress-lab report shows it: readable unit, every
    digit (:func:`solvency.sim.report.format_value`)."""
    if key == "on_frontier":
        return "yes" if point.get(key) else "no"
    return format_value(point.get(key), label_of(key)[2], asset)


def _hover(point: Mapping[str, Any], params: Sequence[str], asset: str) -> str:
    parts = [f"{html.escape(p)} = {html.escape(_csv_cell(point[p]))}" for p in params]
    parts += [f"{html.escape(label_of(k)[1])}: {html.escape(_shown(point, k, asset))}"
              for k in ("var99_bad_debt", "capital_efficiency", "bad_debt", "liquidations")]
    return "<br>".join(parts) or f"point {point['point']}"


def _figure(result: SweepResult) -> go.Figure:
    pts = [p for p in result.points if p["capital_efficiency"] is not None]
    front = sorted((p for p in pts if p["on_frontier"]),
                   key=lambda p: (p["capital_efficiency"], p["var99_bad_debt"]))
    fig = go.Figure()
    fig.add_trace(go.Scatter(
        x=[p["capital_efficiency"] for p in pts], y=[p["var99_bad_debt"] for p in pts],
        mode="markers", name="grid points",
        marker={"size": 10, "color": ["#d62728" if p["on_frontier"] else "#1f77b4"
                                      for p in pts]},
        text=[_hover(p, result.params, _asset(result)) for p in pts],
        hovertemplate="%{text}<extra></extra>"))
    fig.add_trace(go.Scatter(
        x=[p["capital_efficiency"] for p in front], y=[p["var99_bad_debt"] for p in front],
        mode="lines", name="Pareto frontier", line={"color": "#d62728", "shape": "hv"},
        hoverinfo="skip"))
    fig.update_layout(
        title="Bad-debt VaR99 against capital efficiency (lower-left is better)",
        xaxis={"title": "initial margin per unit notional (lower: more capital efficient)",
               "tickformat": ".2%"},
        yaxis={"title": "bad-debt VaR99 (settlement asset)"}, height=560,
        template="plotly_white", legend={"orientation": "h"})
    return fig


_LABELS: Final = {"point": "grid point", "on_frontier": "on the frontier",
                  "paths": "Monte Carlo paths", "liquidations": "liquidation fills, mean",
                  "bad_debt": "bad debt, mean", "insurance_fund_min": "fund low (cash), mean",
                  "adl_count": "ADL fills, mean"}


def _points_table(result: SweepResult) -> str:
    """The points with the stress-lab report's labels and units; the parameters under
    their dotted names, the JSON/CSV key of each metric on hover."""
    asset = _asset(result)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ("point", *result.params)) + "".join(
        f"<th title='{html.escape(c)}'>{html.escape(_LABELS.get(c, label_of(c)[1]))}</th>"
        for c in _TABLE_KEYS)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_csv_cell(p.get(c)))}</td>"
                         for c in ("point", *result.params))
        + "".join(f"<td>{html.escape(_shown(p, c, asset))}</td>" for c in _TABLE_KEYS)
        + "</tr>" for p in result.points)
    return f"<table><tr>{head}</tr>{body}</table>"


def write_frontier(path: str | Path, result: SweepResult, *, title: str,
                   description: str = "") -> Path:
    """Write the frontier page (one self-contained offline HTML file) and return its path.

    A step line joins the Pareto-efficient points (:func:`solvency.sim.sweep.pareto_frontier`):
    between two of them, the better VaR99 needs the larger margin.
    """
    chart = _figure(result).to_html(full_html=False, include_plotlyjs=True,
                                    div_id="chart-frontier", config={"displaylogo": False})
    style = PAGE_STYLE
    paths = result.points[0]["paths"] if result.points else 0
    doc = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}"
           f"</title><style>{style}</style></head><body><h1>{html.escape(title)}</h1>"
           f"<p>{html.escape(description)}</p><p>{len(result.points)} grid points x "
           f"{paths} paths; VaR99 is the empirical 99 % quantile of bad debt over the "
           f"paths (the maximum below 100 paths).</p>{chart}{_points_table(result)}"
           "</body></html>")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(doc, encoding="utf-8")
    return out


def write_sweep(out_dir: str | Path, result: SweepResult, *, title: str,
                description: str = "", fmt: Format = "csv") -> list[Path]:
    """Write the tables and the frontier page into ``out_dir``; return the files written.

    CSV always (``sweep.csv``, ``sweep_points.csv``); ``fmt="parquet"`` adds
    ``sweep.parquet`` and ``sweep_points.parquet``.
    """
    d = Path(out_dir)
    files = [write_csv(d / f"{FILES['rows']}.csv", result.rows),
             write_csv(d / f"{FILES['points']}.csv", result.points)]
    if fmt == "parquet":
        files += [write_parquet(d / f"{FILES['rows']}.parquet", result.rows),
                  write_parquet(d / f"{FILES['points']}.parquet", result.points)]
    files.append(write_frontier(d / FILES["frontier"], result, title=title,
                                description=description))
    return files
