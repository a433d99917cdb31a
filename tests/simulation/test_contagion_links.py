"""Issue 22, the liquidity link: arbitrageurs with a finite capital and a latency carry one
venue's liquidation flow to the others' books, by the amount the square-root law, their
capital and their latency allow (hand-checked); with no capital the linked run is each
venue's run alone; same seeds, same output; every venue conserves."""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from solvency.cli.main import app
from solvency.core.model.events import Deposit, Price
from solvency.core.model.presets import load_preset
from solvency.engine.engine import Engine
from solvency.sim.contagion import (
    Arbitrageurs,
    SharedTraders,
    capital_fraction,
    equalizing_flows,
    run_venues,
)
from solvency.sim.market import DAYS_PER_YEAR, DepthProfile, ImpactLiquidity, LiquiditySpec
from solvency.sim.run import VenueStep
from solvency.sim.scenario import (
    CollateralBookSpec,
    LiquidityLinkSpec,
    TradersLinkSpec,
    parse_scenario,
)
from tests.simulation.test_multi_venue import ARGS
from tests.simulation.test_run import SMALL

V = 150_000.0           # daily volume, BTC
SIGMA = 0.5 / math.sqrt(DAYS_PER_YEAR)  # the book's volatility before any advance (vol_ref)
PRICE = 117_000.0


def _book() -> ImpactLiquidity:
    spec = LiquiditySpec(DepthProfile.uniform(17.0, 500.0), daily_volume_base=V)
    return ImpactLiquidity(load_preset("binance"), {"BTC-PERP": spec})


def _steps(a: ImpactLiquidity, b: ImpactLiquidity, k: int) -> dict[str, VenueStep]:
    return {name: VenueStep(k, 60_000 * k, {"BTC-PERP": PRICE}, model, None,  # type: ignore[arg-type]
                            60_000) for name, model in (("a", a), ("b", b))}


def test_a_burst_on_one_venue_reaches_the_other_through_the_arbitrageurs() -> None:
    a, b = _book(), _book()
    a.record_flow("BTC-PERP", -300.0)  # liquidation sells on venue a
    # a's impact: -sigma sqrt(300 / V) = -11.70 bps; b's book has none
    assert a.impact("BTC-PERP") == pytest.approx(-SIGMA * math.sqrt(300 / V))
    assert b.impact("BTC-PERP") == 0.0
    arbs = Arbitrageurs(LiquidityLinkSpec(capital=1e9), ["BTC-PERP"], 60_000)
    sent = arbs.step(_steps(a, b, 1))
    # equal books: the common impact holds half the flow on each book, so they buy 150
    # BTC on a and sell 150 on b, and both books end at -sigma sqrt(150 / V) = -8.28 bps
    assert sent == {("a", "BTC-PERP"): 150.0, ("b", "BTC-PERP"): -150.0}
    for book in (a, b):
        assert book.impact("BTC-PERP") == pytest.approx(-SIGMA * math.sqrt(150 / V))
    m = arbs.metrics()
    assert m["gross_max"] == pytest.approx(300 * PRICE)
    assert m["traded_notional"] == {"a": 150 * PRICE, "b": 150 * PRICE}
    # the books are level now: the next step sends nothing
    assert arbs.step(_steps(a, b, 2)) == {}


def test_their_capital_bounds_what_reaches_the_other_venue() -> None:
    a, b = _book(), _book()
    a.record_flow("BTC-PERP", -300.0)
    # gross inventory 300 BTC x 117,000 = 35.1 M wanted; half of it allowed
    arbs = Arbitrageurs(LiquidityLinkSpec(capital=150 * PRICE), ["BTC-PERP"], 60_000)
    sent = arbs.step(_steps(a, b, 1))
    assert sent[("a", "BTC-PERP")] == pytest.approx(75.0)
    assert sent[("b", "BTC-PERP")] == pytest.approx(-75.0)
    assert b.impact("BTC-PERP") == pytest.approx(-SIGMA * math.sqrt(75 / V))
    assert a.impact("BTC-PERP") == pytest.approx(-SIGMA * math.sqrt(225 / V))
    # spent: the gap left stays open
    assert arbs.step(_steps(a, b, 2)) == {}
    assert arbs.metrics()["gross_max"] == pytest.approx(150 * PRICE)
    # no capital: nothing reaches b
    c, d = _book(), _book()
    c.record_flow("BTC-PERP", -300.0)
    assert Arbitrageurs(LiquidityLinkSpec(capital=0.0), ["BTC-PERP"],
                        60_000).step(_steps(c, d, 1)) == {}
    assert d.impact("BTC-PERP") == 0.0


