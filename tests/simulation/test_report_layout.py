"""The report's time charts keep their layout with six venues (issue 25).

A ``--compare`` of six venues marks 18 moments (each venue's first liquidation, fund low
and first ADL) and draws up to 12 legend entries per chart. The page is opened in headless
Chromium (offline, over DevTools: ``opened`` of test_report_render) and the geometry of
plotly's SVG is read from the DOM: the plot areas (``.draglayer .nsewdrag``), the title
(``.gtitle``), the legend (``.legend .bg``) and its items (``.legend .traces``), the x tick
labels and axis titles, the annotation boxes (the event tags). Every time chart must have:
the title above the plot and clear of every tag and of the legend; no two tags and no two
legend items overlapping; the legend clear of the tick labels; the plot area its full
height (the figure grows for legend rows and tag rows; the plot is not squashed) and at
least 40 % of the figure; nothing outside the window on the left or the right.

Under the layout before this test (labels stacked above the plot inside a fixed height,
the legend at 20 % of the plot's height under it), the six-venue insurance-fund chart fails
every one of these: its plot was 75 px of a 385 px figure.

Plotly's reference for what is used: legend ``orientation``/``x``/``y``/``yanchor`` in
paper units (https://plotly.com/javascript/reference/layout/#layout-legend), the title's
``yref: "container"`` (https://plotly.com/javascript/reference/layout/#layout-title-yref),
shapes in the legend (``showlegend``/``name``/``legendrank``,
https://plotly.com/javascript/reference/layout/shapes/#layout-shapes-items-shape-showlegend)
and the axes' ``automargin``.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from solvency.sim.metrics import StepSeries
from solvency.sim.report import CHARTS, ReportRun, write_report
from tests.integration.service.test_dashboard import Cdp
from tests.simulation.test_report_render import artifacts_dir, opened, page_errors

VENUES = ("binance", "dydx", "hyperliquid", "drift", "deribit", "bitmex")
T0 = 1_667_779_200_000  # 2022-11-07 00:00 UTC
STEP = 45 * 60_000
N = 100  # 75 hours


def _run(k: int, rng: np.random.Generator) -> ReportRun:
    ts = T0 + STEP * np.arange(N, dtype=np.int64)
    s = StepSeries.empty(ts, ("BTC-PERP",))
    walk = np.exp(np.cumsum(rng.normal(0.0, 0.004, N)))
    s.index["BTC-PERP"][:] = 20_000.0 * walk
    s.mark["BTC-PERP"][:] = 20_000.0 * walk * (1 + 0.001 * k)
    s.trade["BTC-PERP"][:] = 20_000.0 * walk * (1 - 0.002 * k)
    s.mm_rate["BTC-PERP"][:] = 0.005 + 0.0005 * k
    s.im_rate["BTC-PERP"][:] = 0.01 + 0.0005 * k
    s.breaker["BTC-PERP"][50 + 2 * k:54 + 2 * k] = 1
    s.liq_notional[:] = np.maximum(rng.normal(0.0, 1e6, N), 0.0)
    s.adl_notional[67:70] = 1e5 * (k + 1)
    s.adl_haircut[:] = np.cumsum(s.adl_notional) * 0.01
    s.insurance_fund[:] = 10e6 - np.cumsum(s.liq_notional) * 0.001 * (k + 1)
    s.insurance_fund_equity[:] = s.insurance_fund * 0.98
    s.bad_debt[:] = np.cumsum(s.adl_notional) * 0.001 * k
    s.at_risk[:] = rng.integers(0, 500, N)
    ms = [int(t) for t in ts]
    metrics = {
        "settle_asset": "USDT", "conserved": True, "accounts": 1000, "positions": 2000,
        "points": N, "seed_population": 1, "price_drawdown": {"BTC-PERP": 0.2},
        "crash_window_ms": {"peak": ms[3], "low": ms[77]},
        # the worst case for tags: every venue's first liquidation within 4 steps (3 h),
        # two fund lows at one moment, three ADLs at one moment, one at the path's end
        "first_liquidation_ms": ms[1 + k * 3 // 4],
        "insurance_fund_low_ms": ms[50] if k < 2 else ms[40 + 8 * k],
        "first_adl_ms": ms[67] if k < 3 else (ms[-1] if k == 5 else ms[72])}
    return ReportRun(metrics=metrics, series=s)


def _page(tmp: Path, n: int) -> Path:
    rng = np.random.default_rng(25)
    runs = {v: _run(k, rng) for k, v in enumerate(VENUES[:n])}
    return write_report(tmp / f"report-{n}.html", title=f"{n} venues", runs=runs)


_GEOMETRY_JS = """(() => {
  const box = e => { const b = e.getBoundingClientRect();
                     return {l: b.left, t: b.top, r: b.right, b: b.bottom}; };
  const out = [];
  for (const s of document.querySelectorAll('section.chart')) {
    const gd = s.querySelector('.js-plotly-plot');
    if (!gd || !gd._fullLayout) return null;  // not drawn yet
    const all = sel => Array.from(gd.querySelectorAll(sel)).map(box);
    out.push({chart: s.dataset.chart, fit: gd.dataset.fit || null,
              figure: box(gd.querySelector('svg.main-svg')),
              plots: all('.draglayer .nsewdrag'), title: all('.gtitle'),
              legend: all('.legend > .bg'), items: all('.legend .traces'),
              ticks: all('.xaxislayer-above text'), xtitles: all('.g-xtitle text'),
              notes: all('.annotation'), width: document.documentElement.clientWidth});
  }
  // drawn, and grown to its plot height where the page has the fit (a page without it
  // is measured as drawn)
  return out.every(c => c.fit === 'ok' || typeof solvencyFit === 'undefined') ? out : null;
})()"""

TIME_CHARTS = ("timeline", *CHARTS)


def _overlap(a: dict[str, float], b: dict[str, float]) -> bool:
    """Whether two boxes share more than a hairline (1 px either way)."""
    return min(a["r"], b["r"]) - max(a["l"], b["l"]) > 1 and \
        min(a["b"], b["b"]) - max(a["t"], b["t"]) > 1


def layout_problems(chart: dict[str, Any]) -> list[str]:
    """Every way one drawn chart's layout falls short (see the module's docstring)."""
    name = chart["chart"]
    out = []
    plots, title, legend = chart["plots"], chart["title"], chart["legend"]
    if not plots or not title:
        return [f"{name}: no plot area or title drawn"]
    top = min(p["t"] for p in plots)
    bottom = max(p["b"] for p in plots)
    fig = chart["figure"]
    t = title[0]
    # plotly draws no legend for a lone trace: its checks then hold trivially
    leg = legend[0] if legend else {"l": fig["l"], "t": fig["b"], "r": fig["l"],
                                    "b": fig["b"]}
    if t["b"] > top:
        out.append(f"{name}: the title runs into the plot")
    notes = chart["notes"]
    if any(_overlap(t, n) for n in notes):
        out.append(f"{name}: the title overlaps an annotation")
    if _overlap(t, leg):
        out.append(f"{name}: the title overlaps the legend")
    if any(_overlap(a, b) for i, a in enumerate(notes) for b in notes[i + 1:]):
        out.append(f"{name}: annotations overlap each other")
    items = chart["items"]
    if any(_overlap(a, b) for i, a in enumerate(items) for b in items[i + 1:]):
        out.append(f"{name}: legend items overlap each other")
    if any(_overlap(leg, x) for x in chart["ticks"] + chart["xtitles"]):
        out.append(f"{name}: the legend overlaps the x tick labels")
    if leg["t"] < bottom:
        out.append(f"{name}: the legend is not below the plot")
    if any(_overlap(n, x) for n in notes for x in chart["ticks"]):
        out.append(f"{name}: an annotation overlaps the x tick labels")
    share = (bottom - top) / (fig["b"] - fig["t"])
    if share < 0.4:
        out.append(f"{name}: the plot area is {share:.0%} of the figure's height")
    boxes = [t, leg, *plots, *notes, *items, *chart["ticks"]]
    if any(b["l"] < 0 for b in boxes):
        out.append(f"{name}: something is cut at the window's left edge")
    if any(b["r"] > chart["width"] for b in boxes):
        out.append(f"{name}: something is cut at the window's right edge")
    if any(b["b"] > fig["b"] + 1 or b["t"] < fig["t"] - 1 for b in boxes):
        out.append(f"{name}: something is outside the figure")
    return out


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    tmp = tmp_path_factory.mktemp("layout")
    return {n: _page(tmp, n) for n in (1, 6)}


@pytest.fixture(scope="module")
def browser_on(chromium: str, pages: dict[int, Path]) -> Iterator[Cdp]:
    blank = pages[6].parent / "blank.html"
    blank.write_text("<!DOCTYPE html><title>blank</title>", encoding="utf-8")
    with opened(chromium, blank) as cdp:
        yield cdp


def _poll(cdp: Cdp, expression: str, timeout: float = 120.0) -> Any:
    """Poll ``expression`` until truthy. The page draws every chart in one task (seconds
    on a loaded machine), during which an evaluation waits: each may take that long."""
    deadline = time.monotonic() + timeout
    while True:
        r = cdp.call("Runtime.evaluate", timeout=timeout, expression=expression,
                     returnByValue=True)
        assert "exceptionDetails" not in r, r
        value = r.get("result", {}).get("value")
        if value:
            return value
        assert time.monotonic() < deadline, f"still falsy after {timeout} s: {expression}"
        time.sleep(0.05)


def drawn_layout(cdp: Cdp, page: Path) -> list[dict[str, Any]]:
    # the page carries plotly.js (4.6 MB): on a loaded machine navigating takes seconds
    cdp.call("Page.navigate", timeout=60, url=page.resolve().as_uri())
    _poll(cdp, "document.readyState === 'complete'")
    charts: list[dict[str, Any]] = _poll(cdp, _GEOMETRY_JS)
    return charts


@pytest.mark.parametrize("venues", [1, 6])
def test_time_charts_stay_readable(browser_on: Cdp, pages: dict[int, Path],
                                   venues: int) -> None:
    charts = drawn_layout(browser_on, pages[venues])
    by = {c["chart"]: c for c in charts}
    assert set(TIME_CHARTS) <= set(by)
    problems = [p for chart in TIME_CHARTS for p in layout_problems(by[chart])]
    # the series charts' plots are all the same height whatever the legend needs
    heights = {round(by[c]["plots"][0]["b"] - by[c]["plots"][0]["t"]) for c in CHARTS}
    if heights != {260}:
        problems.append(f"series plot heights {sorted(heights)} px, not 260")
    assert problems == [], (venues, problems)
    for chart in TIME_CHARTS:
        # every event has its tag (the timeline adds its five row titles)
        assert len(by[chart]["notes"]) - (5 if chart == "timeline" else 0) == 3 * venues
    assert not page_errors(browser_on)
    # the six-venue fund chart, kept as a test artifact
    box = by["insurance_fund"]["figure"]
    shot = browser_on.call("Page.captureScreenshot", timeout=60, format="png", clip={
        "x": box["l"], "y": box["t"] + _poll(browser_on, "window.scrollY + 1") - 1,
        "width": box["r"] - box["l"], "height": box["b"] - box["t"], "scale": 1},
        captureBeyondViewport=True)
    (artifacts_dir() / f"report_layout_{venues}_venues.png").write_bytes(
        base64.b64decode(shot["data"]))


# ---------------------------------------------------------------- each check can fail


def _good() -> dict[str, Any]:
    """A chart laid out as it should be (boxes in px, as the page reports them)."""
    return {"chart": "c", "fit": "ok", "width": 1000,
            "figure": {"l": 0, "t": 0, "r": 1000, "b": 500},
            "plots": [{"l": 70, "t": 80, "r": 980, "b": 340}],
            "title": [{"l": 10, "t": 8, "r": 400, "b": 30}],
            "notes": [{"l": 100, "t": 60, "r": 115, "b": 76},
                      {"l": 100, "t": 44, "r": 115, "b": 60}],
            "ticks": [{"l": 60, "t": 345, "r": 120, "b": 380}],
            "xtitles": [],
            "legend": [{"l": 70, "t": 390, "r": 900, "b": 480}],
            "items": [{"l": 75, "t": 392, "r": 300, "b": 410},
                      {"l": 320, "t": 392, "r": 600, "b": 410}]}


@pytest.mark.parametrize(("edit", "expect"), [
    ({"title": [{"l": 10, "t": 8, "r": 400, "b": 90}]}, "the title runs into the plot"),
    ({"title": [{"l": 10, "t": 40, "r": 400, "b": 62}]}, "the title overlaps an annotation"),
    ({"notes": [{"l": 100, "t": 60, "r": 115, "b": 76}, {"l": 110, "t": 62, "r": 125,
                                                         "b": 78}]},
     "annotations overlap each other"),
    ({"items": [{"l": 75, "t": 392, "r": 330, "b": 410},
                {"l": 320, "t": 392, "r": 600, "b": 410}]},
     "legend items overlap each other"),
    ({"legend": [{"l": 70, "t": 360, "r": 900, "b": 480}]},
     "the legend overlaps the x tick labels"),
    ({"plots": [{"l": 70, "t": 80, "r": 980, "b": 160}]},
     "the plot area is 16% of the figure's height"),
    ({"notes": [{"l": -8, "t": 60, "r": 7, "b": 76}]},
     "something is cut at the window's left edge"),
    ({"legend": [{"l": 70, "t": 390, "r": 1040, "b": 480}]},
     "something is cut at the window's right edge"),
])
def test_each_layout_check_can_fail(edit: dict[str, Any], expect: str) -> None:
    assert layout_problems(_good()) == []
    assert f"c: {expect}" in layout_problems(_good() | edit)
