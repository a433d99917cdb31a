"""A simulated population holding collateral valued by rule (issue 22, the lab's depeg).

Binance's rule of 2025-10-10 valued wBETH as 20 % of its own WBETHUSDT book + 80 % of
(WBETH/ETH rate x ETHUSDT); from 2025-10-14 the own-book weight is 0 % (Binance's
announcement, https://www.binance.bh/en/square/post/30886289453337; the presets
``binance-2025-10-10`` and ``binance-2025-10-14``). Its own book printed wBETH about $430
between 21:36 and 22:16 UTC (CoinDesk, 2025-10-12,
https://www.coindesk.com/markets/2025/10/12/binance-to-compensate-users-affected-by-crash-in-wbeth-bnsol-and-ethena-s-usde).
The population's shares of wBETH collateral are assumed (a test book, not sourced).
"""

from __future__ import annotations

import re
from decimal import Decimal

import numpy as np
import pytest

from solvency.core.model.events import Price
from solvency.core.model.presets import load_preset
from solvency.core.oracle import OracleReport
from solvency.engine.engine import Engine
from solvency.sim.population import (
    LeverageComponent,
    PopulationSpec,
    generate_population,
    load_population,
)
from solvency.sim.run import run_scenario, venue_steps
from solvency.sim.scenario import ScenarioError, parse_scenario
from tests.simulation.test_open_interest_share import FOUR

T0 = 1_760_132_160_000  # 2025-10-10 21:36 UTC
PRICES = {"BTC-PERP": 100_000.0, "ETH-PERP": 4_000.0}
# assumed: half the accounts post wBETH, leverage around 25x (so that a 3 % BTC fall
# leaves some accounts of both kinds near maintenance before the depeg)
SPEC = PopulationSpec(n_accounts=300, open_interest_base={"BTC-PERP": 60.0},
                      collateral_mix={"USDT": 0.5, "WBETH": 0.5},
                      leverage=(LeverageComponent(weight=1.0, median=25.0, sigma=0.5),))


def _run(preset: str) -> tuple[Engine, set[str], set[str], set[str]]:
    """Load the book, BTC -3 % (liquidates some of both kinds), then wBETH's book at 430.

    Returns the engine, the wBETH holders, the accounts liquidated by the BTC move and
    those liquidated by the depeg."""
    venue = load_preset(preset)
    pop = generate_population(SPEC, venue, PRICES, 22)
    e = Engine(venue)
    load_population(e, pop, ts_ms=T0)
    k = pop.collateral_assets.index("WBETH")
    holders = {pop.accounts[i] for i in np.flatnonzero(pop.collateral_asset == k).tolist()}
    out = e.apply(Price(id="btc", market="BTC-PERP", price=Decimal(97_000), ts_ms=T0 + 1))
    first = {o.account for o in out if o.type == "liquidation"}
    out = e.apply(OracleReport(id="depeg", source="book", price=Decimal(430),
                               ts_ms=T0 + 240_000, asset="WBETH"))
    second = {o.account for o in out if o.type == "liquidation"}
    e.verify()
    return e, holders, first, second


def test_the_population_holds_wbeth_at_its_redemption_value() -> None:
    venue = load_preset("binance-2025-10-10")
    pop = generate_population(SPEC, venue, PRICES, 22)
    # 1.07 (the presets' WBETH/ETH rate) x the ETH mark 4,000, the book assumed at peg
    assert pop.collateral_prices == {"WBETH": Decimal("4280")}
    e = Engine(venue)
    load_population(e, pop, ts_ms=T0)
    a = e.book.asset_index["WBETH"]
    assert e.book.asset_price_exact[a] == Decimal("4280")
    k = pop.collateral_assets.index("WBETH")
    held = np.flatnonzero(pop.collateral_asset == k)
    assert 100 < held.shape[0] < 200
    i = int(held[0])
    # the account's deposit in WBETH quanta, valued at 4,280 x the preset's ratio 0.95
    qty = Decimal(int(pop.collateral_quanta[i])).scaleb(-venue.assets["WBETH"].decimals)
    view = e.account_view(pop.accounts[i])
    upnl = float(view["collateral_usd"]) - float(qty * Decimal(4280) * Decimal("0.95"))
    assert abs(upnl) < 0.01 * float(view["collateral_usd"])  # entries near 100,000
    e.verify()


