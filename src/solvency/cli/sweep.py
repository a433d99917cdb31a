"""``solvency sweep``: one scenario over a parameter grid, locally or on a Dask cluster."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from solvency.cli.simulate import _clean, _show
from solvency.cli.tables import print_table
from solvency.sim.scenario import ScenarioError
from solvency.sim.sweep import SweepBase, SweepPlan, SweepResult, parse_grid, plan_sweep, run_sweep
from solvency.sim.sweep_report import FILES, Format, write_sweep

__all__ = ["sweep"]

console = Console()
err = Console(stderr=True, soft_wrap=True)

_TABLE_KEYS = (
    ("liquidations", "liquidations"), ("bad_debt", "bad debt"),
    ("var95_bad_debt", "VaR95"), ("var99_bad_debt", "VaR99"),
    ("insurance_fund_min", "fund min"), ("adl_count", "ADL fills"),
    ("capital_efficiency", "IM/notional"), ("conserved", "conserved"),
    ("on_frontier", "frontier"),
)


class SweepFormat(StrEnum):
    """``--format``: what ``--out`` writes besides frontier.html."""

    CSV = "csv"
    PARQUET = "parquet"


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(message)}")
    return typer.Exit(code)


def _plan(scenario_file: Path | None, grid: list[str], paths: int) -> SweepPlan:
    base = SweepBase.from_file(scenario_file)
    return plan_sweep(base, parse_grid(grid), paths)


def _run(plan: SweepPlan, workers: int | None, dask: str | None, show: bool) -> SweepResult:
    if not show:
        return run_sweep(plan, workers=workers, dask=dask)
    where = "processes" if dask is None else f"dask {dask}"
    bar = Progress(TextColumn(f"[bold]sweeping ({escape(where)})"), BarColumn(),
                   MofNCompleteColumn(), TimeElapsedColumn(), console=err, transient=True)
    task = bar.add_task("runs", total=plan.n_tasks)

    def update(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    with bar:
        return run_sweep(plan, workers=workers, dask=dask, progress=update)


def _cell(key: str, value: Any) -> str:
    if key == "on_frontier":
        return "yes" if value else "-"
    return _show(value)


def _print_table(title: str, result: SweepResult) -> None:
    table = Table(title=title)
    table.add_column("point", justify="right")
    for p in result.params:
        table.add_column(p, justify="right", overflow="fold")
    table.add_column("paths", justify="right")
    for _, label in _TABLE_KEYS:
        table.add_column(label, justify="right", overflow="fold", min_width=len(label))
    for pt in result.points:
        table.add_row(str(pt["point"]), *(escape(_show(pt[p])) for p in result.params),
                      str(pt["paths"]), *(_cell(k, pt.get(k)) for k, _ in _TABLE_KEYS))
    print_table(console, table)
    workers = "" if result.workers is None else (
        f", {result.workers} worker{'s' if result.workers > 1 else ''}")
    console.print(f"{len(result.rows)} runs on {escape(result.backend)}{workers} in "
                  f"{result.wall_s:.1f} s ({len(result.rows) / result.wall_s:.2f} runs/s)")


def sweep(
    scenario_file: Annotated[Path | None, typer.Argument(
        metavar="SCENARIO", help="Scenario TOML file (default: the bundled default).")] = None,
    grid: Annotated[list[str] | None, typer.Option(
        "--grid", help="PARAM=V1,V2,... with PARAM a dotted path into the scenario file "
                       "(venue.insurance_fund, liquidity.BTC-PERP.depth_per_bps_base, "
                       "venue.preset); repeat for a cartesian product.")] = None,
    paths: Annotated[int, typer.Option(
        "--paths", min=1, help="Monte Carlo paths per grid point (market seeds "
                               "seeds.market + i).")] = 1,
    dask: Annotated[str | None, typer.Option(
        "--dask", metavar="ADDRESS|local",
        help="Run on a dask.distributed scheduler at ADDRESS, or 'local' for a "
             "LocalCluster (default: local processes).")] = None,
    workers: Annotated[int | None, typer.Option(
        "--workers", min=1, help="Local worker processes (process pool or --dask local; "
                                 "default: the CPU count).")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", help="Write sweep.csv, sweep_points.csv and frontier.html into this "
                      "folder.")] = None,
    fmt: Annotated[SweepFormat, typer.Option(
        "--format", case_sensitive=False,
        help="With --out: parquet also writes sweep.parquet and sweep_points.parquet.")
    ] = SweepFormat.CSV,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print the per-point table as JSON.")] = False,
) -> None:
    """Run a scenario over a parameter grid (Monte Carlo paths per point), locally or on Dask.

    Prints one row per grid point: mean metrics over its paths, bad-debt VaR95 / VaR99
    and whether it lies on the capital-efficiency / VaR99 frontier.
    """
    try:
        if workers is not None and dask not in (None, "local"):
            raise ScenarioError("--workers: a scheduler address runs on the cluster's own "
                                "workers; use --workers without --dask or with --dask local")
        if dask is not None and not dask.strip():
            raise ScenarioError("--dask: give a scheduler address or 'local'")
        plan = _plan(scenario_file, grid or [], paths)
    except ScenarioError as exc:
        raise _fail(str(exc)) from None
    try:
        result = _run(plan, workers, dask, show=not as_json)
    except ScenarioError as exc:
        raise _fail(str(exc)) from None
    name = plan.scenarios[0].name
    if out is not None:
        fmt_: Format = "parquet" if fmt is SweepFormat.PARQUET else "csv"
        write_sweep(out, result, title=f"solvency sweep: {name}",
                    description=plan.scenarios[0].description, fmt=fmt_)
    if as_json:
        payload: dict[str, Any] = {"params": list(result.params), "points": result.points}
        typer.echo(json.dumps(_clean(payload), sort_keys=True))
    else:
        _print_table(f"Sweep: {name}", result)
        if out is not None:
            console.print(f"wrote {escape(str(out / (FILES['rows'] + '.csv')))}, "
                          f"{escape(FILES['points'])}.csv and {escape(FILES['frontier'])}")
    if not result.conserved:
        raise typer.Exit(1)

