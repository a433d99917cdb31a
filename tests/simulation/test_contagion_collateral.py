"""Issue 22, the shared-collateral link: the engine's collateral sales move each venue's own
spot book of the asset, and the book's price, reported at the next step, revalues every
holder under a rule that weights its own book (the 2025-10-10 spiral) and nobody's under a
rule that does not (2025-10-14).

Binance's rules (the presets ``binance-2025-10-10``: wBETH 20 % own WBETHUSDT book + 80 %
WBETH/ETH rate x ETHUSDT; ``binance-2025-10-14``: own-book weight 0 %): Binance's
announcement, https://www.binance.bh/en/square/post/30886289453337 (read 2026-12-07). The
books' depth, volatility and resilience here are assumed (thin test books, not sourced).
"""

from __future__ import annotations

import json
import math
from decimal import ROUND_FLOOR, Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from solvency.cli.main import app
from solvency.core.model.events import Price
from solvency.core.model.presets import load_preset
from solvency.core.oracle import OracleReport
from solvency.engine.engine import Engine
from solvency.sim.contagion import CollateralBooks, run_venues
from solvency.sim.market import DAYS_PER_YEAR
from solvency.sim.run import VenueStep, venue_steps
from solvency.sim.scenario import CollateralBookSpec, parse_scenario
from tests.simulation.test_multi_venue import ARGS
from tests.simulation.test_run import SMALL
from tests.venues.test_collateral_valuation import T0, _setup

V = 0.001                                # the WBETH book's daily volume (assumed, thin)
SIGMA = 1.0 / math.sqrt(DAYS_PER_YEAR)   # vol_annual 1.0 (assumed)
DECAY = 2.0 ** (-60_000 / 1_800_000)     # one 1-minute step of a 30-minute half-life
STEP = 60_000


def _pause(e: Engine, k: int, sales: list[tuple[str, float]]) -> dict[str, VenueStep]:
    return {"bn": VenueStep(k, T0 + STEP * k, {}, None, e, STEP,  # type: ignore[arg-type]
                            (), "USDT", sales=sales)}


def _book_price(flow: float) -> Decimal:
    """4,280 x exp(-sigma_daily sqrt(flow / V)), floored to 1e-8, by hand."""
    return (Decimal(4280) * Decimal(repr(math.exp(-SIGMA * math.sqrt(flow / V))))).quantize(
        Decimal("1e-8"), rounding=ROUND_FLOOR)


def _spiral(preset: str, volume: float = V) -> tuple[list[Decimal], list[Decimal],
                                                     list[list[str]], dict[str, Any]]:
    """Four accounts holding 0.36 / 0.42 / 0.44 / 0.5 wBETH, each long 1 BTC bought at
    100,000 (tests/venues/test_collateral_valuation.py); BTC marks 98,900 at step 1,
    then steps 2-5 report the link's book price, as a run does (every asset conserved
    after it: ``Engine.verify``). Returns the book price set at each step 2-5, wBETH's
    price under the rule after each report, the accounts BTC's mark and each report
    liquidated and the link's metrics."""
    e = _setup(load_preset(preset))
    link = CollateralBooks({"WBETH": CollateralBookSpec(volume, vol_annual=1.0)},
                           _pause(e, 1, []), {}, parse_scenario(
                               SMALL.format(**ARGS), source="small.toml"))
    link.step(_pause(e, 1, []))
    out = e.apply(Price(id="btc3", market="BTC-PERP", price=Decimal(98_900),
                        ts_ms=T0 + STEP))
    prices: list[Decimal] = []
    values: list[Decimal] = []
    hit: list[list[str]] = [sorted({o.account for o in out if o.type == "liquidation"})]
    for k in (2, 3, 4, 5):
        sales = [(o.asset, float(o.amount)) for o in out if o.type == "collateral_exchanged"]
        step = _pause(e, k, sales)
        link.step(step)
        price = step["bn"].book_prices[("WBETH", "book")]
        prices.append(price)
        out = e.apply(OracleReport(id=f"book{k}", source="book", price=price,
                                   ts_ms=T0 + STEP * k, asset="WBETH"))
        values.append(e.book.asset_price_exact[e.book.asset_index["WBETH"]])
        hit.append(sorted({o.account for o in out if o.type == "liquidation"}))
    e.verify()
    return prices, values, hit, link.metrics()


