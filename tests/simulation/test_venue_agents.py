"""Issue 22: each ``[[venues]]`` entry may carry its own ``[venues.agents]``.

A venue's agent table runs that agent on the venue with its keys over the scenario's
``[agents]`` table of that agent (``enabled = false``: off there); the agents it does not
name are the scenario's. With the links off, a venue given its own agents behaves as its
single-venue run with those agents (built here from the agents' dataclasses, not from the
parser), and the other venues as their runs with the scenario's agents, exactly. Bad
values are refused with the entry's dotted key (exit 2 from the CLI)."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from solvency.cli.main import app
from solvency.sim.agents import AgentsSpec, LiquidatorSpec, MarketMakerSpec, TopUpSpec
from solvency.sim.contagion import run_venues
from solvency.sim.run import run_scenario
from solvency.sim.scenario import ScenarioError, parse_scenario
from tests.simulation.test_multi_venue import ARGS
from tests.simulation.test_run import SMALL

AGENTS = """
[agents.liquidator]
capital_quote = 2000000
capacity_per_step_quote = 400000
latency = "2m"

[agents.market_maker]
max_withdrawal = 0.6
"""
"""The scenario's agents: every venue's unless it says otherwise."""

VENUES = """
[[venues]]
name = "same"
preset = "binance"

[[venues]]
name = "own"
preset = "binance"

[venues.agents.liquidator]
capital_quote = 50000        # over the scenario's 2,000,000; capacity and latency kept

[venues.agents.market_maker]
enabled = false              # no market makers on this venue

[venues.agents.topup]
respond_fraction = 0.8       # the scenario has no top-ups; this venue's traders do
latency = "1m"
"""

OWN = AgentsSpec(
    liquidator=LiquidatorSpec(capital_quote=50_000.0, capacity_per_step_quote=400_000.0,
                              latency_ms=120_000),
    topup=TopUpSpec(respond_fraction=0.8, latency_ms=60_000))
"""What ``own`` runs, by hand: the liquidator's capital its own, the rest of the
scenario's liquidator kept; no market makers; top-ups with the defaults but two."""


def _text(venues: str = VENUES) -> str:
    return SMALL.format(**ARGS) + AGENTS + venues


def _strip(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if k != "wall_s"}


def test_parsed_agents_inherit_the_scenarios_keys() -> None:
    scenario = parse_scenario(_text(), source="two.toml")
    same, own = scenario.venues
    assert same.agents is None
    assert same.scenario_of(scenario).agents == scenario.agents
    assert scenario.agents == AgentsSpec(
        liquidator=LiquidatorSpec(capital_quote=2_000_000.0,
                                  capacity_per_step_quote=400_000.0, latency_ms=120_000),
        market_maker=MarketMakerSpec(max_withdrawal=0.6))
    assert own.agents == OWN
    assert own.scenario_of(scenario).agents == OWN


def test_a_venue_with_its_own_agents_runs_as_its_single_run_with_them() -> None:
    scenario = parse_scenario(_text(), source="two.toml")
    res = run_venues(scenario)  # no links
    alone_same = run_scenario(scenario, venue="binance").metrics
    alone_own = run_scenario(replace(scenario, agents=OWN), venue="binance").metrics
    assert _strip(res.venues["same"].metrics) == _strip(alone_same)
    assert _strip(res.venues["own"].metrics) == _strip(alone_own)
    # the two venues differ in their agents alone (same preset, population and path)
    own, same = res.venues["own"].metrics, res.venues["same"].metrics
    assert same["agents"] == ["liquidator", "market_maker"]
    assert own["agents"] == ["liquidator", "topup"]
    assert own["topups"] > 0 and same["topups"] == 0
    assert own["liquidator_absorbed_notional"] < same["liquidator_absorbed_notional"]
    assert own["mm_depth_min_fraction"] == 1.0 > same["mm_depth_min_fraction"]
    assert own["liquidations"] != same["liquidations"]


def test_the_documented_venue_agents_parse() -> None:
    """docs/contagion.md's ``[venues.agents]`` block, over a scenario's liquidator."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "contagion.md").read_text("utf-8")
    blocks = [b for b in re.findall(r"```toml\n(.*?)```", doc, re.S)
              if "[venues.agents" in b]
    assert len(blocks) == 1
    scenario = parse_scenario(SMALL.format(**ARGS) + AGENTS + "\n" + blocks[0])
    assert scenario.venues[0].agents == AgentsSpec(liquidator=LiquidatorSpec(
        capital_quote=520_000.0, capacity_per_step_quote=400_000.0, latency_ms=120_000))


@pytest.mark.parametrize(("table", "message"), [
    pytest.param("[venues.agentz]\n",
                 "venues[1].agentz: unknown key; did you mean 'agents'? expected one of: "
                 "agents, collateral_mix, collateral_prices, depth_scale, insurance_fund, "
                 "liquidity, name, population_share, preset, venue", id="unknown-table"),
    pytest.param("[venues.agents.liquidator]\ncapitl_quote = 1\n",
                 "venues[1].agents.liquidator.capitl_quote: unknown key; did you mean "
                 "'capital_quote'?", id="unknown-key"),
    pytest.param("[venues.agents.liquidator]\ncapital_quote = -1\n",
                 "venues[1].agents.liquidator.capital_quote: must be >= 0, got -1.0",
                 id="range"),
    pytest.param("[venues.agents.liquidator]\nlatency = \"soon\"\n",
                 "venues[1].agents.liquidator.latency: interval 'soon'", id="duration"),
    pytest.param("[venues.agents.topup]\ntarget_margin_ratio = 0.9\n",
                 "venues[1].agents.topup.target_margin_ratio: must be below venue "
                 "'dydx''s margin_call_ratio 0.8, got 0.9", id="checked-against-its-venue"),
])
def test_bad_venue_agents_are_refused_with_the_dotted_key(table: str, message: str,
                                                          tmp_path: Path) -> None:
    venues = f"""
[[venues]]
name = "bn"
preset = "binance"

[[venues]]
name = "dx"
preset = "dydx"
{table}"""
    with pytest.raises(ScenarioError, match=r"^two\.toml: ") as err:
        parse_scenario(_text(venues), source="two.toml")
    assert message in str(err.value)
    path = tmp_path / "two.toml"
    path.write_text(_text(venues), encoding="utf-8")
    res = CliRunner().invoke(app, ["simulate", str(path), "--json"])
    assert res.exit_code == 2, res.output
    assert message.split(":", maxsplit=1)[0] in res.output
    assert "Traceback" not in res.output
