"""The dynamic liquidation fee (issue 19): the keeper reward at a given volatility and
queue, worked by hand; its cap at what is left above bankruptcy; conservation on random
paths; a misspelt key refused; snapshot and restore carrying the volatility window.

Realized volatility after Andersen, Bollerslev, Diebold and Labys (2003), "Modeling and
forecasting realized volatility", Econometrica 71(2): realized variance is the sum of the
squared intraperiod returns; annualized here over the window (x year / window). The
penalty cap and split: dYdX ``GetLiquidationInsuranceFundDelta`` (``min(fee, surplus)``)
and Drift ``liquidate_perp`` (liquidator fee, then the insurance fee), as
:func:`solvency.core.liquidation.liquidation_penalty_quanta` (docs/liquidation.md).
"""

from __future__ import annotations

import json
from decimal import Decimal as D
from math import isqrt
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from solvency.cli.main import app
from solvency.core.ledger.ledger import INSURANCE
from solvency.core.liquidation import DynamicFee, realized_vol_ppm, return_sq_ppm2
from solvency.core.model.events import Deposit, Fill, Price
from solvency.core.model.presets import venue_from_data
from solvency.engine.engine import Engine
from solvency.engine.liquidation import BAD_DEBT, LIQUIDATOR
from solvency.engine.ports import Fill as Level

U = 1_000_000  # USDC quanta per unit
MIN = 60_000
HOUR = 3_600_000
YEAR_MS = 365 * 86_400_000


class Levels:
    """A book that offers fixed levels (absolute prices), whatever the mark."""

    def __init__(self, *levels: tuple[int, str]) -> None:
        self.levels = [Level(lots, D(p)) for lots, p in levels]

    def quote(self, market: str, lots: int, mark: D, tick: D) -> list[Level]:
        return list(self.levels)


def _venue(fee: dict[str, Any] | None) -> dict[str, Any]:
    return {"preset": "dydx", **({"liquidation": {"dynamic_fee": fee}} if fee else {})}


def _engine(fee: dict[str, Any] | None, book: Levels, *, longs: tuple[str, ...] = ("alice",),
            deposit: str = "3000") -> Engine:
    """dYdX BTC-PERP (MM 1.2 %, insurance fee 0.5 %, insurance first): each long buys
    1 BTC at 100,000 from bob with ``deposit`` USDC; marks at t = 0."""
    e = Engine(venue_from_data(_venue(fee)), liquidity=book)
    for name in longs:
        e.apply(Deposit(id=f"d-{name}", account=name, asset="USDC", amount=D(deposit)))
    e.apply(Deposit(id="d-bob", account="bob", asset="USDC", amount=D(1_000_000)))
    e.apply(Price(id="p0", market="BTC-PERP", price=D(100000), ts_ms=0))
    for name in longs:
        assert e.apply(Fill(id=f"f-{name}", market="BTC-PERP", buyer=name, seller="bob",
                            size=D(1), price=D(100000), ts_ms=0)) == []
    return e


# marks 100,000 -> 99,000 -> 98,000 a minute apart: returns floor(1,000 x 1e6 / 100,000)
# = 10,000 ppm and floor(1,000 x 1e6 / 99,000) = 10,101 ppm
SUM_SQ = 10_000**2 + 10_101**2  # 202,030,201 ppm^2 within the hour's window
VOL_PPM = 1_330_332  # isqrt(202,030,201 x 8,760): 133.0 % a year


def test_realized_volatility_by_hand() -> None:
    assert return_sq_ppm2(100_000, 99_000) == 100_000_000
    assert return_sq_ppm2(99_000, 98_000) == 102_030_201
    assert SUM_SQ == 202_030_201
    # x (365 x 24 h) / 1 h = x 8,760: 1,769,784,560,760 ppm^2; its integer root
    assert 1_330_332**2 <= SUM_SQ * 8_760 < 1_330_333**2
    assert realized_vol_ppm(SUM_SQ, HOUR) == VOL_PPM


