"""Exact settlement of fills, fees, funding and expiry: every ledger account, every step.

Accounting after dYdX v4 (``x/subaccounts``: a fill moves ``size x price`` of quote from
buyer to seller; equity is quote balance plus position value at the oracle price).
"""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from solvency.core.ledger.ledger import CLEARING, FEES, ROUNDING
from tests.unit.engine.helpers import apply, engine, types


def _funded(preset: str = "binance", *accounts: str, amount: str = "10000") -> object:
    e = engine(preset)
    for a in accounts or ("alice", "bob"):
        apply(e, "deposit", account=a, asset="USDT" if preset in ("binance", "bitmex")
              else "USDC", amount=amount)
    return e


def test_linear_fill_moves_notional_and_fees_exactly() -> None:
    e = _funded()
    apply(e, "price", market="BTC-PERP", price="100000")
    out = apply(e, "fill", market="BTC-PERP", buyer="alice", seller="bob", size="0.5",
                price="100000.1", fee_buyer="20.00002", fee_seller="-5")
    assert types(out) == []
    led = e.ledger
    notional = 50_000_050_000  # 0.5 x 100000.1 USDT in 1e-6 quanta
    assert led.balance("u:alice", "USDT") == 10_000_000_000 - notional - 20_000_020
    assert led.balance("u:bob", "USDT") == 10_000_000_000 + notional + 5_000_000
    assert led.balance(FEES, "USDT") == 20_000_020 - 5_000_000
    assert e.verify()["USDT"] == 20_000_000_000
    assert e.signed_size_sums()["BTC-PERP"] == 0
    view = e.account_view("alice")
    assert view["positions"][0]["entry_price"] == "100000.1"
    assert view["positions"][0]["unrealized_pnl"] == "-0.05"


def test_inverse_fill_rounds_against_both_sides_into_the_rounding_account() -> None:
    e = engine("binance")
    for a in ("alice", "bob"):
        apply(e, "deposit", account=a, asset="BTC", amount="1")
    apply(e, "price", market="BTC-PERP", price="30000")
    apply(e, "price", market="BTC-USD-INVERSE", price="30000")
    # 3 contracts x 100 USD / 30000.7 = 0.00999976667 BTC: not a whole number of satoshi
    apply(e, "fill", market="BTC-USD-INVERSE", buyer="alice", seller="bob", size="3",
          price="30000.7")
    assert e.ledger.balance("u:alice", "BTC") == 100_000_000 + 999_976   # floor
    assert e.ledger.balance("u:bob", "BTC") == 100_000_000 - 999_977     # ceil
    assert e.ledger.balance(ROUNDING, "BTC") == 1
    assert e.ledger.balance(CLEARING, "BTC") == 0
    assert e.verify()["BTC"] == 200_000_000


def test_funding_longs_pay_shorts_and_remainder_goes_to_rounding() -> None:
    e = _funded("binance", "l1", "l2", "s1")
    apply(e, "price", market="BTC-PERP", price="100000")
    apply(e, "fill", market="BTC-PERP", buyer="l1", seller="s1", size="0.001", price="100000")
    apply(e, "fill", market="BTC-PERP", buyer="l2", seller="s1", size="0.001", price="100000")
    apply(e, "price", market="BTC-PERP", price="100000.3")
    before = {a: e.ledger.balance(f"u:{a}", "USDT") for a in ("l1", "l2", "s1")}
    out = apply(e, "funding", market="BTC-PERP", rate="0.0001")
    # each long owes 0.001 x 100000.3 x 0.0001 = 0.01000003 USDT = 10000.03 quanta: pays 10001
    assert e.ledger.balance("u:l1", "USDT") == before["l1"] - 10_001
    assert e.ledger.balance("u:l2", "USDT") == before["l2"] - 10_001
    # the short is owed 20000.06 quanta: rounded down
    assert e.ledger.balance("u:s1", "USDT") == before["s1"] + 20_000
    assert e.ledger.balance(ROUNDING, "USDT") == 2
    settled = out[0]
    assert settled.type == "settled"
    assert (settled.paid, settled.received, settled.rounding) == (  # type: ignore[union-attr]
        "0.020002", "0.020000", "0.000002")
    e.verify()


def test_negative_funding_shorts_pay_longs() -> None:
    e = _funded()
    apply(e, "price", market="BTC-PERP", price="50000")
    apply(e, "fill", market="BTC-PERP", buyer="alice", seller="bob", size="2", price="50000")
    a0 = e.ledger.balance("u:alice", "USDT")
    apply(e, "funding", market="BTC-PERP", rate="-0.0003")
    assert e.ledger.balance("u:alice", "USDT") == a0 + 30_000_000  # 2 x 50000 x 0.0003
    e.verify()


