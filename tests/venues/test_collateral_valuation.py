"""Collateral valued by rule (issue 22, "The engine: collateral valued by rule").

Sources (read 2026-12-07):

* Binance's rule of 2025-10-10 and its change from 2025-10-14 08:00 UTC: WBETHUSDT's
  weight in the WBETH price index 20 % -> 0 %, WBETHETH x ETHUSDT 80 % -> 100 %;
  BNSOLUSDT 30 % -> 0 %, BNSOLSOL x SOLUSDT 70 % -> 100 % (Binance's announcement, as
  summarized at https://coinpost.ai/ja/topics/52751 and
  https://www.binance.bh/en/square/post/30886289453337).
* The depeg on Binance's own books: wBETH as low as $430 around 21:40 UTC on 2025-10-10
  (-88 % against ETHUSDT above $3,800), BNSOL $34.90 (CoinDesk, 2025-10-12,
  https://www.coindesk.com/markets/2025/10/12/binance-to-compensate-users-affected-by-crash-in-wbeth-bnsol-and-ethena-s-usde);
  compensation for accounts holding USDe, BNSOL or WBETH as collateral between 21:36 and
  22:16 UTC, about $283 M (https://www.binance.bh/fr-AF/square/post/30952419865713).

The depeg case is computed by hand below: the presets ``binance-2025-10-10`` and
``binance-2025-10-14`` differ only in the own-book weights.
"""

from __future__ import annotations

import copy
import re
import tomllib
from decimal import ROUND_CEILING, Decimal
from pathlib import Path
from typing import Any

import pytest

from solvency.core.model.assets import CollateralValuation, ValuationSource
from solvency.core.model.events import Deposit, Fill, Price
from solvency.core.model.presets import PRESETS, load_preset, venue_from_data
from solvency.core.model.venue import ConfigError, Venue
from solvency.core.oracle import OracleReport
from solvency.core.oracle.collateral import collateral_price
from solvency.engine.engine import Engine

D = Decimal
T0 = 1_760_132_160_000  # 2025-10-10 21:36 UTC
WBETH_ETH = D("1.07")  # the presets' WBETH/ETH rate
HOLDINGS = {"a1": "0.36", "a2": "0.42", "a3": "0.44", "a4": "0.5"}  # WBETH per account


def _book(engine: Engine, id_: str, price: str, ts: int, asset: str = "WBETH",
          source: str = "book") -> list[Any]:
    return engine.apply(OracleReport(id=id_, source=source, price=D(price), ts_ms=ts,
                                     asset=asset))


def _setup(venue: Venue) -> Engine:
    """ETH 4,000 (WBETH redeems for 4,280), BTC 100,000; each account deposits its WBETH
    and buys 1 BTC-PERP at 100,000 from ``mm``; BTC then marks 99,000."""
    e = Engine(venue)
    e.apply(Price(id="eth", market="ETH-PERP", price=D(4000), ts_ms=T0))
    e.apply(Price(id="btc", market="BTC-PERP", price=D(100_000), ts_ms=T0))
    assert _book(e, "book0", "4280", T0) == []
    assert e.apply(Deposit(id="dmm", account="mm", asset="USDT", amount=D(10_000_000),
                           ts_ms=T0)) == []
    for i, (acct, w) in enumerate(HOLDINGS.items()):
        assert e.apply(Deposit(id=f"d{i}", account=acct, asset="WBETH", amount=D(w),
                               ts_ms=T0)) == []
        assert e.apply(Fill(id=f"f{i}", market="BTC-PERP", buyer=acct, seller="mm",
                            size=D(1), price=D(100_000), ts_ms=T0)) == []
    e.apply(Price(id="btc2", market="BTC-PERP", price=D(99_000), ts_ms=T0 + 1_000))
    return e


def _margin_equity(w: str, wbeth_usd: Decimal) -> float:
    # WBETH x price x 0.95 (the presets' collateral ratio) + the long's PnL at 99,000
    return float(D(w) * wbeth_usd * D("0.95") - 1_000)


# BTCUSDT bracket at notional 99,000 (50,000 <= N < 600,000): MM = N x 0.5 % - 50 = 445
MM = 445.0