@pytest.mark.parametrize(("vol", "ref", "waiting", "fee"), [
    (0, 0, 0, 1_000),  # calm, nothing waiting: the base
    (VOL_PPM, 0, 1, 1_000 + 2_660 + 500),  # 2,000 x 1,330,332 / 1e6 = 2,660.664 -> 2,660
    (500_000, 800_000, 0, 1_000),  # below vol_ref: no rise
    (VOL_PPM, 800_000, 3, 1_000 + 1_060 + 1_500),  # 2,000 x 530,332 / 1e6 = 1,060.664
    (10_000_000, 0, 100, 20_000),  # 1,000 + 20,000 + 50,000, capped at max
], ids=["calm", "vol-and-one-waiting", "below-ref", "above-ref", "cap"])
def test_fee_formula(vol: int, ref: int, waiting: int, fee: int) -> None:
    rule = DynamicFee(base_ppm=1_000, vol_slope_ppm=2_000, vol_ref_ppm=ref,
                      queue_slope_ppm=500, max_ppm=20_000)
    assert rule.fee_ppm(vol_ppm=vol, waiting=waiting) == fee


FEE = {"base_ppm": 1_000, "vol_slope_ppm": 2_000, "queue_slope_ppm": 500,
       "max_ppm": 50_000, "vol_window_ms": HOUR}


def _crash(e: Engine) -> list[Any]:
    assert e.apply(Price(id="p1", market="BTC-PERP", price=D(99000), ts_ms=MIN)) == []
    return e.apply(Price(id="p2", market="BTC-PERP", price=D(98000), ts_ms=2 * MIN))


def test_engine_fee_at_the_marks_volatility_and_queue() -> None:
    # At 98,000: TNC = 3,000 - 2,000 = 1,000 < MM 1,176 (1.2 %). B = 97,000, the book
    # pays 97,950: surplus 950. The fee at vol 1,330,332 with alice waiting (1):
    # 1,000 + 2,660 + 500 = 4,160 ppm: 97,950 x 0.416 % = 407.472 to the liquidator;
    # dYdX's 0.5 % = 489.75 to the fund; together 897.222 <= 950: not capped.
    e = _engine(FEE, Levels((10_000, "97950")))
    out = _crash(e)
    assert e.liquidator.realized_vol_ppm(0) == VOL_PPM
    liq = [o for o in out if o.type == "liquidation"]
    assert [o.via for o in liq] == ["market"]
    assert liq[0].penalty == "897.222000"
    assert e.ledger.balance(LIQUIDATOR, "USDC") == 407_472_000
    assert e.ledger.balance(INSURANCE, "USDC") == 489_750_000
    assert e.ledger.balance("u:alice", "USDC") == (3000 - 100000 + 97950) * U - 897_222_000
    assert e.verify()["USDC"] == 1_003_000 * U


def test_queue_raises_the_fee_of_every_liquidation_in_the_sweep() -> None:
    # alice and carol both below maintenance at 98,000: 2 waiting, fee 1,000 + 2,660 +
    # 2 x 500 = 4,660 ppm: 97,950 x 0.466 % = 456.447 each (with 489.75 to the fund:
    # 946.197 <= 950)
    e = _engine(FEE, Levels((10_000, "97950")), longs=("alice", "carol"))
    out = _crash(e)
    assert [o.account for o in out if o.type == "liquidation"] == ["alice", "carol"]
    assert e.ledger.balance(LIQUIDATOR, "USDC") == 2 * 456_447_000
    assert e.ledger.balance(INSURANCE, "USDC") == 2 * 489_750_000


def test_the_fee_is_capped_by_what_is_left_above_bankruptcy() -> None:
    # A 3 % base: 97,950 x 3 % = 2,938.5 wanted, but only the surplus of 950 is left
    # above bankruptcy. dYdX pays the insurance fee first (489.75), the liquidator gets
    # the rest, 460.25; alice ends at exactly zero (not below: no bad debt).
    e = _engine({"base_ppm": 30_000, "max_ppm": 30_000}, Levels((10_000, "97950")))
    out = _crash(e)
    assert [o.penalty for o in out if o.type == "liquidation"] == ["950.000000"]
    assert e.ledger.balance(LIQUIDATOR, "USDC") == 460_250_000
    assert e.ledger.balance(INSURANCE, "USDC") == 489_750_000
    assert e.ledger.balance("u:alice", "USDC") == 0
    assert e.ledger.balance(BAD_DEBT, "USDC") == 0