def test_a_sale_moves_the_book_and_its_next_report_liquidates_the_next_holder() -> None:
    prices, values, hit, metrics = _spiral("binance-2025-10-10")
    # step 1: BTC 98,900 liquidates a1 (0.36 x 4,280 x 0.95 - 1,100 = 363.76 < MM 444.5);
    # its auto-exchange sells all its 0.36 wBETH into the book
    assert hit[0] == ["a1"]
    # step 2: the 0.36 decayed one minute (30-minute half-life):
    # 4,280 exp(-sigma sqrt(0.36 x 0.97716 / 0.001)) = 1,603.57; wBETH = 0.2 x 1,603.57 +
    # 0.8 x 4,280 = 3,744.71: a2 0.42 x 0.95 x 3,744.71 - 1,100 = 394.1 < 444.5,
    # a3 465.3 and a4 678.7 stay above
    assert prices[0] == _book_price(0.36 * DECAY)
    assert prices[0] == Decimal("1603.57094103")
    assert [v == Decimal("0.2") * p + 3424 for v, p in zip(values, prices, strict=True)] == [
        True] * 4
    assert values[0] == Decimal("3744.714188206")
    assert hit[1] == ["a2"]
    # step 3: a2's 0.42 joins: flow 0.36 d^2 + 0.42 d = 0.75415: 1,016.67; wBETH
    # 3,627.33: a3 0.44 x 0.95 x 3,627.33 - 1,100 = 416.2 < 444.5; a4 623.0 stays
    assert prices[1] == _book_price(0.36 * DECAY**2 + 0.42 * DECAY)
    assert hit[2] == ["a3"]
    # step 4: a3's 0.44 joins: 716.02, wBETH 3,567.20: a4 0.475 x 3,567.20 - 1,100 =
    # 594.4 stays (the own book's 20 % can take wBETH no lower than 3,424: a4 is safe)
    assert prices[2] == _book_price(0.36 * DECAY**3 + 0.42 * DECAY**2 + 0.44 * DECAY)
    assert hit[3] == []
    # step 5: no sale, the book recovers toward 4,280 (resilience)
    assert prices[3] == _book_price((0.36 * DECAY**3 + 0.42 * DECAY**2 + 0.44 * DECAY)
                                    * DECAY)
    assert prices[3] > prices[2]
    book = metrics["bn"]["WBETH"]
    assert book["sold_units"] == pytest.approx(0.36 + 0.42 + 0.44)
    # lowest: right after a3's sale at step 3's time (flow 0.36 d^2 + 0.42 d + 0.44)
    assert book["book_low"] == float(_book_price(0.36 * DECAY**2 + 0.42 * DECAY + 0.44))


def test_under_the_2025_10_14_rule_the_same_sale_moves_the_book_not_the_valuation() -> None:
    prices, values, hit, metrics = _spiral("binance-2025-10-14")
    assert hit[0] == ["a1"]
    assert prices[0] == _book_price(0.36 * DECAY)  # the same book move as on 10-10
    assert hit[1:] == [[], [], [], []]
    assert values == [Decimal(4280)] * 4
    assert metrics["bn"]["WBETH"]["sold_units"] == pytest.approx(0.36)


def test_a_book_drained_below_one_quantum_prints_1e_8_and_still_revalues() -> None:
    # V = 1e-9 wBETH: 4,280 exp(-sigma sqrt(0.36 d / 1e-9)) is about 1e-175, floored to 0
    # before (the engine refused the report: no revaluation, the spiral vanished); now
    # one price quantum, 1e-8: wBETH 0.2 x 1e-8 + 0.8 x 4,280 = 3,424.000000002, so a2
    # (0.42 x 0.95 x 3,424 - 1,100 = 266.2) and a3 (331.2) fall below 444.5, a4 (0.475 x
    # 3,424 - 1,100 = 526.4) stays
    prices, values, hit, _ = _spiral("binance-2025-10-10", volume=1e-9)
    assert hit[0] == ["a1"]
    assert prices == [Decimal("1E-8")] * 4
    assert values[0] == Decimal("0.2") * Decimal("1E-8") + 3424
    assert hit[1] == ["a2", "a3"]


LINKED = """
[[venues]]
name = "bn10"
preset = "binance-2025-10-10"

[[venues]]
name = "bn14"
preset = "binance-2025-10-14"

[links]
active = ["collateral"]

[links.collateral.WBETH]
daily_volume = 2.0   # assumed: a thin book
vol_annual = 1.0     # assumed
"""