@pytest.mark.parametrize(("preset", "wbeth_usd", "liquidated"), [
    # 20 % x 430 (own book) + 80 % x 1.07 x 4,000: a1 200.42 and a2 400.49 < 445;
    # a3 467.18 and a4 667.25 stay
    pytest.param("binance-2025-10-10", D("3510"), ["a1", "a2"], id="2025-10-10-own-book"),
    # 0 % own book: 1.07 x 4,000 whatever the book prints
    pytest.param("binance-2025-10-14", D("4280"), [], id="2025-10-14-redemption"),
])
def test_depeg_liquidates_exactly_the_accounts_under_maintenance(
        preset: str, wbeth_usd: Decimal, liquidated: list[str]) -> None:
    e = _setup(load_preset(preset))
    for acct, w in HOLDINGS.items():  # before the depeg: every account above maintenance
        view = e.account_view(acct)
        assert float(view["collateral_usd"]) == pytest.approx(_margin_equity(w, D(4280)), rel=1e-12)
        assert float(view["maintenance_margin"]) == pytest.approx(MM)
    expected = {a for a, w in HOLDINGS.items() if _margin_equity(w, wbeth_usd) < MM}
    assert sorted(expected) == liquidated  # the hand computation agrees with the cases
    out = _book(e, "depeg", "430", T0 + 240_000)
    assert e.book.asset_price_exact[e.book.asset_index["WBETH"]] == wbeth_usd
    hit = sorted({o.account for o in out if o.type == "liquidation"})
    assert hit == liquidated
    for acct in set(HOLDINGS) - set(liquidated):
        assert float(e.account_view(acct)["collateral_usd"]) == pytest.approx(
            _margin_equity(HOLDINGS[acct], wbeth_usd), rel=1e-12)
    e.verify()  # conservation of every asset, balanced open interest


def test_an_underlying_mark_revalues_the_collateral_redeemed_into_it() -> None:
    # ETH 4,000 -> 3,800: WBETH (100 % redemption) 1.07 x 3,800 = 4,066; a1: 0.36 x
    # 4,066 x 0.95 - 1,000 = 390.572 < 445, liquidated by the ETH mark alone
    e = _setup(load_preset("binance-2025-10-14"))
    out = e.apply(Price(id="eth2", market="ETH-PERP", price=D(3800), ts_ms=T0 + 2_000))
    assert e.book.asset_price_exact[e.book.asset_index["WBETH"]] == D("4066")
    assert sorted({o.account for o in out if o.type == "liquidation"}) == ["a1"]


def test_a_rejected_report_changes_nothing() -> None:
    e = _setup(load_preset("binance-2025-10-10"))
    before = e.state_hash()
    for id_, source, price, ts, reason in [
            ("x1", "nope", "430", T0 + 5_000, "unknown_source"),
            ("x2", "book", "-1", T0 + 5_000, "invalid_price"),
            ("x3", "book", "0", T0 + 5_000, "invalid_price"),
            ("x4", "book", "430", T0 - 1, "out_of_order")]:
        out = _book(e, id_, price, ts, source=source)
        assert [(o.type, o.reason) for o in out] == [("rejected", reason)]
        assert e.state_hash() == before


def test_snapshot_and_restore_keep_the_hash_through_the_depeg() -> None:
    e = _setup(load_preset("binance-2025-10-10"))
    _book(e, "half", "2000", T0 + 60_000)
    twin = Engine.restore(copy.deepcopy(e.snapshot()))
    assert twin.state_hash() == e.state_hash()
    a = [o.account for o in _book(e, "depeg", "430", T0 + 240_000) if o.type == "liquidation"]
    b = [o.account for o in _book(twin, "depeg", "430", T0 + 240_000)
         if o.type == "liquidation"]
    assert a == b and a
    assert twin.state_hash() == e.state_hash()


def test_a_venue_without_valued_collateral_hashes_as_before() -> None:
    # the snapshot gains a "collateral" key only where the venue values collateral
    assert "collateral" not in Engine(load_preset("binance")).snapshot()
    assert "collateral" in Engine(load_preset("binance-2025-10-10")).snapshot()


