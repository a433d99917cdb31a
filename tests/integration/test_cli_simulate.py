"""``solvency simulate`` end to end: JSON, compare, Monte Carlo, replay, offline report, errors."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from solvency.cli.main import app
from solvency.sim.report import CHARTS
from tests.simulation.test_run import SMALL


def _separate_stderr_runner() -> CliRunner:
    # test_precise_errors checks that errors go to stderr and nothing to stdout. Click >= 8.2
    # always captures the two apart (and dropped mix_stderr); click 8.1, which typer 0.15.4
    # pins (click < 8.2), mixes them unless told not to.
    try:
        return CliRunner(mix_stderr=False)  # type: ignore[call-arg]
    except TypeError:
        return CliRunner()


runner = _separate_stderr_runner()

JSON_KEYS = ("liquidations", "liquidated_notional", "bad_debt", "insurance_fund_min",
             "adl_count", "adl_notional", "conserved")


def _scenario(tmp_path: Path, **kw: object) -> Path:
    args: dict[str, object] = {"horizon": "75m", "seed": 5, "verify_every": 1, "vol": 0.4,
                               "gap": 0.02, "depth": 0.15, "n": 600, "venue": "binance",
                               "fund": 20000}
    args.update(kw)
    path = tmp_path / "small.toml"
    path.write_text(SMALL.format(**args), encoding="utf-8")
    return path


def _json(args: list[str]) -> dict[str, object]:
    res = runner.invoke(app, ["simulate", *args, "--json"])
    assert res.exit_code == 0, res.output
    data: dict[str, object] = json.loads(res.stdout)
    return data


def test_json_keys(tmp_path: Path) -> None:
    data = _json([str(_scenario(tmp_path))])
    for key in JSON_KEYS:
        assert key in data, key
    assert data["conserved"] is True
    assert isinstance(data["liquidations"], int) and data["liquidations"] > 0


def test_compare_shape(tmp_path: Path) -> None:
    # --jobs 1: toy runs, cheaper than spawning workers (test_compare_jobs runs --jobs 2)
    data = _json([str(_scenario(tmp_path)), "--compare", "binance,dydx,hyperliquid",
                  "--jobs", "1"])
    venues = data["venues"]
    assert isinstance(venues, dict)
    assert list(venues) == ["binance", "dydx", "hyperliquid"]
    for metrics in venues.values():
        assert all(k in metrics for k in JSON_KEYS)
        assert metrics["conserved"] is True


def test_monte_carlo_var(tmp_path: Path) -> None:
    data = _json([str(_scenario(tmp_path, fund=0, depth=0.25, n=300)), "--paths", "3"])
    assert data["paths"] == 3
    assert data["var99_bad_debt"] >= data["var95_bad_debt"] >= 0  # type: ignore[operator]
    assert all(k in data for k in JSON_KEYS)


def _plotly_calls(html: str) -> dict[str, str]:
    """Chart id -> the data array literal passed to Plotly.newPlot."""
    out = {}
    for m in re.finditer(r'Plotly\.newPlot\(\s*"chart-([a-z_]+)",\s*(\[.*?\]),\s*\{"', html,
                         flags=re.S):
        out[m.group(1)] = m.group(2)
    return out


def _points(y: object) -> int:
    """Number of values of a trace's ``y``: a list or a plotly.js typed array (base64
    float64, as the report writes numpy arrays)."""
    if isinstance(y, dict):
        assert y["dtype"] == "f8", y
        return len(base64.b64decode(y["bdata"])) // 8
    assert isinstance(y, list), y
    return len(y)


def test_out_writes_metrics_and_offline_report(tmp_path: Path) -> None:
    out = tmp_path / "run"
    res = runner.invoke(app, ["simulate", str(_scenario(tmp_path)), "--out", str(out)])
    assert res.exit_code == 0, res.output
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert all(k in metrics for k in JSON_KEYS)
    html = (out / "report.html").read_text(encoding="utf-8")
    # plotly.js is inline: no external script, and nothing outside the bundle names a CDN
    assert "<script src=" not in html and "src=\"http" not in html
    scripts = re.findall(r"<script type='text/javascript'>(.*?)</script>", html, flags=re.S)
    assert scripts and len(scripts[0]) > 1_000_000 and "plotly" in scripts[0][:2000].lower()
    assert "cdn." not in html.replace(scripts[0], "")
    # the figures are typed arrays ({"dtype": "f8", "bdata": ...}), which plotly.js reads
    # from 2.28.0 on (plotly.py 5.19.0; 5.18.0's plotly.js 2.27.0 drew none of them)
    version = re.search(r"plotly\.js v(\d+)\.(\d+)\.(\d+)", scripts[0][:500])
    assert version is not None
    assert tuple(int(v) for v in version.groups()) >= (2, 28, 0), version.group(0)
    calls = _plotly_calls(html)
    # one run: the timeline, who was hit, then one chart per series (no Monte Carlo)
    assert list(calls) == ["timeline", "margin_ratio", "leverage", "liquidation_map", *CHARTS]
    for chart, data in calls.items():
        traces = json.loads(data)
        assert traces, chart
        for tr in traces:
            assert _points(tr["y"]) > 0, chart


def test_compare_report_overlays_venues(tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    res = runner.invoke(app, ["simulate", str(_scenario(tmp_path)), "--compare",
                              "binance,drift", "--jobs", "1", "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    html = (out / "report.html").read_text(encoding="utf-8")
    fund = json.loads(_plotly_calls(html)["insurance_fund"])
    names = " ".join(t["name"] for t in fund)
    assert "binance" in names and "drift" in names


def test_prices_replay(tmp_path: Path) -> None:
    t0 = 1_760_054_400_000  # 2025-10-10T00:00Z, the scenario's start
    rng = np.random.default_rng(3)
    close = 117_000.0 * np.exp(np.cumsum(rng.normal(0, 0.004, 60)))
    close[30:] *= 0.85  # a 15 % gap down half way
    lines = ["timestamp_ms,open,high,low,close,volume"]
    prev = 117_000.0
    for i, c in enumerate(close):
        lines.append(f"{t0 + i * 60_000},{prev},{max(prev, c) * 1.001},"
                     f"{min(prev, c) * 0.999},{c},1.0")
        prev = c
    csv = tmp_path / "btc.csv"
    csv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    data = _json([str(_scenario(tmp_path)), "--prices", str(csv)])
    assert data["points"] == 60 * 4
    assert data["liquidations"] > 0 and data["conserved"] is True


@pytest.mark.parametrize(("args", "expect"), [
    pytest.param(["{bad}"], "market.markets.BTC-PERP.volatility: unknown key", id="malformed"),
    pytest.param(["{good}", "--venue", "nasdaq"], "unknown venue 'nasdaq'", id="unknown-venue"),
    pytest.param(["{good}", "--compare", "binance,ftx"], "--compare: unknown venues ['ftx']",
                 id="unknown-compare"),
    pytest.param(["{good}", "--prices", "{missing}"], "--prices: data file not found",
                 id="missing-prices"),
    pytest.param(["{nofile}"], "scenario file not found", id="missing-scenario"),
])
def test_precise_errors(tmp_path: Path, args: list[str], expect: str) -> None:
    good = _scenario(tmp_path)
    bad = tmp_path / "bad.toml"
    bad.write_text(good.read_text(encoding="utf-8").replace(
        "vol_annual = 0.4\ncrash_at", "volatility = 0.4\ncrash_at", 1), encoding="utf-8")
    subs = {"{good}": str(good), "{bad}": str(bad), "{missing}": str(tmp_path / "no.csv"),
            "{nofile}": str(tmp_path / "nothing.toml")}
    res = runner.invoke(app, ["simulate", *[subs.get(a, a) for a in args], "--json"])
    assert res.exit_code == 2, res.output
    assert expect in res.stderr
    assert res.stdout == ""


def test_terminal_summary_has_units_and_the_verdict(tmp_path: Path) -> None:
    # any liquidation breaks the threshold; the scenario liquidates (test_json_keys)
    path = _scenario(tmp_path)
    path.write_text(path.read_text(encoding="utf-8") + "\n[report]\nliquidated_share_max = 0\n",
                    encoding="utf-8")
    res = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["simulate", str(path), "--out",
                                                        str(tmp_path / "out")])
    assert res.exit_code == 0, res.output  # a failed verdict is a finding, not an error
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text(encoding="utf-8"))
    out = res.output
    assert "thresholds of [report]" in out and "FAIL" in out
    share = metrics["liquidated_share"]
    assert share > 0
    assert f"binance: FAIL: open interest liquidated {share:.2%} > 0.00%" in out
    for group in ("solvency", "insurance fund", "liquidations", "ADL", "market"):
        assert group in out
    assert f"{metrics['liquidated_notional']:,.2f} USDT" in out
    assert f"{metrics['accounts_liquidated']:,}" in out


@pytest.mark.parametrize(("flag", "every"), [([], 15), (["--verify-every", "1"], 1),
                                             (["--verify-every", "7"], 7)],
                         ids=["scenario's 15", "every step", "every 7"])
def test_verify_every(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flag: list[str],
                      every: int) -> None:
    # the invariants run at the steps --verify-every names (the scenario says 15) and at
    # the last step; nothing else of the run changes
    import solvency.sim.run as run_module

    checked: list[int] = []
    real = run_module._check_invariants

    def counting(engine: object, flat: object = None) -> str:
        checked.append(len(checked))
        return real(engine, flat)  # type: ignore[arg-type]

    monkeypatch.setattr(run_module, "_check_invariants", counting)
    data = _json([str(_scenario(tmp_path, horizon="30m", n=200, verify_every=15)), *flag])
    n = int(data["points"])  # type: ignore[call-overload]
    want = sum(1 for k in range(1, n) if k % every == 0 or k == n - 1)
    assert len(checked) == want
    assert data["conserved"] is True


def test_verify_every_refuses_zero(tmp_path: Path) -> None:
    res = runner.invoke(app, ["simulate", str(_scenario(tmp_path)), "--verify-every", "0"])
    assert res.exit_code == 2
    assert "--verify-every" in res.output + (res.stderr or "")