def test_the_own_book_rule_alone_liquidates_more_wbeth_holders() -> None:
    _, holders, first10, second10 = _run("binance-2025-10-10")
    _, holders14, first14, second14 = _run("binance-2025-10-14")
    assert holders == holders14
    # the BTC move: the same accounts under both rules (the rules agree at peg)
    assert first10 == first14
    assert first10 - holders and first10 & holders  # both kinds liquidated
    # the depeg: under the 2025-10-14 rule wBETH keeps 4,280 and liquidates nobody
    assert second14 == set()
    liq10 = (first10 | second10) & holders
    liq14 = (first14 | second14) & holders
    assert liq14 < liq10 and len(liq10 - liq14) >= 3  # 5 with this seed
    # accounts without valued collateral are liquidated identically under both rules
    assert (first10 | second10) - holders == (first14 | second14) - holders


def test_a_book_only_asset_needs_its_start_price() -> None:
    # USDe is valued from Binance's own book alone: no redemption value to start from
    venue = load_preset("binance-2025-10-10")
    spec = PopulationSpec(n_accounts=20, open_interest_base={"BTC-PERP": 5.0},
                          collateral_mix={"USDT": 0.5, "USDE": 0.5})
    with pytest.raises(ValueError, match=r"USDE is valued by rule from its book or index "
                                         r"only: give its start price"):
        generate_population(spec, venue, PRICES, 1)
    spec = PopulationSpec(n_accounts=20, open_interest_base={"BTC-PERP": 5.0},
                          collateral_mix={"USDT": 0.5, "USDE": 0.5},
                          collateral_prices={"USDE": 0.9995})
    pop = generate_population(spec, venue, PRICES, 1)
    assert pop.collateral_prices == {"USDE": Decimal("0.9995")}
    e = Engine(venue)
    load_population(e, pop, ts_ms=T0)
    assert e.book.asset_price_exact[e.book.asset_index["USDE"]] == Decimal("0.9995")
    e.verify()


def test_a_scenario_population_holds_valued_collateral() -> None:
    # the scenario file's [population] collateral_mix and collateral_prices reach the lab
    text = FOUR.replace('preset = "binance"', 'preset = "binance-2025-10-10"').replace(
        "[population.open_interest_base]",
        'collateral_mix = { USDT = 0.5, USDE = 0.5 }\ncollateral_prices = { USDE = 1.0 }\n\n'
        "[population.open_interest_base]")
    scenario = parse_scenario(text, source="four.toml")
    assert scenario.population.collateral_prices == {"USDE": 1.0}
    pop = generate_population(scenario.population, scenario.venue(None, step_ms=60_000),
                              {"BTC-PERP": 100_000.0}, scenario.seed_population)
    assert pop.collateral_prices == {"USDE": Decimal("1.0")}
    assert "USDE" in {pop.collateral_assets[int(k)] for k in pop.collateral_asset}
    r = run_scenario(scenario, impact=False)
    assert r.metrics["conserved"] is True
    # both longs post USDe here (seed 5): at the preset's 0.9 weight the 4.8 % gap takes
    # them below bankruptcy (20x: 0.9 x 5 % < 4.8 % + fees), unlike USDT's 2 liquidated
    # above it; the run only has to load and value them by the rule
    assert [pop.collateral_assets[int(k)] for k in pop.collateral_asset] == [
        "USDE", "USDT", "USDT", "USDE"]
    assert r.metrics["accounts_liquidated"] >= 1


