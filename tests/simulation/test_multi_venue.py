"""Issue 22, the lab's first slice: a scenario's ``[[venues]]`` on one path and one clock
with ``--links none``: each venue's figures equal its single-venue run exactly; ``--json``
carries ``links``, ``venues`` and ``isolated``; unknown links are refused (the
liquidity link: test_contagion_links.py)."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from solvency.cli.main import app
from solvency.cli.simulate import _clean
from solvency.sim.contagion import parse_links, run_venues
from solvency.sim.run import run_scenario
from solvency.sim.scenario import ScenarioError, parse_scenario
from tests.simulation.test_run import SMALL

ARGS: dict[str, object] = {"horizon": "45m", "seed": 7, "verify_every": 5, "vol": 0.4,
                           "gap": 0.02, "depth": 0.15, "n": 150, "venue": "binance",
                           "fund": 20000}
VENUES = """
[[venues]]
name = "bn"
preset = "binance"
population_share = 0.5

[[venues]]
name = "dydx-chain"
preset = "dydx"
insurance_fund = 7000
"""


def _text(venues: str = VENUES) -> str:
    return SMALL.format(**ARGS) + venues


def _strip(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if k != "wall_s"}


def test_links_none_gives_each_venue_its_single_venue_figures(tmp_path: Path) -> None:
    path = tmp_path / "two.toml"
    path.write_text(_text(), encoding="utf-8")
    res = CliRunner().invoke(app, ["simulate", str(path), "--links", "none", "--json",
                                   "--jobs", "1"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["links"] == []
    assert list(data["venues"]) == ["bn", "dydx-chain"]
    assert data["isolated"] == data["venues"]
    # no link: nothing spills over, and the system's totals are the venues' alone
    assert all(v == 0.0 for to in data["spillover"].values() for figs in to.values()
               for v in figs.values())
    assert set(data["spillover"]["bn"]) == {"dydx-chain"}
    assert data["systemic"]["linked"] == data["systemic"]["alone"]
    assert data["systemic"]["linked"]["liquidations"] == sum(
        v["liquidations"] for v in data["venues"].values())
    scenario = parse_scenario(_text(), source="two.toml")
    pop = scenario.population
    # half of the 150 accounts and of the open interest (BTC 300, ETH 6,000)
    half = replace(pop, n_accounts=75,
                   open_interest_base={"BTC-PERP": 150.0, "ETH-PERP": 3000.0})
    for name, preset, fund, population in (("bn", "binance", 20_000, half),
                                           ("dydx-chain", "dydx", 7_000, pop)):
        # a single-venue run of its own (its own paths from the same seeds, the venue's
        # own fund and population), as the CLI prints it
        one = replace(scenario, insurance_fund=Decimal(fund), population=population)
        alone = json.loads(json.dumps(_clean(run_scenario(one, venue=preset).metrics)))
        assert _strip(data["venues"][name]) == _strip(alone)
        assert data["venues"][name]["insurance_fund_start"] == fund
    assert data["venues"]["bn"]["liquidations"] > 0  # not vacuous
    assert data["venues"]["bn"] != data["venues"]["dydx-chain"]


@pytest.mark.parametrize(("args", "message"), [
    (["--links", "traders,collateral"], "the traders link needs [links.traders]"),
    (["--links", "gossip"], "['gossip'] unknown"),
    (["--links", "none", "--venue", "dydx"], "--links: needs a scenario with [[venues]]"),
    (["--links", "none", "--paths", "2"], "--paths: a scenario with [[venues]]"),
])
def test_what_is_not_modelled_is_refused(tmp_path: Path, args: list[str],
                                         message: str) -> None:
    path = tmp_path / "two.toml"
    path.write_text(_text(), encoding="utf-8")
    res = CliRunner().invoke(app, ["simulate", str(path), *args])
    assert res.exit_code == 2
    assert message in res.output


@pytest.mark.parametrize(("venues", "message"), [
    ('\n[[venues]]\nname = "a"\npreset = "binance"\n[[venues]]\nname = "a"\n'
     'preset = "dydx"\n', "venues[1].name: 'a' is named twice"),
    ('\n[[venues]]\nname = "a"\npreset = "nasdaq"\n', "venues[0].preset: unknown venue"),
    ('\n[[venues]]\nname = "a"\npreset = "binance"\nfund = 1\n', "venues[0].fund"),
    ('\n[[venues]]\nname = "a"\npreset = "binance"\ninsurance_fund = "-1"\n',
     "two.toml: venues[0].insurance_fund: must be >= 0"),
    ('\n[[venues]]\nname = "a"\npreset = "binance"\npopulation_share = 1.5\n',
     "venues[0].population_share"),
])
def test_a_bad_venues_table_is_refused_with_its_key(venues: str, message: str) -> None:
    with pytest.raises(ScenarioError) as err:
        parse_scenario(_text(venues), source="two.toml")
    assert message in str(err.value)


def test_run_venues_needs_venues_and_no_links() -> None:
    scenario = parse_scenario(SMALL.format(**ARGS), source="one.toml")
    with pytest.raises(ScenarioError, match="lists no"):
        run_venues(scenario)
    assert parse_links("none") == ()


def test_the_documented_venues_table_parses() -> None:
    """docs/contagion.md's ``[[venues]]`` block, on the small scenario."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "contagion.md").read_text("utf-8")
    blocks = [b for b in re.findall(r"```toml\n(.*?)```", doc, re.S) if "[[venues]]" in b]
    # the first; the venue-file, own-books and own-agents blocks:
    # tests/venues/test_bybit_venue.py, tests/simulation/test_contagion_venue_liquidity.py,
    # tests/simulation/test_venue_agents.py
    assert len(blocks) == 4
    scenario = parse_scenario(_text("\n" + blocks[0]), source="doc.toml")
    assert [(v.name, v.preset, v.insurance_fund) for v in scenario.venues] == [
        ("binance", "binance-2025-10-10", None), ("dydx", "dydx", Decimal(5_000_000))]
    assert scenario.venues[0].population_share == 0.5
