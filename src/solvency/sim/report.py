"""Stress-lab report: one self-contained offline HTML page a risk committee reads first.

Everything on the page comes from the run's own outputs (the metrics of
:func:`solvency.sim.metrics.summarize` and the :class:`~solvency.sim.metrics.StepSeries`,
with ``series.extra["who_was_hit"]`` recorded by :func:`solvency.sim.run.run_scenario`);
nothing the engine computed is computed again. From the top:

1. **verdict** per venue against the scenario's ``[report]`` thresholds (bad debt above
   ``bad_debt_max``, 0 unless set, and a broken invariant always fail), green or red;
2. **headline** figures with units and a one-line meaning, venues side by side; for a
   multi-venue run (:class:`ContagionView`) the **contagion** section: the attribution
   linked and alone with the system's totals, the spillover matrix as heat maps, each
   venue's liquidated notional, fund and basis over time;
3. **timeline**: prices, liquidations, the insurance fund, ADL and breaker states on one
   time axis, the crash window (the index's largest fall, peak to low) shaded and the
   first liquidation, the fund's low and the first ADL marked;
4. **who was hit**: margin ratios at the start and at the index low, the leverage of
   liquidated accounts against survivors, the liquidation map at the start (the risk
   report's liquidations at risk: the engine's margin kernels at shocked marks);
5. the **per-market** table; with Monte Carlo paths, the bad-debt distribution with VaR
   and ES marked and fan charts of the series over paths;
6. each series on its own chart, and **all metrics** grouped with labels and units, folded.

Figures are built from numpy arrays (epoch milliseconds on a date axis; plotly writes
them as typed arrays) and plotly.js is embedded once, inline: the page opens offline.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
from plotly.offline import get_plotlyjs

from solvency.core.typing import Float64Array1D
from solvency.engine.breakers import STATES
from solvency.sim.metrics import QUANTILES, StepSeries, fan

__all__ = [
    "CHARTS",
    "CONTAGION_FIGURES",
    "GROUPS",
    "HEADLINE",
    "PAGE_STYLE",
    "SPILLOVER_MAPS",
    "Check",
    "ContagionView",
    "Event",
    "Figure",
    "ReportRun",
    "Unit",
    "contagion_figures",
    "events",
    "figures",
    "format_value",
    "headline",
    "label_of",
    "verdict",
    "write_report",
]

_COLOURS: Final = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
                   "#17becf", "#7f7f7f")
CHARTS: Final[tuple[str, ...]] = (
    "prices", "liquidations", "insurance_fund", "bad_debt", "adl", "accounts_at_risk",
    "margin_rates", "breakers")
"""The per-series chart ids, in page order (after ``timeline`` and the ``who was hit``
charts; ``bad_debt_distribution`` and ``fan`` come with Monte Carlo runs)."""

_TITLES: Final = {
    "timeline": "Timeline",
    "prices": "Index, mark and trade price (relative to start)",
    "liquidations": "Liquidated notional per step",
    "insurance_fund": "Insurance fund balance (cash; dotted: equity with positions taken over)",
    "bad_debt": "Bad debt (cumulative)",
    "adl": "ADL notional per step (dotted: haircut)",
    "accounts_at_risk": "Accounts at or above the margin-call ratio",
    "margin_rates": "Margin in force per unit notional (MM solid, IM dotted)",
    "breakers": "Breaker state",
    "margin_ratio": "Margin ratio of accounts (maintenance margin / collateral)",
    "leverage": "Leverage at the start: liquidated accounts against survivors",
    "liquidation_map": "Liquidation map at the start",
    "bad_debt_distribution": "Bad debt over Monte Carlo paths",
    "fan": "Monte Carlo fan: 5-95 % and 25-75 % of paths, median, path 0",
}

Unit = Literal["amount", "count", "share", "ratio", "duration", "time", "flag", "text",
               "rate"]

# ---------------------------------------------------------------- labels and units

GROUPS: Final[tuple[tuple[str, tuple[tuple[str, str, Unit], ...]], ...]] = (
    ("Liquidations", (
        ("liquidations", "liquidation fills", "count"),
        ("accounts_liquidated", "accounts liquidated", "count"),
        ("liquidated_notional", "liquidated notional", "amount"),
        ("liquidated_share_of_oi", "liquidated, share of open interest (one side)",
         "share"),
        ("liquidated_share_of_oi_by_market",
         "liquidated, share of open interest (one side)", "share"),
        ("liquidated_share", "liquidated, share of user long + short", "share"),
        ("liquidated_long_share", "liquidated, share that closed longs", "share"),
        ("liquidated_notional_by_market", "liquidated notional", "amount"),
        ("open_interest_start_notional", "open interest at the start (one side)", "amount"),
        ("open_interest_start_notional_by_market", "open interest at the start (one side)",
         "amount"),
        ("open_interest_start", "user positions at the start (long + short)", "amount"),
        ("open_interest_start_by_market", "user positions at the start (long + short)",
         "amount"),
        ("first_liquidation_ms", "first liquidation", "time"),
        ("max_accounts_at_risk", "most accounts at the margin-call ratio", "count"),
        ("engine_counts", "engine counter", "count"),
    )),
    ("Insurance fund", (
        ("insurance_fund_start", "fund at the start (cash)", "amount"),
        ("insurance_fund_min", "fund low (cash)", "amount"),
        ("insurance_fund_end", "fund at the end (cash)", "amount"),
        ("insurance_fund_drawdown", "largest fall of the cash from a peak", "amount"),
        ("insurance_fund_equity_min", "fund equity low", "amount"),
        ("insurance_fund_equity_end", "fund equity at the end", "amount"),
        ("insurance_fund_equity_drawdown", "largest fall of the equity from a peak",
         "amount"),
        ("insurance_fund_used", "fund used (start - equity low)", "amount"),
        ("insurance_fund_used_share", "fund used, share of its start", "share"),
        ("insurance_fund_low_ms", "fund equity low at", "time"),
        ("insurance_fund_positions_max", "positions taken over, largest (gross)", "amount"),
        ("insurance_fund_positions_end", "positions taken over, at the end", "amount"),
        ("insurance_fund_unwind_pnl", "realized P&L of unwinding them", "amount"),
    )),
    ("Bad debt and ADL", (
        ("bad_debt", "bad debt", "amount"),
        ("mean_bad_debt", "bad debt, mean over paths", "amount"),
        ("var95_bad_debt", "bad debt VaR 95 %", "amount"),
        ("var99_bad_debt", "bad debt VaR 99 %", "amount"),
        ("es95_bad_debt", "bad debt ES 95 %", "amount"),
        ("es99_bad_debt", "bad debt ES 99 %", "amount"),
        ("max_bad_debt", "bad debt, worst path", "amount"),
        ("p_bad_debt", "share of paths with bad debt", "share"),
        ("adl_count", "ADL fills", "count"),
        ("adl_notional", "ADL notional", "amount"),
        ("adl_notional_by_market", "ADL notional", "amount"),
        ("adl_haircut", "ADL haircut (counterparties' loss to the mark)", "amount"),
        ("adl_overshoot", "ADL haircut the fund could have absorbed", "amount"),
        ("first_adl_ms", "first ADL", "time"),
    )),
    ("Market and cascade", (
        ("cascade_amplification", "cascade amplification, worst market", "ratio"),
        ("cascade_amplification_by_market", "cascade amplification", "ratio"),
        ("price_drawdown", "index drawdown", "share"),
        ("trade_price_drawdown", "trade price drawdown", "share"),
        ("crash_window_ms", "crash window (index peak, low)", "time"),
        ("capital_efficiency", "initial margin per unit notional (time average)", "share"),
        ("breaker_time_ms", "time in breaker state", "duration"),
        ("mm_depth_min_fraction", "least share of the book market makers kept", "share"),
    )),
    ("Agents", (
        ("agents", "agents running", "text"),
        ("topped_up_accounts", "accounts topped up to IM before the run", "count"),
        ("topups", "margin-call top-ups", "count"),
        ("topup_accounts", "accounts that topped up", "count"),
        ("topup_amount", "top-up deposits", "amount"),
        ("topup_reserve_limited", "top-ups cut by the trader's reserve", "count"),
        ("liquidator_absorbed_notional", "notional the liquidators took", "amount"),
        ("liquidator_capacity_hits", "liquidator at capacity", "count"),
        ("liquidator_inventory_max", "liquidator inventory, largest", "amount"),
        ("liquidator_offline_quotes", "quotes while liquidators were offline", "count"),
        ("arb_trades", "arbitrage trades", "count"),
        ("arb_rejected", "arbitrage orders rejected", "count"),
        ("arb_volume_notional", "arbitrage volume", "amount"),
        ("arb_position_max_notional", "arbitrage position, largest", "amount"),
        ("arb_funding_paid", "funding paid by arbitrageurs", "amount"),
        ("funding_events", "funding settlements", "count"),
        ("funding_paid", "funding paid", "amount"),
        ("funding_rate_min", "funding rate, lowest", "rate"),
        ("funding_rate_max", "funding rate, highest", "rate"),
    )),
    ("Run", (
        ("conserved", "every invariant held", "flag"),
        ("violation", "broken invariant", "text"),
        ("scenario", "scenario", "text"),
        ("venue", "venue", "text"),
        ("settle_asset", "settlement asset", "text"),
        ("accounts", "accounts", "count"),
        ("positions", "positions", "count"),
        ("points", "path points", "count"),
        ("paths", "Monte Carlo paths", "count"),
        ("statistic", "figures are", "text"),
        ("seed_market", "market seed", "text"),
        ("seed_population", "population seed", "text"),
        ("impact", "price impact on", "flag"),
        ("wall_s", "wall time (s)", "ratio"),
    )),
)
"""Metric groups of the page's "All metrics" and the terminal: ``(key, label, unit)``;
a key not listed lands in "Other" under its own name (nothing is dropped)."""

_LABELS: Final = {k: (g, label, unit) for g, rows in GROUPS for k, label, unit in rows}
_HIDDEN: Final = frozenset({"per_path", "quantiles", "engine_state_hash",
                            "engine_section_hashes"})


def label_of(key: str) -> tuple[str, str, Unit]:
    """Return ``(group, label, unit)`` of a metric key (dotted keys use their head)."""
    head, _, tail = key.partition(".")
    group, label, unit = _LABELS.get(head, ("Other", head, "text"))
    return group, f"{label} {tail.replace('.', ' ')}".strip(), unit


def _iso(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(ms: float) -> str:
    s = round(ms / 1000)
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}h {m:02d}m {sec:02d}s" if h else f"{m}m {sec:02d}s"


def format_value(v: Any, unit: Unit, asset: str = "") -> str:
    """Return ``v`` as shown on the page and in the terminal: every digit kept, the unit
    named (``1,234.50 USDT``, ``12.34 %``, ``1.047x``; ``-`` for a missing value)."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    if isinstance(v, list | tuple):
        return ", ".join(format_value(x, unit, asset) for x in v)
    if isinstance(v, str) or unit in ("text", "flag"):
        return str(v)
    x = float(v)
    if unit == "amount":
        return f"{x:,.2f} {asset}".strip()
    if unit == "share":
        return f"{x:.2%}"
    if unit == "rate":
        return f"{x:.4%}"
    if unit == "ratio":
        return f"{x:,.3f}x" if x < 1e6 else f"{x:,.0f}x"
    if unit == "duration":
        return _duration(x)
    if unit == "time":
        return _iso(x)
    return f"{int(x):,}" if float(x).is_integer() else f"{x:,.1f}"