def test_their_latency_delays_the_trade_and_they_count_their_own_orders() -> None:
    a, b = _book(), _book()
    a.record_flow("BTC-PERP", -300.0)
    # latency 2 minutes on 1-minute steps: they act on the books of two steps ago
    arbs = Arbitrageurs(LiquidityLinkSpec(capital=1e9, latency_ms=120_000), ["BTC-PERP"],
                        60_000)
    assert arbs.lag == 2
    assert arbs.step(_steps(a, b, 1)) == {}
    assert arbs.step(_steps(a, b, 2)) == {}
    assert b.impact("BTC-PERP") == 0.0
    assert arbs.step(_steps(a, b, 3)) == {("a", "BTC-PERP"): 150.0,
                                          ("b", "BTC-PERP"): -150.0}
    # at step 4 they still see step 2's books (-300, 0), plus their own orders since:
    # level, so they do not send the same orders again
    assert arbs.step(_steps(a, b, 4)) == {}
    assert arbs.metrics()["position_end"] == {"a/BTC-PERP": 150.0, "b/BTC-PERP": -150.0}


def test_they_trade_only_past_the_threshold() -> None:
    gap = SIGMA * math.sqrt(300 / V) * 1e4  # 11.70 bps
    for threshold, trades in ((gap + 0.01, False), (gap - 0.01, True)):
        a, b = _book(), _book()
        a.record_flow("BTC-PERP", -300.0)
        spec = LiquidityLinkSpec(capital=1e9, threshold_bps=threshold)
        assert bool(Arbitrageurs(spec, ["BTC-PERP"], 60_000).step(_steps(a, b, 1))) is trades


def test_equalizing_flows_and_capital_fraction_by_hand() -> None:
    # a book twice as deep (c = 2) takes two thirds of the net flow: S = -300 + 0 + 0
    assert equalizing_flows([-300.0, 0.0, 0.0], [1.0, 2.0, 1.0]) == pytest.approx(
        [225.0, -150.0, -75.0])
    assert capital_fraction([0.0, 0.0], [100.0, -100.0], 100.0) == pytest.approx(0.5)
    assert capital_fraction([0.0, 0.0], [100.0, -100.0], 500.0) == 1.0
    # reducing first, then adding on the other side: |100 - 300a| x 2 <= 200 up to 2/3
    assert capital_fraction([100.0, -100.0], [-300.0, 300.0], 200.0) == pytest.approx(2 / 3)
    # over the limit already (prices rose): orders may not add to it
    assert capital_fraction([300.0], [100.0], 200.0) == 0.0


VENUES = """
[[venues]]
name = "bn"
preset = "binance"

[[venues]]
name = "dydx-chain"
preset = "dydx"
population_share = 0.1

[links]
active = ["liquidity", "traders"]

[links.liquidity]
capital = {capital}   # assumed
latency = "1m"        # assumed

[links.traders]
share = 1.0             # assumed
wallet_multiple = 0.5   # assumed
transfer_delay = "2m"   # assumed
"""


def _scenario_text(capital: float) -> str:
    # margin calls from a ratio of 0.5 (MM / collateral), so that accounts are called a
    # step or more before they are liquidated
    small = SMALL.format(**ARGS).replace("insurance_fund = 20000",
                                         "insurance_fund = 20000\nmargin_call_ratio = '0.5'")
    return small + VENUES.format(capital=capital)


def _strip(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if k != "wall_s"}


