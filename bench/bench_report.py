"""The stress-lab report: build time and size before and after issue 25 / issue 23 item 6.
Run: ``python bench/bench_report.py [--points N] [--default] [--baseline REV]``.

The **baseline** is the former report module itself: ``src/solvency/sim/report.py`` at
``REV`` (default: the last commit before the report was rebuilt from arrays), read with
``git show`` and imported beside the current one, so both are measured in the same run on
the same machine. The former page drew plotly.py graph objects fed lists of ISO-8601 date
strings and lists of floats, written with ``Figure.to_html``; the current one builds
plotly.js specs from numpy arrays (epoch milliseconds on a date axis, typed arrays).

* ``--points N`` (default 50,000): a synthetic run of N path points (two markets, a random
  walk): the eight per-series charts each way, then each whole page;
* ``--default``: the bundled default scenario (``solvency simulate``'s first Quickstart
  command: 100,000 accounts, 2,881 points) is run once through the engine, and both pages
  are written from that one run: the figure docs/benchmarks.md gives for the page a new
  user opens.

It prints the build time (best of 3) and the HTML size of each, with the ratios. plotly.js
(about 4.8 MB) is embedded once in either page; sizes are given with and without it.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from plotly.offline import get_plotlyjs

from machine import describe
from solvency.sim.metrics import StepSeries, summarize
from solvency.sim.report import (
    CHARTS,
    Figure,
    ReportRun,
    _plot_html,
    _series_figure,
    write_report,
)


def synthetic(n: int, seed: int = 7) -> StepSeries:
    """A run of ``n`` points: 15-second steps, two markets, liquidations in a crash."""
    rng = np.random.default_rng(seed)
    ts = 1_760_112_000_000 + 15_000 * np.arange(n, dtype=np.int64)
    s = StepSeries.empty(ts, ("BTC-PERP", "ETH-PERP"))
    for m, p0 in (("BTC-PERP", 117_000.0), ("ETH-PERP", 4_010.0)):
        path = p0 * np.exp(np.cumsum(rng.normal(0.0, 0.0007, n)))
        s.index[m][:] = path
        s.mark[m][:] = path * (1 + rng.normal(0.0, 1e-4, n))
        s.trade[m][:] = path * (1 - np.abs(rng.normal(0.0, 2e-4, n)))
        s.mm_rate[m][:] = 0.004 + rng.random(n) * 1e-4
        s.im_rate[m][:] = 0.008 + rng.random(n) * 1e-4
        s.notional_market[m][:] = 1e9
    s.liq_count[:] = rng.poisson(0.3, n)
    s.liq_notional[:] = s.liq_count * rng.lognormal(10, 1, n)
    s.insurance_fund[:] = 1.65e8 - np.cumsum(s.liq_notional) * 1e-3
    s.insurance_fund_equity[:] = s.insurance_fund
    s.at_risk[:] = rng.poisson(20, n)
    s.notional[:] = 2e9
    s.im_locked[:] = 2e7
    return s


BASELINE = "9f0f7f265a09e0df715a673bf798456682f074cf"
"""The last commit of ``src/solvency/sim/report.py`` before issue 25 rebuilt it."""

ROOT = Path(__file__).resolve().parents[1]


def _module_at(rev: str, path: str, name: str) -> ModuleType:
    """The module at ``path`` as it was at git revision ``rev``, imported as ``name``."""
    text = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:{path}"],
                          capture_output=True, text=True, check=True).stdout
    file = Path(tempfile.mkdtemp(prefix="bench-report-")) / f"{name}.py"
    file.write_text(text, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(name, file)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def former_module(rev: str) -> ModuleType:
    """The stress-lab report module as it was at ``rev``, imported as ``former_report``."""
    return _module_at(rev, "src/solvency/sim/report.py", "former_report")


def former_charts(old: ModuleType, s: StepSeries) -> str:
    """The eight per-series charts as the former page wrote them."""
    runs = {"bench": s}
    return "".join(old._figure(c, runs).to_html(full_html=False, include_plotlyjs=False,
                                                div_id=f"chart-{c}") for c in old.CHARTS)


def array_charts(s: StepSeries, metrics: dict[str, Any]) -> str:
    """The same eight charts as the report draws them now."""
    runs = {"bench": ReportRun(metrics=metrics, series=s)}
    return "".join(_plot_html(Figure(c, "series", *_series_figure(c, runs))) for c in CHARTS)


def _timed(f: Any, *args: Any) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(3):
        t0 = time.perf_counter()
        out = f(*args)
        best = min(best, time.perf_counter() - t0)
    return best, out


def _pages(old: ModuleType, label: str, runs: dict[str, ReportRun]) -> None:
    """Write the whole page each way from the same runs; print time and size."""
    js = len(get_plotlyjs().encode())
    with tempfile.TemporaryDirectory() as tmp:
        before, after = Path(tmp) / "before.html", Path(tmp) / "after.html"
        t_old, _ = _timed(lambda: old.write_report(
            before, title="bench", runs={k: r.series for k, r in runs.items()},
            metrics={k: dict(r.metrics) for k, r in runs.items()}))
        t_new, _ = _timed(lambda: write_report(after, title="bench", runs=runs))
        b, a = before.stat().st_size, after.stat().st_size
    print(f"{label}, the whole page:")
    print(f"  before: {t_old:.3f} s, {b:,} bytes ({b - js:,} without plotly.js)")
    print(f"  after:  {t_new:.3f} s, {a:,} bytes ({a - js:,} without plotly.js)")
    print(f"  -> build {t_old / t_new:.1f}x faster, page {1 - a / b:.0%} smaller "
          f"({1 - (a - js) / (b - js):.0%} without plotly.js)", flush=True)


def bench_synthetic(old: ModuleType, n: int) -> None:
    s = synthetic(n)
    metrics = summarize(s, conserved=True, accounts_liquidated=1) | {
        "settle_asset": "USDT", "accounts": 1, "positions": 2, "points": n}
    t_old, before = _timed(former_charts, old, s)
    t_new, after = _timed(array_charts, s, metrics)
    b, a = len(before.encode()), len(after.encode())
    print(f"{n:,} points, the eight per-series charts:")
    print(f"  before (graph objects, ISO-string lists): {t_old:.3f} s, {b:,} bytes")
    print(f"  after (plotly.js specs, typed arrays):    {t_new:.3f} s, {a:,} bytes")
    print(f"  -> {t_old / t_new:.1f}x faster, {1 - a / b:.0%} smaller", flush=True)
    _pages(old, f"{n:,} points", {"bench": ReportRun(metrics=metrics, series=s)})


def bench_default(old: ModuleType) -> None:
    from solvency.sim.run import run_scenario
    from solvency.sim.scenario import default_scenario

    t0 = time.perf_counter()
    res = run_scenario(default_scenario())
    print(f"the bundled default: {res.metrics['accounts']:,} accounts, "
          f"{res.metrics['points']:,} points, run in {time.perf_counter() - t0:.1f} s",
          flush=True)
    _pages(old, "the bundled default", {res.venue: ReportRun(metrics=res.metrics,
                                                             series=res.series)})


def former_backtest_module(rev: str) -> ModuleType:
    """``src/solvency/adapters/report.py`` as it was at ``rev``."""
    return _module_at(rev, "src/solvency/adapters/report.py", "former_backtest_report")


def bench_backtest(rev: str, n: int) -> None:
    """The backtest page's figure (``solvency backtest --report``): ``n`` daily returns,
    three models, each way."""
    from types import SimpleNamespace

    from solvency.adapters import report as current

    old = former_backtest_module(rev)
    rng = np.random.default_rng(3)
    ts = 1_500_000_000_000 + 86_400_000 * np.arange(n, dtype=np.int64)
    close = 30_000.0 * np.exp(np.cumsum(rng.normal(0.0, 0.03, n)))
    losses = np.maximum(-np.diff(np.log(close), prepend=np.log(close[0])), 0.0)
    runs = [SimpleNamespace(model=m, index=np.arange(n), rates=0.05 + 0.01 * k +
                            rng.random(n) * 1e-3, losses=losses,
                            exceptions=losses > 0.05 + 0.01 * k) for k, m in
            enumerate(("fixed", "ewma", "garch"))]
    args = {"title": "bench", "source": "synthetic", "confidence": 0.99, "horizon": "1d",
            "interval": "1d", "side": "long", "ts_ms": ts, "close": close, "runs": runs}
    t_old, before = _timed(lambda: old._figure(old.BacktestReport(**args)).to_html(
        full_html=False, include_plotlyjs=False))
    t_new, after = _timed(lambda: current._figure(current.BacktestReport(**args)).to_html(
        full_html=False, include_plotlyjs=False))
    b, a = len(before.encode()), len(after.encode())
    print(f"backtest figure, {n:,} returns x 3 models:")
    print(f"  before (lists of datetimes): {t_old:.3f} s, {b:,} bytes")
    print(f"  after (epoch-ms arrays):     {t_new:.3f} s, {a:,} bytes")
    print(f"  -> {t_old / t_new:.1f}x faster, {1 - a / b:.0%} smaller", flush=True)


def main() -> None:
    print(describe(), flush=True)
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=50_000)
    ap.add_argument("--default", action="store_true",
                    help="also run the bundled default and write both pages from it")
    ap.add_argument("--baseline", default=BASELINE, help="git revision of the former module")
    ap.add_argument("--returns", type=int, default=50_000,
                    help="returns of the backtest page's figure")
    args = ap.parse_args()
    old = former_module(args.baseline)
    print(f"baseline: src/solvency/sim/report.py at {args.baseline[:12]}")
    bench_synthetic(old, args.points)
    bench_backtest(args.baseline, args.returns)
    if args.default:
        bench_default(old)


if __name__ == "__main__":
    main()