def test_presets_keep_their_fixed_fee_and_no_window() -> None:
    e = _engine(None, Levels((10_000, "97950")))
    _crash(e)
    assert e.liquidator.mark_vol == {}
    assert e.ledger.balance(LIQUIDATOR, "USDC") == 0
    assert "mark_vol" not in e.snapshot()["liquidation"]


def test_the_window_forgets_returns_older_than_it() -> None:
    e = _engine({**FEE, "vol_window_ms": 90_000}, Levels((10_000, "97950")))
    assert e.apply(Price(id="p1", market="BTC-PERP", price=D(99000), ts_ms=MIN)) == []
    e.apply(Price(id="p2", market="BTC-PERP", price=D(99500), ts_ms=3 * MIN))
    # the 10,000 ppm return at 1 min left the 90 s window at 3 min: only 5,050 ppm
    # (floor(500 x 1e6 / 99,000)) remains, over 90 s: isqrt(5,050^2 x YEAR / 90,000)
    assert e.liquidator.mark_vol[0].sum_sq == 5_050**2
    assert e.liquidator.realized_vol_ppm(0) == isqrt(5_050**2 * YEAR_MS // 90_000)


def test_snapshot_and_restore_carry_the_window() -> None:
    book = Levels((10_000, "97950"))
    a = _engine(FEE, book, longs=("alice", "carol"))
    a.apply(Price(id="p1", market="BTC-PERP", price=D(99000), ts_ms=MIN))
    snap = json.loads(json.dumps(a.snapshot()))
    assert snap["liquidation"]["mark_vol"] == {
        "BTC-PERP": [99000, MIN, [[MIN, 100_000_000]]]}  # dYdX BTC tick: 1 USDC
    b = Engine.restore(snap, liquidity=book)
    assert b.state_hash() == a.state_hash()
    later = Price(id="p2", market="BTC-PERP", price=D(98000), ts_ms=2 * MIN)
    assert a.apply(later) == b.apply(later)
    assert b.state_hash() == a.state_hash()
    # without the window the fee differs (1,000 + 0 + 1,000 instead of 4,660): the
    # window is state, and the hash says so
    snap["liquidation"].pop("mark_vol")
    c = Engine.restore(snap, liquidity=book)
    assert c.state_hash() != a.state_hash() or c.apply(later) != a.apply(later)


def test_a_misspelt_key_is_refused_with_its_path(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"liquidation\.dynamic_fee\.vol_slope: unknown key; "
                                         r"did you mean 'vol_slope_ppm'"):
        venue_from_data(_venue({"base_ppm": 1_000, "vol_slope": 5}))
    with pytest.raises(ValueError, match=r"dynamic_fee\.max_ppm must be in \[base_ppm, 1e6\]"):
        venue_from_data(_venue({"base_ppm": 1_000, "max_ppm": 500}))
    path = tmp_path / "v.json"
    path.write_text(json.dumps(_venue({"base_ppm": 1_000, "queue_slope": 5})))
    res = CliRunner().invoke(app, ["replay", "--venue", str(path)])
    assert res.exit_code == 2, res.output
    said = " ".join(res.output.split())  # the terminal wraps the message
    assert f"{path}: liquidation.dynamic_fee.queue_slope: unknown key" in said
    assert "Traceback" not in res.output


class BelowMark:
    """A book ``off`` below (above) the mark for a sale (a buy), 10 BTC deep."""

    def __init__(self, off: int) -> None:
        self.off = off

    def quote(self, market: str, lots: int, mark: D, tick: D) -> list[Level]:
        return [Level(10_000, mark - self.off if lots < 0 else mark + self.off)]


PRICE_STEPS = st.lists(st.integers(min_value=-1_500, max_value=800), min_size=1, max_size=8)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=PRICE_STEPS, base=st.integers(0, 20_000), vol_slope=st.integers(0, 50_000),
       queue_slope=st.integers(0, 10_000), window=st.integers(1, 10 * MIN),
       off=st.integers(0, 1_500))
