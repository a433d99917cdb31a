"""``solvency simulate``: run a stress scenario through the real engine and report it."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from solvency.cli.tables import print_table
from solvency.core.model.presets import PRESETS, preset_names
from solvency.sim.contagion import FIGURES, basis_bps, check_links, parse_links, run_venues
from solvency.sim.report import (
    ContagionView,
    ReportRun,
    Unit,
    format_value,
    headline,
    verdict,
    write_report,
)
from solvency.sim.run import MonteCarloResult, RunResult, run_compare, run_monte_carlo, run_scenario
from solvency.sim.scenario import Scenario, ScenarioError, default_scenario, load_scenario

__all__ = ["simulate"]

console = Console()
err = Console(stderr=True, soft_wrap=True)

_TABLE_ROWS: tuple[tuple[str, tuple[tuple[str, str, Unit], ...]], ...] = (
    ("solvency", (
        ("bad_debt", "bad debt", "amount"),
        ("var99_bad_debt", "bad debt VaR 99 % over paths", "amount"),
        ("es99_bad_debt", "bad debt ES 99 % over paths", "amount"),
        ("conserved", "every invariant held", "flag"))),
    ("insurance fund", (
        ("insurance_fund_start", "at the start", "amount"),
        ("insurance_fund_used", "used (start - equity low)", "amount"),
        ("insurance_fund_used_share", "used, share of its start", "share"))),
    ("liquidations", (
        ("liquidated_share_of_oi", "liquidated, share of open interest (one side)",
         "share"),
        ("open_interest_start_notional", "open interest at the start (one side)", "amount"),
        ("liquidated_share", "liquidated, share of user long + short", "share"),
        ("liquidated_notional", "liquidated notional", "amount"),
        ("accounts_liquidated", "accounts liquidated", "count"),
        ("accounts_liquidated_share", "accounts liquidated, share", "share"),
        ("liquidations", "liquidation fills", "count"))),
    ("ADL", (
        ("adl_notional", "ADL notional", "amount"),
        ("adl_count", "ADL fills", "count"),
        ("adl_haircut", "ADL haircut", "amount"))),
    ("market", (
        ("cascade_amplification", "worst cascade amplification", "ratio"),
        ("capital_efficiency", "initial margin per unit notional", "share"))),
)
"""The terminal summary: the report's headline figures, grouped, with units."""


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(message)}")
    return typer.Exit(code)


def _scenario(path: Path | None, prices: str | None) -> Scenario:
    scenario = default_scenario() if path is None else load_scenario(path)
    if prices:
        scenario = scenario.with_prices(_parse_prices(prices, scenario))
    return scenario


def _parse_prices(text: str, scenario: Scenario) -> dict[str, str]:
    out: dict[str, str] = {}
    for i, part in enumerate(p.strip() for p in text.split(",") if p.strip()):
        market, sep, file = part.partition("=")
        if not sep:
            if i > 0:
                raise ScenarioError(f"--prices: {part!r}: name the market (MARKET=CSV) for "
                                    "every file after the first")
            market, file = scenario.markets[0], part
        out[market.strip()] = file.strip()
    if not out:
        raise ScenarioError("--prices: no file given")
    return out


def _venues(compare: str | None, venue: str | None) -> list[str] | None:
    if compare is None:
        if venue is not None and venue not in PRESETS:
            raise ScenarioError(f"unknown venue {venue!r}; known: {', '.join(preset_names())}")
        return None
    names = [v.strip() for v in compare.split(",") if v.strip()]
    if len(names) < 1:
        raise ScenarioError("--compare: give venue names separated by commas")
    unknown = [v for v in names if v not in PRESETS]
    if unknown:
        raise ScenarioError(f"--compare: unknown venues {unknown}; known: "
                            f"{', '.join(preset_names())}")
    if len(set(names)) != len(names):
        raise ScenarioError("--compare: a venue is named twice")
    return names


def _show(v: Any) -> str:
    """A bare metric value for the sweep's table (cli/sweep.py)."""
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 10 else f"{v:,.0f}"
    return str(v)


