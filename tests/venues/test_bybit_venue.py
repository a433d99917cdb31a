"""Issue 22: Bybit as a venue file (``venues/bybit.toml``), and a ``[[venues]]`` entry
naming a venue file instead of a preset.

Source of the tiers: Bybit "Margin Parameters"
(https://www.bybit.com/en/announcement-info/margin-parameters: IM = value / leverage;
MM = value x MMR - deduction, deduction_n = limit_(n-1) x (MMR_n - MMR_(n-1)) +
deduction_(n-1)) and GET /v5/market/risk-limit
(https://bybit-exchange.github.io/docs/v5/market/risk-limit; BTCUSDT tier 1 to 2,000,000
USDT at MMR 0.5 % / IMR 1 %, tier 2 to 4,000,000 at 1 % / 1.75 %); tier 3 to 6,000,000 at
1.5 % / 2.5 %: a risk-limit response quoted in carpenstar/bybitapi-sdk-derivatives
src/Derivatives/MarketData/RiskLimit/README.md @869fb018 (read 2026-12-07). ETHUSDT's
ladder and the tiers past 6 M are assumed (not found; the file says so).
"""

from __future__ import annotations

import re
import tomllib
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from solvency.adapters.eventlog import load_venue
from solvency.cli.main import app
from solvency.engine.portfolio import evaluate_portfolio
from solvency.sim.scenario import parse_scenario
from tests.simulation.test_multi_venue import ARGS
from tests.simulation.test_run import SMALL

REPO = Path(__file__).resolve().parents[2]
BYBIT = REPO / "venues" / "bybit.toml"


def test_the_bybit_file_loads_with_its_tiers_and_rule() -> None:
    v = load_venue(str(BYBIT))
    assert v.name == "bybit"
    tiers = v.markets["BTC-PERP"].margin.tiers  # type: ignore[attr-defined]
    assert [(t.floor, t.imr, t.mmr) for t in tiers] == [
        (Decimal(0), Decimal("0.01"), Decimal("0.005")),
        (Decimal(2_000_000), Decimal("0.0175"), Decimal("0.01")),
        (Decimal(4_000_000), Decimal("0.025"), Decimal("0.015"))]
    # Bybit's deduction: 2,000,000 x (1 % - 0.5 %) = 10,000, then 4,000,000 x (1.5 % -
    # 1 %) + 10,000 = 30,000; no deduction on IM
    assert [t.maintenance_amount for t in tiers] == [Decimal(0), Decimal(10_000),
                                                     Decimal(30_000)]
    assert [t.initial_amount for t in tiers] == [Decimal(0), Decimal(0), Decimal(0)]
    assert v.markets["BTC-PERP"].aliases == ("BTCUSDT",)
    # takeover at bankruptcy, the surplus to the fund, one risk-limit step at a time
    assert v.policy is not None
    assert (v.policy.name, v.policy.sizing) == ("bitmex", "tier_step")
    assert v.policy.insurance_fee_ppm == 1_000_000
    # the one-line source credits the v5 endpoint with tiers 1-2 only: tier 3 is a
    # testnet example quoted in a third-party SDK's README (the comment block above it)
    source = tomllib.loads(BYBIT.read_text("utf-8"))["source"]
    assert "(BTCUSDT tiers 1-2)" in source and "tiers 1-3" not in source
    assert "testnet" in source and "carpenstar/bybitapi-sdk-derivatives" in source