def test_expiry_settles_every_position_at_the_final_price() -> None:
    e = _funded()
    apply(e, "price", market="BTC-FUT-260327", price="84000")
    apply(e, "fill", market="BTC-FUT-260327", buyer="alice", seller="bob", size="0.2",
          price="84000", ts="2026-03-20T00:00:00Z")
    out = apply(e, "expiry", market="BTC-FUT-260327", price="80000.05",
                ts="2026-03-27T08:00:00Z")
    assert types(out)[0] == "settled"
    # alice: -0.2 x 84000 paid at the fill, +0.2 x 80000.05 received at expiry
    assert e.ledger.balance("u:alice", "USDT") == 10_000_000_000 - 800_000_000 + 10_000
    assert e.ledger.balance("u:bob", "USDT") == 10_000_000_000 + 800_000_000 - 10_000
    assert e.open_interest()["BTC-FUT-260327"] == "0.000"
    assert e.account_view("alice")["positions"] == []
    assert e.realized["alice"] == -799_990_000
    e.verify()
    rej = apply(e, "fill", market="BTC-FUT-260327", buyer="alice", seller="bob", size="0.1",
                price="80000")
    assert rej[0].reason == "market_expired"  # type: ignore[union-attr]


def test_expiry_off_grid_price_rounds_to_the_rounding_account() -> None:
    e = _funded()
    apply(e, "price", market="BTC-FUT-260327", price="84000")
    apply(e, "fill", market="BTC-FUT-260327", buyer="alice", seller="bob", size="0.001",
          price="84000")
    # an expiry needs a time at or after the contract's (its own, or the engine clock)
    assert apply(e, "expiry", market="BTC-FUT-260327",
                 price="80000.0000005")[0].reason == "before_expiry"  # type: ignore[union-attr]
    apply(e, "expiry", market="BTC-FUT-260327", price="80000.0000005",
          ts="2026-03-27T08:00:00Z")
    # 0.001 x 80000.0000005 = 80.0000000005 USDT: long gets floor, short pays ceil
    assert e.ledger.balance(ROUNDING, "USDT") == 1
    e.verify()


def test_partial_close_reports_realized_pnl_and_keeps_entry() -> None:
    e = _funded()
    apply(e, "price", market="BTC-PERP", price="100000")
    apply(e, "fill", market="BTC-PERP", buyer="alice", seller="bob", size="1", price="100000")
    apply(e, "fill", market="BTC-PERP", buyer="bob", seller="alice", size="0.4", price="101000")
    assert e.realized["alice"] == 400_000_000  # 0.4 x 1000 USDT
    pos = e.account_view("alice")["positions"][0]
    assert (pos["size"], pos["entry_price"]) == ("0.600", "100000")
    # flip: sell 1.0 more -> short 0.4 at 99000
    apply(e, "fill", market="BTC-PERP", buyer="bob", seller="alice", size="1", price="99000")
    pos = e.account_view("alice")["positions"][0]
    assert (pos["size"], pos["entry_price"]) == ("-0.400", "99000")
    e.verify()


def test_isolated_position_takes_margin_from_cross_and_releases_it() -> None:
    e = _funded()
    apply(e, "account", account="iso", mode="isolated")
    apply(e, "deposit", account="iso", asset="USDT", amount="5000")
    apply(e, "price", market="BTC-PERP", price="100000")
    apply(e, "fill", market="BTC-PERP", buyer="iso", seller="bob", size="0.1", price="100000",
          fee_buyer="5")
    bucket = e.ledger.balance("u:iso/BTC-PERP", "USDT")
    # initial margin 0.1 x 100000 / 125 = 80 USDT plus the 5 USDT fee moved in, rounded up
    top = bucket + 10_000_000_000 + 5_000_000
    assert 85_000_000 <= top <= 85_000_002
    assert e.ledger.balance("u:iso", "USDT") == 5_000_000_000 - top
    apply(e, "fill", market="BTC-PERP", buyer="bob", seller="iso", size="0.1", price="100100")
    assert e.ledger.balance("u:iso/BTC-PERP", "USDT") == 0
    assert e.ledger.balance("u:iso", "USDT") == 5_000_000_000 - 5_000_000 + 10_000_000
    e.verify()


def test_margin_call_on_crossing_and_restored_after() -> None:
    e = _funded("binance", "alice", "bob", amount="1000")
    apply(e, "price", market="BTC-PERP", price="100000")
    apply(e, "fill", market="BTC-PERP", buyer="alice", seller="bob", size="0.1",
          price="100000")
    # equity 1000 - 0.1 x 9550 = 45, MM 0.4% x 9045 = 36.18: ratio 0.804 > 0.8
    out = apply(e, "price", market="BTC-PERP", price="90450")
    calls = [o for o in out if o.type == "margin_call"]
    assert [c.account for c in calls] == ["alice"]  # type: ignore[union-attr]
    assert apply(e, "price", market="BTC-PERP", price="90400") == []  # no repeat
    out = apply(e, "price", market="BTC-PERP", price="99000")
    assert types(out) == ["margin_restored"]