def test_a_stale_book_drops_out_of_the_rule() -> None:
    # stale_ms 60 s: the book's 430 counts until it is a minute old, then the price is
    # the redemption source's alone (weights renormalized): 4,280
    data = {"preset": "binance-2025-10-10", "name": "stale", "assets": {"WBETH": {
        "valuation": {**copy.deepcopy(PRESETS["binance-2025-10-10"]["assets"]["WBETH"]
                                      ["valuation"]), "stale_ms": 60_000}}}}
    e = _setup(venue_from_data(data))
    a = e.book.asset_index["WBETH"]
    _book(e, "depeg", "430", T0 + 240_000)
    assert e.book.asset_price_exact[a] == D("3510")
    e.apply(Price(id="later", market="BTC-PERP", price=D(99_000), ts_ms=T0 + 300_001))
    assert e.book.asset_price_exact[a] == D("4280")


# ------------------------------------------------------------------ the rule, pure

def _rule(*sources: ValuationSource, **kw: Any) -> CollateralValuation:
    return CollateralValuation(sources=tuple(sources), **kw)


BOOK = ValuationSource("book", D("0.2"), "book")
RED = ValuationSource("redemption", D("0.8"), "redemption", underlying="ETH", rate=D("1.07"))
ETH = {"ETH": D(4000)}


@pytest.mark.parametrize(("rule", "reports", "under", "now", "price"), [
    pytest.param(_rule(BOOK, RED), {"book": (D(430), 0)}, ETH, 0, D("3510"),
                 id="weighted-20-80"),
    pytest.param(_rule(BOOK, RED), {}, ETH, 0, D("4280"), id="no-book-yet-renormalized"),
    pytest.param(_rule(BOOK, RED), {"book": (D(430), 0)}, {"ETH": None}, 0, D("430"),
                 id="no-underlying-price"),
    pytest.param(_rule(BOOK, RED), {}, {"ETH": None}, 0, None, id="nothing-priced"),
    pytest.param(_rule(BOOK, RED), {"book": (D(430), 0), "redemption": (D("1.08"), 0)},
                 ETH, 0, D("3542"), id="reported-rate-replaces-the-file's"),
    pytest.param(_rule(BOOK, RED, stale_ms=10), {"book": (D(430), 0)}, ETH, 11, D("4280"),
                 id="stale-book-drops-out"),
    pytest.param(_rule(BOOK, RED, stale_ms=10), {"book": (D(430), 0)}, ETH, 10, D("3510"),
                 id="book-at-the-staleness-limit-counts"),
    # a 5 % band around the redemption value: 3,510 -> 4,280 x 0.95 = 4,066
    pytest.param(_rule(BOOK, RED, band=D("0.05"), reference="redemption"),
                 {"book": (D(430), 0)}, ETH, 0, D("4066"), id="band-clamps"),
    # the book alone, the redemption value a zero-weight band reference
    pytest.param(_rule(ValuationSource("book", D(1), "book"),
                       ValuationSource("redemption", D(0), "redemption", underlying="ETH",
                                       rate=D("1.07")),
                       band=D("0.1"), reference="redemption"),
                 {"book": (D(430), 0)}, ETH, 0, D("3852"), id="zero-weight-reference"),
    # rounded down to 1e-12: 1/3 of 1 + 2/3 of 2 -> 1.666...
    pytest.param(_rule(ValuationSource("book", D(1) / 3, "a"),
                       ValuationSource("index", 1 - D(1) / 3, "b")),
                 {"a": (D(1), 0), "b": (D(2), 0)}, {}, 0, D("1.666666666666"),
                 id="floored-to-1e-12"),
])
def test_collateral_price(rule: CollateralValuation, reports: dict[str, tuple[Decimal, int]],
                          under: dict[str, Decimal | None], now: int,
                          price: Decimal | None) -> None:
    assert collateral_price(rule, reports, under, now_ms=now) == price


