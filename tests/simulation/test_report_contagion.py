"""Issue 22: the HTML report of a multi-venue run (``simulate SCENARIO --out DIR`` of a
scenario with ``[[venues]]``) has a "Contagion" section: each venue's attribution
figures linked, alone and their change with the system's totals, heat maps of the
spillover matrix (liquidated notional, liquidation fills, fund used) and each venue's
series on one time axis (cumulative liquidated notional linked and alone, the basis of
every venue and market, the fund linked and alone).

Three venues on one small crash with the liquidity link (about 6 s). The page's numbers
are read back from its HTML and held to metrics.json (the ``--json`` payload); then the
page is opened in headless Chromium (offline, over DevTools) at a desktop and a phone
width: the heat maps are drawn (the cell image and one label per cell, the diagonal
``-``), every label shows its spillover and lies inside its cell (the chart scrolls
sideways instead of squeezing its cells), and the series chart draws every trace, the
basis of each venue and market included.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from solvency.cli.main import app
from solvency.sim.report import ContagionView, _links_note
from tests.simulation.test_multi_venue import ARGS
from tests.simulation.test_report_render import _NEWPLOT, opened, page_errors
from tests.simulation.test_run import SMALL

VENUES = """
[[venues]]
name = "bn"
preset = "binance"

[[venues]]
name = "dx"
preset = "dydx"
population_share = 0.5
depth_scale = 0.25

[[venues]]
name = "hl"
preset = "hyperliquid"
population_share = 0.5
depth_scale = 0.5

[links]
active = ["liquidity"]

[links.liquidity]
capital = 50000000
latency = "1m"
threshold_bps = 5
"""
NAMES = ("bn", "dx", "hl")
FIGURES = ("liquidations", "liquidated_notional", "accounts_liquidated",
           "insurance_fund_used", "adl_notional", "bad_debt")
MAPS = ("liquidated_notional", "liquidations", "insurance_fund_used")
COUNTS = ("liquidations", "accounts_liquidated")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """The report of three linked venues and its metrics.json."""
    tmp = tmp_path_factory.mktemp("contagion-report")
    scenario = tmp / "three.toml"
    scenario.write_text(SMALL.format(**ARGS) + VENUES, encoding="utf-8")
    res = CliRunner().invoke(app, ["simulate", str(scenario), "--out", str(tmp / "out"),
                                   "--json", "--jobs", "1"])
    assert res.exit_code == 0, res.output
    metrics = json.loads((tmp / "out" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics == json.loads(res.output)  # the file is the --json payload
    return tmp / "out" / "report.html", metrics


def _plots(page: str) -> dict[str, list[dict[str, Any]]]:
    return {m.group(1): json.loads(m.group(2)) for m in _NEWPLOT.finditer(page)}


def _array(y: Any) -> np.ndarray:
    """A plotly.js typed array (base64 float64) or a list, as float64."""
    if isinstance(y, dict):
        return np.frombuffer(base64.b64decode(y["bdata"]), dtype="<f8")
    return np.asarray(y, dtype=np.float64)


def _xs(trace: dict[str, Any]) -> np.ndarray:
    if "x0" in trace:
        n = _array(trace["y"]).shape[0]
        return trace["x0"] + trace["dx"] * np.arange(n, dtype=np.float64)
    return _array(trace["x"])


def _shown(text: str) -> tuple[float, float]:
    """The number a cell shows (sign, thousands commas, unit dropped) and half its last
    digit."""
    m = re.fullmatch(r"([+-]?[\d,]+(?:\.(\d+))?)(?: [A-Z]+)?", text.strip())
    assert m is not None, f"not a number: {text!r}"
    return float(m.group(1).replace(",", "")), 0.5 * 10.0 ** -len(m.group(2) or "")


def _label(value: float, key: str) -> str:
    """A heat map cell's text, written here on its own: signed, every digit kept."""
    if value == 0:
        return "0" if key in COUNTS else "0.00"
    return f"{int(value):+,}" if key in COUNTS else f"{value:+,.2f}"


# ---------------------------------------------------------------- the page's numbers