def test_a_position_margined_by_hand_under_bybit_tiers() -> None:
    markets = tomllib.loads(BYBIT.read_text("utf-8"))["markets"]
    data = {"venue": "binance", "markets": markets,
            "prices": {"BTC-PERP": "100000", "ETH-PERP": "4000"},
            "account": {"collateral": {"USDT": "100000"}, "positions": [
                {"market": "BTC-PERP", "size": "30", "entry_price": "100000"},
                {"market": "ETH-PERP", "size": "-10", "entry_price": "4000"}]}}
    rep = evaluate_portfolio(data, source="bybit.json")
    got = {p["market"]: (p["initial_margin"], p["maintenance_margin"])
           for p in rep["positions"]}
    # BTC 30 x 100,000 = 3,000,000 USDT, tier 2: IM 3,000,000 x 1.75 % = 52,500,
    # MM 3,000,000 x 1 % - 10,000 = 20,000 (Bybit's deduction); ETH 10 x 4,000 = 40,000,
    # tier 1: IM 400, MM 200
    assert got == {"BTC-PERP": ("52500", "20000"), "ETH-PERP": ("400", "200")}
    assert (rep["initial_margin"], rep["maintenance_margin"]) == ("52900", "20200")
    # 50 BTC = 5,000,000 USDT, tier 3: IM 2.5 % = 125,000, MM 1.5 % x 5,000,000 - 30,000
    # = 45,000 (the second tier's rates beyond 4 M would give 87,500 and 40,000)
    data["account"]["positions"] = [  # type: ignore[index]
        {"market": "BTC-PERP", "size": "50", "entry_price": "100000"}]
    rep = evaluate_portfolio(data, source="bybit.json")
    assert (rep["initial_margin"], rep["maintenance_margin"]) == ("125000", "45000")


VENUE_FILE = """
[[venues]]
name = "bn"
preset = "binance"

[[venues]]
name = "bybit"
venue = "{path}"
"""


def test_a_venues_entry_takes_a_venue_file() -> None:
    sc = parse_scenario(SMALL.format(**ARGS) + VENUE_FILE.format(path=BYBIT),
                        source="files.toml")
    bybit = sc.venues[1]
    assert bybit.run_preset is None
    v = bybit.scenario_of(sc).venue(bybit.run_preset)
    assert v.name == "bybit"
    assert v.markets["BTC-PERP"].margin.tiers[1].mmr == Decimal("0.01")  # type: ignore[attr-defined]
    # the other venue is untouched
    assert sc.venues[0].scenario_of(sc) is sc
    # relative to the repository root (the folder above the scenario's folder), as the
    # scenario's data paths
    path = REPO / "scenarios" / "x.toml"
    rel = parse_scenario(SMALL.format(**ARGS) + VENUE_FILE.format(path="venues/bybit.toml"),
                         source=str(path), base_dir=REPO)
    assert rel.venues[1].venue_file == bybit.venue_file


@pytest.mark.parametrize(("entry", "message"), [
    ('preset = "binance"\nvenue = "venues/bybit.toml"\n',
     "venues[0]: give preset or venue (a venue file), not both"),
    ("", "venues[0]: give preset or venue (a venue file), one of them"),
    ('venue = "venues/nope.toml"\n', "venues[0].venue: data file not found"),
])
def test_preset_and_venue_file_both_or_neither_are_refused(tmp_path: Path, entry: str,
                                                           message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(SMALL.format(**ARGS) + '\n[[venues]]\nname = "a"\n' + entry,
                    encoding="utf-8")
    res = CliRunner().invoke(app, ["simulate", str(path), "--links", "none"])
    assert res.exit_code == 2, res.output
    assert message in " ".join(res.output.split())
    assert "Traceback" not in res.output


def test_the_documented_venue_file_entry_parses() -> None:
    """docs/contagion.md's ``venue = ...`` block, on the small scenario."""
    doc = (REPO / "docs" / "contagion.md").read_text("utf-8")
    [block] = [b for b in re.findall(r"```toml\n(.*?)```", doc, re.S) if "venue = " in b]
    sc = parse_scenario(SMALL.format(**ARGS) + block, source=str(REPO / "scenarios" / "d.toml"),
                        base_dir=REPO)
    v = sc.venues[0]
    assert v.scenario_of(sc).venue(v.run_preset).name == "bybit"