def _print_table(title: str, metrics: dict[str, dict[str, Any]],
                 thresholds: dict[str, float] | None = None) -> None:
    thresholds = thresholds or {}
    paths = next(iter(metrics.values())).get("paths")
    caption = (f"Monte Carlo: means over {paths} paths" if paths else None)
    table = Table(title=title, caption=caption)
    table.add_column("group")
    table.add_column("figure")
    for name in metrics:
        table.add_column(name, justify="right")
    figs = {v: {**m, **headline(m)} for v, m in metrics.items()}
    checks = {v: verdict(m, thresholds) for v, m in metrics.items()}
    table.add_row("verdict", escape("thresholds of [report]") if thresholds else "no bad debt",
                  *("PASS" if all(c.ok for c in checks[v]) else "FAIL" for v in metrics),
                  end_section=True)
    for group, rows in _TABLE_ROWS:
        shown = [r for r in rows if any(f.get(r[0]) is not None for f in figs.values())
                 or any(r[0] in m for m in metrics.values())]
        for i, (key, label, unit) in enumerate(shown):
            table.add_row(group if i == 0 else "", label, *(
                format_value(figs[v].get(key), unit, str(m.get("settle_asset") or ""))
                for v, m in metrics.items()), end_section=i == len(shown) - 1)
    print_table(console, table)
    for v, m in metrics.items():
        failed = [c for c in checks[v] if not c.ok]
        if failed:
            asset = str(m.get("settle_asset") or "")
            console.print(escape(f"{v}: FAIL: " + "; ".join(
                c.name if c.limit is None else
                f"{c.name} {format_value(c.value, c.unit, asset)} > "
                f"{format_value(c.limit, c.unit, asset)}" for c in failed)))


