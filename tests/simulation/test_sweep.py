"""``solvency sweep``: grid parsing, validation before any run, local == Dask, tables, CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from solvency.cli.main import app
from solvency.sim.metrics import bad_debt_var
from solvency.sim.report import format_value
from solvency.sim.run import run_scenario
from solvency.sim.scenario import ScenarioError
from solvency.sim.sweep import (
    MEAN_KEYS,
    SweepBase,
    SweepPlan,
    SweepResult,
    cartesian,
    pareto_frontier,
    parse_grid,
    parse_grid_value,
    plan_sweep,
    run_sweep,
    run_task,
)
from solvency.sim.sweep_report import write_csv, write_frontier, write_parquet, write_sweep

# 300 accounts, 2 hours of 1-minute steps, a crash at 30 minutes: ~35 ms a run
TINY = """\
name = "tiny sweep crash"
description = "300 accounts, 2 hours of 1-minute steps, a crash at 30 minutes"
start = "2025-10-10T00:00:00Z"
horizon = "2h"
step = "1m"

[seeds]
market = 101
population = 5

[run]
verify_every = 1

[market]
model = "crash"
correlation = [[1.0, 0.85], [0.85, 1.0]]

[market.markets.BTC-PERP]
start_price = 117000.0
vol_annual = 0.4
crash_at = "30m"
gap_fraction = 0.02
cascade_depth = 0.12
cascade_duration = "20m"
recovery_fraction = 0.5
recovery_half_life = "20m"

[market.markets.ETH-PERP]
start_price = 4010.0
vol_annual = 0.5
crash_at = "30m"
gap_fraction = 0.025
cascade_depth = 0.13
cascade_duration = "20m"

[population]
n_accounts = 300
long_short_ratio = 1.2
entry_spread = 0.02
leverage = [
  { weight = 0.8, median = 8.0, sigma = 0.6 },
  { weight = 0.2, median = 30.0, sigma = 0.5 },
]

[population.open_interest_base]
BTC-PERP = 60.0
ETH-PERP = 1200.0

[venue]
preset = "binance"
insurance_fund = 10000

[liquidity.BTC-PERP]
depth_per_bps_base = 0.1
daily_volume_base = 1200.0
min_depth_fraction = 0.02