@pytest.mark.parametrize(("valuation", "message"), [
    ({"sources": [{"kind": "book", "weight": "0.5"}]}, "weights must sum to 1"),
    ({"sources": [{"kind": "redemption", "weight": "1", "rate": "1"}]},
     "underlying is for (and required by) a redemption source"),
    ({"sources": [{"kind": "redemption", "weight": "1", "underlying": "WBETH",
                   "rate": "1"}]}, "is not another asset of the venue"),
    ({"sources": [{"kind": "redemption", "weight": "1", "underlying": "BNSOL",
                   "rate": "1"}]}, "is not another asset of the venue"),
    ({"sources": [{"kind": "book", "weight": "1"}], "band": "0.1"},
     "band and reference go together"),
    ({"sources": [{"kind": "book", "weight": "1"}], "sourcez": []},
     "assets.WBETH.valuation.sourcez"),
    ({"sources": [{"kind": "spot", "weight": "1"}]}, "assets.WBETH.valuation.sources[0].kind"),
    ({"sources": []}, "assets.WBETH.valuation.sources"),
])
def test_a_bad_rule_is_refused_with_its_key(valuation: dict[str, Any], message: str) -> None:
    data = {"preset": "binance-2025-10-10", "name": "bad",
            "assets": {"WBETH": {"valuation": valuation}}}
    with pytest.raises(ConfigError) as err:
        venue_from_data(data, source="v.json")
    assert message in str(err.value)


def test_a_valuation_takes_one_collateral_tier() -> None:
    # the auto-exchange sells at one weight; two tiers would sell below their value
    data = {"preset": "binance-2025-10-10", "name": "tiers", "assets": {"WBETH": {
        "collateral": [{"floor_usd": "0", "weight": "0.95"},
                       {"floor_usd": "1000000", "weight": "0.5"}]}}}
    with pytest.raises(ConfigError, match=r"assets\.WBETH\.collateral: an asset with a "
                                          r"valuation takes one collateral tier"):
        venue_from_data(data, source="v.json")


def test_a_valuation_replaces_a_fixed_or_market_price() -> None:
    data = {"preset": "binance-2025-10-10", "name": "both",
            "assets": {"WBETH": {"price_usd": "1"}}}
    with pytest.raises(ConfigError, match="needs price_usd or price_market, or a valuation"):
        venue_from_data(data)


