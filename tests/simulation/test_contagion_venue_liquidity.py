"""Issue 22, each venue its own liquidity in a multi-venue run: a ``[[venues]]`` entry's
``depth_scale`` and its own ``[venues.liquidity.MARKET]`` tables give each venue its own
books; a burst on the thin venue moves its price by the square-root law's ratio (by
hand), and the liquidity link's flows follow each venue's own depth."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from solvency.cli.main import app
from solvency.core.model.presets import load_preset
from solvency.sim.contagion import Arbitrageurs
from solvency.sim.market import DAYS_PER_YEAR, ImpactLiquidity
from solvency.sim.run import VenueStep
from solvency.sim.scenario import LiquidityLinkSpec, Scenario, parse_scenario
from tests.simulation.test_multi_venue import ARGS
from tests.simulation.test_run import SMALL

# the scenario's BTC book (tests/simulation/test_run.py SMALL): 0.5 BTC per bp, 6,000 BTC
# a day; vol_ref_annual 0.5 (the default) before any advance
V = 6000.0
SIGMA = 0.5 / math.sqrt(DAYS_PER_YEAR)
PRICE = 117_000.0

VENUES = """
[[venues]]
name = "deep"
preset = "binance"

[[venues]]
name = "thin"
preset = "dydx"
depth_scale = 0.25

[venues.liquidity.ETH-PERP]
depth_per_bps_base = 2.0
daily_volume_base = 30000.0
min_depth_fraction = 0.02
"""


def _scenario(venues: str = VENUES) -> Scenario:
    return parse_scenario(SMALL.format(**ARGS) + venues, source="books.toml")


def _books(scenario: Scenario) -> dict[str, ImpactLiquidity]:
    return {v.name: ImpactLiquidity(load_preset(v.preset),
                                    v.scenario_of(scenario).liquidity_specs())
            for v in scenario.venues}


def test_each_venue_has_its_own_books() -> None:
    sc = _scenario()
    deep, thin = (v.scenario_of(sc).liquidity_specs() for v in sc.venues)
    # nothing given: the scenario itself, the same books
    assert sc.venues[0].scenario_of(sc) is sc
    assert deep["BTC-PERP"].daily_volume_base == V
    assert deep["BTC-PERP"].profile.ask_base == (0.5 * 500.0,)
    # depth_scale 0.25: a quarter of the depth within 5 % (0.125 BTC per bp) and of the
    # daily volume
    assert thin["BTC-PERP"].daily_volume_base == V * 0.25
    assert thin["BTC-PERP"].profile.ask_base == (0.125 * 500.0,)
    assert thin["BTC-PERP"].profile.bid_base == (0.125 * 500.0,)
    # its own ETH table, then scaled: 2.0 x 0.25 per bp, 30,000 x 0.25 a day
    assert thin["ETH-PERP"].daily_volume_base == 7500.0
    assert thin["ETH-PERP"].profile.ask_base == (0.5 * 500.0,)
    assert deep["ETH-PERP"].daily_volume_base == 120000.0


def test_a_burst_on_the_thin_venue_moves_its_price_by_the_square_root_ratio() -> None:
    books = _books(_scenario())
    for b in books.values():
        b.record_flow("BTC-PERP", -60.0)  # the same liquidation sell on each venue
    deep, thin = books["deep"].impact("BTC-PERP"), books["thin"].impact("BTC-PERP")
    # square-root law: -sigma sqrt(60 / V) on the deep book (-26.2 bps), and on a book of
    # a quarter of the volume sqrt(1 / 0.25) = 2 times that (-52.4 bps)
    assert deep == pytest.approx(-SIGMA * math.sqrt(60 / V))
    assert thin == pytest.approx(-SIGMA * math.sqrt(60 / (0.25 * V)))
    assert thin / deep == pytest.approx(2.0)
    assert books["thin"].trade_price("BTC-PERP", PRICE) < books["deep"].trade_price(
        "BTC-PERP", PRICE)


def test_the_liquidity_link_trades_each_venue_by_its_own_depth() -> None:
    books = _books(_scenario())
    books["thin"].record_flow("BTC-PERP", -300.0)
    steps = {name: VenueStep(1, 60_000, {"BTC-PERP": PRICE}, model, None,  # type: ignore[arg-type]
                             60_000) for name, model in books.items()}
    sent = Arbitrageurs(LiquidityLinkSpec(capital=1e12), ["BTC-PERP"], 60_000).step(steps)
    # one common impact b with c_v b |b| on each book, c_v proportional to its volume
    # (deep 4, thin 1): the deep book ends holding 4/5 of the -300 BTC and the thin one
    # 1/5, so they sell 240 BTC on the deep venue and buy 240 on the thin one (equal
    # books would have split it 150/150)
    assert sent[("deep", "BTC-PERP")] == pytest.approx(-240.0)
    assert sent[("thin", "BTC-PERP")] == pytest.approx(240.0)
    common = -SIGMA * math.sqrt(240 / V)
    assert books["deep"].impact("BTC-PERP") == pytest.approx(common)
    assert books["thin"].impact("BTC-PERP") == pytest.approx(-SIGMA * math.sqrt(60 / (V / 4)))
    assert books["thin"].impact("BTC-PERP") == pytest.approx(common)


@pytest.mark.parametrize(("extra", "message"), [
    ("depth_scale = 0\n", "venues[0].depth_scale"),
    ("[venues.liquidity.SOL-PERP]\ndepth_per_bps_base = 1.0\ndaily_volume_base = 10.0\n",
     "venues[0].liquidity: markets ['SOL-PERP'] are not in market.markets"),
    ("[venues.liquidity.BTC-PERP]\ndaily_volume_base = 10.0\n",
     "venues[0].liquidity.BTC-PERP: give exactly one depth profile"),
])
def test_bad_venue_books_are_refused_with_the_key(tmp_path: Path, extra: str,
                                                  message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(SMALL.format(**ARGS) + '\n[[venues]]\nname = "a"\npreset = "binance"\n'
                    + extra, encoding="utf-8")
    res = CliRunner().invoke(app, ["simulate", str(path), "--links", "none"])
    assert res.exit_code == 2
    assert message in res.output


def test_the_documented_venue_books_parse() -> None:
    """docs/contagion.md's ``depth_scale`` block, on the small scenario."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "contagion.md").read_text("utf-8")
    [block] = [b for b in re.findall(r"```toml\n(.*?)```", doc, re.S) if "depth_scale" in b]
    sc = _scenario(block)
    specs = sc.venues[0].scenario_of(sc).liquidity_specs()
    assert specs["BTC-PERP"].daily_volume_base == V * 0.25
    assert specs["ETH-PERP"].daily_volume_base == 7500.0
    assert specs["ETH-PERP"].profile.ask_base == (0.5 * 500.0,)