def _clean(obj: Any) -> Any:
    """JSON-safe: non-finite floats become null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    return obj


def _progress_bar(enabled: bool, label: str | None = None
                  ) -> tuple[Progress | None, Callable[[int, int], None] | None]:
    """A bar on stderr: ``run N`` of runs one after the other, or ``label`` (venues in
    parallel: the points done summed over them, out of all their points)."""
    if not enabled:
        return None, None
    bar = Progress(TextColumn("[bold]simulating"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), console=err, transient=True)
    task = bar.add_task("run", total=None)
    state = {"runs": 0, "last": 0}

    def update(done: int, total: int) -> None:
        if done < state["last"]:
            state["runs"] += 1
        state["last"] = done
        if done % 20 == 0 or done == total:
            bar.update(task, completed=done, total=total,
                       description=label or f"run {state['runs'] + 1}")

    return bar, update


def _run(scenario: Scenario, venues: list[str] | None, venue: str | None, paths: int,
         progress: Callable[[int, int], None] | None, jobs: int = 1
         ) -> dict[str, RunResult | MonteCarloResult]:
    names = venues if venues is not None else [venue]
    out: dict[str, RunResult | MonteCarloResult] = {}
    if paths > 1:
        for name in names:
            res = run_monte_carlo(scenario, paths, venue=name, progress=progress)
            out[res.summary["venue"]] = res
        return out
    if venues is not None:
        return dict(run_compare(scenario, venues, progress=progress, jobs=jobs))
    one = run_scenario(scenario, venue=venue, progress=progress)
    return {one.venue: one}


def _summary(res: RunResult | MonteCarloResult) -> dict[str, Any]:
    return res.summary if isinstance(res, MonteCarloResult) else res.metrics


def _write_outputs(out: Path, scenario: Scenario, results: dict[str, Any],
                   payload: dict[str, Any], contagion: ContagionView | None = None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(_clean(payload), indent=2, sort_keys=True)
                                      + "\n", encoding="utf-8")
    runs: dict[str, ReportRun] = {}
    for name, res in results.items():
        if isinstance(res, MonteCarloResult):
            runs[name] = ReportRun(metrics=_clean(res.summary), series=res.runs[0].series,
                                   paths=[r.series for r in res.runs],
                                   series_metrics=_clean(res.runs[0].metrics))
        else:
            runs[name] = ReportRun(metrics=_clean(res.metrics), series=res.series)
    write_report(out / "report.html", title=f"solvency stress lab: {scenario.name}",
                 description=scenario.description, runs=runs,
                 thresholds=dict(scenario.report), contagion=contagion)


def simulate(
    scenario_file: Annotated[Path | None, typer.Argument(
        metavar="SCENARIO", help="Scenario TOML file (default: the bundled default).")] = None,
    prices: Annotated[str | None, typer.Option(
        "--prices", help="Replay real OHLCV bars instead of the scenario's path: CSV (first "
                         "market) or MARKET=CSV[,MARKET=CSV].")] = None,
    venue: Annotated[str | None, typer.Option(
        "--venue", help="Venue preset instead of the scenario's.")] = None,
    compare: Annotated[str | None, typer.Option(
        "--compare", help="Venue presets to compare side by side, e.g. binance,dydx.")] = None,
    paths: Annotated[int, typer.Option(
        "--paths", min=1, help="Monte Carlo paths (market seeds); VaR95/VaR99 of bad debt.")
    ] = 1,
    out: Annotated[Path | None, typer.Option(
        "--out", help="Write metrics.json and report.html into this folder.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print metrics as JSON.")] = False,
    jobs: Annotated[int | None, typer.Option(
        "--jobs", min=1, help="Processes to run --compare's venues in (default: the number "
                              "of CPUs; 1: one after the other). Results do not depend on "
                              "it.")] = None,
    verify_every: Annotated[int | None, typer.Option(
        "--verify-every", min=1, help="Check the invariants (Engine.verify, flat accounts) "
                                      "every N steps instead of the scenario's "
                                      "run.verify_every; 1: after every step.")] = None,
    links: Annotated[str | None, typer.Option(
        "--links", help="A scenario's [[venues]]: the links between them, 'none' or "
                        "some of 'liquidity,traders,collateral' (default: the scenario's "
                        "[links] active; docs/contagion.md).")] = None,
) -> None:
    """Run a stress scenario (crash, Monte Carlo, replay) through the real engine."""
    try:
        scenario = _scenario(scenario_file, prices)
        if verify_every is not None:
            scenario = replace(scenario, verify_every=verify_every)
        venues = _venues(compare, venue)
        multi = bool(scenario.venues) and venues is None and venue is None
        if links is not None and not multi:
            raise ScenarioError("--links: needs a scenario with [[venues]] (and neither "
                                "--venue nor --compare)")
        link_set = parse_links(links) if links is not None else (
            check_links(scenario.links.active, "links.active") if multi else ())
        if multi and paths > 1:
            raise ScenarioError("--paths: a scenario with [[venues]] runs one path for now")
    except ScenarioError as exc:
        raise _fail(str(exc)) from None
    n_jobs = jobs if jobs is not None else max(os.cpu_count() or 1, 1)
    if multi:
        _simulate_venues(scenario, link_set, n_jobs, out, as_json)
        return
    parallel = venues is not None and paths == 1 and min(n_jobs, len(venues)) > 1
    bar, update = _progress_bar(not as_json, f"{len(venues or ())} venues in parallel"
                                if parallel else None)
    try:
        if bar is not None:
            with bar:
                results = _run(scenario, venues, venue, paths, update, n_jobs)
        else:
            results = _run(scenario, venues, venue, paths, None, n_jobs)
    except ScenarioError as exc:
        raise _fail(str(exc)) from None
    summaries = {k: _summary(v) for k, v in results.items()}
    payload: dict[str, Any] = {"venues": summaries} if venues is not None else next(
        iter(summaries.values()))
    if out is not None:
        _write_outputs(out, scenario, results, payload)
    if as_json:
        typer.echo(json.dumps(_clean(payload), sort_keys=True))
    else:
        _print_table(f"Stress lab: {scenario.name}", summaries, dict(scenario.report))
        if out is not None:
            console.print(f"wrote {escape(str(out / 'metrics.json'))} and "
                          f"{escape(str(out / 'report.html'))}")
    if not all(s.get("conserved", True) for s in summaries.values()):
        raise typer.Exit(1)


_COUNTS = frozenset({"liquidations", "accounts_liquidated"})


def _figure(key: str, value: float) -> str:
    return f"{value:,.0f}" if key in _COUNTS else f"{value:,.2f}"


def _print_attribution(payload: dict[str, Any]) -> None:
    """The attribution of a multi-venue run: each venue's figures linked and alone with
    the system's totals, then the spillover matrix of liquidated notional."""
    systemic = payload["systemic"]
    names = list(payload["venues"])
    table = Table(title="Attribution: each venue linked and alone")
    table.add_column("figure")
    table.add_column("run")
    for name in [*names, "system"]:
        table.add_column(name, justify="right")
    for key in FIGURES:
        for run, part, total in (("linked", "venues", "linked"), ("alone", "isolated",
                                                                  "alone")):
            table.add_row(key.replace("_", " ") if run == "linked" else "", run, *(
                _figure(key, float(payload[part][n].get(key) or 0.0)) for n in names),
                _figure(key, systemic[total][key]), end_section=run == "alone")
    print_table(console, table)
    spill = Table(title="Spillover of liquidated notional: from (row) to (column)")
    spill.add_column("from")
    for name in names:
        spill.add_column(name, justify="right")
    for i in names:
        spill.add_row(i, *("-" if i == j else _figure(
            "liquidated_notional", payload["spillover"][i][j]["liquidated_notional"])
            for j in names))
    print_table(console, spill)