def _lab(links: str = LINKED) -> str:
    # the small crash (BTC and ETH -2 %, then a 15 % cascade) on Binance's 2025-10-10 rule,
    # half the accounts posting wBETH (assumed)
    return SMALL.format(**{**ARGS, "venue": "binance-2025-10-10"}).replace(
        "[population.open_interest_base]",
        "collateral_mix = { USDT = 0.5, WBETH = 0.5 }\n\n[population.open_interest_base]"
    ) + links


def _json(tmp_path: Path, text: str, *args: str) -> dict[str, Any]:
    path = tmp_path / "coll.toml"
    path.write_text(text, encoding="utf-8")
    res = CliRunner().invoke(app, ["simulate", str(path), "--json", "--jobs", "1", *args])
    assert res.exit_code == 0, res.output
    data: dict[str, Any] = json.loads(res.output)
    for part in ("venues", "isolated"):
        for v in data[part].values():
            del v["wall_s"]
    return data


def test_in_the_lab_the_own_book_rule_spirals_and_the_redemption_rule_does_not(
        tmp_path: Path) -> None:
    data = _json(tmp_path, _lab())
    assert data["links"] == ["collateral"]
    assert all(v["conserved"] for part in ("venues", "isolated")
               for v in data[part].values())
    bn10, bn14 = data["venues"]["bn10"], data["venues"]["bn14"]
    alone10 = data["isolated"]["bn10"]
    # 10-10: the sales' book reports liquidate wBETH holders; more is sold and liquidated
    # than alone, where the book stays at its start price
    assert bn10["collateral"]["revaluation_liquidations"] > 0
    assert alone10["collateral"]["revaluation_liquidations"] == 0
    assert bn10["collateral"]["sold"]["WBETH"]["units"] > \
        alone10["collateral"]["sold"]["WBETH"]["units"]
    assert bn10["liquidated_notional"] > alone10["liquidated_notional"]
    # 10-14: its own sales move its own book as far, but no valuation: the run is its
    # run alone, figure for figure
    assert bn14 == data["isolated"]["bn14"]
    assert bn14["collateral"]["revaluation_liquidations"] == 0
    books = data["collateral"]
    start = books["bn10"]["WBETH"]["book_start"]
    assert books["bn14"]["WBETH"]["book_low"] < 0.6 * start
    assert books["bn10"]["WBETH"]["book_low"] < books["bn14"]["WBETH"]["book_low"]
    assert books["bn14"]["WBETH"]["daily_volume"] == 2.0
    # bn10's spiral is its own: the run without bn14 is bn10 linked (its own book), so
    # nothing spills over either way
    figures = ("liquidations", "liquidated_notional", "accounts_liquidated",
               "insurance_fund_used", "adl_notional", "bad_debt")
    for i, j in (("bn10", "bn14"), ("bn14", "bn10")):
        assert data["spillover"][i][j] == dict.fromkeys(figures, 0.0)
    assert data["systemic"]["contagion"]["liquidated_notional"] == pytest.approx(
        bn10["liquidated_notional"] - alone10["liquidated_notional"])
    # each venue's sales move only its book: bn14's book is the one of a run of bn14
    # alone with the link
    solo = run_venues(parse_scenario(_lab(LINKED.replace(
        '[[venues]]\nname = "bn10"\npreset = "binance-2025-10-10"\n\n', "")),
        source="solo.toml"), links=("collateral",))
    assert solo.collateral["bn14"] == books["bn14"]


def test_with_the_link_off_the_book_never_moves(tmp_path: Path) -> None:
    data = _json(tmp_path, _lab(), "--links", "none")
    assert data["links"] == [] and "collateral" not in data
    assert data["venues"] == data["isolated"]
    # the engine's last report of wBETH's book source is the start price at every step
    sc = parse_scenario(_lab(), source="off.toml")
    seen = set()
    for st in venue_steps(sc, venue="binance-2025-10-10"):
        valuer = st.engine.collateral
        seen.add(valuer.reports[st.engine.book.asset_index["WBETH"]]["book"][0])
    assert len(seen) == 1