def test_conservation_and_no_debt_from_the_fee(steps: list[int], base: int, vol_slope: int,
                                               queue_slope: int, window: int,
                                               off: int) -> None:
    # Three longs on random marks and a book bidding ``off`` below the mark: the
    # ledger conserves every quantum; the fee never takes an account below zero, so the
    # bad debt and the fund are those of the same path with no liquidator fee at all.
    fee = {"base_ppm": base, "vol_slope_ppm": vol_slope, "queue_slope_ppm": queue_slope,
           "max_ppm": max(base, 60_000), "vol_window_ms": window}
    runs = []
    for rule in (fee, {"base_ppm": 0, "max_ppm": 0}):
        e = _engine(rule, BelowMark(off), longs=("alice", "carol", "dave"), deposit="2500")
        for name, more in (("carol", 800), ("dave", 2_000)):  # liquidated at other marks
            e.apply(Deposit(id=f"more-{name}", account=name, asset="USDC", amount=D(more)))
        price = 100_000
        for i, d in enumerate(steps, start=1):
            price = max(90_000, min(110_000, price + d))
            e.apply(Price(id=f"p{i}", market="BTC-PERP", price=D(price), ts_ms=i * MIN))
            assert e.verify()["USDC"] == 1_010_300 * U
            for name in ("alice", "carol", "dave"):
                assert e.ledger.balance(f"u:{name}", "USDC") >= 0 or (
                    e.account_view(name)["positions"])
        assert e.ledger.balance(LIQUIDATOR, "USDC") >= 0
        runs.append((e.ledger.balance(BAD_DEBT, "USDC"), e.ledger.balance(INSURANCE, "USDC")))
    assert runs[0] == runs[1]


def _shortage(capacity_quote: float, *, accounts: tuple[tuple[str, int], ...] = (
        ("alice", 1_000), ("carol", 1_000), ("dave", 1_100)),
        marks: tuple[str, ...] = ("99400", "99300"),
        deposits: tuple[tuple[int, str, int], ...] = (),
        ) -> tuple[Engine, list[int], list[list[Any]]]:
    """Binance BTC-PERP (bracket 2: MM 0.5 % - 50; lot 0.001 BTC) liquidating only
    through the stress lab's liquidators (overflow "defer": what they cannot take is not
    quoted), no fund takeover nor ADL, whole positions, a fee of 1,000 ppm + 500 per
    liquidation waiting (no volatility term). alice and carol long 1 BTC at 100,000 on
    1,000 USDT, dave on 1,100; bob short. Marks 99,400 then 99,300 a minute apart, the
    liquidators' capacity refilled between them. Returns the engine, the liquidators'
    capacity hits after each mark and each mark's out-events. ``deposits``: (k, account,
    USDT) paid in just before mark k (1-based)."""
    from solvency.sim.agents import LiquidatorLiquidity, LiquidatorSpec
    from solvency.sim.market import DepthProfile, ImpactLiquidity, LiquiditySpec

    venue = venue_from_data({"preset": "binance", "liquidation": {
        "sizing": "close_all", "fund_takeover": False, "adl_ranking": "none",
        "penalty_priority": "liquidator_first",
        "dynamic_fee": {"base_ppm": 1_000, "queue_slope_ppm": 500, "max_ppm": 50_000}}})
    book = ImpactLiquidity(venue, {"BTC-PERP": LiquiditySpec(
        DepthProfile.uniform(1.0, 100.0), daily_volume_base=10_000.0)})
    port = LiquidatorLiquidity(LiquidatorSpec(
        capital_quote=1e9, capacity_per_step_quote=capacity_quote, latency_ms=0,
        discount_bps=10.0, overflow="defer"), venue, book, start_ms=0)
    e = Engine(venue, liquidity=port)
    port.attach(e)
    for name, amount in (*accounts, ("bob", 1_000_000), ("__insurance__", 10_000)):
        e.apply(Deposit(id=f"d-{name}", account=name, asset="USDT", amount=D(amount)))
    e.apply(Price(id="p0", market="BTC-PERP", price=D(100000), ts_ms=0))
    for name, _amount in accounts:
        e.apply(Fill(id=f"f-{name}", market="BTC-PERP", buyer=name, seller="bob",
                     size=D(1), price=D(100000), ts_ms=0))
    outs, hits = [], []
    for k, mark in enumerate(marks, start=1):
        for at, name, amount in deposits:
            if at == k:
                e.apply(Deposit(id=f"top-{name}-{k}", account=name, asset="USDT",
                                amount=D(amount)))
        port.advance(k * MIN, {"BTC-PERP": float(mark)})
        port.begin()
        outs.append(e.apply(Price(id=f"p{k}", market="BTC-PERP", price=D(mark),
                                  ts_ms=k * MIN)))
        port.end()
        hits.append(port.capacity_hits)
    return e, hits, outs