def test_params_change_remargins_holders() -> None:
    e = _funded("binance", "alice", "bob", amount="1000")
    apply(e, "price", market="BTC-PERP", price="100000")
    apply(e, "fill", market="BTC-PERP", buyer="alice", seller="bob", size="0.1",
          price="100000")
    mm0 = float(e.account_view("alice")["maintenance_margin"])
    out = apply(e, "params", market="BTC-PERP",
                tiers=[{"floor": "0", "mmr": "0.09", "imr": "0.1"}])
    assert "margin_call" in types(out)
    assert float(e.account_view("alice")["maintenance_margin"]) == pytest.approx(900.0)
    assert mm0 == pytest.approx(40.0)


def test_withdrawal_gated_by_initial_margin() -> None:
    e = _funded("binance", "alice", "bob", amount="1000")
    apply(e, "price", market="BTC-PERP", price="100000")
    apply(e, "fill", market="BTC-PERP", buyer="alice", seller="bob", size="0.1",
          price="100000")
    # IM = 10000 / 125 = 80 USDT: 920 may leave, 921 may not
    rej = apply(e, "withdraw", account="alice", asset="USDT", amount="921")
    assert rej[0].reason == "insufficient_initial_margin"  # type: ignore[union-attr]
    assert apply(e, "withdraw", account="alice", asset="USDT", amount="920") == []
    assert e.ledger.balance("u:alice", "USDT") == 80_000_000 - 10_000_000_000


def test_coin_collateral_is_weighted_and_follows_its_market() -> None:
    e = engine("binance")
    apply(e, "deposit", account="h", asset="BTC", amount="1")
    apply(e, "deposit", account="mm", asset="USDT", amount="1000000")
    apply(e, "price", market="BTC-PERP", price="100000")
    view = e.account_view("h")
    assert float(view["collateral_usd"]) == pytest.approx(95_000.0)  # weight 0.95
    assert float(view["equity_usd"]) == pytest.approx(100_000.0)
    apply(e, "price", market="BTC-PERP", price="50000")
    assert float(e.account_view("h")["collateral_usd"]) == pytest.approx(47_500.0)
    D("0")


def test_params_changing_the_quote_moves_settlement_to_the_new_asset() -> None:
    # A params event may change contract terms while no position is open. The engine's
    # per-market settlement asset was not refreshed: after {"quote": "USDC"} fills kept
    # posting and mirroring USDT. Now the market settles in USDC, exactly.
    e = engine("binance")
    out = apply(e, "params", market="ETH-PERP", quote="USDC")
    assert [o.type for o in out] == ["settled"], out
    for who in ("alice", "bob"):
        apply(e, "deposit", account=who, asset="USDC", amount="10000")
    apply(e, "price", market="ETH-PERP", price="3000")
    assert apply(e, "fill", market="ETH-PERP", buyer="alice", seller="bob", size="1",
                 price="3000") == []
    assert e.ledger.balance("u:alice", "USDC") == (10000 - 3000) * 1_000_000
    assert e.ledger.balance("u:alice", "USDT") == 0
    book = e.book
    for who in ("alice", "bob"):  # the book mirrors each ledger balance in its own column
        r = book.row_index[who]
        for a, sym in enumerate(book.asset_names):
            assert int(book.row_int[r, a]) == e.ledger.balance(f"u:{who}", sym), (who, sym)
    view = e.account_view("alice")
    assert view["positions"][0]["settle"] == "USDC"
    e.verify()
    restored = type(e).restore(e.snapshot())
    assert restored.state_hash() == e.state_hash()


def test_verify_recounts_open_interest_from_the_holders() -> None:
    # Engine.verify sums the holders' long lots from scratch and refuses a stale index
    from solvency.engine.engine import EngineError

    e = _funded("binance", "alice", "bob", "carol")
    apply(e, "price", market="BTC-PERP", price="100000")
    apply(e, "fill", market="BTC-PERP", buyer="alice", seller="bob", size="0.5",
          price="100000")
    apply(e, "fill", market="BTC-PERP", buyer="carol", seller="bob", size="0.25",
          price="100000")
    m = e.book.market_index["BTC-PERP"]
    longs = e.book.oi_lots[m]
    assert longs > 0
    e.verify()
    e.book.oi_lots[m] = longs - 1
    with pytest.raises(EngineError, match="open interest index of market"):
        e.verify()
    e.book.oi_lots[m] = longs
    e.verify()
