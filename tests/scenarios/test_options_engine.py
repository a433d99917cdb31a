"""European options inside the engine: premium at fill, marks from a mark implied
volatility (Black-76, ACT/365, rate 0), Deribit standard margin for shorts, cash
settlement at expiry against the index — all exact in the ledger."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from solvency.core.model.events import Deposit, Expiry, Fill, Price, Vol
from solvency.core.model.presets import load_preset
from solvency.core.options import black76_price
from solvency.core.options.margin import option_margin
from solvency.engine.engine import MS_PER_YEAR, Engine

CALL = "BTC_USDC-26JUN26-100000-C"
PUT = "BTC-26JUN26-90000-P"
T0 = 1_774_000_000_000  # 2026-03-20
EXPIRY = 1_782_460_800_000  # 2026-06-26T08:00:00Z
U = 1_000_000


def _engine() -> Engine:
    e = Engine(load_preset("deribit"))
    e.apply(Deposit(id="d1", account="writer", asset="USDC", amount=D(50000), ts_ms=T0))
    e.apply(Deposit(id="d2", account="buyer", asset="USDC", amount=D(50000), ts_ms=T0))
    e.apply(Price(id="p", market="BTC-PERP", price=D(100000), ts_ms=T0))
    e.apply(Vol(id="v", market=CALL, iv=D("0.6"), ts_ms=T0))
    return e


def test_mark_is_black76_at_the_mark_volatility() -> None:
    e = _engine()
    t = (EXPIRY - T0) / MS_PER_YEAR
    expected = black76_price(forward=100000.0, strike=100000.0, time_yr=t, vol=0.6, rate=0.0,
                             is_call=True).price[0]
    mark = e.book.marks[e.book.market_index[CALL]]
    assert mark is not None and abs(float(mark) - expected) <= 0.05  # tick 0.1


def test_premium_at_fill_and_standard_margin_for_the_short() -> None:
    e = _engine()
    m = e.book.market_index[CALL]
    mark = e.book.marks[m]
    assert mark is not None
    out = e.apply(Fill(id="f", market=CALL, buyer="buyer", seller="writer", size=D(1),
                       price=mark, ts_ms=T0))
    assert [o for o in out if o.type == "rejected"] == []
    premium_q = int(mark * U)
    assert e.ledger.balance("u:buyer", "USDC") == 50000 * U - premium_q
    assert e.ledger.balance("u:writer", "USDC") == 50000 * U + premium_q
    # Deribit standard margin, per contract, linear: (max(0.15 - OTM/S, 0.1) + mark/S) x S
    im, mm = option_margin(underlying_price=100000.0, strike=100000.0,
                           mark_price=float(mark), size=-1.0, is_call=True,
                           settlement="linear")
    writer = e.account_view("writer")
    assert float(writer["initial_margin"]) == pytest.approx(float(im[0]), abs=0.01)
    assert float(writer["maintenance_margin"]) == pytest.approx(float(mm[0]), abs=0.01)
    assert e.account_view("buyer")["maintenance_margin"] == "0"  # longs: premium only
    e.verify()


def test_underlying_and_vol_moves_remark_the_option_and_its_holders() -> None:
    e = _engine()
    m = e.book.market_index[CALL]
    mark = e.book.marks[m]
    assert mark is not None
    e.apply(Fill(id="f", market=CALL, buyer="buyer", seller="writer", size=D(1),
                 price=mark, ts_ms=T0))
    before = float(e.account_view("buyer")["equity_usd"])
    e.apply(Price(id="p2", market="BTC-PERP", price=D(110000), ts_ms=T0 + 60_000))
    new_mark = e.book.marks[m]
    assert new_mark is not None and new_mark > mark
    assert float(e.account_view("buyer")["equity_usd"]) == pytest.approx(
        before + float(new_mark - mark), abs=1e-6)
    e.apply(Vol(id="v2", market=CALL, iv=D("0.9"), ts_ms=T0 + 120_000))
    assert e.book.marks[m] > new_mark  # type: ignore[operator]


def test_cash_settlement_at_expiry_against_the_index() -> None:
    e = _engine()
    m = e.book.market_index[CALL]
    mark = e.book.marks[m]
    assert mark is not None
    e.apply(Fill(id="f", market=CALL, buyer="buyer", seller="writer", size=D("0.5"),
                 price=mark, ts_ms=T0))
    out = e.apply(Expiry(id="x", market=CALL, price=D("112345.67"), ts_ms=EXPIRY))
    assert out[0].type == "settled"
    premium_q = int(D("0.5") * mark * U)
    payoff_q = int(D("0.5") * (D("112345.67") - 100000) * U)
    assert e.ledger.balance("u:buyer", "USDC") == 50000 * U - premium_q + payoff_q
    assert e.ledger.balance("u:writer", "USDC") == 50000 * U + premium_q - payoff_q
    assert e.account_view("buyer")["positions"] == []
    e.verify()


def test_coin_settled_put_premium_in_btc_and_out_of_the_money_expiry() -> None:
    e = Engine(load_preset("deribit"))
    for acct in ("a", "b"):
        e.apply(Deposit(id=f"d-{acct}", account=acct, asset="BTC", amount=D(2), ts_ms=T0))
    e.apply(Price(id="p", market="BTC-USD-INVERSE", price=D(100000), ts_ms=T0))
    e.apply(Price(id="p2", market="BTC-PERP", price=D(100000), ts_ms=T0))
    e.apply(Vol(id="v", market=PUT, iv=D("0.7"), ts_ms=T0))
    m = e.book.market_index[PUT]
    mark = e.book.marks[m]
    assert mark is not None and D("0.001") < mark < D("0.2")  # a premium in BTC
    e.apply(Fill(id="f", market=PUT, buyer="a", seller="b", size=D(1), price=mark, ts_ms=T0))
    assert e.ledger.balance("u:a", "BTC") == 2 * 10**8 - int(mark * 10**8)
    e.apply(Expiry(id="x", market=PUT, price=D(95000), ts_ms=EXPIRY))  # OTM: worthless
    assert e.ledger.balance("u:a", "BTC") == 2 * 10**8 - int(mark * 10**8)
    e.verify()


@pytest.mark.parametrize(
    ("event", "reason"),
    [(Vol(id="bad1", market="BTC-PERP", iv=D("0.5")), "not_an_option"),
     (Vol(id="bad2", market="NOPE", iv=D("0.5")), "unknown_market")],
    ids=["vol-on-a-perp", "vol-unknown-market"],
)
def test_bad_vol_events_change_nothing(event: Vol, reason: str) -> None:
    e = _engine()
    before = e.state_hash()
    out = e.apply(event)
    assert out[0].reason == reason  # type: ignore[union-attr]
    assert e.state_hash() == before


def test_options_survive_snapshot_and_restore() -> None:
    e = _engine()
    mark = e.book.marks[e.book.market_index[CALL]]
    assert mark is not None
    e.apply(Fill(id="f", market=CALL, buyer="buyer", seller="writer", size=D(1), price=mark,
                 ts_ms=T0))
    again = Engine.restore(e.snapshot())
    assert again.state_hash() == e.state_hash()
    for eng in (e, again):
        eng.apply(Price(id="p9", market="BTC-PERP", price=D(90000), ts_ms=T0 + 1000))
    assert again.state_hash() == e.state_hash()
    assert again.account_view("writer") == e.account_view("writer")


def test_greeks_exposure_per_account_and_venue() -> None:
    e = _engine()
    mark = e.book.marks[e.book.market_index[CALL]]
    assert mark is not None
    e.apply(Fill(id="f", market=CALL, buyer="buyer", seller="writer", size=D(1), price=mark,
                 ts_ms=T0))
    e.apply(Fill(id="h", market="BTC-PERP", buyer="writer", seller="buyer", size=D("0.5"),
                 price=D(100000), ts_ms=T0))
    g = e.greeks_exposure()
    t = (EXPIRY - T0) / MS_PER_YEAR
    from solvency.core.options import black76_greeks

    ref = black76_greeks(forward=100000.0, strike=100000.0, time_yr=t, vol=0.6, rate=0.0,
                         is_call=True)
    buyer = g["by_account"]["buyer"]["BTC"]
    assert float(buyer["delta"]) == pytest.approx(float(ref.delta[0]) - 0.5, rel=1e-6)
    assert float(buyer["vega"]) == pytest.approx(float(ref.vega[0]), rel=1e-6)
    writer = g["by_account"]["writer"]["BTC"]
    assert float(writer["gamma"]) == pytest.approx(-float(ref.gamma[0]), rel=1e-6)
    # longs and shorts of the same contracts net out venue-wide
    assert float(g["venue"]["BTC"]["delta"]) == pytest.approx(0.0, abs=1e-9)


def test_a_venue_files_option_margin_parameters_act() -> None:
    """Issue 29 item 1: ``im_base``, ``im_floor`` and ``mm_base`` of a venue file were
    validated and listed but ignored. bit.com publishes Deribit's rule with 0.25 / 0.15 /
    0.125 (its "Margin" page, options standard margin); with those in the venue file the
    writer's requirement is the rule at those constants, and differs from the preset's."""
    from dataclasses import replace

    from solvency.core.model.presets import venue_from_data
    from solvency.core.options.margin import DERIBIT_OPTION_MARGIN

    venue = venue_from_data({"preset": "deribit", "markets": {CALL: {
        "model": "option_standard", "im_base": "0.25", "im_floor": "0.15",
        "mm_base": "0.125"}}})
    views = {}
    for name, engine in (("preset", _engine()), ("file", Engine(venue))):
        if name == "file":
            engine.apply(Deposit(id="d1", account="writer", asset="USDC", amount=D(50000),
                                 ts_ms=T0))
            engine.apply(Deposit(id="d2", account="buyer", asset="USDC", amount=D(50000),
                                 ts_ms=T0))
            engine.apply(Price(id="p", market="BTC-PERP", price=D(100000), ts_ms=T0))
            engine.apply(Vol(id="v", market=CALL, iv=D("0.6"), ts_ms=T0))
        mark = engine.book.marks[engine.book.market_index[CALL]]
        assert mark is not None
        out = engine.apply(Fill(id="f", market=CALL, buyer="buyer", seller="writer",
                                size=D(1), price=mark, ts_ms=T0))
        assert [o for o in out if o.type == "rejected"] == []
        views[name] = (engine.account_view("writer"), float(mark))
    view, mark = views["file"]
    params = replace(DERIBIT_OPTION_MARGIN, base=0.25, floor=0.15, mm_base=0.125,
                     mm_mark_factor=0.125)
    im, mm = option_margin(underlying_price=100000.0, strike=100000.0, mark_price=mark,
                           size=-1.0, is_call=True, settlement="linear", params=params)
    assert float(view["initial_margin"]) == pytest.approx(float(im[0]), abs=0.01)
    assert float(view["maintenance_margin"]) == pytest.approx(float(mm[0]), abs=0.01)
    # ATM: IM = (0.25 + mark/S) S = 25,000 + mark, 10,000 above the preset's 0.15
    preset_im = float(views["preset"][0]["initial_margin"])
    assert float(view["initial_margin"]) - preset_im == pytest.approx(10_000.0, abs=0.02)


# Paradex's cross-margin option constants as venue-file keys (docs.paradex.trade,
# perpetual options "Margin Requirements", stored copy read 2026-12-07; the worked
# examples run through the CLI in tests/integration/test_cli_margin_paradex_options.py)
PARADEX_KEYS = {
    "model": "option_standard", "mm_floor": "0.05", "mm_otm_discount": "1",
    "mm_mark_factor": "0", "premium": "0", "put_cap": "0.5", "long_premium_im": "1",
    "long_spot_im": "0.2", "long_premium_mm": "0.5", "long_spot_mm": "0.1"}


def test_paradex_long_options_pay_margin_and_survive_snapshot_and_restore() -> None:
    """Issue 29 item 2: a long pays min(mark, 20 % S) initial and min(50 % mark, 10 % S)
    maintenance per contract; the per-contract amounts in force are part of the snapshot
    (and so of the state hash), and a restored engine re-margins the same."""
    from solvency.core.model.presets import venue_from_data

    e = Engine(venue_from_data({"preset": "deribit", "markets": {CALL: PARADEX_KEYS}}))
    for who in ("writer", "buyer"):
        e.apply(Deposit(id=f"d-{who}", account=who, asset="USDC", amount=D(50000),
                        ts_ms=T0))
    e.apply(Price(id="p", market="BTC-PERP", price=D(100000), ts_ms=T0))
    e.apply(Vol(id="v", market=CALL, iv=D("0.6"), ts_ms=T0))
    mark = e.book.marks[e.book.market_index[CALL]]
    assert mark is not None
    out = e.apply(Fill(id="f", market=CALL, buyer="buyer", seller="writer", size=D(2),
                       price=mark, ts_ms=T0))
    assert [o for o in out if o.type == "rejected"] == []
    buyer = e.account_view("buyer")
    # ATM at 60 % vol over ~3 months: the mark (~11,900) is below 20 % of S (20,000)
    assert 0 < float(mark) < 20000
    assert float(buyer["initial_margin"]) == pytest.approx(2 * float(mark), abs=1e-6)
    assert float(buyer["maintenance_margin"]) == pytest.approx(float(mark), abs=1e-6)
    again = Engine.restore(e.snapshot())
    assert again.state_hash() == e.state_hash()
    assert again.account_view("buyer") == buyer
    for eng in (e, again):  # the underlying moves: the option is re-priced, both re-margin
        eng.apply(Price(id="p9", market="BTC-PERP", price=D(150000), ts_ms=T0 + 1000))
    assert again.state_hash() == e.state_hash()
    assert again.account_view("buyer") == e.account_view("buyer")
    # deep in the money now: the mark (> 50,000) is above 20 % of S, IM = 2 x 30,000
    assert e.account_view("buyer")["initial_margin"] == "60000"
    assert e.account_view("buyer")["maintenance_margin"] == "30000"


def test_a_price_marked_options_margin_survives_restore() -> None:
    """An option marked by a price event (no vol) has its per-contract requirements set
    at that event's underlying mark; a restore used to drop them (the writer's initial
    margin went from 20,000 to 0 while the state hash still matched)."""
    e = Engine(load_preset("deribit"))
    for who in ("writer", "buyer"):
        e.apply(Deposit(id=f"d-{who}", account=who, asset="USDC", amount=D(50000),
                        ts_ms=T0))
    e.apply(Price(id="p", market="BTC-PERP", price=D(100000), ts_ms=T0))
    e.apply(Price(id="po", market=CALL, price=D(5000), ts_ms=T0))
    e.apply(Fill(id="f", market=CALL, buyer="buyer", seller="writer", size=D(1),
                 price=D(5000), ts_ms=T0))
    # Deribit, ATM linear call: (0.15 + 5,000 / 100,000) x 100,000
    assert e.account_view("writer")["initial_margin"] == "20000"
    again = Engine.restore(e.snapshot())
    assert again.account_view("writer") == e.account_view("writer")
    assert again.state_hash() == e.state_hash()


def test_a_params_event_changes_the_option_rule_at_once() -> None:
    """A params event giving an option market Paradex's long charge acts at the option's
    mark, not at its next re-pricing; the rejected one changes nothing."""
    from solvency.core.model.events import Params

    e = _engine()
    m = e.book.market_index[CALL]
    mark = e.book.marks[m]
    assert mark is not None
    e.apply(Fill(id="f", market=CALL, buyer="buyer", seller="writer", size=D(1),
                 price=mark, ts_ms=T0))
    assert e.account_view("buyer")["initial_margin"] == "0"  # Deribit: longs pay none
    before = e.state_hash()
    out = e.apply(Params(id="bad", market=CALL, changes={"long_spot_imm": "0.2"}))
    assert out[0].type == "rejected" and e.state_hash() == before
    e.apply(Params(id="px", market=CALL, changes=PARADEX_KEYS))
    buyer = e.account_view("buyer")
    assert float(buyer["initial_margin"]) == pytest.approx(float(mark), abs=1e-6)
    assert float(buyer["maintenance_margin"]) == pytest.approx(float(mark) / 2, abs=1e-6)
    again = Engine.restore(e.snapshot())
    assert again.state_hash() == e.state_hash()
    assert again.account_view("buyer") == buyer