def test_linked_run_moves_the_quiet_venue_only_through_capital(tmp_path: Path) -> None:
    path = tmp_path / "linked.toml"
    path.write_text(_scenario_text(5_000_000), encoding="utf-8")
    outs = []
    for _ in range(2):  # same seeds, same output
        res = CliRunner().invoke(app, ["simulate", str(path), "--json", "--jobs", "1"])
        assert res.exit_code == 0, res.output
        data = json.loads(res.output)
        for part in ("venues", "isolated"):
            for v in data[part].values():
                del v["wall_s"]
        outs.append(data)
    assert outs[0] == outs[1]
    data = outs[0]
    assert data["links"] == ["liquidity", "traders"]
    assert all(v["conserved"] for v in data["venues"].values())
    # dydx's 15 accounts are traders on both venues (accounts 0-14 of bn); some were
    # called and paid from their wallets
    tr = data["traders"]
    assert tr["traders"] == 15
    assert sum(tr["landed"].values()) > 0
    assert tr["wallet_left"] < tr["wallet_start"]
    arb = data["arbitrage"]
    assert 0 < arb["gross_max"] <= 5_000_000 * (1 + 1e-12)
    assert arb["lag_steps"] == 1
    bps = data["basis"]["bps"]
    assert len(data["basis"]["ts_ms"]) == len(bps["bn"]["BTC-PERP"])
    # attribution: from i to j, j's figures linked less j's in the linked run without i.
    # With two venues and the traders link that run is j alone *with the link*: the same
    # 15 traders with the same wallets (0.5 x their collateral on both venues), i's calls
    # left out. Not j with no link (its traders' own top-ups would count as i's
    # spillover), nor j with the link sized from j alone (alone, all 150 of bn's accounts
    # would be traders with wallets: 35 transfers instead of 3).
    figs = ("liquidations", "liquidated_notional", "accounts_liquidated",
            "insurance_fund_used", "adl_notional", "bad_debt")
    res = run_venues(parse_scenario(_scenario_text(5_000_000), source="linked.toml"),
                     jobs=1, links=("liquidity", "traders"))
    assert tr["transfers_short"] == 0
    for i, j in (("bn", "dydx-chain"), ("dydx-chain", "bn")):
        assert list(data["spillover"][i]) == [j]
        assert data["spillover"][i][j] == {
            f: float(data["venues"][j][f]) - float(res.without[i][j].metrics.get(f) or 0.0)
            for f in figs}
        t = res.without_links[i]["traders"]
        assert (t["traders"], t["wallet_start"]) == (15, tr["wallet_start"])
        # no wallet ran short in the linked run, so i's calls took nothing that j's
        # traders asked for: without i they got the same top-ups, and the traders link
        # adds nothing to the spillover here; what is left is the liquidity link's, and
        # j's figures without i are its figures alone
        assert list(t["landed_usd"]) == [j]
        assert t["landed_usd"][j] == tr["landed_usd"][j] > 0
        assert res.figures(res.without[i])[j] == res.figures(res.isolated)[j]
    sys_ = data["systemic"]
    for f in figs:
        assert sys_["linked"][f] == pytest.approx(sum(float(v[f])
                                                      for v in data["venues"].values()))
        assert sys_["contagion"][f] == pytest.approx(sys_["linked"][f] - sys_["alone"][f])
    assert sys_["contagion"]["liquidated_notional"] != 0
    # the liquidation flow of the larger venue reached dydx's books: its basis moved
    # away from its run alone, and the venues' figures differ from their runs alone
    alone = run_venues(parse_scenario(_scenario_text(0), source="zero.toml"), jobs=1,
                       links=("liquidity",))
    iso = {k: v.series.trade["BTC-PERP"].tolist() for k, v in alone.isolated.items()}
    assert bps["dydx-chain"]["BTC-PERP"] != [round((t / i - 1) * 1e4, 6) for t, i in zip(
        iso["dydx-chain"], alone.isolated["dydx-chain"].series.index["BTC-PERP"].tolist(),
        strict=True)]
    assert data["venues"]["bn"]["liquidated_notional"] != \
        data["isolated"]["bn"]["liquidated_notional"]
    # no capital: the link is on and nothing crosses, each venue is its run alone
    assert alone.arbitrage["gross_max"] == 0.0
    for name in ("bn", "dydx-chain"):
        assert _strip(alone.venues[name].metrics) == _strip(alone.isolated[name].metrics)
        assert alone.venues[name].series.trade["BTC-PERP"].tolist() == iso[name]