def _usde_scenario(reports: str) -> str:
    # FOUR at 130x with no BTC move: only USDe's reported book price moves
    return FOUR.replace('preset = "binance"', 'preset = "binance-2025-10-10"').replace(
        "gap_fraction = 0.048", "gap_fraction = 0.0").replace(
        "median = 20.0", "median = 130.0").replace(
        "[population.open_interest_base]",
        "leverage_max = 200.0\ncollateral_mix = { USDT = 0.5, USDE = 0.5 }\n"
        "collateral_prices = { USDE = 1.0 }\n\n[population.open_interest_base]") + reports


DEPEG = """
[[collateral_reports]]
asset = "USDE"
source = "book"
at = ["2025-10-10T00:05:00Z", "2025-10-10T00:09:00Z", "2025-10-10T00:15:00Z"]
price = [1.0, 0.65, 1.0]
"""


def test_the_scenario_depeg_path_reaches_the_engine_on_the_lab_clock() -> None:
    # USDe's own book 1.0 -> 0.65 (minutes 5 to 9) -> 1.0 (minute 15), reported each
    # step (1 minute) as the "book" source of Binance's 2025-10-10 rule (100 % own book)
    scenario = parse_scenario(_usde_scenario(DEPEG), source="depeg.toml")
    path = scenario.collateral_reports[0]
    t5 = path.ts_ms[0]
    assert path.price(t5 - 1) is None
    assert path.price(t5 + 120_000) == Decimal("0.825")  # halfway to 0.65
    assert path.price(t5 + 20 * 60_000) == Decimal("1.0")
    seen: list[Decimal] = []
    usd: list[tuple[float, float]] = []
    for st in venue_steps(scenario, impact=False):  # at a step's start: the last report
        e = st.engine
        seen.append(e.book.asset_price_exact[e.book.asset_index["USDE"]])
        usd.append((float(e.account_view("acct0")["equity_usd"]),
                    float(e.account_view("acct1")["equity_usd"])))
    assert seen[5] == Decimal("1") and seen[9] == Decimal("0.65") and seen[-1] == Decimal(1)
    assert seen[8] == Decimal("0.7375")  # minute 8: 1 - 0.35 x 3/4 (seen[i]: minute i)
    # acct0 posts USDe (seed 5), acct1 USDT: only acct0's equity follows the book
    assert usd[9][0] < 0.8 * usd[5][0] and usd[9][1] == usd[5][1]
    assert usd[-1] == usd[5]
    assert run_scenario(scenario, impact=False).metrics["conserved"] is True


@pytest.mark.parametrize(("patch", "says"), [
    ('asset = "USDE"', "collateral_reports[0].asset: 'USDT' is not valued by rule"),
    ('source = "book"', "collateral_reports[0].source: USDE is reported by sources ['book']"),
    ("price = [1.0, 0.65, 1.0]", "'at' and 'price' need the same number of points"),
])
def test_a_bad_depeg_path_is_refused_with_its_key(patch: str, says: str) -> None:
    bad = {'asset = "USDE"': 'asset = "USDT"', 'source = "book"': 'source = "redemption"',
           "price = [1.0, 0.65, 1.0]": "price = [1.0, 0.65]"}[patch]
    with pytest.raises(ScenarioError, match=re.escape(says)):
        parse_scenario(_usde_scenario(DEPEG.replace(patch, bad)), source="depeg.toml")


def test_a_valued_asset_at_weight_zero_is_refused() -> None:
    # posting is sized so the margin value after the haircut is the drawn collateral:
    # at weight 0 no amount can do that (it divided by zero)
    import dataclasses

    from solvency.core.model.assets import CollateralTier

    venue = load_preset("binance-2025-10-10")
    wbeth = dataclasses.replace(venue.assets["WBETH"], collateral=(
        CollateralTier(floor_usd=Decimal(0), weight=Decimal(0)),))
    venue = dataclasses.replace(venue, assets={**venue.assets, "WBETH": wbeth})
    with pytest.raises(ValueError, match="WBETH counts at weight 0"):
        generate_population(SPEC, venue, PRICES, 22)