def test_contagion_section_shows_the_metrics(run: tuple[Path, dict[str, Any]]) -> None:
    report, m = run
    page = report.read_text(encoding="utf-8")
    assert m["links"] == ["liquidity"] and list(m["venues"]) == list(NAMES)
    cells = re.findall(r"<td class='figure' data-venue='([^']+)' data-run='(\w+)' "
                       r"data-key='(\w+)'>([^<]*)</td>", page)
    # every figure of every venue and the system, linked, alone and their change
    assert {(v, r, k) for v, r, k, _ in cells} == {
        (v, r, k) for v in (*NAMES, "system") for r in ("linked", "alone", "change")
        for k in FIGURES}
    for venue, run_, key, text in cells:
        if venue == "system":
            expect = m["systemic"][{"linked": "linked", "alone": "alone",
                                    "change": "contagion"}[run_]][key]
        elif run_ == "change":
            expect = m["venues"][venue][key] - m["isolated"][venue][key]
        else:
            expect = m["venues" if run_ == "linked" else "isolated"][venue][key]
        value, half = _shown(text)
        assert abs(value - expect) <= half + 1e-9 * abs(expect), (venue, run_, key, text)
        if venue != "system" and key not in COUNTS:
            assert text.endswith(" " + m["venues"][venue]["settle_asset"]), text
    # the links changed something: the check is not on zeros alone
    assert any(m["systemic"]["contagion"][k] != 0 for k in FIGURES)

    plots = _plots(page)
    for key in MAPS:
        (trace,) = plots[f"spillover_{key}"]
        assert trace["type"] == "heatmap"
        assert trace["y"] == [f"from {n}" for n in NAMES]
        assert [x.split(" (")[0] for x in trace["x"]] == [f"to {n}" for n in NAMES]
        z = [[None if i == j else m["spillover"][i][j][key] for j in NAMES] for i in NAMES]
        assert trace["z"] == z  # the matrix of metrics.json, exactly
        assert trace["text"] == [["-" if v is None else _label(v, key) for v in row]
                                 for row in z]
    assert any(m["spillover"][i][j]["liquidated_notional"] != 0
               for i in NAMES for j in NAMES if i != j)

    series = {t["name"]: t for t in plots["contagion_series"]}
    ts = np.asarray(m["basis"]["ts_ms"], dtype=np.float64)
    for venue in NAMES:
        for market, bps in m["basis"]["bps"][venue].items():
            trace = series[f"{venue} {market} basis"]
            np.testing.assert_array_equal(_array(trace["y"]), np.asarray(bps))
            np.testing.assert_array_equal(_xs(trace), ts)
        for name, part in ((venue, "venues"), (f"{venue} alone", "isolated")):
            cum = _array(series[name]["y"])
            assert cum[-1] == pytest.approx(m[part][venue]["liquidated_notional"],
                                            rel=1e-9, abs=1e-6)
        for name, part in ((f"{venue} fund", "venues"), (f"{venue} fund alone",
                                                          "isolated")):
            # the fund's equity: its start less its low is the table's "fund used"
            fund = _array(series[name]["y"])
            assert fund[0] == pytest.approx(m[part][venue]["insurance_fund_start"])
            assert fund.min() == pytest.approx(m[part][venue]["insurance_fund_equity_min"])
            assert fund[0] - fund.min() == pytest.approx(
                m[part][venue]["insurance_fund_used"], abs=1e-6)
    # the section sits between the headline and the timeline
    assert page.index("<h2>Headline</h2>") < page.index("<h2>Contagion</h2>") < page.index(
        "chart-timeline")