@pytest.mark.parametrize(("extra", "args", "message"), [
    ("", ["--links", "liquidity"], "needs [links.liquidity]"),
    ("", ["--links", "liquidity,gossip"], "['gossip'] unknown; give none or some of "
                                          "liquidity, traders, collateral"),
    ("", ["--links", "traders"], "needs [links.traders]"),
])
def test_links_without_their_parameters_are_refused(tmp_path: Path, extra: str,
                                                    args: list[str], message: str) -> None:
    from tests.simulation.test_multi_venue import VENUES as PLAIN
    path = tmp_path / "two.toml"
    path.write_text(SMALL.format(**ARGS) + PLAIN + extra, encoding="utf-8")
    res = CliRunner().invoke(app, ["simulate", str(path), *args])
    assert res.exit_code == 2
    assert message in res.output


def test_the_documented_links_table_parses() -> None:
    """docs/contagion.md's ``[links]`` blocks, on the small scenario with two venues."""
    from tests.simulation.test_multi_venue import VENUES as PLAIN
    doc = (Path(__file__).resolve().parents[2] / "docs" / "contagion.md").read_text("utf-8")
    blocks = [b for b in re.findall(r"```toml\n(.*?)```", doc, re.S) if "[links" in b]
    assert len(blocks) == 3
    # the collateral link's book needs a venue valuing wBETH from its own book
    small = SMALL.format(**{**ARGS, "venue": "binance-2025-10-10"})
    sc = parse_scenario(small + PLAIN.replace('"binance"', '"binance-2025-10-10"')
                        + "".join(blocks), source="doc.toml")
    assert sc.links.active == ("liquidity",)
    assert sc.links.liquidity == LiquidityLinkSpec(50_000_000.0, 60_000, 10.0)
    assert sc.links.traders == TradersLinkSpec(0.2, 0.5, 600_000, 0.4)
    assert sc.links.collateral == {"WBETH": CollateralBookSpec(2000.0, 0.8, 1.0, 1_800_000)}


THREE = """
[[venues]]
name = "a"
preset = "binance"
population_share = 0.3
{a}
[[venues]]
name = "b"
preset = "dydx"
population_share = 0.3

[[venues]]
name = "c"
preset = "hyperliquid"
population_share = 0.3

[links]
active = ["liquidity"]

[links.liquidity]
capital = 3000000   # assumed
"""


def test_leave_one_out_is_the_linked_run_of_the_others() -> None:
    """Three venues: the run without ``a`` is the linked run of a scenario listing only
    ``b`` and ``c`` (parsed and run on its own), and the spillover from ``a`` is the
    difference of the figures."""
    base = SMALL.format(**ARGS)
    three = run_venues(parse_scenario(base + THREE.format(a=""), source="three.toml"),
                       links=("liquidity",))
    assert set(three.without) == {"a", "b", "c"}
    two_text = base + THREE.format(a="").replace(
        '[[venues]]\nname = "a"\npreset = "binance"\npopulation_share = 0.3\n\n', "")
    two = run_venues(parse_scenario(two_text, source="two.toml"), links=("liquidity",))
    assert list(two.venues) == ["b", "c"]
    for j in ("b", "c"):
        assert _strip(three.without["a"][j].metrics) == _strip(two.venues[j].metrics)
        full = three.figures(three.venues)[j]
        left = two.figures(two.venues)[j]
        assert three.spillover()["a"][j] == {f: full[f] - left[f] for f in full}
    # the linked run without a venue is not that venue's neighbours alone
    assert any(_strip(three.without["a"][j].metrics) != _strip(three.isolated[j].metrics)
               for j in ("b", "c"))


