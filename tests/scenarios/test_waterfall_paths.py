"""One scenario per waterfall path, with the exact balance of every ledger account.

Each scenario: two or three accounts, one fill at 100,000, one mark that makes the long
liquidatable, a liquidity model that shows the book the path needs. The expected numbers
are worked by hand in each test from the formulas in docs/liquidation.md (bankruptcy
amount after dYdX ``GetBankruptcyPriceInQuoteQuantums``: ``B = -dValue - floor(TNC x
|dMM| / TMMR)``; penalty capped at the surplus over B).
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal as D

from solvency.core.ledger.ledger import FEES, INSURANCE, ROUNDING
from solvency.core.liquidation import POLICIES
from solvency.core.model.events import AccountMode, Deposit, Fill, IsolatedMargin, Price
from solvency.core.model.presets import load_preset, venue_from_data
from solvency.engine.engine import Engine
from solvency.engine.liquidation import BAD_DEBT, FUND_POSITIONS, LIQUIDATOR
from solvency.engine.ports import Fill as Level

U = 1_000_000  # USDT/USDC quanta per unit


class Levels:
    """A book that offers fixed levels (absolute prices), whatever the mark."""

    def __init__(self, *levels: tuple[int, str]) -> None:
        self.levels = [Level(lots, D(p)) for lots, p in levels]

    def quote(self, market: str, lots: int, mark: D, tick: D) -> list[Level]:
        return list(self.levels)


def _engine(venue: str, liquidity: Levels, *, policy: object = None, alice: str,
            bob: str = "50000", fund: str | None = None, backstop: str | None = None) -> Engine:
    e = Engine(load_preset(venue), liquidity=liquidity, policy=policy)  # type: ignore[arg-type]
    settle = e.venue.markets["BTC-PERP"].settle
    e.apply(Deposit(id="d-a", account="alice", asset=settle, amount=D(alice)))
    e.apply(Deposit(id="d-b", account="bob", asset=settle, amount=D(bob)))
    if fund:
        e.apply(Deposit(id="d-f", account="__insurance__", asset=settle, amount=D(fund)))
    if backstop:
        e.apply(Deposit(id="d-v", account="__backstop__", asset=settle, amount=D(backstop)))
    e.apply(Price(id="p0", market="BTC-PERP", price=D(100000)))
    out = e.apply(Fill(id="f", market="BTC-PERP", buyer="alice", seller="bob", size=D(1),
                       price=D(100000)))
    assert out == [], out
    return e


def _bal(e: Engine, account: str, asset: str) -> int:
    return e.ledger.balance(account, asset)


def _ledger(e: Engine, asset: str) -> dict[str, int]:
    """Every non-zero ledger account in ``asset`` (the whole ledger, not a sample)."""
    return {acct: v for (acct, a), v in e.ledger.balances().items() if a == asset}


def _types(out: list[object]) -> list[str]:
    return [f"{o.type}:{o.via}" if o.type == "liquidation" else o.type  # type: ignore[attr-defined]
            for o in out if o.type not in ("margin_call", "margin_restored")]  # type: ignore[attr-defined]


def test_market_close_above_bankruptcy_with_penalty_dydx() -> None:
    # dYdX BTC: MM 1.2 %. At 98,000: TNC = 3,000 - 2,000 = 1,000 < MM 1,176.
    e = _engine("dydx", Levels((10_000, "97950")), alice="3000")
    out = e.apply(Price(id="p1", market="BTC-PERP", price=D(98000)))
    assert _types(out) == ["liquidation:market"]
    # B = 98,000 - floor(1,000 x 1,176 / 1,176) = 97,000; the book pays 97,950:
    # surplus 950; penalty 0.5 % x 97,950 = 489.75 (< 950) to the insurance fund
    assert out[-1].bankruptcy_price == "97000"  # type: ignore[attr-defined]
    assert _bal(e, "u:alice", "USDC") == (3000 - 100000 + 97950) * U - 489_750_000
    assert _bal(e, INSURANCE, "USDC") == 489_750_000
    assert _bal(e, "u:__market__", "USDC") == -97950 * U
    assert _bal(e, "u:bob", "USDC") == (50000 + 100000) * U
    assert e.account_view("alice")["positions"] == []
    assert _ledger(e, "USDC") == {
        "ext:world": -53000 * U, "u:alice": 460_250_000, "u:bob": 150000 * U,
        "u:__market__": -97950 * U, INSURANCE: 489_750_000}
    assert e.verify()["USDC"] == 53000 * U


def test_close_below_bankruptcy_paid_by_the_insurance_fund_dydx() -> None:
    # At 96,500: TNC = -500, MM 1,158. B = 96,500 + 500 = 97,000. dYdX fillable price:
    # ABR = clamp(1 x (1 - (-500/1,158)), 0, 1) = 1, so (96,500 - 0.1 x 1,158) = 96,384.2:
    # the book's 96,400 is within it, and the fund pays the 600 gap.
    e = _engine("dydx", Levels((10_000, "96400")), alice="3000", fund="1000")
    out = e.apply(Price(id="p1", market="BTC-PERP", price=D(96500)))
    assert _types(out) == ["liquidation:market"]
    assert out[-1].insurance_fund_delta == "-600.000000"  # type: ignore[attr-defined]
    assert _bal(e, "u:alice", "USDC") == 0
    assert _bal(e, INSURANCE, "USDC") == 400 * U
    assert _bal(e, "u:__market__", "USDC") == -96400 * U
    assert _ledger(e, "USDC") == {"ext:world": -54000 * U, "u:bob": 150000 * U,
                                  "u:__market__": -96400 * U, INSURANCE: 400 * U}
    assert e.verify()["USDC"] == 54000 * U


def test_backstop_vault_takes_the_position_below_two_thirds_of_maintenance() -> None:
    # Hyperliquid BTC 40x: MM 1.25 %. At 97,600: equity 600 < 2/3 x 1,220 = 813.3 and the
    # book is empty: the vault takes 1 BTC at B = 97,600 - 600 = 97,000. The vault's
    # capital is the fund's (backstop_is_fund, issue 27): its loss at depth (B less the
    # unwind band's limit, 97,600 x 0.975 = 95,160: 1,840) is within its 200,000, so it
    # takes the position into the fund's row, paid by the fund's position account; the
    # fund's cash is not spent.
    e = _engine("hyperliquid", Levels(), alice="3000", fund="200000")
    out = e.apply(Price(id="p1", market="BTC-PERP", price=D(97600)))
    assert _types(out) == ["liquidation:backstop"]
    assert _bal(e, "u:alice", "USDC") == 0
    assert _bal(e, INSURANCE, "USDC") == 200000 * U
    assert _bal(e, FUND_POSITIONS, "USDC") == -97000 * U
    vault = e.account_view("__insurance__")["positions"][0]
    assert (vault["size"], vault["entry_price"]) == ("1.00000", "97000")
    assert _ledger(e, "USDC") == {"ext:world": -253000 * U, "u:bob": 150000 * U,
                                  INSURANCE: 200000 * U, FUND_POSITIONS: -97000 * U}


def test_insurance_fund_takes_the_position_when_the_book_is_empty() -> None:
    # Binance BTC bracket 2: MM 0.5 % - 50. At 98,200: equity 200 < MM 441;
    # B = 98,200 - floor(200 x 441 / 441) = 98,000, paid by the fund's position account
    # (issue 27: not from its cash), the fund now holding it.
    policy = replace(POLICIES["binance"], sizing="close_all")
    e = _engine("binance", Levels(), policy=policy, alice="2000", fund="200000")
    out = e.apply(Price(id="p1", market="BTC-PERP", price=D(98200)))
    assert _types(out) == ["liquidation:insurance_fund"]
    assert _bal(e, "u:alice", "USDT") == 0
    assert _bal(e, INSURANCE, "USDT") == 200000 * U
    assert _bal(e, FUND_POSITIONS, "USDT") == -98000 * U
    fund = e.account_view("__insurance__")["positions"][0]
    assert (fund["size"], fund["entry_price"]) == ("1.000", "98000")
    assert _ledger(e, "USDT") == {"ext:world": -252000 * U, "u:bob": 150000 * U,
                                  INSURANCE: 200000 * U, FUND_POSITIONS: -98000 * U}


def test_auto_deleveraging_at_the_bankruptcy_price_bitmex() -> None:
    # BitMEX XBTUSDT step 0: MM 0.5 %. At 98,700: equity 200 < 493.5; empty book and
    # empty fund: bob's profitable short is deleveraged at B = 98,700 - 200 = 98,500.
    policy = replace(POLICIES["bitmex"], sizing="close_all")
    e = _engine("bitmex", Levels(), policy=policy, alice="1500")
    out = e.apply(Price(id="p1", market="BTC-PERP", price=D(98700)))
    assert _types(out) == ["adl"]
    assert (out[-1].counterparty, out[-1].price) == ("bob", "98500")  # type: ignore[attr-defined]
    assert _bal(e, "u:alice", "USDT") == 0
    assert _bal(e, "u:bob", "USDT") == (50000 + 100000 - 98500) * U
    assert e.account_view("bob")["positions"] == []
    assert e.realized["bob"] == 1500 * U  # closed in profit
    assert _ledger(e, "USDT") == {"ext:world": -51500 * U, "u:bob": 51500 * U}


def test_shortfall_socialized_over_winners_deribit() -> None:
    # Deribit BTC: MM 1.5 % + 0.005 %/BTC. At 94,000: equity -1,000, B = 95,000. The book
    # only bids 93,900: the 1,100 gap is charged to the winner (bob, short from 100,000).
    e = _engine("deribit", Levels((10_000, "93900")), alice="5000")
    out = e.apply(Price(id="p1", market="BTC-PERP", price=D(94000)))
    # one event for the step (the account is paid from sys:social), one for the charge
    # to the winners posted at the end of the sweep
    assert _types(out) == ["liquidation:market", "socialized_loss", "socialized_loss"]
    assert out[-1].covered == "1100.000000"  # type: ignore[attr-defined]
    assert _bal(e, "sys:social", "USDC") == 0
    assert _bal(e, "u:alice", "USDC") == 0
    assert _bal(e, "u:bob", "USDC") == (50000 + 100000 - 1100) * U
    assert _bal(e, "u:__market__", "USDC") == -93900 * U
    assert _ledger(e, "USDC") == {"ext:world": -55000 * U, "u:bob": 148900 * U,
                                  "u:__market__": -93900 * U}


def test_bad_debt_recorded_when_nobody_can_absorb_it() -> None:
    # As above, but alice's counterparty is outside the venue's accounts: no winner to
    # charge, no fund: the 1,100 gap is recorded as the venue's bad debt, never lost.
    e = Engine(load_preset("deribit"), liquidity=Levels((10_000, "93900")))
    e.apply(Deposit(id="d-a", account="alice", asset="USDC", amount=D(5000)))
    e.apply(Price(id="p0", market="BTC-PERP", price=D(100000)))
    e.seed_position("alice", "BTC-PERP", D(1), D(100000))
    out = e.apply(Price(id="p1", market="BTC-PERP", price=D(94000)))
    assert _types(out) == ["liquidation:market", "socialized_loss", "bad_debt"]
    assert out[-1].bad_debt == "1100.000000"  # type: ignore[attr-defined]
    assert _bal(e, "u:alice", "USDC") == 0
    assert _bal(e, BAD_DEBT, "USDC") == -1100 * U
    assert _ledger(e, "USDC") == {"ext:world": -5000 * U, "u:__street__": 100000 * U,
                                  "u:__market__": -93900 * U, BAD_DEBT: -1100 * U}
    e.verify()


def test_no_liquidity_leaves_the_position_open_and_blocks_withdrawals() -> None:
    # dYdX with an empty book and an empty fund and no ADL candidate in profit: nothing
    # can close the bankrupt position now; withdrawals of USDC are blocked until it is.
    e = Engine(load_preset("dydx"), liquidity=Levels())
    e.apply(Deposit(id="d-a", account="alice", asset="USDC", amount=D(3000)))
    e.apply(Deposit(id="d-c", account="carol", asset="USDC", amount=D(3000)))
    e.apply(Price(id="p0", market="BTC-PERP", price=D(100000)))
    e.seed_position("alice", "BTC-PERP", D(1), D(100000))
    out = e.apply(Price(id="p1", market="BTC-PERP", price=D(96500)))
    kinds = _types(out)
    assert kinds[-1] == "system_state" and out[-1].state == "blocked"  # type: ignore[attr-defined]
    assert e.account_view("alice")["positions"]  # still open
    e.verify()


def test_penalties_go_where_the_policy_says_drift() -> None:
    # Drift: liquidator fee 1 % first, then insurance 1 %, capped at the surplus.
    e = _engine("drift", Levels((100_000, "97950")), alice="12000")
    # Drift BTC: MM 5 %. At 98,000: equity 10,000 > 4,900: healthy; at 90,000: equity
    # 2,000 < 4,500: liquidatable; the book pays 97,950 > B.
    out = e.apply(Price(id="p1", market="BTC-PERP", price=D(90000)))
    liq = [o for o in out if o.type == "liquidation"]
    assert liq and all(o.via == "market" for o in liq)  # type: ignore[attr-defined]
    assert _bal(e, LIQUIDATOR, "USDC") > 0
    assert _bal(e, FEES, "USDC") == 0 and _bal(e, ROUNDING, "USDC") == 0
    e.verify()


def test_fee_share_feeds_the_fund_and_the_policy_raises_it_when_coverage_is_low() -> None:
    # 20 % of fees go to the fund; the policy wants coverage >= 1 % of open interest and
    # steps the share up by 10 points (to at most 50 %) when it is below.
    venue = venue_from_data({"preset": "binance", "insurance": {
        "fee_share_ppm": 200_000,
        "policy": {"target_ppm": 10_000, "release_ppm": 20_000, "step_ppm": 100_000,
                   "min_share_ppm": 100_000, "max_share_ppm": 500_000}}})
    e = Engine(venue)
    for acct in ("alice", "bob"):
        e.apply(Deposit(id=f"d-{acct}", account=acct, asset="USDT", amount=D(100000)))
    e.apply(Price(id="p0", market="BTC-PERP", price=D(100000)))
    out = e.apply(Fill(id="f1", market="BTC-PERP", buyer="alice", seller="bob", size=D(1),
                       price=D(100000), fee_buyer=D(50), fee_seller=D(20)))
    # 20 % of 70 USDT of fees to the fund, 80 % to the fee pool
    assert _bal(e, INSURANCE, "USDT") == 14 * U
    assert _bal(e, FEES, "USDT") == 56 * U
    # coverage 14 / 100,000 is far below 1 %: the share steps up to 30 %, logged
    changed = [o for o in out if o.type == "params_changed"]
    assert [(c.old, c.new) for c in changed] == [("200000", "300000")]  # type: ignore[attr-defined]
    e.apply(Fill(id="f2", market="BTC-PERP", buyer="bob", seller="alice", size=D("0.5"),
                 price=D(100000), fee_buyer=D(10)))
    assert _bal(e, INSURANCE, "USDT") == 14 * U + 3 * U
    assert Engine.restore(e.snapshot()).fee_share_ppm == e.fee_share_ppm


def test_adl_ties_go_to_the_older_account_and_survive_a_restore_bitmex() -> None:
    # bob and carol hold the same short (same size, entry and collateral): equal ADL
    # scores. carol's position opened first (lower slot number), bob's account is older
    # (deposited first). The queue breaks the tie by account age, which a restore keeps;
    # by slot number the restored engine (slots renumbered in row order) deleveraged bob
    # while the engine that never stopped deleveraged carol.
    policy = replace(POLICIES["bitmex"], sizing="close_all")
    e = Engine(load_preset("bitmex"), liquidity=Levels(), policy=policy)
    for i, (who, amount) in enumerate((("bob", "50000"), ("carol", "50000"),
                                       ("dave", "90000"), ("alice", "800"))):
        e.apply(Deposit(id=f"d{i}", account=who, asset="USDT", amount=D(amount)))
    e.apply(Price(id="p0", market="BTC-PERP", price=D(100000)))
    assert e.apply(Fill(id="f1", market="BTC-PERP", buyer="dave", seller="carol",
                        size=D("0.5"), price=D(100000))) == []
    assert e.apply(Fill(id="f2", market="BTC-PERP", buyer="alice", seller="bob",
                        size=D("0.5"), price=D(100000))) == []
    restored = Engine.restore(e.snapshot(), liquidity=Levels(), policy=policy)
    assert restored.state_hash() == e.state_hash()
    out = e.apply(Price(id="p1", market="BTC-PERP", price=D(98700)))
    again = restored.apply(Price(id="p1", market="BTC-PERP", price=D(98700)))
    adl = [o for o in out if o.type == "adl"]  # type: ignore[attr-defined]
    assert [o.counterparty for o in adl] == ["bob"]  # type: ignore[attr-defined]
    assert e.out_json(out) == restored.out_json(again)
    assert restored.state_hash() == e.state_hash()


def test_adl_queue_ranks_shorts_by_leverage_bitmex() -> None:
    # BitMEX app/autoDeleveraging: score = pnl% x leverage for a profitable position, with
    # leverage = |mark value| / (mark value - bankrupt value). Two shorts at the same entry
    # and size, both in profit at 98,700: carol with 5,000 of collateral (leverage ~9.9)
    # ranks before bob with 50,000 (~1.0), although bob's account is older. (The bankrupt
    # value of a short was once taken on the wrong side, which made every short's leverage
    # infinite and the queue a tie.)
    policy = replace(POLICIES["bitmex"], sizing="close_all")
    e = Engine(load_preset("bitmex"), liquidity=Levels(), policy=policy)
    for i, (who, amount) in enumerate((("bob", "50000"), ("carol", "5000"),
                                       ("dave", "90000"), ("alice", "800"))):
        e.apply(Deposit(id=f"d{i}", account=who, asset="USDT", amount=D(amount)))
    e.apply(Price(id="p0", market="BTC-PERP", price=D(100000)))
    e.apply(Fill(id="f1", market="BTC-PERP", buyer="dave", seller="bob", size=D("0.5"),
                 price=D(100000)))
    e.apply(Fill(id="f2", market="BTC-PERP", buyer="alice", seller="carol", size=D("0.5"),
                 price=D(100000)))
    e.apply(Price(id="p-half", market="BTC-PERP", price=D(99500)))  # shorts in profit
    ranks = {x: e.account_view(x)["positions"][0]["adl_rank"] for x in ("bob", "carol")}
    assert ranks == {"carol": 3, "bob": 5}  # quintiles of cumulative size, 1 first
    out = e.apply(Price(id="p1", market="BTC-PERP", price=D(98700)))
    assert [o.counterparty for o in out if o.type == "adl"] == ["carol"]  # type: ignore[attr-defined]


def test_no_adl_at_a_negative_bankruptcy_price_binance() -> None:
    # An isolated short of 2.85 at 99,999 with 49.99 USDT of isolated margin buys 2.83
    # back at 103,000: the fill realizes -8,492.83, its equity is -5,638 and the 0.020 left
    # has a bankruptcy price of mark + equity / size < 0 (found by the liquidation property
    # test under hypothesis 6.100). No long is in profit at a negative price: alice, the
    # long on the other side, must not be deleveraged (she was: selling 0.020 at
    # -181,913.5 cost her 5,638.27); the book closes it and the deficit is bad debt.
    e = Engine(load_preset("binance"))
    e.apply(AccountMode(id="m", account="iso", mode="isolated"))
    e.apply(Price(id="p0", market="BTC-PERP", price=D(100000)))
    for who in ("alice", "bob", "iso"):
        e.apply(Deposit(id=f"d-{who}", account=who, asset="USDT", amount=D(20000)))
    assert e.apply(Fill(id="f1", market="BTC-PERP", buyer="alice", seller="iso",
                        size=D("2.85"), price=D(99999))) == []
    e.apply(IsolatedMargin(id="im", account="iso", market="BTC-PERP", amount=D("49.99")))
    alice = _bal(e, "u:alice", "USDT")
    out = e.apply(Fill(id="f2", market="BTC-PERP", buyer="iso", seller="bob",
                       size=D("2.83"), price=D(103000)))
    assert [o.type for o in out if o.type != "margin_call"] == [  # type: ignore[attr-defined]
        "liquidation", "socialized_loss", "bad_debt"]
    assert _bal(e, "u:alice", "USDT") == alice and "alice" not in e.realized
    assert D(out[-1].bad_debt) > 5000  # type: ignore[attr-defined]
    e.verify()
