"""The account view's shortcuts give the answers of the general code (issue 26).

* a slot's ADL quintile counted alone (``Liquidator.adl_rank_of_slot``) equals its entry
  in the market's rank table (``Liquidator.adl_rank_table``: argsort of rows, lexsort of
  scores, cumulative sizes), for every slot of random books on venues with BitMEX's and
  Binance's ranking, ties of equal score included;
* the view answers the same ranks whether it counts them or reads the table.
"""

from __future__ import annotations

import numpy as np
import pytest

from solvency.engine import views
from solvency.engine.engine import Engine
from tests.unit.engine.helpers import random_book


@pytest.mark.parametrize(("preset", "seed"), [("binance", 1), ("binance", 2), ("bitmex", 3),
                                              ("dydx", 4), ("hyperliquid", 6)])
def test_one_slot_count_equals_the_rank_table(preset: str, seed: int) -> None:
    e = random_book(preset, seed)
    liq = e.liquidator
    checked = ties = 0
    for m in range(len(e.book.market_names)):
        slots, ranks = liq.adl_rank_table(m)
        if slots.shape[0] == 0:
            continue
        scores = liq._scores(m, slots)
        ties += slots.shape[0] - np.unique(scores).shape[0]
        for s, rank in zip(slots.tolist(), ranks.tolist(), strict=True):
            assert liq.adl_rank_of_slot(m, s) == rank, (preset, m, s)
            checked += 1
        # a slot the table does not rank: another market's, or a freed one
        other = int(e.book.holders[1 - m].view()[0]) if m < 2 else -1
        if other >= 0:
            assert liq.adl_rank_of_slot(m, other) is None
    assert checked >= 60
    assert ties > 0  # equal scores occur, so the tie order is exercised


def test_the_view_counts_then_reads_the_table() -> None:
    """After a state change the views count ranks over the holders scored once, then
    build the table; every rank shown equals the table's, before and after."""
    e = random_book("binance", 5)
    table = {}
    for m in range(2):
        slots, ranks = e.liquidator.adl_rank_table(m)
        table.update({(m, s): r for s, r in zip(slots.tolist(), ranks.tolist(), strict=True)})
    index = e.book.market_index

    def shown(a: str) -> list[tuple[int | None, int | None]]:
        rows = e.book.account_rows[a]
        out = []
        for p in e.account_view(a)["positions"]:
            m = index[p["market"]]
            s = next(s for r in rows for s in e.book.row_slots(r) if e.book.st[s, 0] == m)
            out.append((p["adl_rank"], table.get((m, s))))
        return out

    first = shown("u0")
    assert not e.adl_rank_cache and e.adl_rank_counts  # counted, no table yet
    pairs = first + [x for i in range(1, 40) for x in shown(f"u{i}")]
    assert e.adl_rank_cache  # past ADL_COUNTS_BEFORE_TABLE asks the table was built
    assert all(got == want for got, want in pairs)
    assert len({got for got, _ in pairs}) >= 3
    assert len(pairs) > views.ADL_COUNTS_BEFORE_TABLE


def _all_positions(e: Engine) -> tuple[np.ndarray, np.ndarray]:
    rows, slots = [], []
    for r in range(len(e.book.rows)):
        for s in e.book.row_slots(r):
            rows.append(r)
            slots.append(s)
    return np.array(rows, dtype=np.int64), np.array(slots, dtype=np.int64)


@pytest.mark.parametrize(("preset", "seed", "lever", "last_btc"), [
    ("binance", 11, 1, "98500"), ("binance", 12, 40, "93000"), ("bitmex", 13, 30, "97000"),
    ("dydx", 14, 30, "104000"), ("drift", 15, 20, "95000"), ("hyperliquid", 16, 25, "99000"),
])
def test_liquidation_prices_equal_the_plain_search_to_the_bit(
        preset: str, seed: int, lever: int, last_btc: str) -> None:
    """Every position of random books (cross and isolated rows, one or two markets, some
    below maintenance already, a float-rule, dYdX and Drift integer rules): the searched
    price is the plain search's float, bit for bit; and most positions took the short
    path (not the plain search it defers to)."""
    from solvency.core.margin import kernels

    e = random_book(preset, seed, 60, last_btc=last_btc, lever=lever)
    b = e.book
    rows, slots = _all_positions(e)
    fast = b.liquidation_prices(rows, slots)
    plain = np.empty(slots.shape[0])
    args = (b.row_first, b.st, b.row_int, b.mk, b.mki, b.tiers, b.asset_price, b.ascale,
            b.asset_link, b.atier_start, b.atier_count, b.atiers)
    kernels.liquidation_prices_reference(rows, slots, *args, plain)
    assert np.array_equal(fast.view(np.int64), plain.view(np.int64))
    n_assets = b.ascale.shape[0]
    scratch = (np.empty(n_assets), *(np.empty(n_assets, dtype=np.int64) for _ in range(4)))
    shortcut = [kernels._liquidation_price_at(int(r), int(s), *args, *scratch)
                for r, s in zip(rows.tolist(), slots.tolist(), strict=True)]
    priced = [x for x in shortcut if x == x and x != -1.0]
    assert len(priced) >= 20, (preset, len(priced), len(shortcut))
    assert len(priced) >= 0.8 * int(np.isfinite(plain).sum())