def _venue_with_one_trader() -> Engine:
    """Binance's rules, ``acct0`` long 0.1 BTC at 100,000 with 1,000 USDT."""
    eng = Engine(load_preset("binance"))
    eng.apply(Price(id="p0", market="BTC-PERP", price=Decimal(100_000), ts_ms=0))
    eng.apply(Deposit(id="d0", account="acct0", asset="USDT", amount=Decimal(1000), ts_ms=0))
    eng.seed_position("acct0", "BTC-PERP", Decimal("0.1"), Decimal(100_000))
    return eng


def _at(engines: dict[str, Engine], k: int) -> dict[str, VenueStep]:
    return {v: VenueStep(k, 60_000 * k, {"BTC-PERP": 100_000.0}, None,  # type: ignore[arg-type]
                         e, 60_000, ("acct0",), "USDT") for v, e in engines.items()}


def _usdt(eng: Engine) -> Decimal:
    """``acct0``'s USDT deposited: its cash (quanta) plus the 10,000 USDT it paid for
    the position (1,000 before any transfer)."""
    return Decimal(eng.ledger.balance("u:acct0", "USDT")).scaleb(-6) + 10_000


def test_a_shared_traders_call_on_one_venue_leaves_less_for_the_other() -> None:
    engines = {"a": _venue_with_one_trader(), "b": _venue_with_one_trader()}
    # one trader on both venues; its wallet: 0.03 x (1,000 + 1,000) = 60 USD; transfers
    # land 2 minutes after the call; each restores a margin ratio of 0.4
    spec = TradersLinkSpec(share=1.0, wallet_multiple=0.03, transfer_delay_ms=120_000)
    link = SharedTraders(spec, _at(engines, 1))
    assert link.n == 1 and link.metrics()["wallet_start"] == 60.0
    # a: BTC 90,450: collateral 1,000 - 0.1 x 9,550 = 45, MM 0.4 % x 9,045 = 36.18,
    # ratio 0.804 > Binance's 0.8 call ratio: the trader asks for 36.18 / 0.4 - 45 = 45.45
    engines["a"].apply(Price(id="a1", market="BTC-PERP", price=Decimal(90_450), ts_ms=60_000))
    link.step(_at(engines, 1))
    assert link.metrics()["wallet_left"] == pytest.approx(14.55)
    assert _usdt(engines["a"]) == Decimal(1000)  # under way
    # b is called a minute later, the same way: the wallet holds 14.55 of its 45.45
    engines["b"].apply(Price(id="b1", market="BTC-PERP", price=Decimal(90_450),
                             ts_ms=120_000))
    link.step(_at(engines, 2))
    assert _usdt(engines["a"]) == Decimal(1000)  # 1 minute after a's call
    link.step(_at(engines, 3))  # 2 minutes after a's call: a's transfer lands
    assert _usdt(engines["a"]) == Decimal("1045.45")
    assert _usdt(engines["b"]) == Decimal(1000)
    link.step(_at(engines, 4))
    assert _usdt(engines["b"]) == Decimal("1014.55")
    m = link.metrics()
    assert m["transfers"] == 2 and m["transfers_short"] == 1
    assert m["landed_usd"] == {"a": pytest.approx(45.45), "b": pytest.approx(14.55)}
    assert m["wallet_left"] == 0.0
    # b alone (its own wallet of 0.03 x 1,000 = 30 USD) would have had 30
    alone = {"b": _venue_with_one_trader()}
    solo = SharedTraders(spec, _at(alone, 1))
    alone["b"].apply(Price(id="b1", market="BTC-PERP", price=Decimal(90_450), ts_ms=60_000))
    solo.step(_at(alone, 1))
    solo.step(_at(alone, 3))
    assert _usdt(alone["b"]) == Decimal(1030)
    # b in the run without a (leave-one-out): the same trader with the same 60 USD wallet,
    # a's call left out, so b gets all of its 45.45; the spillover from a to b is a's draw
    # alone: 14.55 linked less 45.45 without a = -30.90 (not 14.55 - 30 = -15.45, which
    # would count b's half of the wallet as a's doing)
    without = {"a": _venue_with_one_trader(), "b": _venue_with_one_trader()}
    left = SharedTraders(spec, _at({"b": without["b"]}, 1), _at({"a": without["a"]}, 1))
    assert left.n == 1 and left.metrics()["wallet_start"] == 60.0
    without["b"].apply(Price(id="b1", market="BTC-PERP", price=Decimal(90_450),
                             ts_ms=60_000))
    left.step(_at({"b": without["b"]}, 1))
    left.step(_at({"b": without["b"]}, 3))
    assert _usdt(without["b"]) == Decimal("1045.45")
    assert left.metrics()["landed_usd"] == {"b": pytest.approx(45.45)}


