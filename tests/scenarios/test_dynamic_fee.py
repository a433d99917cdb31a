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
