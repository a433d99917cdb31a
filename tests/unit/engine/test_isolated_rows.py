"""An isolated account's fill: one bucket row per market, and a partial liquidation's
slice goes to the book, never to a second row of the account.

By hand (BitMEX preset, BTC-PERP with tiers 1 % below 80,000 USDT notional and 50 % from
it, initial = maintenance): account ``a`` (isolated, 200,000 USDT cross) buys 1 BTC at
100,000 from ``b``. The fill puts the whole 10,000 lots (lot 0.0001) in ``a/BTC-PERP``
and moves into that bucket from the cross balance the initial margin, 0.5 x 100,000 =
50,000 USDT (rounded up one quantum: 50,000.000001), so the bucket sits at maintenance
(a margin call). At a mark of 99,999.3 its collateral 50,000.000001 - 0.7 is below
maintenance 49,999.65: BitMEX's partial liquidation (``tier_step``) keeps the largest
size whose notional is below the bracket's floor, 8,000 lots (79,999.44 < 80,000;
8,001 lots would be 80,009.44), and sells 2,000 lots (0.2 BTC) to the book's row
``__market__`` (an engine-run cross row). a's 0.8 BTC stays in its one bucket.
"""

from __future__ import annotations

from decimal import Decimal as D

from solvency.core.margin import kernels
from solvency.core.model.events import Liquidated, MarginCall, Rejected
from solvency.core.model.presets import venue_from_data
from solvency.engine.engine import Engine
from tests.unit.engine.helpers import apply

_TIERS = [{"floor": "0", "mmr": "0.01", "imr": "0.01", "maintenance_amount": "0",
           "initial_amount": "0"},
          {"floor": "80000", "mmr": "0.5", "imr": "0.5", "maintenance_amount": "0",
           "initial_amount": "0"}]


def _holders(e: Engine) -> dict[str, int]:
    """Every row holding BTC-PERP: row name -> signed lots."""
    b = e.book
    return {b.rows[r].name: int(b.st[s, kernels.S_LOTS])
            for r in range(len(b.rows)) for s in b.row_slots(r)}


def test_an_isolated_fill_stays_in_one_bucket_and_a_tier_step_sells_the_rest_to_the_book(
) -> None:
    e = Engine(venue_from_data({"preset": "bitmex",
                                "markets": {"BTC-PERP": {"tiers": _TIERS}}}))
    apply(e, "price", market="BTC-PERP", price="100000")
    apply(e, "account", account="a", mode="isolated")
    apply(e, "deposit", account="a", asset="USDT", amount="200000")
    apply(e, "deposit", account="b", asset="USDT", amount="100000000")
    # no bucket before the first fill: margin cannot be moved in ahead of it
    before = e.state_hash()
    outs = apply(e, "isolated_margin", account="a", market="BTC-PERP", amount="59100.11")
    assert [(type(o), getattr(o, "reason", "")) for o in outs] == [
        (Rejected, "no_isolated_position")]
    assert e.state_hash() == before

    outs = apply(e, "fill", market="BTC-PERP", buyer="a", seller="b", size="1",
                 price="100000")
    assert [type(o) for o in outs] == [MarginCall]
    assert _holders(e) == {"b": -10_000, "a/BTC-PERP": 10_000}
    # 50,000.000001 moved from the cross balance; the bucket paid the 100,000 itself
    # (balance -49,999.999999, collateral 50,000.000001 with the position's value)
    assert e.ledger.balance("u:a/BTC-PERP", "USDT") == 50_000_000_001 - 100_000_000_000
    assert e.ledger.balance("u:a", "USDT") == 200_000_000_000 - 50_000_000_001
    assert [e.book.rows[r].name for r in e.rows_of("a")] == ["a", "a/BTC-PERP"]

    outs = apply(e, "price", market="BTC-PERP", price="99999.3")
    liq = [o for o in outs if isinstance(o, Liquidated)]
    assert [(o.account, D(o.size), o.via) for o in liq] == [("a/BTC-PERP", D("0.2"),
                                                             "market")]
    assert _holders(e) == {"b": -10_000, "a/BTC-PERP": 8_000, "__market__": 2_000}
    assert D("0.8") * D("99999.3") < 80_000 <= D("0.8001") * D("99999.3")
    assert [e.book.rows[r].name for r in e.rows_of("a")] == ["a", "a/BTC-PERP"]
    e.verify()