[liquidity.ETH-PERP]
depth_per_bps_base = 2.0
daily_volume_base = 24000.0
min_depth_fraction = 0.02
"""

FUND = "venue.insurance_fund"
DEPTH = "market.markets.BTC-PERP.cascade_depth"
GRID = [f"{FUND}=0,50000", f"{DEPTH}=0.06,0.12"]
PATHS = 2


@pytest.fixture(scope="module")
def scenario_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sweep") / "tiny.toml"
    path.write_text(TINY, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def base(scenario_file: Path) -> SweepBase:
    return SweepBase.from_file(scenario_file)


@pytest.fixture(scope="module")
def plan(base: SweepBase) -> SweepPlan:
    return plan_sweep(base, parse_grid(GRID), PATHS)


@pytest.fixture(scope="module")
def local(plan: SweepPlan) -> SweepResult:
    return run_sweep(plan, workers=2)


@pytest.fixture(scope="module")
def on_dask(plan: SweepPlan) -> SweepResult:
    # LocalCluster(n_workers=2, processes=True, threads_per_worker=1)
    return run_sweep(plan, workers=2, dask="local")


# ============================================================================ grid


@pytest.mark.parametrize(("text", "value"), [
    pytest.param("20000000", 20_000_000, id="int"),
    pytest.param("0.12", 0.12, id="float"),
    pytest.param("1e6", 1e6, id="float-exponent"),
    pytest.param("true", True, id="bool"),
    pytest.param('"30m"', "30m", id="quoted-string"),
    pytest.param("30m", "30m", id="bare-duration"),
    pytest.param("binance", "binance", id="bare-word"),
    pytest.param("[1, 2]", [1, 2], id="array"),
    pytest.param("{ weight = 1.0 }", {"weight": 1.0}, id="inline-table"),
])
def test_grid_value_is_a_toml_literal_or_a_bare_word(text: str, value: object) -> None:
    got = parse_grid_value(text)
    assert got == value
    assert type(got) is type(value)


def test_grid_splits_on_commas_outside_brackets() -> None:
    (p,) = parse_grid(['population.leverage=[{weight = 1.0, median = 5.0, sigma = 0.5}],'
                       '[{weight = 1.0, median = 9.0, sigma = 0.5}]'])
    assert p.name == "population.leverage"
    assert [v[0]["median"] for v in p.values] == [5.0, 9.0]
    (q,) = parse_grid(['name="a,b",c'])
    assert q.values == ("a,b", "c")


@pytest.mark.parametrize(("specs", "message"), [
    pytest.param(["venue.insurance_fund"], "expected PARAM=V1,V2", id="no-equals"),
    pytest.param(["=1,2"], "dotted path", id="empty-path"),
    pytest.param(["venue..insurance_fund=1"], "dotted path", id="empty-segment"),
    pytest.param(["venue.insurance_fund="], "no values", id="empty-list"),
    pytest.param(["venue.insurance_fund=  "], "no values", id="blank-list"),
    pytest.param(["venue.insurance_fund=1,,2"], "empty value", id="empty-element"),
    pytest.param(["venue.insurance_fund=1,2,1"], "value 1 is given twice", id="dup-value"),
    pytest.param(["venue.insurance_fund=[1,"], "not a valid TOML value", id="bad-array"),
    pytest.param(["venue.insurance_fund=nan"], "finite", id="nan"),
    pytest.param(["venue.insurance_fund=inf"], "finite", id="inf"),
    pytest.param(["venue.insurance_fund=1", "venue.insurance_fund=2"], "given twice",
                 id="dup-param"),
    pytest.param(["venue.insurance.fee_share_ppm=0", "venue.insurance={fee_share_ppm = 1}"],
                 "overlaps --grid venue.insurance.fee_share_ppm", id="nested-params"),
    pytest.param(["venue={preset = 'dydx'}"], "set a key inside it", id="reserved-column"),
])
def test_grid_rejects(specs: list[str], message: str) -> None:
    with pytest.raises(ScenarioError, match="--grid") as info:
        parse_grid(specs)
    assert message in str(info.value)


def test_cartesian_first_param_varies_slowest() -> None:
    params = parse_grid(["a=1,2", "b=x,y,z"])
    assert cartesian(params) == [
        {"a": 1, "b": "x"}, {"a": 1, "b": "y"}, {"a": 1, "b": "z"},
        {"a": 2, "b": "x"}, {"a": 2, "b": "y"}, {"a": 2, "b": "z"}]
    assert cartesian(()) == [{}]


def test_plan_order_and_seeds(plan: SweepPlan) -> None:
    assert plan.points == (
        {FUND: 0, DEPTH: 0.06}, {FUND: 0, DEPTH: 0.12},
        {FUND: 50000, DEPTH: 0.06}, {FUND: 50000, DEPTH: 0.12})
    tasks = list(plan.tasks())
    assert [(t.point, t.path) for t in tasks] == [(p, i) for p in range(4) for i in range(2)]
    assert [t.seed_market for t in tasks[:2]] == [101, 102]
    assert [float(s.insurance_fund) for s in plan.scenarios] == [0, 0, 50000, 50000]
    assert [s.market_params["BTC-PERP"]["cascade_depth"] for s in plan.scenarios] == [
        0.06, 0.12, 0.06, 0.12]


# ============================================================================ overrides


def test_override_leaves_the_base_document_alone(base: SweepBase) -> None:
    s = base.scenario({"population.leverage.1.median": 40.0, "venue.preset": "dydx",
                       "liquidity.ETH-PERP.impact_y": 0.5, "step": "2m"})
    assert s.population.leverage[1].median == 40.0
    assert s.population.leverage[0].median == 8.0
    assert s.venue().name == "dydx"
    assert s.liquidity_data["ETH-PERP"]["impact_y"] == 0.5
    assert s.step_ms == 120_000
    assert base.data["population"]["leverage"][1]["median"] == 30.0
    assert base.data["venue"]["preset"] == "binance"
    assert "impact_y" not in base.data["liquidity"]["ETH-PERP"]
    assert base.scenario().population.leverage[1].median == 30.0


@pytest.mark.parametrize(("spec", "message"), [
    pytest.param("foo=1", "foo: unknown key; expected one of: agents", id="unknown-top-level"),
    pytest.param("venue.insurence_fund=1",
                 "venue: insurence_fund: unknown key; did you mean 'insurance'?",
                 id="unknown-venue-key"),
    pytest.param("market.markets.BTC-PERP.cascade_dept=0.1",
                 "market.markets.BTC-PERP.cascade_dept: unknown key; did you mean 'cascade_depth'?",
                 id="unknown-model-key"),
    pytest.param("market.markets.BTC-PERP.cascade_depth=deep",
                 "market.markets.BTC-PERP.cascade_depth: Input should be a valid number",
                 id="string-for-float"),
    pytest.param("seeds.market=1.5", "seeds.market: Input should be a valid integer",
                 id="float-for-int"),
    pytest.param("venue.insurance_fund=abc", "venue.insurance_fund: 'abc' is not a number",
                 id="not-a-number"),
    pytest.param("venue.insurance_fund=-1", "venue.insurance_fund: must be >= 0",
                 id="out-of-range"),
    pytest.param("venue.preset=nope", "unknown venue 'nope'", id="unknown-preset"),
    pytest.param("population.leverage.5.median=3.0",
                 "population.leverage is an array of 2: '5' is not an index",
                 id="index-out-of-range"),
    pytest.param("name.x=1", "name is a value", id="through-a-value"),
    pytest.param("liquidity.SOL-PERP.impact_y=1.0",
                 "table liquidity.SOL-PERP is not in the scenario", id="new-table"),
    pytest.param("step=banana", "step: interval 'banana'", id="bad-duration"),
])
def test_bad_param_or_value_names_the_grid_option(base: SweepBase, spec: str,
                                                  message: str) -> None:
    with pytest.raises(ScenarioError) as info:
        plan_sweep(base, parse_grid(["liquidity.ETH-PERP.impact_y=0.5,1.0", spec]), 1)
    text = str(info.value)
    assert text.startswith(f"--grid {spec}: "), text
    assert message in text, text


def test_bad_combination_names_the_grid_point(base: SweepBase) -> None:
    params = parse_grid(["population.leverage_min=1.0,20.0", "population.leverage_max=10.0"])
    with pytest.raises(ScenarioError, match=r"grid point population.leverage_min=20.0, "
                                            r"population.leverage_max=10.0: .*leverage_min"):
        plan_sweep(base, params, 1)


def test_paths_and_workers_must_be_positive(base: SweepBase, plan: SweepPlan) -> None:
    with pytest.raises(ScenarioError, match="--paths must be >= 1"):
        plan_sweep(base, (), 0)
    with pytest.raises(ScenarioError, match="--workers must be >= 1"):
        run_sweep(plan, workers=0)


# ============================================================================ runs


def _strip(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if k != "wall_s"}


def test_local_processes_and_dask_give_identical_tables(local: SweepResult,
                                                        on_dask: SweepResult,
                                                        tmp_path: Path) -> None:
    assert local.backend == "processes" and on_dask.backend == "dask-local"
    assert local.workers == on_dask.workers == 2
    assert len(local.rows) == 8
    assert local.rows == on_dask.rows
    assert local.points == on_dask.points
    a = write_csv(tmp_path / "a.csv", local.rows).read_bytes()
    b = write_csv(tmp_path / "b.csv", on_dask.rows).read_bytes()
    assert a == b
    # not vacuous: the crash liquidates, the fund pays, every run conserved money
    assert all(r["adl_count"] + r["liquidations"] > 0 for r in local.rows)
    assert local.conserved


def test_a_task_is_the_runner_with_its_seed(plan: SweepPlan, local: SweepResult) -> None:
    task = list(plan.tasks())[5]  # point 2, path 1
    direct = run_scenario(plan.scenarios[2], seed=task.seed_market).metrics
    row = local.rows[5]
    assert (row["point"], row["path"], row["seed_market"]) == (2, 1, 102)
    for key in MEAN_KEYS:
        assert row[key] == direct[key], key
    assert row["price_drawdown.BTC-PERP"] == direct["price_drawdown"]["BTC-PERP"]
    assert run_task(task).metrics == {k: v for k, v in row.items()
                                      if k not in ("point", "path", FUND, DEPTH)}


def test_grid_values_reach_the_engine_and_paths_pair_up(local: SweepResult) -> None:
    by = {(r["point"], r["path"]): r for r in local.rows}
    for r in local.rows:
        assert r["insurance_fund_start"] == float(r[FUND])
    for path in range(PATHS):
        shallow, deep = by[(0, path)], by[(1, path)]
        # same seed: the same noise, a deeper BTC cascade; ETH untouched
        assert deep["price_drawdown.BTC-PERP"] > shallow["price_drawdown.BTC-PERP"] + 0.03
        assert deep["price_drawdown.ETH-PERP"] == shallow["price_drawdown.ETH-PERP"]
        # the fund does not move prices: points 0 and 2 see the same index path
        assert by[(2, path)]["price_drawdown.BTC-PERP"] == shallow["price_drawdown.BTC-PERP"]
    assert by[(0, 0)]["price_drawdown.ETH-PERP"] != by[(0, 1)]["price_drawdown.ETH-PERP"]


def test_points_aggregate_their_paths(local: SweepResult) -> None:
    assert [p["point"] for p in local.points] == [0, 1, 2, 3]
    for p in local.points:
        mine = [r for r in local.rows if r["point"] == p["point"]]
        assert p["paths"] == len(mine) == PATHS
        assert p[FUND] == mine[0][FUND] and p[DEPTH] == mine[0][DEPTH]
        for key in ("liquidations", "adl_count", "insurance_fund_min", "capital_efficiency"):
            assert p[key] == pytest.approx(np.mean([r[key] for r in mine]), rel=1e-12)
        var = bad_debt_var(np.array([r["bad_debt"] for r in mine]))
        assert p["var95_bad_debt"] == var["var95_bad_debt"]
        assert p["var99_bad_debt"] == var["var99_bad_debt"]
        assert p["conserved"] is True
    on = pareto_frontier([(p["capital_efficiency"], p["var99_bad_debt"])
                          for p in local.points])
    assert on and [p["on_frontier"] for p in local.points] == [
        i in on for i in range(4)]


@pytest.mark.parametrize(("xy", "front"), [
    pytest.param([(0.1, 5.0), (0.2, 1.0), (0.3, 0.0)], {0, 1, 2}, id="trade-off"),
    pytest.param([(0.1, 5.0), (0.2, 6.0), (0.1, 4.0)], {2}, id="dominated"),
    pytest.param([(0.1, 1.0), (0.1, 1.0), (0.2, 2.0)], {0, 1}, id="ties-kept"),
    pytest.param([(None, 0.0), (0.2, 1.0)], {1}, id="missing-x"),
    pytest.param([(0.2, 0.0), (0.1, 0.0)], {1}, id="same-y-lower-x"),
])
def test_pareto_frontier(xy: list[tuple[float | None, float]], front: set[int]) -> None:
    assert pareto_frontier(xy) == front


# ============================================================================ outputs


def test_tables_round_trip_and_frontier_is_offline(local: SweepResult,
                                                   tmp_path: Path) -> None:
    import csv

    import pyarrow.parquet as pq

    files = write_sweep(tmp_path, local, title="t", fmt="parquet")
    assert sorted(f.name for f in files) == sorted([
        "sweep.csv", "sweep_points.csv", "sweep.parquet", "sweep_points.parquet",
        "frontier.html"])
    with (tmp_path / "sweep.csv").open(encoding="utf-8") as fh:
        got = list(csv.DictReader(fh))
    assert len(got) == len(local.rows)
    assert float(got[3]["bad_debt"]) == local.rows[3]["bad_debt"]
    assert got[3][FUND] == str(local.rows[3][FUND])
    assert got[0]["conserved"] == "true"
    table = pq.read_table(tmp_path / "sweep_points.parquet").to_pylist()
    assert [t["var99_bad_debt"] for t in table] == [p["var99_bad_debt"] for p in local.points]
    assert [t[FUND] for t in table] == [0, 0, 50000, 50000]
    rows = pq.read_table(write_parquet(tmp_path / "r.parquet", local.rows)).to_pylist()
    assert rows[7]["liquidated_notional"] == local.rows[7]["liquidated_notional"]
    page = write_frontier(tmp_path / "f.html", local, title="t").read_text(encoding="utf-8")
    assert "<script src=" not in page
    assert "Plotly.newPlot" in page and "Pareto frontier" in page
    assert f"{FUND} = 50000" in page
    # the points table speaks as the stress-lab report does: labels and units
    asset = local.rows[0]["settle_asset"]
    assert ">bad debt VaR 99 %</th>" in page and ">on the frontier</th>" in page
    for p in local.points:
        assert f"<td>{format_value(p['var99_bad_debt'], 'amount', asset)}</td>" in page
        assert f" {asset}</td>" in page
        assert f"<td>{format_value(p['capital_efficiency'], 'share')}</td>" in page


def test_mixed_types_in_a_parquet_column(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    rows = [{"a": 1, "b": None, "c": "x", "d": [1]}, {"a": 2.5, "b": None, "c": None,
                                                      "d": {"k": 1}}]
    got = pq.read_table(write_parquet(tmp_path / "m.parquet", rows)).to_pylist()
    assert [g["a"] for g in got] == [1.0, 2.5]
    assert [g["b"] for g in got] == [None, None]
    assert [g["d"] for g in got] == ["[1]", '{"k": 1}']


# ============================================================================ CLI


runner = CliRunner()


def test_cli_json_and_out(scenario_file: Path, local: SweepResult, tmp_path: Path) -> None:
    res = runner.invoke(app, ["sweep", str(scenario_file), "--grid", GRID[0], "--grid",
                              GRID[1], "--paths", str(PATHS), "--workers", "2", "--json",
                              "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["params"] == [FUND, DEPTH]
    assert data["points"] == json.loads(json.dumps(local.points))  # same as the library
    assert (tmp_path / "sweep.csv").read_bytes() == write_csv(
        tmp_path / "again.csv", local.rows).read_bytes()
    assert (tmp_path / "frontier.html").is_file()
    assert not (tmp_path / "sweep.parquet").exists()


@pytest.mark.parametrize(("args", "message"), [
    pytest.param(["--grid", "venue.insurence_fund=1"], "--grid venue.insurence_fund=1: ",
                 id="bad-param"),
    pytest.param(["--grid", "venue.insurance_fund="], "no values", id="empty"),
    pytest.param(["--format", "xlsx"], "'xlsx' is not one of", id="format"),
    pytest.param(["--dask", "tcp://h:1", "--workers", "2"], "--workers", id="workers-remote"),
])
def test_cli_bad_input_exits_2(scenario_file: Path, args: list[str], message: str) -> None:
    res = runner.invoke(app, ["sweep", str(scenario_file), *args])
    assert res.exit_code == 2, res.output
    assert message in res.output


def test_cli_missing_file_exits_2(tmp_path: Path) -> None:
    res = runner.invoke(app, ["sweep", str(tmp_path / "nope.toml"), "--json"])
    assert res.exit_code == 2
    assert "scenario file not found" in res.output


def test_venue_overrides_take_decimal_strings(base: SweepBase) -> None:
    (tiers,) = parse_grid([
        'venue.markets.BTC-PERP.tiers=[{floor = "0", max_leverage = "50", mmr = "0.01"}],'
        '[{floor = "0", max_leverage = "20", mmr = "0.025"}]'])
    mmrs = [base.scenario({tiers.name: v}).venue().markets["BTC-PERP"].margin.tiers[0].mmr
            for v in tiers.values]
    assert [str(m) for m in mmrs] == ["0.01", "0.025"]
    (ratio,) = parse_grid(['venue.margin_call_ratio="0.7"'])
    assert str(base.scenario({ratio.name: ratio.values[0]}).venue().margin_call_ratio) == "0.7"
    with pytest.raises(ScenarioError, match=r"--grid venue\.margin_call_ratio=0\.7: .*decimal"):
        plan_sweep(base, parse_grid(["venue.margin_call_ratio=0.7"]), 1)
