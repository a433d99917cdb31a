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
from tests.unit.engine.helpers import apply, engine


def _random_book(preset: str, seed: int, n_accounts: int = 40) -> Engine:
    rng = np.random.default_rng(seed)
    e = engine(preset)
    apply(e, "price", market="BTC-PERP", price="100000")
    apply(e, "price", market="ETH-PERP", price="3000")
    names = [f"u{i}" for i in range(n_accounts)]
    settle = e.book.instruments[0].settle
    for i, a in enumerate(names):
        if i % 7 == 3:
            apply(e, "account", account=a, mode="isolated")
        apply(e, "deposit", account=a, asset=settle,
              amount=str(int(rng.integers(2_000, 60_000))))
        if i % 7 == 3:
            apply(e, "isolated_margin", account=a, market="BTC-PERP", amount="1500")
    for k in range(3 * n_accounts):
        buyer, seller = rng.choice(n_accounts, 2, replace=False)
        btc = k % 3 != 2
        # sizes from a short list: equal sizes at equal prices give equal scores (ties)
        size = str(rng.choice(["0.001", "0.002", "0.005", "0.01"]) if btc
                   else rng.choice(["0.1", "0.2", "0.5"]))
        price = str(rng.choice(["99900", "100000", "100100"]) if btc
                    else rng.choice(["2990", "3000", "3010"]))
        apply(e, "fill", market="BTC-PERP" if btc else "ETH-PERP", buyer=names[buyer],
              seller=names[seller], size=size, price=price)
    apply(e, "price", market="BTC-PERP", price="98500")
    return e


@pytest.mark.parametrize(("preset", "seed"), [("binance", 1), ("binance", 2), ("bitmex", 3),
                                              ("dydx", 4), ("hyperliquid", 6)])
def test_one_slot_count_equals_the_rank_table(preset: str, seed: int) -> None:
    e = _random_book(preset, seed)
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
    e = _random_book("binance", 5)
    accounts = [f"u{i}" for i in range(12)]
    counted = [[p["adl_rank"] for p in e.account_view(a)["positions"]] for a in accounts]
    assert e.adl_rank_cache  # after the first few counts the views built the tables
    tabled = [[p["adl_rank"] for p in e.account_view(a)["positions"]] for a in accounts]
    assert counted == tabled
    assert any(r is not None for rs in counted for r in rs)
    e.adl_rank_cache.clear()
    e.epoch += 1  # as after a state change: the first asks count again
    assert [[p["adl_rank"] for p in e.account_view(a)["positions"]]
            for a in accounts[:2]] == counted[:2]
    assert not e.adl_rank_cache
    assert views.ADL_COUNTS_BEFORE_TABLE >= 1