def test_without_links_the_section_has_zero_spillover_and_no_alone_lines(
        tmp_path: Path) -> None:
    """``--links none``: every venue's run is its run alone, so the heat maps hold zeros
    and the series chart draws no second, identical "alone" line."""
    scenario = tmp_path / "three.toml"
    scenario.write_text(SMALL.format(**ARGS) + VENUES, encoding="utf-8")
    res = CliRunner().invoke(app, ["simulate", str(scenario), "--links", "none", "--out",
                                   str(tmp_path / "out"), "--json", "--jobs", "1"])
    assert res.exit_code == 0, res.output
    m = json.loads(res.output)
    plots = _plots((tmp_path / "out" / "report.html").read_text(encoding="utf-8"))
    for key in MAPS:
        (trace,) = plots[f"spillover_{key}"]
        zero = "0" if key in COUNTS else "0.00"
        assert trace["text"] == [["-" if i == j else zero for j in NAMES] for i in NAMES]
    names = [t["name"] for t in plots["contagion_series"]]
    assert not [n for n in names if "alone" in n]
    # the basis is in the payload without the liquidity link too, and drawn
    assert {f"{v} {mk} basis" for v in NAMES for mk in m["basis"]["bps"][v]} <= set(names)


def test_the_note_names_the_links_and_what_they_did(run: tuple[Path, dict[str, Any]],
                                                    tmp_path: Path) -> None:
    """The section's note: the links, the arbitrageurs (from the run), and each venue's
    collateral book of the collateral link (a hand-made ``collateral`` entry, in the
    shape of ``CollateralBooks.metrics``)."""
    report, m = run
    page = report.read_text(encoding="utf-8")
    note = re.search(r"<section id='contagion'><h2>Contagion</h2><p class='note'>(.*?)</p>",
                     page, re.S)
    assert note is not None
    arb = m["arbitrage"]
    assert "Links in force: liquidity." in note.group(1)
    assert (f"Arbitrageurs: {arb['trades']:,} market-steps traded, gross inventory at most "
            f"{arb['gross_max']:,.2f} USD.") in note.group(1)
    assert "Collateral books" not in note.group(1)
    books = {"bn": {"WBETH": {"book_start": 4290.7, "book_low": 1921.2,
                              "sold_units": 524.1}}}
    view = ContagionView({**m, "collateral": books}, {})
    html_ = _links_note(view)
    assert ("Collateral books (start -&gt; low, units sold into them): bn WBETH 4,290.70 "
            "-&gt; low 1,921.20 (524.10 sold).") in html_


# ---------------------------------------------------------------- in chromium

_HEAT_JS = """(() => {
  const out = {};
  for (const s of document.querySelectorAll('section.chart')) {
    const id = s.dataset.chart;
    if (!id.startsWith('spillover_')) continue;
    const gd = s.querySelector('.js-plotly-plot');
    const plot = s.querySelector('.draglayer .nsewdrag');
    const img = s.querySelector('.heatmaplayer image');
    if (!gd || !gd._fullLayout || !plot || !img || gd.dataset.fit !== 'ok') return null;
    const box = e => { const b = e.getBoundingClientRect();
                       return {l: b.left, t: b.top, r: b.right, b: b.bottom}; };
    out[id] = {plot: box(plot), image: box(img),
               png: (img.getAttribute('href') || img.getAttribute('xlink:href') || '')
                    .startsWith('data:image/png'),
               size: Array.from(s.querySelectorAll('.heatmap-label text')).map(
                 t => parseFloat(getComputedStyle(t).fontSize)),
               labels: Array.from(s.querySelectorAll('.heatmap-label text')).map(
                 t => [t.textContent, box(t)])};
  }
  return Object.keys(out).length === 3 ? out : null;
})()"""

_SERIES_JS = """(() => {
  const s = document.querySelector('section.chart[data-chart="contagion_series"]');
  const gd = s && s.querySelector('.js-plotly-plot');
  if (!gd || !gd._fullLayout) return null;
  return {defined: gd.data.map(t => t.name),
          drawn: Array.from(s.querySelectorAll('.cartesianlayer g.trace')).map(g => {
            const p = g.querySelector('path.js-line');
            return p ? (p.getAttribute('d').match(/[MLHV]/g) || []).length : 0; })};
})()"""