def _liquidations(out: list[Any]) -> list[tuple[str, str, str]]:
    return [(o.account, o.via, o.penalty) for o in out if o.type == "liquidation"]


def test_the_lab_liquidators_capacity_hits_raise_the_next_sweeps_fee() -> None:
    # Issue 19: the fee's queue term sees the accounts the lab's liquidators could not
    # take. At 99,400 alice and carol are below maintenance (equity 400 < 0.5 % x 99,400
    # - 50 = 447; B = 99,000), dave is not (500): 2 waiting, fee 1,000 + 2 x 500 = 2,000
    # ppm. The liquidators bid 10 bps through the mark, 99,300.6 (surplus 300.6 over B).
    # Capacity 99,450 USDT a step holds alice's 1 BTC (1,000 lots of 99.4) and 50 USDT:
    # carol is a capacity hit and waits (unresolved). Penalty on alice: 2,000 ppm x
    # 99,300.6 = 198.6012 to the liquidators first, the 1.25 % clearance fee capped at
    # the rest (101.9988).
    e, hits, (first, second) = _shortage(99_450.0)
    assert _liquidations(first) == [("alice", "market", "300.600000"),
                                    ("carol", "unresolved", "0")]
    assert hits[0] > 0  # their quotes for carol, refused
    # At 99,300 carol (still waiting) and dave (equity 400 < 446.5) are below: 2
    # waiting, fee 2,000 ppm. Carol's close at 99,200.7 (B = 99,000, surplus 200.7) pays
    # the liquidators 2,000 ppm x 99,200.7 = 198.4014 and the clearance fee the rest,
    # 2.2986; the refilled capacity has 1 lot left for dave (99.2007 x 2,000 ppm =
    # 0.198401, rounded down), the rest of him waits.
    assert e.liquidator.waiting == 2
    assert _liquidations(second) == [("carol", "market", "200.700000"),
                                     ("dave", "market", "0.300700"),
                                     ("dave", "unresolved", "0")]
    assert hits[1] > hits[0]  # and for dave
    assert e.ledger.balance(LIQUIDATOR, "USDT") == 198_601_200 + 198_401_400 + 198_401
    assert [e.book.rows[r].name for r in e.liquidator.deficit_rows] == ["dave"]
    # Control: capacity for everyone. Both are liquidated at 99,400 (2 waiting, 2,000
    # ppm each) and nobody is left: at 99,300 only dave waits, fee 1,000 + 500 = 1,500
    # ppm: 148.80105 on his close at 99,200.7 (B = 98,900).
    e, hits, (first, second) = _shortage(1e9)
    assert _liquidations(first) == [("alice", "market", "300.600000"),
                                    ("carol", "market", "300.600000")]
    assert hits == [0, 0] and not e.liquidator.deficit_rows
    assert e.liquidator.waiting == 1
    assert _liquidations(second) == [("dave", "market", "300.700000")]
    assert e.ledger.balance(LIQUIDATOR, "USDT") == 2 * 198_601_200 + 148_801_050