def _simulate_venues(scenario: Scenario, links: tuple[str, ...], jobs: int,
                     out: Path | None, as_json: bool) -> None:
    """``simulate`` of a scenario with ``[[venues]]``: every venue on one path and clock;
    ``--json`` with ``links``, ``venues`` and ``isolated`` (name -> the venue's metrics)."""
    bar, update = _progress_bar(not as_json, f"{len(scenario.venues)} venues")
    try:
        if bar is not None:
            with bar:
                res = run_venues(scenario, links=links, jobs=jobs, progress=update)
        else:
            res = run_venues(scenario, links=links, jobs=jobs)
    except ScenarioError as exc:
        raise _fail(str(exc)) from None
    summaries = {k: v.metrics for k, v in res.venues.items()}
    payload: dict[str, Any] = {
        "links": list(res.links), "venues": summaries,
        "isolated": {k: v.metrics for k, v in res.isolated.items()},
        "spillover": res.spillover(), "systemic": res.systemic()}
    # each venue's book against the index (with the liquidity link the arbitrageurs
    # move it; without, its own liquidation flow alone)
    first = next(iter(res.venues.values()))
    payload["basis"] = {"ts_ms": first.series.ts_ms.tolist(),
                        "bps": {k: basis_bps(v) for k, v in res.venues.items()}}
    if res.arbitrage:
        payload["arbitrage"] = res.arbitrage
    if res.traders:
        payload["traders"] = res.traders
    if res.collateral:
        payload["collateral"] = res.collateral
    if out is not None:
        view = ContagionView(_clean(payload), {k: v.series for k, v in res.isolated.items()})
        _write_outputs(out, scenario, dict(res.venues), payload, view)
    if as_json:
        typer.echo(json.dumps(_clean(payload), sort_keys=True))
    else:
        _print_table(f"Stress lab: {scenario.name} ({len(summaries)} venues, links: "
                     f"{', '.join(res.links) or 'none'})", summaries, dict(scenario.report))
        _print_attribution(payload)
        if out is not None:
            console.print(f"wrote {escape(str(out / 'metrics.json'))} and "
                          f"{escape(str(out / 'report.html'))}")
    if not all(s.get("conserved", True) for s in summaries.values()):
        raise typer.Exit(1)