# ---------------------------------------------------------------- headline and verdict

HEADLINE: Final[tuple[tuple[str, str, Unit, str], ...]] = (
    ("bad_debt", "Bad debt", "amount",
     "the loss nobody covered: not the account, the insurance fund, ADL or a socialized "
     "loss"),
    ("insurance_fund_used", "Insurance fund used", "amount",
     "its start less the low of its equity (cash plus positions taken over, at the mark)"),
    ("insurance_fund_used_share", "Fund used, share of its start", "share",
     "the same as a share of the fund's capital at the start"),
    ("liquidated_share_of_oi", "Open interest liquidated (one side)", "share",
     "the population's liquidated notional (the lab's agents apart) over the venue's "
     "open interest at the start, one side, at the start marks (as venues report it)"),
    ("open_interest_start_notional", "Open interest at the start (one side)", "amount",
     "half the notional of every position at the start marks, the counterparty's "
     "included"),
    ("liquidated_share", "Liquidated, share of long + short", "share",
     "liquidated notional over the notional of every user position at the start "
     "(long + short)"),
    ("liquidated_notional", "Liquidated notional", "amount",
     "size x price of every liquidation fill"),
    ("accounts_liquidated", "Accounts liquidated", "count",
     "accounts (margin rows) with at least one liquidation"),
    ("accounts_liquidated_share", "Accounts liquidated, share", "share",
     "accounts liquidated over the accounts of the population"),
    ("adl_notional", "ADL notional", "amount",
     "positions closed against profitable traders (auto-deleveraging)"),
    ("adl_count", "ADL fills", "count", "fills of auto-deleveraging"),
    ("adl_haircut", "ADL haircut", "amount",
     "what ADL'd traders lost against closing at the mark"),
    ("cascade_amplification", "Worst cascade amplification", "ratio",
     "largest fall of the venue's trade price over that of the index: 1 means "
     "liquidations moved the price no further"),
)
"""The headline figures: ``(key, label, unit, one-line meaning)``."""