def test_a_waiting_row_lifted_above_maintenance_leaves_the_queue() -> None:
    # As the capacity-hit run above, but carol (waiting since 99,400: equity 400 < 447)
    # pays in 200 USDT before the next mark. At 99,300 her equity is 500 >= 0.5 % x
    # 99,300 - 50 = 446.5: back above maintenance, she leaves the waiting list, and the
    # fee's queue counts dave alone: 1,000 + 500 = 1,500 ppm on his close at 99,200.7
    # (the refilled 99,450 holds his 1 BTC at 99.3 a lot) = 148.80105 to the liquidators
    # (2,000 ppm, 198.4014, if carol were still counted).
    e, _hits, (first, second) = _shortage(99_450.0, deposits=((2, "carol", 200),))
    assert _liquidations(first) == [("alice", "market", "300.600000"),
                                    ("carol", "unresolved", "0")]
    assert _liquidations(second) == [("dave", "market", "300.700000")]
    assert e.ledger.balance(LIQUIDATOR, "USDT") == 198_601_200 + 148_801_050
    assert e.liquidator.waiting == 1
    assert not e.liquidator.deficit_rows
    assert e.account_view("carol")["positions"]  # still long: nothing liquidated her


def test_an_order_the_waterfall_declines_gives_the_liquidators_capacity_back() -> None:
    # A jump to 98,800: erin (long 1 BTC at 100,000 on 1,000 USDT: equity -200) is past
    # bankruptcy (B = 99,000) and first in the queue; alice (on 1,600: equity 400 < 0.5 %
    # x 98,800 - 50 = 444; B = 98,400) second. The liquidators (197,700 USDT a step: two
    # orders of 1 BTC at 98.8 a lot) bid 10 bps through the mark, 98,701.2: below erin's
    # B, so the waterfall's first pass declines their bid (the binance policy pays no
    # fill below B there) and its last resort takes it, the fund paying the 298.8 gap.
    # The declined bid is given back at once, so alice is then taken in full (penalty
    # 301.2 = her surplus over B: 2,000 ppm (1,000 + 2 waiting x 500) x 98,701.2 =
    # 197.4024 to the liquidators, the 103.7976 left to the fund). Kept until the
    # event's end, erin's last resort took the second BTC of capacity and alice got 1
    # lot and waited.
    e, _hits, (out,) = _shortage(197_700.0, accounts=(("erin", 1_000), ("alice", 1_600)),
                                 marks=("98800",))
    liq = [(o.account, o.via, o.size, o.price, o.insurance_fund_delta)
           for o in out if o.type == "liquidation"]
    assert liq == [("erin", "market", "1.000", "98701.2", "-298.800000"),
                   ("alice", "market", "1.000", "98701.2", "103.797600")]
    assert e.ledger.balance(INSURANCE, "USDT") == (10_000 * U - 298_800_000 + 103_797_600)
    assert not e.liquidator.deficit_rows


def test_the_liquidator_shortage_study_is_the_default_but_for_its_venue() -> None:
    # scenarios/studies/liquidator_shortage.toml (docs/liquidation.md "Where liquidations
    # wait"): the calibrated default with liquidations deferred to the lab's liquidators,
    # no fund takeover, no ADL, the dynamic fee; everything else the default's
    from dataclasses import replace

    from solvency.sim.scenario import load_scenario
    root = Path(__file__).parents[2] / "scenarios"
    study = load_scenario(root / "studies" / "liquidator_shortage.toml")
    default = load_scenario(root / "default.toml")
    assert study.agents is not None and default.agents is not None
    liq = study.venue_data["liquidation"]
    assert (liq["fund_takeover"], liq["adl_ranking"], liq["dynamic_fee"]["max_ppm"]) == (
        False, "none", 25_000)
    assert study.agents.liquidator is not None
    assert study.agents.liquidator.overflow == "defer"
    assert study.population.n_accounts == 2_000
    same = replace(study, name=default.name, venue_data=default.venue_data,
                   population=replace(study.population, n_accounts=100_000),
                   agents=replace(study.agents, liquidator=default.agents.liquidator),
                   base_dir=default.base_dir)
    assert same == default