def test_a_refused_collateral_report_is_counted_and_not_taken_as_reported() -> None:
    """A book price the engine refuses (0 here, set by hand at the pause as the link
    would) is counted in the run's ``collateral.rejected_reports`` by reason, and is not
    taken as the source's last report: the start price offered again next step is the
    one the engine already holds, so nothing is reported (its time stays the start's)."""
    sc = parse_scenario(_lab(), source="refused.toml")
    steps = venue_steps(sc, venue="binance-2025-10-10")
    key = ("WBETH", "book")
    st = next(steps)
    a = st.engine.book.asset_index["WBETH"]
    start_price, start_ts = st.engine.collateral.reports[a]["book"]
    try:
        while True:
            if st.k == 3:
                st.book_prices[key] = Decimal(0)
            elif st.k == 4:
                st.book_prices[key] = start_price
            elif st.k == 5:
                assert st.engine.collateral.reports[a]["book"] == (start_price, start_ts)
            st = steps.send(None)
    except StopIteration as stop:
        result = stop.value
    assert result.metrics["collateral"]["rejected_reports"] == {"invalid_price": 1}
    assert result.metrics["conserved"]


@pytest.mark.parametrize(("old", "new", "says"), [
    ("daily_volume = 2.0", "daily_volume = nan", "links.collateral.WBETH.daily_volume"),
    ("daily_volume = 2.0", "daily_volume = -1.0", "links.collateral.WBETH.daily_volume"),
    ("vol_annual = 1.0", "vol_annual = inf", "links.collateral.WBETH.vol_annual"),
    ("vol_annual = 1.0", "impact_y = -1.0", "links.collateral.WBETH.impact_y"),
    ("vol_annual = 1.0", 'half_life = "0m"', "links.collateral.WBETH.half_life"),
])
def test_bad_book_values_exit_2_with_the_dotted_key(tmp_path: Path, old: str, new: str,
                                                     says: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(_lab(LINKED.replace(old, new)), encoding="utf-8")
    res = CliRunner().invoke(app, ["simulate", str(path), "--json"])
    assert res.exit_code == 2, res.output
    assert says in res.output
    assert "Traceback" not in res.output


@pytest.mark.parametrize(("change", "says"), [
    (("[links.collateral.WBETH]", "[links.collateral.DOGE]"),
     "links.collateral.DOGE: no venue of the scenario values 'DOGE' by rule"),
    (("[links.collateral.WBETH]", "[links.collateral.USDT]"),
     "links.collateral.USDT: no venue of the scenario values 'USDT' by rule"),
    (("[links.collateral.WBETH]", "[links.collateral.USDE]"),
     "the collateral link needs [links.collateral.WBETH]"),
])
def test_an_unknown_or_missing_asset_exits_2(tmp_path: Path, change: tuple[str, str],
                                             says: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(_lab(LINKED.replace(*change)), encoding="utf-8")
    res = CliRunner().invoke(app, ["simulate", str(path), "--json"])
    assert res.exit_code == 2, res.output
    assert says in res.output


def test_shared_traders_hold_the_same_wbeth_on_both_venues_and_runs_replay() -> None:
    """With the traders link too: account i of both venues (one population, drawn alike)
    is one trader posting the same wBETH on each, valued by each venue's rule; the same
    seeds give the same output, and every venue conserves."""
    text = _lab(LINKED.replace('active = ["collateral"]', 'active = ["traders", "collateral"]')
                + "\n[links.traders]\nshare = 0.5   # assumed\nwallet_multiple = 0.2   "
                  "# assumed\n")
    sc = parse_scenario(text, source="both.toml")
    runs = [run_venues(sc, links=("traders", "collateral")) for _ in range(2)]
    for r in runs:
        assert r.links == ("traders", "collateral")
        assert all(v.metrics["conserved"] for v in r.venues.values())
    a, b = ({k: {m: x for m, x in v.metrics.items() if m != "wall_s"}
             for k, v in r.venues.items()} for r in runs)
    assert a == b and runs[0].collateral == runs[1].collateral
    assert runs[0].traders == runs[1].traders and runs[0].traders["traders"] == 75
    # one population per venue from the same seed and spec: the same wBETH per account
    pops = [next(venue_steps(sc, venue=p)).engine for p in ("binance-2025-10-10",
                                                           "binance-2025-10-14")]
    held = [[e.ledger.balance(f"u:acct{i:03d}", "WBETH") for i in range(75)] for e in pops]
    assert held[0] == held[1] and sum(x > 0 for x in held[0]) > 20