def headline(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Return the headline figures of one run's (or one Monte Carlo summary's) metrics:
    the keys of :data:`HEADLINE`, read from the metrics (``accounts_liquidated_share`` is
    ``accounts_liquidated / accounts``)."""
    out = {k: metrics.get(k) for k, *_ in HEADLINE}
    accounts = metrics.get("accounts")
    liq = metrics.get("accounts_liquidated")
    out["accounts_liquidated_share"] = (liq / accounts if isinstance(accounts, int | float)
                                        and accounts > 0 and liq is not None else None)
    return out


_CHECKS: Final[tuple[tuple[str, str, str, Unit], ...]] = (
    ("bad_debt_max", "bad_debt", "bad debt", "amount"),
    ("fund_used_max", "insurance_fund_used_share", "fund used", "share"),
    ("liquidated_share_max", "liquidated_share", "open interest liquidated", "share"),
    ("accounts_liquidated_max", "accounts_liquidated_share", "accounts liquidated",
     "share"),
    ("adl_notional_max", "adl_notional", "ADL notional", "amount"),
    ("cascade_amplification_max", "cascade_amplification", "cascade amplification",
     "ratio"),
)


@dataclass(frozen=True, slots=True)
class Check:
    """One line of the verdict: a figure against its threshold."""

    name: str
    value: float | None
    limit: float | None
    unit: Unit
    ok: bool


def verdict(metrics: Mapping[str, Any], thresholds: Mapping[str, float]
            ) -> list[Check]:
    """Return the verdict's checks of one run: every invariant held, and each figure at
    or below its ``[report]`` threshold (``bad_debt_max`` is 0 unless set: any bad debt
    fails). With Monte Carlo paths the figure checked is its 95th percentile over paths
    (``quantiles``); a figure that is undefined (``None``) fails its check."""
    quant = metrics.get("quantiles") or {}
    figures = headline(metrics)
    acc = quant.get("accounts")
    checks = [Check("every invariant held", None, None, "flag",
                    bool(metrics.get("conserved", False)))]
    limits = {"bad_debt_max": 0.0, **thresholds}
    for key, metric, name, unit in _CHECKS:
        if key not in limits:
            continue
        if quant and metric in quant:
            value: float | None = quant[metric]["p95"]
        elif quant and metric == "accounts_liquidated_share" and acc and \
                "accounts_liquidated" in quant:
            value = quant["accounts_liquidated"]["p95"] / acc["p50"]
        else:
            value = figures.get(metric)
        limit = float(limits[key])
        ok = value is not None and math.isfinite(value) and value <= limit + 1e-12
        checks.append(Check(name, value, limit, unit, ok))
    return checks


# ---------------------------------------------------------------- runs

@dataclass(frozen=True, slots=True)
class ReportRun:
    """What the page shows of one venue.

    Attributes
    ----------
    metrics : Mapping[str, Any]
        The run's metrics (a Monte Carlo summary for several paths).
    series : StepSeries
        The path drawn on the timeline and the series charts (path 0 of Monte Carlo).
    paths : Sequence[StepSeries]
        Every Monte Carlo path (the fan charts); empty for one run.
    series_metrics : Mapping[str, Any] or None
        The metrics of the path ``series`` draws (Monte Carlo: path 0), where the
        timeline's marks (first liquidation, fund low, crash window) are read; ``None``:
        ``metrics``.
    """

    metrics: Mapping[str, Any]
    series: StepSeries
    paths: Sequence[StepSeries] = ()
    series_metrics: Mapping[str, Any] | None = None


def _drawn(run: ReportRun) -> Mapping[str, Any]:
    """The metrics of the path the timeline draws."""
    return run.series_metrics if run.series_metrics is not None else run.metrics


# ---------------------------------------------------------------- figures
#
# Figures are plain plotly.js specs (``data`` and ``layout`` dicts), not plotly.py graph
# objects: the objects validate every property and deep-copy the template into each
# figure, which took most of the build time (6.5 s of the page's 6.7 s on a 78-point
# run). Arrays go out as plotly.js typed arrays (``{"dtype": "f8", "bdata": base64}``).

Trace = dict[str, Any]
Layout = dict[str, Any]

_AXIS: Final = {"gridcolor": "#EBF0F8", "linecolor": "#EBF0F8", "zerolinecolor": "#EBF0F8",
                "zerolinewidth": 2, "automargin": True, "ticks": ""}


def _x(s: StepSeries) -> Float64Array1D:
    # epoch ms as float64 (exact below 2**53): plotly.js reads numbers on a date axis as
    # ms; int64 has no typed-array form in plotly.js
    return s.ts_ms.astype(np.float64)


def _f(y: Any) -> Float64Array1D:
    return np.ascontiguousarray(y, dtype=np.float64)


def _xs(x: Any) -> dict[str, Any]:
    """``x`` as plotly.js takes it: a start and a step (``x0``, ``dx``) when the points
    are evenly spaced (a synthetic path's time grid: no bytes at all), else the array."""
    arr = _f(x)
    if arr.shape[0] >= 2:
        step = np.diff(arr)
        if np.all(step == step[0]) and arr[0] + step[0] * (arr.shape[0] - 1) == arr[-1]:
            return {"x0": float(arr[0]), "dx": float(step[0])}
    return {"x": arr}


def _line(x: Any, y: Any, name: str, colour: str, *, dash: str = "solid",
          shape: str = "linear", group: str | None = None, show: bool = True,
          width: float = 1.4) -> Trace:
    tr: Trace = {"type": "scatter", "mode": "lines", **_xs(x), "y": _f(y), "name": name,
                 "showlegend": show,
                 "line": {"color": colour, "width": width, "dash": dash, "shape": shape}}
    if group is not None:
        tr["legendgroup"] = group
    return tr


def _bars(x: Any, y: Any, name: str, colour: str, **kw: Any) -> Trace:
    return {"type": "bar", **_xs(x), "y": _f(y), "name": name,
            "marker": {"color": colour, "line": {"width": 0}}, **kw}


_DASHES: Final = ("solid", "dot", "dash", "dashdot")


def _price_traces(label: str, s: StepSeries, colour: str, *, first: bool) -> list[Trace]:
    x = _x(s)
    out = []
    for j, m in enumerate(s.index):
        base = s.index[m][0] if s.index[m].shape[0] and s.index[m][0] > 0 else 1.0
        d = _DASHES[j % len(_DASHES)]
        if first:  # every venue runs the same index path: drawn once
            out.append(_line(x, s.index[m] / base, f"{m} index", "#999", dash=d))
        out.append(_line(x, s.mark[m] / base, f"{label} {m} mark", colour, dash=d))
        out.append(_line(x, s.trade[m] / base, f"{label} {m} trade", colour, dash=d,
                         width=0.8) | {"opacity": 0.6})
    return out


def _traces(chart: str, label: str, s: StepSeries, colour: str, *, first: bool
            ) -> list[Trace]:
    x = _x(s)
    if chart == "prices":
        return _price_traces(label, s, colour, first=first)
    if chart == "liquidations":
        return [_bars(x, s.liq_notional, f"{label} liquidated", colour)]
    if chart == "insurance_fund":
        return [_line(x, s.insurance_fund, f"{label} fund cash", colour),
                _line(x, s.insurance_fund_equity, f"{label} fund equity", colour,
                      dash="dot")]
    if chart == "bad_debt":
        return [_line(x, s.bad_debt, f"{label} bad debt", colour)]
    if chart == "adl":
        return [_bars(x, s.adl_notional, f"{label} ADL notional", colour),
                _line(x, s.adl_haircut, f"{label} ADL haircut", colour, dash="dot")]
    if chart == "accounts_at_risk":
        return [_line(x, s.at_risk, f"{label} at risk", colour)]
    if chart == "margin_rates":
        out: list[Trace] = []
        for j, m in enumerate(s.mm_rate):
            out.append(_line(x, s.mm_rate[m], f"{label} {m} MM", colour,
                             dash=_DASHES[(2 * j) % len(_DASHES)]))
            out.append(_line(x, s.im_rate[m], f"{label} {m} IM", colour, dash="dot"))
        return out
    if chart == "breakers":
        return [_line(x, s.breaker[m], f"{label} {m}", colour,
                      dash=_DASHES[j % len(_DASHES)], shape="hv")
                for j, m in enumerate(s.breaker)]
    raise ValueError(f"unknown chart {chart!r}")


def _date_axis() -> dict[str, Any]:
    # time over date on two lines and no axis title: labels never collide
    return {**_AXIS, "type": "date", "tickformat": "%H:%M<br>%d %b %Y", "nticks": 10,
            "hoverformat": "%Y-%m-%d %H:%M:%S UTC"}


def _breaker_axis() -> dict[str, Any]:
    return {**_AXIS, "tickvals": list(range(len(STATES))), "ticktext": list(STATES),
            "range": [-0.2, len(STATES) - 0.8]}


@dataclass(frozen=True, slots=True)
class Event:
    """A moment the time charts mark: a vertical line in the venue's colour with a
    numbered tag above the plot; the legend (and a crash page's table) says what it is.

    Attributes
    ----------
    tag : int
        Its number, in time order over every venue (1: the earliest).
    venue, name : str
        The venue (run label) and what happened (``first liquidation``, ``fund low``,
        ``first ADL``).
    ms : float
        When, epoch milliseconds (UTC).
    colour : str
        The venue's colour.
    """

    tag: int
    venue: str
    name: str
    ms: float
    colour: str

    def label(self, *, venue: bool = True) -> str:
        """``"3 binance: fund low, 08 Nov 21:40"`` (the legend's text)."""
        when = datetime.fromtimestamp(self.ms / 1000, UTC).strftime("%d %b %H:%M")
        return f"{self.tag} {self.venue}: {self.name}, {when}" if venue else \
            f"{self.tag} {self.name}, {when}"


_EVENT_KEYS: Final = (("first_liquidation_ms", "first liquidation"),
                      ("insurance_fund_low_ms", "fund low"),
                      ("first_adl_ms", "first ADL"))


def events(runs: Mapping[str, ReportRun | Mapping[str, Any]]) -> list[Event]:
    """The marked moments of every venue (first liquidation, fund low, first ADL), numbered
    in time order (ties in venue order); ``runs`` maps a label to its run or its metrics."""
    found: list[tuple[float, int, int, str, str, str]] = []
    for k, (label, run) in enumerate(runs.items()):
        m = _drawn(run) if isinstance(run, ReportRun) else run
        for j, (key, name) in enumerate(_EVENT_KEYS):
            t = m.get(key)
            if isinstance(t, int | float) and not isinstance(t, bool):
                found.append((float(t), k, j, label, name, _COLOURS[k % len(_COLOURS)]))
    found.sort(key=lambda e: e[:3])
    return [Event(i + 1, label, name, t, colour)
            for i, (t, _k, _j, label, name, colour) in enumerate(found)]


_TAG_MIN_PLOT_PX: Final = 480
"""The narrowest plot the tags are laid out for: on a wider plot they only spread out."""
_TAG_ROW_PX: Final = 16
_TITLE_PX: Final = 40
"""The top margin's band for the title (pinned to the figure's top edge)."""


def _tag_rows(evs: Sequence[Event], lo: float, hi: float) -> list[int]:
    """Each event tag's row above the plot: the first row where it clears the previous
    tag by 3 px on a plot ``_TAG_MIN_PLOT_PX`` wide (rows from the plot's top edge up)."""
    span = hi - lo if hi > lo else 1.0
    ends: list[float] = []
    rows = []
    for e in evs:
        half = (6.5 * len(str(e.tag)) + 8) / 2  # 10 px digits, 1 px border, 3 px padding
        x = (e.ms - lo) / span * _TAG_MIN_PLOT_PX
        row = next((r for r, end in enumerate(ends) if x - half >= end + 3), len(ends))
        if row == len(ends):
            ends.append(x + half)
        else:
            ends[row] = x + half
        rows.append(row)
    return rows


def _marks(runs: Mapping[str, ReportRun], *, base: int = 0
           ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """Shapes and annotations of the time charts, and the top margin they need.

    The crash window is shaded (a legend entry); each :func:`events` moment is a dotted
    line in its venue's colour with its number in a tag just above the plot (tags that
    would touch go up a row) and its text in the legend, so nothing written on the chart
    grows with the number of venues but the tag rows. ``base``: px between the plot's
    top edge and the first tag row (the timeline's first row title sits there).
    """
    shapes: list[dict[str, Any]] = []
    notes: list[dict[str, Any]] = []
    first = _drawn(next(iter(runs.values())))
    window = first.get("crash_window_ms") or {}
    peak, low = window.get("peak"), window.get("low")
    if isinstance(peak, int | float) and isinstance(low, int | float):
        shapes.append({"type": "rect", "xref": "x", "yref": "paper", "x0": peak,
                       "x1": low, "y0": 0, "y1": 1, "fillcolor": "#f4cccc",
                       "opacity": 0.45, "line": {"width": 0}, "layer": "below",
                       "showlegend": True, "name": "crash window (index peak to low)",
                       "legendrank": 1500})
    evs = events(runs)
    starts = [float(r.series.ts_ms[0]) for r in runs.values() if r.series.ts_ms.shape[0]]
    ends = [float(r.series.ts_ms[-1]) for r in runs.values() if r.series.ts_ms.shape[0]]
    lo = min(starts + [e.ms for e in evs], default=0.0)
    hi = max(ends + [e.ms for e in evs], default=1.0)
    rows = _tag_rows(evs, lo, hi)
    for e, row in zip(evs, rows, strict=True):
        shapes.append({"type": "line", "xref": "x", "yref": "paper", "x0": e.ms, "x1": e.ms,
                       "y0": 0, "y1": 1, "line": {"color": e.colour, "width": 1,
                                                  "dash": "dot"},
                       "showlegend": True, "legendrank": 2000 + e.tag,
                       "name": e.label(venue=len(runs) > 1)})
        notes.append({"x": e.ms, "y": 1.0, "xref": "x", "yref": "paper",
                      "text": str(e.tag), "showarrow": False, "xanchor": "center",
                      "yanchor": "bottom", "yshift": base + 2 + _TAG_ROW_PX * row,
                      "font": {"size": 10, "color": e.colour}, "bgcolor": "white",
                      "bordercolor": e.colour, "borderwidth": 1, "borderpad": 1})
    top = _TITLE_PX + base + (_TAG_ROW_PX * (max(rows) + 1) + 4 if rows else 0)
    return shapes, notes, top


def _layout(title: str, *, plot: int = 260, top: int = _TITLE_PX, below: int = 45,
            **kw: Any) -> Layout:
    """A figure's layout: ``plot`` px of plot area (the page grows the figure to keep it
    when the legend needs rows), ``top`` px above it (the title pinned to the top edge,
    then any event tags) and the legend ``below`` px under the plot's bottom edge (clear
    of the tick labels and axis title)."""
    return {"title": {"text": title, "x": 0.01, "xanchor": "left", "y": 1,
                      "yref": "container", "yanchor": "top", "pad": {"t": 10}},
            "height": plot + top + below + 42,
            "paper_bgcolor": "white", "plot_bgcolor": "white",
            "font": {"color": "#2a3f5f"}, "hovermode": "closest",
            "legend": {"orientation": "h", "x": 0, "xanchor": "left", "y": -below / plot,
                       "yanchor": "top", "font": {"size": 11}},
            "margin": {"l": 70, "r": 20, "t": top, "b": below + 42},
            "xaxis": dict(_AXIS), "yaxis": dict(_AXIS), **kw}


_TITLED: Final = 68
"""px under the plot of an x axis with tick labels and a title (the legend goes below)."""


def _series_figure(chart: str, runs: Mapping[str, ReportRun]) -> tuple[list[Trace], Layout]:
    data: list[Trace] = []
    for k, (label, run) in enumerate(runs.items()):
        data += _traces(chart, label, run.series, _COLOURS[k % len(_COLOURS)],
                        first=k == 0)
    shapes, notes, top = _marks(runs)
    layout = _layout(_TITLES[chart], top=top, shapes=shapes, annotations=notes,
                     xaxis=_date_axis())
    if chart == "breakers":
        layout["yaxis"] = _breaker_axis()
    if chart == "margin_rates":
        layout["yaxis"]["tickformat"] = ".2%"
    if chart in ("liquidations", "adl"):
        layout["barmode"] = "group"
    return data, layout


_TIMELINE: Final = (
    ("prices", "price / start (index grey, mark, trade thin)", 0.32),
    ("liquidations", "liquidated notional per step", 0.17),
    ("insurance_fund", "insurance fund (cash, dotted: equity)", 0.19),
    ("adl", "ADL notional per step", 0.16),
    ("breakers", "breaker state", 0.16))


def _stacked(rows: Sequence[tuple[str, float]], gap: float) -> tuple[Layout, list[str]]:
    """Axes of charts stacked on one shared time axis (top to bottom): the layout's
    axes and subplot titles, and each row's y-axis name (``y``, ``y2``, ...)."""
    layout: Layout = {}
    notes = []
    total = sum(h for _, h in rows) + gap * (len(rows) - 1)
    top = 1.0
    names = []
    for i, (title, h) in enumerate(rows):
        n = "" if i == 0 else str(i + 1)
        lo = max(top - h / total, 0.0)
        layout[f"yaxis{n}"] = {**_AXIS, "domain": [lo, top], "anchor": f"x{n}"}
        layout[f"xaxis{n}"] = {**_date_axis(), "anchor": f"y{n}",
                               "showticklabels": i == len(rows) - 1,
                               **({"matches": "x"} if i else {})}
        notes.append({"text": title, "x": 0.0, "xref": "paper", "y": top, "yref": "paper",
                      "xanchor": "left", "yanchor": "bottom", "showarrow": False,
                      "font": {"size": 12}})
        names.append(f"y{n}")
        top = lo - gap / total
    layout["annotations"] = notes
    return layout, names


def _timeline(runs: Mapping[str, ReportRun]) -> tuple[list[Trace], Layout]:
    axes, names = _stacked([(t, h) for _, t, h in _TIMELINE], 0.035)
    data: list[Trace] = []
    for k, (label, run) in enumerate(runs.items()):
        colour = _COLOURS[k % len(_COLOURS)]
        for r, (chart, _t, _h) in enumerate(_TIMELINE):
            for tr in _traces(chart, label, run.series, colour, first=k == 0):
                if chart == "adl" and tr["type"] == "scatter":
                    continue  # the haircut has its own chart
                data.append(tr | {"xaxis": "x" + names[r][1:], "yaxis": names[r]})
    # the first row's title sits just above the plot: the tags go above it
    shapes, notes, top = _marks(runs, base=18)
    layout = _layout(_TITLES["timeline"], plot=880, top=top, barmode="group")
    layout.update(axes)
    layout["annotations"] = [*axes["annotations"], *notes]
    layout["shapes"] = shapes
    layout[f"yaxis{len(_TIMELINE)}"].update(_breaker_axis())
    return data, layout


_RATIO_EDGES: Final = np.append(np.linspace(0.0, 1.2, 49), np.inf)
_LEV_EDGES: Final = np.append(np.append(0.0, np.geomspace(0.5, 200.0, 41)), np.inf)


def _binned(values: Any, edges: Any) -> tuple[Float64Array1D, Float64Array1D,
                                              Float64Array1D]:
    """Counts per bin, bin centres and widths (the last, open bin drawn one width wide)."""
    v = np.asarray(values, dtype=np.float64)
    v = np.where(np.isnan(v), np.inf, v)
    counts, _ = np.histogram(v, bins=edges)
    finite = np.asarray(edges[:-1], dtype=np.float64)
    width = np.diff(np.append(finite, finite[-1] + (finite[-1] - finite[-2])))
    return counts.astype(np.float64), finite + width / 2, width


def _who(run: ReportRun) -> Mapping[str, Any] | None:
    who = run.series.extra.get("who_was_hit")
    return who if isinstance(who, Mapping) else None


def _margin_ratio_figure(runs: Mapping[str, ReportRun]) -> tuple[list[Trace], Layout]:
    data: list[Trace] = []
    for k, (label, run) in enumerate(runs.items()):
        who = _who(run)
        if who is None:
            continue
        colour = _COLOURS[k % len(_COLOURS)]
        low = _iso(float(who["low_ms"]))[11:16]
        # the start drawn over the low, both see-through: neither hides the other
        for key, name, opacity in (("margin_ratio_low", f"at the index low ({low})", 0.6),
                                   ("margin_ratio_start", "at the start", 0.55)):
            counts, centre, width = _binned(who[key], _RATIO_EDGES)
            fill = colour if key == "margin_ratio_low" else "#999"
            data.append(_bars(centre, counts, f"{label} {name}" if len(runs) > 1 else name,
                              fill, width=_f(width), opacity=opacity))
    layout = _layout(_TITLES["margin_ratio"], below=_TITLED, barmode="overlay", shapes=[{
        "type": "line", "x0": 1, "x1": 1, "y0": 0, "y1": 1, "yref": "paper",
        "line": {"color": "#a33", "dash": "dot"}}])
    layout["xaxis"].update(title={"text": "maintenance margin / collateral (1: "
                                  "liquidated; last bin: >= 120 % or no collateral)"},
                           tickformat=".0%")
    layout["yaxis"].update(title={"text": "accounts"}, type="log")
    return data, layout


def _leverage_figure(runs: Mapping[str, ReportRun]) -> tuple[list[Trace], Layout]:
    data: list[Trace] = []
    for k, (label, run) in enumerate(runs.items()):
        who = _who(run)
        if who is None:
            continue
        hit = np.asarray(who["liquidated"], dtype=np.bool_)
        lev = np.asarray(who["leverage_start"], dtype=np.float64)
        colour = _COLOURS[k % len(_COLOURS)]
        for mask, name, col in ((~hit, "survivors", "#bbb"), (hit, "liquidated", colour)):
            counts, centre, width = _binned(lev[mask], _LEV_EDGES)
            med = float(np.median(lev[mask])) if mask.any() else float("nan")
            data.append(_bars(centre, counts, (f"{label} " if len(runs) > 1 else "") +
                              f"{name} ({int(mask.sum()):,}, median {med:.1f}x)", col,
                              width=_f(width), opacity=0.75))
    layout = _layout(_TITLES["leverage"], below=_TITLED, barmode="overlay")
    layout["xaxis"].update(title={"text": "leverage at the start (gross notional / equity)"},
                           type="log")
    layout["yaxis"].update(title={"text": "accounts"}, type="log")
    return data, layout


def _liquidation_map_figure(runs: Mapping[str, ReportRun]) -> tuple[list[Trace], Layout]:
    data: list[Trace] = []
    for k, (label, run) in enumerate(runs.items()):
        who = _who(run)
        if who is None:
            continue
        rows = who["liquidation_map"]
        shock = np.array([r["shock"] for r in rows], dtype=np.float64)
        accounts = np.array([float(r["accounts"]) for r in rows], dtype=np.float64)
        prefix = f"{label} " if len(runs) > 1 else ""
        # the liquidatable rows' long and short positions (engine.summary's split); a
        # run recorded before the split has the total only, drawn as one series
        if all("long_notional_usd" in r for r in rows):
            sides = [("long positions", "long_notional_usd", "#d62728"),
                     ("short positions", "short_notional_usd", "#2ca02c")]
        else:
            sides = [("liquidatable positions", "notional_usd", "#7f7f7f")]
        for j, (side, key, col) in enumerate(sides):
            values = np.array([float(r[key]) for r in rows], dtype=np.float64)
            data.append(_bars(
                shock, values, prefix + side,
                _COLOURS[(2 * k + j) % len(_COLOURS)] if len(runs) > 1 else col,
                customdata=accounts,
                hovertemplate="%{x:+.0%}: %{y:,.0f} USD, %{customdata:,} accounts"))
    # one venue: long and short stacked per move; several: side by side
    layout = _layout(_TITLES["liquidation_map"], below=_TITLED,
                     barmode="relative" if len(runs) == 1 else "group")
    layout["xaxis"].update(title={"text": "move of every mark at once, from the start"},
                           tickformat="+.0%")
    layout["yaxis"].update(title={"text": "notional then liquidatable (USD)"})
    return data, layout


def _distribution_figure(runs: Mapping[str, ReportRun]) -> tuple[list[Trace], Layout]:
    data: list[Trace] = []
    shapes: list[dict[str, Any]] = []
    notes: list[dict[str, Any]] = []
    for k, (label, run) in enumerate(runs.items()):
        per = run.metrics.get("per_path") or []
        bad = np.array([p["bad_debt"] for p in per], dtype=np.float64)
        if bad.shape[0] == 0:
            continue
        colour = _COLOURS[k % len(_COLOURS)]
        top = float(bad.max())
        edges = np.linspace(0.0, top, 31) if top > 0 else np.array([0.0, 1.0])
        counts, e = np.histogram(bad, bins=edges)
        data.append(_bars((e[:-1] + e[1:]) / 2, counts, f"{label} paths", colour,
                          width=_f(np.diff(e)), opacity=0.7))
        for j, (key, name) in enumerate((("var95_bad_debt", "VaR 95"),
                                         ("var99_bad_debt", "VaR 99"),
                                         ("es99_bad_debt", "ES 99"))):
            v = run.metrics.get(key)
            if not isinstance(v, int | float):
                continue
            shapes.append({"type": "line", "x0": v, "x1": v, "y0": 0, "y1": 1,
                           "yref": "paper", "line": {"color": colour, "dash": _DASHES[j + 1]}})
            notes.append({"x": v, "y": 1, "yref": "paper", "showarrow": False,
                          "yanchor": "bottom", "yshift": 14 * (3 * k + j),
                          "text": f"{label} {name}: {v:,.2f}", "xanchor": "left",
                          "font": {"size": 10, "color": colour}})
    layout = _layout(_TITLES["bad_debt_distribution"], below=_TITLED,
                     top=_TITLE_PX + 14 * len(notes) + 6,
                     shapes=shapes, annotations=notes, barmode="overlay")
    layout["xaxis"].update(title={"text": "bad debt of a path (settlement asset)"})
    layout["yaxis"].update(title={"text": "paths"})
    return data, layout


_FAN_ROWS: Final = (("index", "first market's index / start"),
                    ("insurance_fund_equity", "insurance fund equity"),
                    ("liquidated", "cumulative liquidated notional"),
                    ("bad_debt", "bad debt (cumulative)"))


def _fan_series(s: StepSeries, key: str) -> Float64Array1D:
    if key == "index":
        x = next(iter(s.index.values()))
        return x / x[0] if x.shape[0] and x[0] > 0 else x
    if key == "liquidated":
        return np.cumsum(s.liq_notional)
    return _f(getattr(s, key))


def _fan_figure(runs: Mapping[str, ReportRun]) -> tuple[list[Trace], Layout]:
    axes, names = _stacked([(t, 1.0) for _, t in _FAN_ROWS], 0.12)
    data: list[Trace] = []
    for k, (label, run) in enumerate(runs.items()):
        if len(run.paths) < 2:
            continue
        colour = _COLOURS[k % len(_COLOURS)]
        x = _x(max(run.paths, key=lambda p: p.ts_ms.shape[0]))
        for r, (key, _title) in enumerate(_FAN_ROWS):
            on = {"xaxis": "x" + names[r][1:], "yaxis": names[r]}
            q = fan([_fan_series(p, key) for p in run.paths])
            show = r == 0
            for lo, hi, alpha, name in ((0, 4, 0.15, "5-95 %"), (1, 3, 0.3, "25-75 %")):
                data.append(_line(x, q[lo], f"{label} {QUANTILES[lo]:.0%}", colour,
                                  group=f"{label}{name}", show=False, width=0) | on)
                data.append(_line(x, q[hi], f"{label} {name} of paths", colour,
                                  group=f"{label}{name}", show=show, width=0) | on | {
                                      "fill": "tonexty", "fillcolor": _rgba(colour, alpha)})
            data.append(_line(x, q[2], f"{label} median", colour, group=f"{label}med",
                              show=show) | on)
            data.append(_line(_x(run.series), _fan_series(run.series, key),
                              f"{label} path 0 (the timeline's)", colour, dash="dot",
                              group=f"{label}p0", show=show) | on)
    layout = _layout(_TITLES["fan"], plot=800, top=_TITLE_PX + 20)
    layout.update(axes)
    return data, layout


def _rgba(hex_colour: str, alpha: float) -> str:
    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


@dataclass(frozen=True, slots=True)
class Figure:
    """A chart of the page: its id, the section it sits in, its traces and layout."""

    chart: str
    section: str
    data: list[Trace]
    layout: Layout
    min_width_px: int = 0  # narrower than this, the chart scrolls instead (0: none)


def figures(runs: Mapping[str, ReportRun]) -> list[Figure]:
    """Return the page's charts, in page order."""
    out = [Figure("timeline", "timeline", *_timeline(runs))]
    if any(_who(r) is not None for r in runs.values()):
        out += [Figure("margin_ratio", "who", *_margin_ratio_figure(runs)),
                Figure("leverage", "who", *_leverage_figure(runs)),
                Figure("liquidation_map", "who", *_liquidation_map_figure(runs))]
    if any(r.metrics.get("per_path") for r in runs.values()):
        out.append(Figure("bad_debt_distribution", "monte-carlo",
                          *_distribution_figure(runs)))
    if any(len(r.paths) > 1 for r in runs.values()):
        out.append(Figure("fan", "monte-carlo", *_fan_figure(runs)))
    out += [Figure(c, "series", *_series_figure(c, runs)) for c in CHARTS]
    return out


def _typed(obj: Any) -> Any:
    """JSON for a numpy array: a plotly.js typed array (float64, little-endian, base64);
    non-finite values become ``NaN`` (plotly.js leaves a gap)."""
    if isinstance(obj, np.ndarray):
        arr = np.ascontiguousarray(obj, dtype="<f8")
        return {"dtype": "f8", "bdata": base64.b64encode(arr.tobytes()).decode("ascii"),
                **({"shape": f"{arr.shape[0]}, {arr.shape[1]}"} if arr.ndim == 2 else {})}
    if isinstance(obj, np.integer | np.floating):
        return obj.item()
    raise TypeError(f"not JSON: {type(obj).__name__}")


FIT_JS: Final = (
    # Keep a figure's plot area ``plot`` px high: a horizontal legend below the plot takes
    # as many rows as the width needs, which plotly takes out of the plot (it pushes the
    # bottom margin inside a fixed height); grow the figure by what the rows took instead,
    # on the first draw and after every redraw (a resize changes the rows). Sets
    # ``data-fit="ok"`` on the chart when its plot area has its height.
    # The bottom margin is set to hold the legend where it is (``below`` px under the
    # plot, its height read from the drawn legend), so plotly has nothing to push and one
    # redraw does it; where it still pushes (tick labels), the figure grows by the rest.
    "function solvencyFit(gd,plot,below){let n=0;const fit=()=>{const fl=gd._fullLayout;"
    "if(!fl||!fl._size)return;const d=Math.round(plot-fl._size.h);"
    "if(Math.abs(d)<1){n=0;gd.dataset.fit='ok';return;}if(++n>8)return;"
    "delete gd.dataset.fit;const lh=fl.legend&&fl.legend._height?fl.legend._height:0;"
    "const b=Math.max(fl.margin.b,Math.ceil(below+lh+12));"
    "const h=Math.round(fl.height+d+b-fl._size.b);gd.style.height=h+'px';"
    "Plotly.relayout(gd,{height:h,'margin.b':b});};gd.on('plotly_afterplot',fit);fit();}")
"""The page's script that grows each figure to keep its plot height (see ``_layout``)."""


def _plot_html(f: Figure) -> str:
    data = json.dumps(f.data, default=_typed, separators=(",", ":"))
    layout = json.dumps(f.layout, default=_typed, separators=(",", ":"), allow_nan=False)
    config = json.dumps({"displaylogo": False, "responsive": True})
    m = f.layout["margin"]
    plot = int(f.layout["height"]) - int(m["t"]) - int(m["b"])
    below = round(-float(f.layout["legend"]["y"]) * plot)
    # the JSON sits in a <script>: "</" would end it
    data, layout = data.replace("</", "<\\/"), layout.replace("</", "<\\/")
    # a chart with a least width scrolls sideways in its section below it: its cells'
    # numbers are never squeezed or cut
    scroll, least = ((" style='overflow-x:auto'", f"min-width:{f.min_width_px}px;")
                     if f.min_width_px else ("", ""))
    return (f"<section class='chart' data-chart='{f.chart}'{scroll}><div "
            f"id='chart-{f.chart}' class='plotly-graph-div' style='height:"
            f"{int(f.layout['height'])}px;{least}width:100%'></div>"
            "<script type='text/javascript'>"
            # drawn once the page is laid out: a chart in a grid measured while the page
            # is still parsing would take the whole row and overflow its cell
            f"document.addEventListener(\"DOMContentLoaded\",()=>Plotly.newPlot("
            f"\"chart-{f.chart}\",{data},{layout},{config}).then(gd=>solvencyFit(gd,{plot},"
            f"{below})));</script></section>")


# ---------------------------------------------------------------- contagion
#
# A multi-venue run (docs/contagion.md): the attribution of ``simulate --json`` (linked
# and alone per venue, the system's totals, the spillover matrix) as a table and heat
# maps, and each venue's series linked and alone on one time axis. Every number is read
# from the payload that metrics.json holds; nothing is computed again but sums of the
# series the other charts draw.

CONTAGION_FIGURES: Final[tuple[tuple[str, str, Unit], ...]] = (
    ("liquidations", "liquidation fills", "count"),
    ("liquidated_notional", "liquidated notional", "amount"),
    ("accounts_liquidated", "accounts liquidated", "count"),
    ("insurance_fund_used", "insurance fund used", "amount"),
    ("adl_notional", "ADL notional", "amount"),
    ("bad_debt", "bad debt", "amount"),
)
"""The attribution's figures (``sim.contagion.FIGURES``) with their labels and units."""

SPILLOVER_MAPS: Final[tuple[str, ...]] = ("liquidated_notional", "liquidations",
                                          "insurance_fund_used")
"""The spillover matrices drawn as heat maps (chart ``spillover_<figure>``), in order."""


@dataclass(frozen=True, slots=True)
class ContagionView:
    """What the contagion section of a multi-venue run's page shows.

    Attributes
    ----------
    payload : Mapping[str, Any]
        ``simulate --json`` of the run (metrics.json): ``links``, ``venues``,
        ``isolated``, ``spillover``, ``systemic`` and ``basis`` (``ts_ms`` and ``bps``:
        venue -> market -> bps), with ``arbitrage`` and ``traders`` when those links ran.
    isolated_series : Mapping[str, StepSeries]
        Each venue's series alone (drawn dotted beside the linked run's; not drawn
        without links, where they are the linked run's).
    """

    payload: Mapping[str, Any]
    isolated_series: Mapping[str, StepSeries]


def _signed(v: float, unit: Unit, asset: str = "") -> str:
    text = format_value(v, unit, asset)
    return text if v <= 0 else f"+{text}"


def _spillover_matrix(view: ContagionView, key: str
                      ) -> tuple[list[str], list[list[float | None]]]:
    """Venue names and the spillover of ``key`` from row ``i`` to column ``j`` (``None``
    on the diagonal: a venue does not spill over onto itself)."""
    names = list(view.payload["venues"])
    spill = view.payload["spillover"]
    return names, [[None if i == j else float(spill[i][j][key]) for j in names]
                   for i in names]


def _cell_px(texts: Sequence[str]) -> int:
    # the widest cell text at 12 px (about 7 px a character) plus padding
    return max((len(t) for t in texts), default=1) * 7 + 24


def _heat_map_figure(view: ContagionView, key: str) -> Figure:
    names, z = _spillover_matrix(view, key)
    unit = dict((k, u) for k, _, u in CONTAGION_FIGURES)[key]
    label = dict((k, t) for k, t, _ in CONTAGION_FIGURES)[key]
    venues = view.payload["venues"]
    assets = [_asset(venues[n]) for n in names]
    text = [["-" if v is None else _signed(v, unit) for v in row] for row in z]
    to = [f"to {n}" + (f" ({a})" if unit == "amount" and a else "")
          for n, a in zip(names, assets, strict=True)]
    values = [abs(v) for row in z for v in row if v is not None]
    top = max(values, default=0.0) or 1.0
    trace: Trace = {
        "type": "heatmap", "z": z, "x": to, "y": [f"from {n}" for n in names],
        "text": text, "texttemplate": "%{text}", "textfont": {"size": 12},
        "hovertemplate": "%{y} %{x}: %{text}<extra></extra>",
        # red: the row's venue added to the column's figure; blue: it took away
        "colorscale": [[0.0, "#2166ac"], [0.5, "#f7f7f7"], [1.0, "#b2182b"]],
        "zmin": -top, "zmax": top,
        "xgap": 2, "ygap": 2, "colorbar": {"title": {"text": "change"}, "thickness": 12},
        "name": f"spillover of {label}"}
    cell = _cell_px([t for row in text for t in row] + to)
    plot = 48 * len(names) + 20
    # short: the title shares its line with plotly's mode bar; the note above the table
    # says what a spillover is
    layout = _layout(f"Spillover of {label}, row to column", plot=plot, below=10,
                     showlegend=False)
    layout["xaxis"].update(side="top", type="category", showgrid=False)
    layout["yaxis"].update(autorange="reversed", type="category", showgrid=False)
    layout["margin"]["t"] = _TITLE_PX + 30
    layout["height"] += 30
    width = 130 + cell * len(names) + 90
    return Figure(f"spillover_{key}", "contagion", [trace], layout, min_width_px=width)


_CONTAGION_ROWS: Final = (
    ("liquidated", "liquidated notional, cumulative (solid: linked, dotted: alone)", 0.34),
    ("basis", "basis: trade price against the index, bps", 0.33),
    ("fund", "insurance fund equity, the low of which is 'fund used' (solid: linked, "
             "dotted: alone)", 0.33))
_MARKET_DASHES: Final = ("solid", "dash", "dashdot", "longdash")
"""The basis row's dash per market (never dotted: dotted is a venue alone)."""


def _contagion_series_figure(runs: Mapping[str, ReportRun],
                             view: ContagionView) -> Figure:
    basis = view.payload.get("basis") or {"ts_ms": [], "bps": {}}
    markets = list(next(iter(basis["bps"].values()), {}))
    dashes = ", ".join(f"{_MARKET_DASHES[j % len(_MARKET_DASHES)]}: {m}"
                       for j, m in enumerate(markets))
    axes, names = _stacked([(f"{t} ({dashes})" if key == "basis" else t, h)
                            for key, t, h in _CONTAGION_ROWS], 0.06)
    bx = _f(basis["ts_ms"])
    linked = bool(view.payload.get("links"))
    data: list[Trace] = []
    for k, (label, run) in enumerate(runs.items()):
        colour = _COLOURS[k % len(_COLOURS)]
        on = [{"xaxis": "x" + n[1:], "yaxis": n, "legendgroup": label} for n in names]
        alone = view.isolated_series.get(label) if linked else None
        x = _x(run.series)
        data.append(_line(x, np.cumsum(run.series.liq_notional), f"{label}", colour) | on[0])
        if alone is not None:
            data.append(_line(_x(alone), np.cumsum(alone.liq_notional), f"{label} alone",
                              colour, dash="dot", show=False) | on[0])
        for j, (market, bps) in enumerate(basis["bps"].get(label, {}).items()):
            data.append(_line(bx, bps, f"{label} {market} basis", colour,
                              dash=_MARKET_DASHES[j % len(_MARKET_DASHES)],
                              show=False) | on[1])
        data.append(_line(x, run.series.insurance_fund_equity, f"{label} fund", colour,
                          show=False) | on[2])
        if alone is not None:
            data.append(_line(_x(alone), alone.insurance_fund_equity,
                              f"{label} fund alone", colour, dash="dot", show=False) | on[2])
    layout = _layout("Each venue over time", plot=720, top=_TITLE_PX + 18)
    layout.update(axes)
    return Figure("contagion_series", "contagion", data, layout)


def contagion_figures(runs: Mapping[str, ReportRun], view: ContagionView) -> list[Figure]:
    """The contagion section's charts: a heat map per :data:`SPILLOVER_MAPS` figure and
    each venue's series (``contagion_series``)."""
    return [*(_heat_map_figure(view, key) for key in SPILLOVER_MAPS),
            _contagion_series_figure(runs, view)]


def _contagion_table_html(view: ContagionView) -> str:
    p = view.payload
    names = list(p["venues"])
    head = ("<tr><th>figure</th><th>run</th>" + "".join(
        f"<th>{_esc(n)}</th>" for n in names) + "<th>system (sum)</th></tr>")
    rows = []
    for key, label, unit in CONTAGION_FIGURES:
        for run, part, total in (("linked", "venues", "linked"),
                                 ("alone", "isolated", "alone"),
                                 ("change", None, "contagion")):
            cells = []
            for n in names:
                asset = _asset(p["venues"][n])
                if part is None:
                    v = float(p["venues"][n].get(key) or 0.0) - float(
                        p["isolated"][n].get(key) or 0.0)
                    text = _signed(v, unit, asset)
                else:
                    text = format_value(float(p[part][n].get(key) or 0.0), unit, asset)
                cells.append(f"<td class='figure' data-venue='{_esc(n)}' data-run='{run}' "
                             f"data-key='{key}'>{_esc(text)}</td>")
            v = float(p["systemic"][total][key])
            text = _signed(v, unit) if part is None else format_value(v, unit)
            cells.append(f"<td class='figure' data-venue='system' data-run='{run}' "
                         f"data-key='{key}'>{_esc(text)}</td>")
            name = f"<th class='name' rowspan='3'>{_esc(label)}</th>" if run == "linked" \
                else ""
            rows.append(f"<tr class='{run}'>{name}<td>{run}</td>{''.join(cells)}</tr>")
    return f"<table class='contagion'>{head}{''.join(rows)}</table>"


def _links_note(view: ContagionView) -> str:
    p = view.payload
    links = ", ".join(p.get("links") or ()) or "none (each venue's run is its run alone)"
    text = (f"Links in force: {links}. Linked: each venue in the run with the links; "
            "alone: its single-venue run; change: linked less alone; the system column "
            "sums the venues (amounts in each venue's settlement asset, taken 1:1). "
            "Spillover from a venue to another: the other's figure in the linked run "
            "less in the linked run without the first (docs/contagion.md).")
    arb = p.get("arbitrage") or {}
    if arb:
        text += (f" Arbitrageurs: {format_value(arb.get('trades'), 'count')} market-steps "
                 f"traded, gross inventory at most "
                 f"{format_value(arb.get('gross_max'), 'amount', 'USD')}.")
    tr = p.get("traders") or {}
    if tr:
        text += (f" Shared traders: {format_value(tr.get('traders'), 'count')}, "
                 f"{format_value(tr.get('transfers'), 'count')} transfers asked, "
                 f"wallets {format_value(tr.get('wallet_start'), 'amount', 'USD')} at the "
                 f"start, {format_value(tr.get('wallet_left'), 'amount', 'USD')} left.")
    books = [f"{v} {asset} {_num(b.get('book_start'))} -> low {_num(b.get('book_low'))} "
             f"({_num(b.get('sold_units'))} sold)"
             for v, assets in (p.get("collateral") or {}).items()
             for asset, b in assets.items()]
    if books:
        text += f" Collateral books (start -> low, units sold into them): {'; '.join(books)}."
    return f"<p class='note'>{_esc(text)}</p>"


def _num(v: Any) -> str:
    return format_value(v, "amount")


def _contagion_html(view: ContagionView, divs: Sequence[str]) -> str:
    maps, series = divs[:len(SPILLOVER_MAPS)], divs[len(SPILLOVER_MAPS):]
    return (f"<section id='contagion'><h2>Contagion</h2>{_links_note(view)}"
            f"<div class='wide'>{_contagion_table_html(view)}</div>"
            f"{''.join(maps)}{''.join(series)}</section>")


# ---------------------------------------------------------------- HTML


def _esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _asset(metrics: Mapping[str, Any]) -> str:
    return str(metrics.get("settle_asset") or "")


def _spread(metrics: Mapping[str, Any], key: str, unit: Unit) -> str:
    q = (metrics.get("quantiles") or {}).get(key)
    if not q:
        return ""
    asset = _asset(metrics)
    return (f"<span class='spread'>5-95 % of paths: {_esc(format_value(q['p05'], unit, asset))}"
            f" to {_esc(format_value(q['p95'], unit, asset))}</span>")


def _verdict_html(runs: Mapping[str, ReportRun], thresholds: Mapping[str, float]) -> str:
    lines = []
    for label, run in runs.items():
        checks = verdict(run.metrics, thresholds)
        ok = all(c.ok for c in checks)
        parts = []
        for c in checks:
            if c.value is None and c.limit is None:
                parts.append(f"{'✓' if c.ok else '✗'} {_esc(c.name)}")
                continue
            val = format_value(c.value, c.unit, _asset(run.metrics))
            lim = format_value(c.limit, c.unit, _asset(run.metrics))
            parts.append(f"<span class='{'ok' if c.ok else 'bad'}'>{'✓' if c.ok else '✗'} "
                         f"{_esc(c.name)} {_esc(val)} {'≤' if c.ok else '>'} {_esc(lim)}"
                         "</span>")
        lines.append(f"<div class='verdict {'pass' if ok else 'fail'}' "
                     f"data-venue='{_esc(label)}' data-pass='{str(ok).lower()}'>"
                     f"<b>{_esc(label)}: {'PASS' if ok else 'FAIL'}</b> — "
                     f"{'; '.join(parts)}</div>")
    basis = ("the 95th percentile over paths" if any(
        r.metrics.get("quantiles") for r in runs.values()) else "the run's figures")
    src = ("thresholds from the scenario's [report] table" if thresholds else
           "no [report] thresholds in the scenario: solvency only (bad debt 0)")
    return (f"<section id='verdict'>{''.join(lines)}<p class='note'>Checked: {basis}; "
            f"{_esc(src)}.</p></section>")


def _headline_html(runs: Mapping[str, ReportRun]) -> str:
    head = "<tr><th>figure</th>" + "".join(
        f"<th>{_esc(v)}</th>" for v in runs) + "<th class='meaning'>meaning</th></tr>"
    rows = []
    figs = {label: headline(r.metrics) for label, r in runs.items()}
    for key, name, unit, meaning in HEADLINE:
        cells = []
        for label, run in runs.items():
            value = figs[label][key]
            text = format_value(value, unit, _asset(run.metrics))
            cells.append(f"<td class='figure' data-venue='{_esc(label)}' "
                         f"data-key='{key}'><span class='value'>{_esc(text)}</span>"
                         f"{_spread(run.metrics, key, unit)}</td>")
        rows.append(f"<tr><th class='name'>{_esc(name)}</th>{''.join(cells)}"
                    f"<td class='meaning'>{_esc(meaning)}</td></tr>")
    return f"<table class='headline'>{head}{''.join(rows)}</table>"


def _markets(metrics: Mapping[str, Any]) -> list[str]:
    return list((metrics.get("price_drawdown") or {}).keys())


def _per_market_html(runs: Mapping[str, ReportRun]) -> str:
    head = ("<tr><th>venue</th><th>market</th><th>open interest at the start (one side)"
            "</th><th>liquidated notional</th><th>liquidated share of open interest</th>"
            "<th>ADL notional</th>"
            "<th>index drawdown</th><th>trade price drawdown</th>"
            "<th>cascade amplification</th><th>time not in normal state</th></tr>")
    rows = []
    for label, run in runs.items():
        m = run.metrics
        asset = _asset(m)
        for market in _markets(m):
            # one side, as the headline's liquidated_share_of_oi (the run's own metrics)
            oi = (m.get("open_interest_start_notional_by_market") or {}).get(market)
            liq = (m.get("liquidated_notional_by_market") or {}).get(market)
            share = (m.get("liquidated_share_of_oi_by_market") or {}).get(market)
            breaker = (m.get("breaker_time_ms") or {}).get(market) or {}
            abnormal = sum(float(v) for s, v in breaker.items() if s != "normal") \
                if breaker else None
            cells = [format_value(oi, "amount", asset), format_value(liq, "amount", asset),
                     format_value(share, "share"),
                     format_value((m.get("adl_notional_by_market") or {}).get(market),
                                  "amount", asset),
                     format_value(m["price_drawdown"].get(market), "share"),
                     format_value((m.get("trade_price_drawdown") or {}).get(market), "share"),
                     format_value((m.get("cascade_amplification_by_market") or {}).get(
                         market), "ratio"),
                     format_value(abnormal, "duration")]
            rows.append(f"<tr><td>{_esc(label)}</td><td>{_esc(market)}</td>" + "".join(
                f"<td>{_esc(c)}</td>" for c in cells) + "</tr>")
    return f"<table class='markets'>{head}{''.join(rows)}</table>"


def _all_metrics_html(runs: Mapping[str, ReportRun]) -> str:
    from solvency.sim.metrics import flatten

    flat = {label: flatten({k: v for k, v in r.metrics.items() if k not in _HIDDEN})
            for label, r in runs.items()}
    keys: dict[str, None] = {}
    for f in flat.values():
        for k in f:
            keys.setdefault(k, None)
    grouped: dict[str, list[tuple[str, str, Unit]]] = {g: [] for g, _ in GROUPS}
    grouped["Other"] = []
    order = {k: i for i, (k, *_r) in enumerate(r for _, rows in GROUPS for r in rows)}
    for k in sorted(keys, key=lambda k: (order.get(k.partition(".")[0], 10**6), k)):
        group, label, unit = label_of(k)
        grouped[group].append((k, label, unit))
    parts = []
    for group, items in grouped.items():
        if not items:
            continue
        head = "<tr><th>metric</th>" + "".join(f"<th>{_esc(v)}</th>" for v in runs) + \
            "<th>key in metrics.json</th></tr>"
        body = "".join(
            f"<tr><td>{_esc(label)}</td>" + "".join(
                f"<td>{_esc(format_value(flat[v].get(k), unit, _asset(runs[v].metrics)))}"
                "</td>" for v in runs) + f"<td><code>{_esc(k)}</code></td></tr>"
            for k, label, unit in items)
        parts.append(f"<h3>{_esc(group)}</h3><table class='all'>{head}{body}</table>")
    return (f"<details id='all-metrics'><summary>All metrics ({len(keys)}), grouped, with "
            "units (the glossary: docs/stress_lab.md)</summary>"
            f"{''.join(parts)}</details>")


def _facts(runs: Mapping[str, ReportRun]) -> str:
    first = next(iter(runs.values()))
    s, m = first.series, first.metrics
    span = (f"{_iso(float(s.ts_ms[0]))} to {_iso(float(s.ts_ms[-1]))}"
            if s.ts_ms.shape[0] else "")
    seeds = m.get("seed_market")
    text = (f"{len(runs)} venue{'s' if len(runs) > 1 else ''} ({', '.join(runs)}); "
            f"{format_value(m.get('accounts'), 'count')} accounts, "
            f"{format_value(m.get('positions'), 'count')} positions; {span}; "
            f"{format_value(m.get('points'), 'count')} points; population seed "
            f"{m.get('seed_population')}; amounts in {_asset(m)}.")
    if m.get("paths"):
        shown = seeds[0] if isinstance(seeds, list) and seeds else seeds
        text += (f" Monte Carlo: {m['paths']} paths (market seeds "
                 f"{format_value(seeds, 'text')}): every figure is the mean over paths, "
                 f"with 5-95 % of paths under it; the timeline and series charts show "
                 f"path 0 (market seed {shown}); the fan charts show every path.")
    return f"<p class='facts'>{_esc(text)}</p>"


PAGE_STYLE: Final = (
    "body{font-family:system-ui,sans-serif;margin:1.5em 2em;color:#222;max-width:1400px}"
    "h1{font-size:1.5em;margin-bottom:.2em}h2{margin-top:1.6em;border-bottom:1px solid #ddd}"
    "table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ddd;"
    "padding:4px 9px;text-align:right;vertical-align:top}th.name,td:first-child{text-align:"
    "left}td.meaning,th.meaning{text-align:left;color:#555;font-size:.9em;max-width:34em}"
    "td.figure .value{font-size:1.15em;font-weight:600;white-space:nowrap}"
    ".spread{display:block;font-size:.8em;color:#666;white-space:nowrap}"
    ".verdict{padding:.5em .8em;margin:.3em 0;border-radius:4px}"
    ".verdict.pass{background:#dff3df;border:1px solid #8c8}"
    ".verdict.fail{background:#f8dddd;border:1px solid #c88}.verdict .bad{color:#a00}"
    ".note,.facts{color:#555;font-size:.9em}details summary{cursor:pointer;font-weight:600;"
    "margin:1em 0}code{font-size:.85em;color:#555}.grid{display:grid;"
    "grid-template-columns:repeat(auto-fit,minmax(560px,1fr));gap:.5em}"
    # a grid item is as wide as its content by default: plotly's SVG would overflow it
    ".grid>section{min-width:0;overflow:hidden}"
    ".wide{overflow-x:auto}table.contagion td{white-space:nowrap}"
    "table.contagion tr.linked td,table.contagion tr.linked th{border-top:2px solid #bbb}")
"""The pages' CSS (this report and the sweep's frontier page)."""


def write_report(path: str | Path, *, title: str,
                 runs: Mapping[str, StepSeries | ReportRun],
                 metrics: Mapping[str, Mapping[str, Any]] | None = None,
                 description: str = "", thresholds: Mapping[str, float] | None = None,
                 bad_debt_paths: Mapping[str, Sequence[float]] | None = None,
                 contagion: ContagionView | None = None) -> Path:
    """Write the report and return its path.

    Parameters
    ----------
    path : str or Path
        Output file (parent folders are created).
    title, description : str
        Page heading and a line under it.
    runs : Mapping[str, ReportRun or StepSeries]
        Label (venue) -> what is drawn; several are side by side and overlaid. A bare
        ``StepSeries`` takes its metrics from ``metrics``.
    metrics : Mapping[str, Mapping[str, Any]] or None
        Label -> metrics, for runs given as bare series.
    thresholds : Mapping[str, float] or None
        The scenario's ``[report]`` thresholds (:attr:`Scenario.report`).
    bad_debt_paths : Mapping[str, Sequence[float]] or None
        Not used: the distribution is read from each summary's ``per_path`` (kept for
        callers of the former signature).
    contagion : ContagionView or None
        A multi-venue run's attribution and series: the page gains its "Contagion"
        section (the linked and alone table, the spillover heat maps, each venue's
        series) after the headline.

    Raises
    ------
    ValueError
        If ``runs`` is empty or a bare series has no metrics.
    """
    del bad_debt_paths
    if not runs:
        raise ValueError("report: no runs")
    full: dict[str, ReportRun] = {}
    for label, r in runs.items():
        if isinstance(r, ReportRun):
            full[label] = r
        elif metrics is None or label not in metrics:
            raise ValueError(f"report: no metrics for {label!r}")
        else:
            full[label] = ReportRun(metrics=metrics[label], series=r)
    figs = figures(full)
    if contagion is not None:
        figs = [*contagion_figures(full, contagion), *figs]
    divs: dict[str, list[str]] = {}
    for f in figs:
        divs.setdefault(f.section, []).append(_plot_html(f))
    charts_json = _esc(json.dumps([f.chart for f in figs]))
    mc = ("<h2>Monte Carlo</h2>" + "".join(divs["monte-carlo"])
          if "monte-carlo" in divs else "")
    who = ("<h2>Who was hit</h2><p class='note'>Accounts holding positions at the start "
           "and at the first market's index low (read from the engine's book); the "
           "liquidation map re-margins the starting book at shocked marks with the "
           "engine's own kernels (the risk report's liquidations at risk).</p>"
           f"<div class='grid'>{''.join(divs['who'])}</div>" if "who" in divs else "")
    spread = (_contagion_html(contagion, divs["contagion"]) if contagion is not None
              else "")
    doc = (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{_esc(title)}</title><style>{PAGE_STYLE}</style>"
        f"<script type='text/javascript'>{get_plotlyjs()}</script>"
        f"<script type='text/javascript'>{FIT_JS}</script></head>"
        f"<body data-charts='{charts_json}'><h1>{_esc(title)}</h1>"
        f"<p>{_esc(description)}</p>{_facts(full)}"
        f"{_verdict_html(full, thresholds or {})}<h2>Headline</h2>{_headline_html(full)}"
        f"{spread}{''.join(divs['timeline'])}{who}<h2>Per market</h2>{_per_market_html(full)}"
        f"{mc}<h2>Each series</h2>{''.join(divs['series'])}"
        f"<h2>All metrics</h2>{_all_metrics_html(full)}</body></html>")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(doc, encoding="utf-8")
    return out
