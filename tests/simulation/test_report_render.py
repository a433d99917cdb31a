"""The stress-lab report in a real browser: Debian's chromium, headless and offline.

``solvency simulate --compare A,B --paths 2 --out DIR`` writes a report with every chart
(the timeline, the three "who was hit" charts, the Monte Carlo bad-debt distribution and
fan charts, and the eight series charts). Chromium loads it from
``file://`` with all networking pointed at nothing (a dead proxy and a host resolver that
resolves no name), runs its scripts (``--virtual-time-budget``) and dumps the DOM. The test
then reads the drawn SVG: every chart the report defines is drawn, with as many traces as
its ``Plotly.newPlot`` call passes, and every trace has data points on the plot (a line
path with vertices, or bars). The negative cases hold the check to failing: a chart with no
traces, a chart whose traces have no points, and the same report with plotly.js from a CDN
instead of inline (which cannot draw offline).

Chromium is required: without it the test fails with a message, unless
``SOLVENCY_SKIP_BROWSER=1`` says to skip it. ``.ci/run`` installs it when missing.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner
from websockets.sync.client import connect

from solvency.cli.main import app
from solvency.sim.report import CHARTS
from tests.integration.service.server import free_port
from tests.integration.service.test_dashboard import Cdp
from tests.simulation.test_run import SMALL

ALL_CHARTS = ("timeline", "margin_ratio", "leverage", "liquidation_map",
              "bad_debt_distribution", "fan", *CHARTS)
"""Every chart of a two-venue Monte Carlo report, in page order."""

_NEWPLOT = re.compile(r'Plotly\.newPlot\(\s*"chart-([a-z_]+)",\s*(\[.*?\]),\s*\{"', re.S)
_VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
                   "source", "track", "wbr"})


THRESHOLDS = """
[report]
fund_used_max = 0.5
liquidated_share_max = 0.2
cascade_amplification_max = 1.5
"""
"""The verdict's thresholds of the report under test (the browser test checks each)."""


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A report with every chart: two venues overlaid, two Monte Carlo paths each."""
    tmp = tmp_path_factory.mktemp("report")
    scenario = tmp / "small.toml"
    scenario.write_text(SMALL.format(horizon="75m", seed=5, verify_every=1, vol=0.4,
                                     gap=0.02, depth=0.15, n=600, venue="binance",
                                     fund=20000) + THRESHOLDS, encoding="utf-8")
    res = CliRunner().invoke(app, ["simulate", str(scenario), "--compare", "binance,dydx",
                                   "--paths", "2", "--out", str(tmp / "out"), "--json"])
    assert res.exit_code == 0, res.output
    return tmp / "out" / "report.html"


def render(chromium: str, page: Path) -> str:
    """Return the DOM of ``page`` after chromium ran its scripts, with no network."""
    profile = page.parent / f".chromium-{page.stem}"
    cmd = [chromium, "--headless", "--disable-gpu",
           # the sandbox needs user namespaces, which CI containers (run as root) lack
           "--no-sandbox", "--no-first-run", "--no-default-browser-check",
           "--disable-extensions", "--disable-background-networking",
           f"--user-data-dir={profile}",
           # offline: every http(s) request goes to a closed port, no host name resolves
           "--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND",
           "--virtual-time-budget=20000", "--dump-dom", page.resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 0, f"chromium exited {proc.returncode}: {proc.stderr[-2000:]}"
    assert "</html>" in proc.stdout, f"no DOM from chromium: {proc.stderr[-2000:]}"
    return proc.stdout


def defined_charts(page_html: str) -> dict[str, int]:
    """Chart id -> number of traces its ``Plotly.newPlot`` call passes, in page order."""
    return {m.group(1): len(json.loads(m.group(2))) for m in _NEWPLOT.finditer(page_html)}


@dataclass
class Trace:
    kind: str
    line_vertices: int = 0
    bar_points: int = 0
    tall_bars: int = 0  # bars of non-zero height

    def has_data(self) -> bool:
        return self.line_vertices >= 2 or self.bar_points >= 1


@dataclass
class DrawnChart:
    svg: bool = False
    traces: list[Trace] = field(default_factory=list)


class _DomCharts(HTMLParser):
    """Collect, per ``<section class="chart" data-chart=ID>``, the traces plotly drew.

    Only traces inside the plot area (``g.cartesianlayer``) count: the legend draws line
    samples with the same ``path.js-line`` class.
    """

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.charts: dict[str, DrawnChart] = {}
        self._stack: list[tuple[str, frozenset[str]]] = []
        self._chart: str | None = None
        self._chart_depth = -1
        self._trace: Trace | None = None
        self._trace_depth = -1

    def _inside(self, cls: str) -> bool:
        return any(cls in classes for _, classes in self._stack)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        classes = frozenset((a.get("class") or "").split())
        if tag == "section" and "chart" in classes:
            self._chart = a.get("data-chart") or "?"
            self._chart_depth = len(self._stack)
            self.charts[self._chart] = DrawnChart()
        elif self._chart is not None:
            self._element(tag, classes, a.get("d") or "")
        if tag not in _VOID:
            self._stack.append((tag, classes))

    def _element(self, tag: str, classes: frozenset[str], d: str) -> None:
        chart = self.charts[self._chart or "?"]
        if tag == "svg" and "main-svg" in classes:
            chart.svg = True
        elif tag == "g" and "trace" in classes and self._inside("cartesianlayer"):
            self._trace = Trace(kind="bars" if "bars" in classes else "scatter")
            self._trace_depth = len(self._stack)
            chart.traces.append(self._trace)
        elif tag == "path" and self._trace is not None and d:
            if "js-line" in classes:
                # one vertex per move/line command; step lines ("hv") draw with H and V
                self._trace.line_vertices += len(re.findall(r"[MLHV]", d))
            elif self._inside("point"):
                # plotly draws a bar as "Mx0,y0Vy1Hx1Vy0Z"; y0 == y1 is a bar of height 0
                self._trace.bar_points += 1
                ys = re.match(r"M[-\d.e]+,([-\d.e]+)V([-\d.e]+)", d)
                if ys is not None and ys.group(1) != ys.group(2):
                    self._trace.tall_bars += 1

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self._stack) - 1, -1, -1):
            if self._stack[i][0] == tag:
                del self._stack[i:]
                break
        if len(self._stack) <= self._trace_depth:
            self._trace, self._trace_depth = None, -1
        if len(self._stack) <= self._chart_depth:
            self._chart, self._chart_depth = None, -1


def drawn_charts(dom: str) -> dict[str, DrawnChart]:
    parser = _DomCharts()
    parser.feed(dom)
    parser.close()
    return parser.charts


def chart_problems(page_html: str, dom: str) -> list[str]:
    """Every way the rendered page falls short of 'every chart drawn, with data'."""
    defined = defined_charts(page_html)
    drawn = drawn_charts(dom)
    problems: list[str] = []
    if not defined:
        problems.append("the report defines no chart")
    for extra in sorted(set(drawn) - set(defined)):
        problems.append(f"{extra}: a chart section the report has no figure for")
    for chart, n_traces in defined.items():
        got = drawn.get(chart)
        if got is None or not got.svg:
            problems.append(f"{chart}: not drawn")
            continue
        if n_traces == 0:
            problems.append(f"{chart}: the report defines no traces")
        elif len(got.traces) != n_traces:
            problems.append(f"{chart}: {len(got.traces)} traces drawn, {n_traces} defined")
        empty = [i for i, t in enumerate(got.traces) if not t.has_data()]
        if empty:
            problems.append(f"{chart}: traces {empty} have no data points")
    return problems


# ---------------------------------------------------------------- the real report


def test_every_chart_renders_with_data_offline(chromium: str, report: Path) -> None:
    page = report.read_text(encoding="utf-8")
    defined = defined_charts(page)
    assert tuple(defined) == ALL_CHARTS  # the report defines every chart, in order
    body = re.search(r"<body data-charts='([^']*)'", page)
    assert body is not None
    assert json.loads(body.group(1).replace("&quot;", '"')) == list(ALL_CHARTS)
    dom = render(chromium, report)
    assert chart_problems(page, dom) == []
    drawn = drawn_charts(dom)
    assert len([c for c in drawn.values() if c.svg]) == len(defined)
    # both kinds of trace are checked, not only lines
    kinds = {t.kind for c in drawn.values() for t in c.traces}
    assert kinds == {"scatter", "bars"}
    # two venues overlaid: the fund chart has each venue's cash and equity lines
    assert len(drawn["insurance_fund"].traces) == 4
    # both venues liquidated, so each venue's liquidation bars are not all of height 0
    metrics = json.loads((report.parent / "metrics.json").read_text(encoding="utf-8"))
    assert all(m["liquidations"] > 0 for m in metrics["venues"].values())
    assert [t.tall_bars > 0 for t in drawn["liquidations"].traces] == [True, True]


# ---------------------------------------------------------------- the check can fail


def _length(y: Any) -> int:
    """Number of values of ``y``: a list or a plotly.js typed array (base64 float64)."""
    if isinstance(y, dict):
        return len(base64.b64decode(y["bdata"])) // 8
    return len(y)


def _with_chart_data(page: str, chart: str, edit: str) -> str:
    """``page`` with the traces of ``chart`` removed or emptied of points."""
    def swap(m: re.Match[str]) -> str:
        if m.group(1) != chart:
            return m.group(0)
        traces = json.loads(m.group(2))
        if edit == "no-traces":
            traces = []
        elif edit == "no-points":
            traces = [{**t, "x": [], "y": []} for t in traces]
        else:  # every value missing: the trace is drawn without a single point
            traces = [{**t, "y": [None] * _length(t["y"])} for t in traces]
        return m.group(0).replace(m.group(2), json.dumps(traces))
    out = _NEWPLOT.sub(swap, page)
    assert out != page
    return out


def _with_cdn_plotly(page: str) -> str:
    start = page.index("<script type='text/javascript'>")
    end = page.index("</script>", start) + len("</script>")
    return (page[:start] + "<script src='https://cdn.plot.ly/plotly-3.0.1.min.js'></script>"
            + page[end:])


@pytest.mark.parametrize(("case", "expect"), [
    pytest.param("no-traces", ["adl: the report defines no traces"],
                 id="chart-without-traces"),
    pytest.param("no-points", ["bad_debt: 0 traces drawn, 2 defined"],
                 id="traces-without-points"),
    # lines only: plotly draws the bar of a missing value like a bar of zero
    pytest.param("null-values", ["accounts_at_risk: traces [0, 1] have no data points"],
                 id="values-all-missing"),
    pytest.param("cdn", [f"{c}: not drawn" for c in ALL_CHARTS], id="plotly-from-cdn-offline"),
])
def test_check_fails_on_a_broken_report(chromium: str, report: Path, case: str,
                                        expect: list[str]) -> None:
    page = report.read_text(encoding="utf-8")
    if case == "no-traces":
        broken = _with_chart_data(page, "adl", "no-traces")
    elif case == "no-points":
        broken = _with_chart_data(page, "bad_debt", "no-points")
    elif case == "null-values":
        broken = _with_chart_data(page, "accounts_at_risk", "null-values")
    else:
        broken = _with_cdn_plotly(page)
    path = report.parent / f"broken-{case}.html"
    path.write_text(broken, encoding="utf-8")
    assert chart_problems(broken, render(chromium, path)) == expect


# ---------------------------------------------------------------- driven over DevTools
#
# The same report, opened in chromium over the DevTools protocol: the headline figures the
# page shows are read back and held to metrics.json, the verdict to the thresholds, every
# chart to its figure, and no JavaScript error may be raised. A screenshot is kept.

_NUMBER = re.compile(r"^(-?[\d,]+(?:\.\d+)?)\s*(%|x|[A-Z]+)?$")


def artifacts_dir() -> Path:
    """Where browser tests leave their screenshots: ``$SOLVENCY_TEST_ARTIFACTS``, else
    ``build/test-artifacts`` in the repository (ignored by git)."""
    env = os.environ.get("SOLVENCY_TEST_ARTIFACTS")
    path = Path(env) if env else Path(__file__).resolve().parents[2] / "build" / "test-artifacts"
    path.mkdir(parents=True, exist_ok=True)
    return path


def shown_number(text: str) -> tuple[float, float]:
    """The number a headline cell shows and half of its last digit (what rounding may
    move it by): ``"1,234.50 USDT"`` -> (1234.5, 0.005), ``"12.34%"`` -> (0.1234, 5e-5),
    ``"1.047x"`` -> (1.047, 5e-4)."""
    m = _NUMBER.match(text.strip())
    assert m is not None, f"not a number with a unit: {text!r}"
    digits = m.group(1).replace(",", "")
    decimals = len(digits.partition(".")[2])
    value, half = float(digits), 0.5 * 10.0 ** -decimals
    if m.group(2) == "%":
        return value / 100, half / 100
    return value, half


@contextlib.contextmanager
def opened(chromium: str, page: Path, *, width: int | None = None) -> Iterator[Cdp]:
    """Headless chromium on ``page`` (``file://``), offline, over DevTools, in a 1400 x
    1000 px window, or a viewport ``width`` px wide (emulated: a headless window is at
    least 500 px); the page has loaded when this yields."""
    port = free_port()
    cmd = [chromium, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
           "--no-default-browser-check", "--disable-extensions",
           "--disable-background-networking", "--disable-sync", "--mute-audio",
           "--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND",
           "--window-size=1400,1000", f"--remote-debugging-port={port}",
           f"--user-data-dir={page.parent / f'.chromium-devtools-{page.stem}'}",
           "about:blank"]
    log = page.parent / f"chromium-devtools-{page.stem}.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        page_ws = None
        while page_ws is None:
            if proc.poll() is not None:
                pytest.fail(f"chromium exited {proc.returncode}: "
                            f"{log.read_text(errors='replace')[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail("chromium's DevTools endpoint did not answer in 30 s")
            try:
                targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=1.0).json()
                page_ws = next((t["webSocketDebuggerUrl"] for t in targets
                                if t.get("type") == "page"), None)
            except (httpx.HTTPError, ValueError):
                pass
            if page_ws is None:
                time.sleep(0.1)
        with connect(page_ws, max_size=None, max_queue=None, ping_interval=None,
                     open_timeout=10) as ws:
            cdp = Cdp(ws)
            for domain in ("Page", "Runtime", "Log"):
                cdp.call(f"{domain}.enable")
            if width is not None:
                cdp.call("Emulation.setDeviceMetricsOverride", width=width, height=1000,
                         deviceScaleFactor=1, mobile=False)
            cdp.call("Page.navigate", url=page.resolve().as_uri())
            cdp.wait("document.readyState === 'complete'", timeout=60)
            yield cdp
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def page_errors(cdp: Cdp) -> list[Any]:
    """JavaScript exceptions and console errors the page raised."""
    errors = [e["exceptionDetails"] for e in cdp.of("Runtime.exceptionThrown")]
    errors += [c for c in cdp.of("Runtime.consoleAPICalled") if c["type"] in ("error", "assert")]
    errors += [e["entry"] for e in cdp.of("Log.entryAdded") if e["entry"]["level"] == "error"]
    return errors


@pytest.fixture(scope="module")
def devtools(chromium: str, report: Path) -> Iterator[Cdp]:
    """The two-venue Monte Carlo report open in chromium over DevTools."""
    with opened(chromium, report) as cdp:
        yield cdp


_CHARTS_JS = """Array.from(document.querySelectorAll('section.chart')).map(s => {
  const gd = s.querySelector('.js-plotly-plot');
  return {chart: s.dataset.chart, svg: s.querySelectorAll('svg.main-svg').length,
          defined: gd && gd.data ? gd.data.length : -1,
          drawn: s.querySelectorAll('.cartesianlayer g.trace').length};
})"""

_HEADLINE_JS = """Array.from(document.querySelectorAll('table.headline td.figure')).map(td =>
  [td.dataset.venue, td.dataset.key, td.querySelector('.value').textContent])"""

_VERDICT_JS = """Array.from(document.querySelectorAll('#verdict .verdict')).map(v =>
  [v.dataset.venue, v.dataset.pass, v.textContent])"""


def test_report_in_chromium_shows_the_metrics(devtools: Cdp, report: Path) -> None:
    metrics = json.loads((report.parent / "metrics.json").read_text(encoding="utf-8"))
    venues: dict[str, dict[str, Any]] = metrics["venues"]
    charts = devtools.wait(f"(() => {{ const c = {_CHARTS_JS};"
                           " return c.every(x => x.svg > 0) ? c : null; })()", timeout=60)
    # every chart the page defines drew all its traces
    assert [c["chart"] for c in charts] == list(ALL_CHARTS)
    for c in charts:
        assert c["defined"] > 0 and c["drawn"] == c["defined"], c
    # the headline: every figure of both venues, each the number of metrics.json
    cells = devtools.eval(_HEADLINE_JS)
    assert {(v, k) for v, k, _ in cells} == {(v, k) for v in venues for k in (
        "bad_debt", "insurance_fund_used", "insurance_fund_used_share", "liquidated_share",
        "liquidated_notional", "accounts_liquidated", "accounts_liquidated_share",
        "adl_notional", "adl_count", "adl_haircut", "cascade_amplification",
        "liquidated_share_of_oi", "open_interest_start_notional")}
    checked = 0
    for venue, key, text in cells:
        m = venues[venue]
        expect = (m["accounts_liquidated"] / m["accounts"] if key ==
                  "accounts_liquidated_share" else m[key])
        if expect is None:
            assert text == "-", (venue, key, text)
            continue
        value, half = shown_number(text)
        assert abs(value - expect) <= half + 1e-9 * abs(expect), (venue, key, text, expect)
        if key in ("bad_debt", "insurance_fund_used", "liquidated_notional", "adl_notional",
                   "open_interest_start_notional"):
            assert text.endswith(f" {m['settle_asset']}"), text
        checked += 1
    assert checked >= 2 * 8
    # the verdict: PASS exactly when the 95th percentile over paths of each figure with a
    # threshold is within it (and no bad debt, every invariant held)
    limits = {"insurance_fund_used_share": 0.5, "liquidated_share": 0.2,
              "cascade_amplification": 1.5, "bad_debt": 0.0}
    verdicts = devtools.eval(_VERDICT_JS)
    assert [v for v, _, _ in verdicts] == list(venues)
    for venue, passed, text in verdicts:
        q = venues[venue]["quantiles"]
        ok = venues[venue]["conserved"] and all(
            key in q and q[key]["p95"] <= limit for key, limit in limits.items())
        assert passed == str(ok).lower(), (venue, text)
        assert ("PASS" if ok else "FAIL") in text
    # the page says what the Monte Carlo figures are and which path the charts show
    facts = devtools.eval("document.querySelector('p.facts').textContent")
    assert "mean over paths" in facts and "path 0" in facts
    # no JavaScript error, no console error
    errors = page_errors(devtools)
    assert not errors, f"JavaScript errors: {errors}"
    # the screenshot, kept as a test artifact
    shot = devtools.call("Page.captureScreenshot", timeout=60, format="png",
                         captureBeyondViewport=True)
    png = base64.b64decode(shot["data"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 50_000
    (artifacts_dir() / "stress_lab_report_compare_mc.png").write_bytes(png)


def test_backtest_report_draws_dates_from_arrays(chromium: str, tmp_path: Path) -> None:
    """``solvency backtest --report``: the figure takes epoch milliseconds as arrays on a
    date axis (issue 23 item 6); in chromium every trace is drawn and the axis shows
    years, not 1.5e12."""
    rng = np.random.default_rng(2)
    close = 30_000.0 * np.exp(np.cumsum(rng.standard_t(4, 400) * 0.01))
    opens = np.r_[30_000.0, close[:-1]]
    t0 = 1_600_000_000_000 // 86_400_000 * 86_400_000  # 2020-09-13
    csv = tmp_path / "d.csv"
    csv.write_text("".join(
        f"{t0 + i * 86_400_000},{o},{max(o, c) * 1.001},{min(o, c) * 0.999},{c},1.0\n"
        for i, (o, c) in enumerate(zip(opens, close, strict=True))))
    page = tmp_path / "backtest.html"
    res = CliRunner().invoke(app, ["backtest", "--prices", str(csv), "--warmup", "150",
                                   "--model", "fixed", "--report", str(page)])
    assert res.exit_code == 0, res.output
    text = page.read_text(encoding="utf-8")
    assert "2020-09-13" not in text  # no ISO date strings: numbers on a date axis
    with opened(chromium, page) as cdp:
        drawn = cdp.wait("""(() => { const gd = document.querySelector('.js-plotly-plot');
          if (!gd || !gd._fullLayout) return null;
          const ticks = Array.from(gd.querySelectorAll('.xtick text, .x2tick text')).map(
            t => t.textContent);
          return ticks.length ? {defined: gd.data.length,
                  drawn: gd.querySelectorAll('.cartesianlayer g.trace').length,
                  type: gd._fullLayout.xaxis.type, ticks: ticks} : null; })()""",
                         timeout=60)
        errors = page_errors(cdp)
    assert drawn["type"] == "date" and drawn["defined"] == drawn["drawn"] == 4, drawn
    assert any("2021" in t for t in drawn["ticks"]), drawn["ticks"]
    assert not errors, errors