def test_the_attribution_tables_print_every_figure_uncut() -> None:
    from solvency.cli import simulate as cli

    figs = ("liquidations", "liquidated_notional", "accounts_liquidated",
            "insurance_fund_used", "adl_notional", "bad_debt")
    venues = {"a": dict.fromkeys(figs, 1234567.891), "b": dict.fromkeys(figs, 2.0)}
    isolated = {"a": dict.fromkeys(figs, 1000000.0), "b": dict.fromkeys(figs, 1.0)}
    payload = {"venues": venues, "isolated": isolated,
               "spillover": {"a": {"b": dict.fromkeys(figs, 1.0)},
                             "b": {"a": dict.fromkeys(figs, 234567.891)}},
               "systemic": {"linked": dict.fromkeys(figs, 1234569.891),
                            "alone": dict.fromkeys(figs, 1000001.0)}}
    with cli.console.capture() as cap:
        cli._print_attribution(payload)
    text = cap.get()
    rows = [line.split("│")[1:-1] for line in text.splitlines() if line.count("│") > 2]
    cells = [[c.strip() for c in r] for r in rows]
    assert ["liquidations", "linked", "1,234,568", "2", "1,234,570"] in cells  # counts
    assert ["", "alone", "1,000,000", "1", "1,000,001"] in cells
    assert ["liquidated notional", "linked", "1,234,567.89", "2.00", "1,234,569.89"] in cells
    assert ["bad debt", "linked", "1,234,567.89", "2.00", "1,234,569.89"] in cells
    assert ["b", "234,567.89", "-"] in cells  # spillover from b to a
    assert ["a", "-", "1.00"] in cells


def test_the_contagion_scenario_lists_its_venues_and_links() -> None:
    """scenarios/contagion_2025_10_10.toml: four venues (Bybit's a venue file) with their
    shares of Binance's open interest and books scaled by them, both links on; run
    single-venue by the golden test (its [venue] is the calibrated crash's)."""
    from solvency.sim.scenario import load_scenario

    root = Path(__file__).resolve().parents[2]
    sc = load_scenario(root / "scenarios" / "contagion_2025_10_10.toml")
    assert [(v.name, v.preset, v.population_share, v.depth_scale) for v in sc.venues] == [
        ("binance", "binance-2025-10-10", None, None),
        ("hyperliquid", "hyperliquid", 0.26, 0.26), ("dydx", "dydx", 0.0055, 0.0055),
        ("bybit", "venues/bybit.toml", 0.5, 0.5)]
    bybit = sc.venues[3]
    assert bybit.scenario_of(sc).venue(bybit.run_preset).name == "bybit"
    # each venue's books: Binance's calibrated BTC book (2.68201 BTC per bp) x its share
    dydx = sc.venues[2].scenario_of(sc).liquidity_specs()["BTC-PERP"]
    assert dydx.profile.ask_base[-1] == pytest.approx(2.68201 * 500.0 * 0.0055)
    assert sc.links.active == ("liquidity", "traders")
    assert sc.links.liquidity == LiquidityLinkSpec(150_000_000.0, 60_000, 10.0)
    assert sc.links.traders == TradersLinkSpec(0.2, 0.5, 600_000, 0.4)
