"""The stress-lab report in a real browser: Debian's chromium, headless and offline.

``solvency simulate --compare A,B --paths 2 --out DIR`` writes a report with every chart
(the eight series charts and the Monte Carlo histogram). Chromium loads it from
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

import json
import re
import subprocess
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from solvency.cli.main import app
from solvency.sim.report import CHARTS
from tests.simulation.test_run import SMALL

ALL_CHARTS = (*CHARTS, "bad_debt_distribution")

_NEWPLOT = re.compile(r'Plotly\.newPlot\(\s*"chart-([a-z_]+)",\s*(\[.*?\]),\s*\{"', re.S)
_VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
                   "source", "track", "wbr"})


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A report with every chart: two venues overlaid, two Monte Carlo paths each."""
    tmp = tmp_path_factory.mktemp("report")
    scenario = tmp / "small.toml"
    scenario.write_text(SMALL.format(horizon="75m", seed=5, verify_every=15, vol=0.4,
                                     gap=0.02, depth=0.15, n=600, venue="binance",
                                     fund=20000), encoding="utf-8")
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
            traces = [{**t, "y": [None] * len(t["y"])} for t in traces]
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