def _heat_map_problems(drawn: dict[str, Any], m: dict[str, Any]) -> list[str]:
    """Every way a drawn heat map falls short: no cell image, a cell without its label,
    a label that is not its spillover or that spills out of its cell."""
    problems = []
    n = len(NAMES)
    for key in MAPS:
        d = drawn[f"spillover_{key}"]
        p, img = d["plot"], d["image"]
        if not d["png"] or img["r"] - img["l"] < n or img["b"] - img["t"] < n:
            problems.append(f"{key}: no cell image")
        w, h = (p["r"] - p["l"]) / n, (p["b"] - p["t"]) / n
        seen = set()
        for text, b in d["labels"]:
            col = int(((b["l"] + b["r"]) / 2 - p["l"]) // w)
            row = int(((b["t"] + b["b"]) / 2 - p["t"]) // h)
            seen.add((row, col))
            if not (0 <= row < n and 0 <= col < n):
                problems.append(f"{key}: label {text!r} outside the plot")
                continue
            i, j = NAMES[row], NAMES[col]
            expect = "-" if i == j else _label(m["spillover"][i][j][key], key)
            if text != expect:
                problems.append(f"{key}: cell {i}->{j} shows {text!r}, not {expect!r}")
            inside = (b["l"] >= p["l"] + col * w - 0.5 and b["r"] <= p["l"] + (col + 1) * w
                      + 0.5 and b["t"] >= p["t"] + row * h - 0.5
                      and b["b"] <= p["t"] + (row + 1) * h + 0.5)
            if not inside:
                problems.append(f"{key}: {text!r} does not fit its cell ({w:.0f} px wide)")
        if len(seen) != n * n or len(d["labels"]) != n * n:
            problems.append(f"{key}: {len(d['labels'])} labels for {n * n} cells")
        if any(size < 10 for size in d["size"]):
            problems.append(f"{key}: labels under 10 px")
    return problems


@pytest.mark.parametrize("width", [None, 360], ids=["desktop", "phone"])
def test_heat_maps_and_basis_chart_drawn_in_chromium(
        chromium: str, run: tuple[Path, dict[str, Any]], width: int | None) -> None:
    report, m = run
    with opened(chromium, report, width=width) as cdp:
        drawn = cdp.wait(_HEAT_JS, timeout=60)
        series = cdp.wait(_SERIES_JS, timeout=60)
        errors = page_errors(cdp)
    assert _heat_map_problems(drawn, m) == []
    # every trace of the series chart drawn, each with points: the basis of every venue
    # and market among them
    assert len(series["drawn"]) == len(series["defined"]) > 0
    assert all(v >= 2 for v in series["drawn"]), series
    assert {f"{v} {mk} basis" for v in NAMES for mk in m["basis"]["bps"][v]} <= set(
        series["defined"])
    assert not errors, f"JavaScript errors: {errors}"


def test_the_heat_map_check_can_fail(run: tuple[Path, dict[str, Any]]) -> None:
    """The check above on labels that are wrong or do not fit: each is reported."""
    _, m = run
    cell = {"l": 0.0, "t": 0.0, "r": 300.0, "b": 90.0}
    good = {"plot": cell, "image": cell, "png": True, "size": [12.0] * 9, "labels": [
        (_label(m["spillover"][NAMES[r]][NAMES[c]]["liquidations"], "liquidations")
         if r != c else "-", {"l": c * 100 + 10.0, "r": c * 100 + 60.0, "t": r * 30 + 5.0,
                              "b": r * 30 + 20.0}) for r in range(3) for c in range(3)]}
    drawn = {f"spillover_{k}": good for k in MAPS}
    problems = _heat_map_problems(drawn, m)
    # the same labels stand for the other two maps: only their texts may differ there
    assert not [p for p in problems if p.startswith("liquidations")]
    wide = dict(good, labels=[(t, dict(b, r=b["l"] + 120.0)) for t, b in good["labels"]])
    assert any("does not fit its cell" in p for p in _heat_map_problems(
        {**drawn, "spillover_liquidations": wide}, m))
    wrong = dict(good, labels=[("+999", b) for _, b in good["labels"]])
    assert any("shows '+999'" in p for p in _heat_map_problems(
        {**drawn, "spillover_liquidations": wrong}, m))
    blank = dict(good, png=False, labels=good["labels"][:4])
    assert {"liquidations: no cell image", "liquidations: 4 labels for 9 cells"} <= set(
        _heat_map_problems({**drawn, "spillover_liquidations": blank}, m))