def test_the_documented_rule_is_the_preset_s() -> None:
    """docs/venues.md's wBETH venue file builds to binance-2025-10-10's wBETH."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "venues.md").read_text("utf-8")
    blocks = [b for b in re.findall(r"```toml\n(.*?)```", text, re.S) if "[assets.WBETH]" in b]
    assert len(blocks) == 1
    venue = venue_from_data(tomllib.loads(blocks[0]))
    assert venue.assets["WBETH"] == load_preset("binance-2025-10-10").assets["WBETH"]


# ------------------------------------------------------------------ the collateral sold
# Binance, "Multi-Assets Mode" trading rules
# (https://www.binance.com/en-NG/futures/trading-rules/perpetual/multi-asset-info, read
# 2026-12-07): on a liquidation whose USDT balance does not cover the deficit, auto-exchange
# converts collateral at its haircut value ("20,000 BUSD / 97.5 % = 20,513 BUSD of the BTC").

def test_a_liquidated_account_s_collateral_is_exchanged_into_its_debt() -> None:
    e = _setup(load_preset("binance-2025-10-10"))
    out = _book(e, "depeg", "430", T0 + 240_000)
    ex = [o for o in out if o.type == "collateral_exchanged"]
    assert [o.account for o in ex] == ["a1", "a2"]
    assert [D(o.credited) for o in ex] == [D("1200.419999"), D("1400.49")]
    unit = D("3510") * D("0.95")  # the rule's price after the haircut
    for o in ex:
        # the debt from the liquidation's own sales: the long's loss (100,000 - price) x
        # size plus the penalty of each (a1: 1,099 + 61.347602 + 40.072397 = 1,200.419999)
        debt = sum((D(li.size) * (100_000 - D(li.price)) + D(li.penalty) for li in out
                    if li.type == "liquidation" and li.account == o.account), D(0))
        assert debt > 0 and D(o.credited) == debt
        assert o.to_asset == "USDT" and D(o.price) == D("3510")
        # the debt / (3,510 x 95 %) of WBETH, rounded up to its quantum
        assert D(o.amount) == (debt / unit).quantize(D("1e-8"), rounding=ROUND_CEILING)
        assert e.ledger.balance(f"u:{o.account}", "USDT") == 0  # the debt repaid
        assert e.ledger.balance(f"u:{o.account}", "WBETH") == int(
            (D(HOLDINGS[o.account]) - D(o.amount)) * 10**8)
    assert not [o for o in out if o.type == "bad_debt"]
    e.verify()


def test_a_debt_that_takes_all_the_collateral_sells_it_whole() -> None:
    # BTC 100,000 -> 90,000: a1's loss (10,000) exceeds its 0.36 WBETH at 4,280 x 95 %
    # (1,463.76 USDT); the position is deleveraged at its bankruptcy price, so the debt
    # is exactly that value: all the WBETH is exchanged, 1,463.76 credited, no bad debt
    e = _setup(load_preset("binance-2025-10-14"))
    out = e.apply(Price(id="crash", market="BTC-PERP", price=D(90_000), ts_ms=T0 + 2_000))
    ex = {o.account: o for o in out if o.type == "collateral_exchanged"}
    assert D(ex["a1"].amount) == D("0.36")
    assert D(ex["a1"].credited) == D("1463.76")
    assert e.ledger.balance("u:a1", "WBETH") == 0
    assert e.ledger.balance("u:a1", "USDT") == 0
    assert not [o for o in out if o.type == "bad_debt"]
    e.verify()


def test_a_mark_values_its_holders_with_the_collateral_it_redeems_into() -> None:
    # one account holds both ETH-PERP and WBETH (redeemed into ETH): ETH 4,000 -> 3,620
    # moves both. WBETH 1.07 x 3,620 = 3,873.4; collateral 3,873.4 x 0.95 + 10 x (3,620 -
    # 4,000) = 3,679.73 - 3,800 = -120.27 < 0 < maintenance 36,200 x 0.4 % = 144.8: the
    # account is deleveraged at its bankruptcy price 4,000 - 3,679.73 / 10 = 3,632.027 and
    # its WBETH exchanged into the debt (a row valued with the old WBETH price kept
    # 4,066 x 0.95 - 3,800 = 62.7 and was never checked again)
    e = Engine(load_preset("binance-2025-10-14"))
    e.apply(Price(id="eth", market="ETH-PERP", price=D(4000), ts_ms=T0))
    e.apply(Deposit(id="dmm", account="mm", asset="USDT", amount=D(10_000_000), ts_ms=T0))
    assert e.apply(Deposit(id="d", account="a", asset="WBETH", amount=D(1), ts_ms=T0)) == []
    assert e.apply(Fill(id="f", market="ETH-PERP", buyer="a", seller="mm", size=D(10),
                        price=D(4000), ts_ms=T0)) == []
    out = e.apply(Price(id="eth2", market="ETH-PERP", price=D(3620), ts_ms=T0 + 1_000))
    call = [o for o in out if o.type == "margin_call"]
    assert [(o.account, D(o.collateral_usd), D(o.maintenance_usd)) for o in call] == [
        ("a", D("-120.27"), D("144.8"))]
    (dl,) = [o for o in out if o.type == "adl"]
    assert (dl.account, D(dl.size), D(dl.price)) == ("a", D(10), D("3632.027"))
    (ex,) = [o for o in out if o.type == "collateral_exchanged"]
    assert (D(ex.amount), D(ex.price), D(ex.credited)) == (D(1), D("3873.4"), D("3679.73"))
    assert e.ledger.balance("u:a", "USDT") == 0 and e.ledger.balance("u:a", "WBETH") == 0
    e.verify()


def test_an_asset_without_a_price_cannot_be_deposited() -> None:
    # WBETH before any WBETH report or ETH mark: a deposit would make a's collateral NaN,
    # which is never below maintenance (a long 0.01 BTC at 100,000 with 100 USDT, BTC to
    # 80,000: 100 - 200 < 0 went unliquidated). Refused, state unchanged; once ETH marks
    # and the book reports, WBETH has a price and the deposit is taken
    e = Engine(load_preset("binance-2025-10-10"))
    e.apply(Price(id="btc", market="BTC-PERP", price=D(100_000), ts_ms=T0))
    for i, acct in enumerate(("a", "mm")):
        e.apply(Deposit(id=f"u{i}", account=acct, asset="USDT",
                        amount=D(100 if i == 0 else 10**6), ts_ms=T0))
    assert e.apply(Fill(id="f", market="BTC-PERP", buyer="a", seller="mm", size=D("0.01"),
                        price=D(100_000), ts_ms=T0)) == []
    before = e.state_hash()
    out = e.apply(Deposit(id="w", account="a", asset="WBETH", amount=D("0.0001"), ts_ms=T0))
    assert [(o.type, o.reason, o.detail) for o in out] == [
        ("rejected", "no_price", "WBETH has no price yet")]
    assert e.state_hash() == before
    out = e.apply(Price(id="crash", market="BTC-PERP", price=D(80_000), ts_ms=T0 + 1_000))
    assert "a" in {o.account for o in out if o.type in ("liquidation", "adl")}
    e.apply(Price(id="eth", market="ETH-PERP", price=D(4000), ts_ms=T0 + 2_000))
    _book(e, "book0", "4280", T0 + 2_000)
    assert e.book.asset_price_exact[e.book.asset_index["WBETH"]] is not None
    out = e.apply(Deposit(id="w2", account="a", asset="WBETH", amount=D("0.0001"),
                          ts_ms=T0 + 2_000))
    assert not [o for o in out if o.type == "rejected"]
    assert e.ledger.balance("u:a", "WBETH") == 10_000  # 0.0001 in 1e-8 quanta


def test_two_valued_assets_are_exchanged_in_proportion() -> None:
    # binance-2025-10-10: b holds 0.36 WBETH and 1 BNSOL (SOL index 200, BNSOL book 212:
    # 30 % x 212 + 70 % x 1.06 x 200 = 212) and is long 1 BTC-PERP at 100,000; BTC 99,000.
    # Collateral 0.36 x 4,280 x 0.95 + 212 x 0.95 - 1,000 = 665.16; the wBETH book at 430
    # (WBETH 3,510): 1,200.42 + 201.4 - 1,000 = 401.82 < 445, liquidated. Its debt (the
    # loss and penalties of its sales) is shared by haircut value, 201.4 : 1,200.42, each
    # share / (price x 0.95) rounded up: 1 BNSOL (201.4 credited), 0.36 WBETH (the rest)
    e = Engine(load_preset("binance-2025-10-10"))
    e.apply(Price(id="eth", market="ETH-PERP", price=D(4000), ts_ms=T0))
    e.apply(Price(id="btc", market="BTC-PERP", price=D(100_000), ts_ms=T0))
    assert _book(e, "b0", "4280", T0) == []
    assert _book(e, "s0", "200", T0, asset="SOL", source="index") == []
    assert _book(e, "n0", "212", T0, asset="BNSOL") == []
    e.apply(Deposit(id="dmm", account="mm", asset="USDT", amount=D(10_000_000), ts_ms=T0))
    for sym, amt in (("WBETH", "0.36"), ("BNSOL", "1")):
        assert e.apply(Deposit(id=f"d{sym}", account="b", asset=sym, amount=D(amt),
                               ts_ms=T0)) == []
    assert e.apply(Fill(id="f", market="BTC-PERP", buyer="b", seller="mm", size=D(1),
                        price=D(100_000), ts_ms=T0)) == []
    e.apply(Price(id="btc2", market="BTC-PERP", price=D(99_000), ts_ms=T0 + 1_000))
    assert D(e.account_view("b")["collateral_usd"]) == D("665.16")
    out = _book(e, "depeg", "430", T0 + 240_000)
    debt = sum((D(li.size) * (100_000 - D(li.price)) + D(li.penalty) for li in out
                if li.type == "liquidation" and li.account == "b"), D(0))
    ex = {o.asset: o for o in out if o.type == "collateral_exchanged"}
    assert sorted(ex) == ["BNSOL", "WBETH"]
    total = D("201.4") + D("1200.42")
    for sym, unit in (("BNSOL", D(212) * D("0.95")), ("WBETH", D(3510) * D("0.95"))):
        share = debt * (unit * (1 if sym == "BNSOL" else D("0.36"))) / total
        assert D(ex[sym].amount) == (share / unit).quantize(D("1e-8"), rounding=ROUND_CEILING)
    assert D(ex["BNSOL"].credited) == D("201.4")
    assert D(ex["BNSOL"].credited) + D(ex["WBETH"].credited) == debt
    for sym in ("USDT", "WBETH", "BNSOL"):
        assert e.ledger.balance("u:b", sym) == 0
    assert not [o for o in out if o.type == "bad_debt"]
    e.verify()
