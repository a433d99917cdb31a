"""Every rejection reason: a precise reason, and the state hash does not move."""

from __future__ import annotations

from typing import Any

import pytest

from solvency.engine.engine import Engine
from tests.unit.engine.helpers import apply, engine, ev


def _book() -> Engine:
    e = engine("binance")
    apply(e, "deposit", account="alice", asset="USDT", amount="1000", ts="2026-03-20T00:00:00Z")
    apply(e, "deposit", account="bob", asset="USDT", amount="1000", ts="2026-03-20T00:00:00Z")
    apply(e, "account", account="iso", mode="isolated")
    apply(e, "deposit", account="iso", asset="USDT", amount="1000")
    apply(e, "price", market="BTC-PERP", price="100000")
    apply(e, "price", market="BTC-FUT-260327", price="100000")
    apply(e, "fill", market="BTC-PERP", buyer="alice", seller="bob", size="0.05",
          price="100000", id="open-1")
    return e


CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("unknown_market", "price", {"market": "DOGE-PERP", "price": "1"}),
    ("unknown_market", "fill", {"market": "DOGE-PERP", "buyer": "alice", "seller": "bob",
                                "size": "1", "price": "1"}),
    ("unknown_asset", "deposit", {"account": "alice", "asset": "DOGE", "amount": "1"}),
    ("unknown_account", "withdraw", {"account": "carol", "asset": "USDT", "amount": "1"}),
    ("unknown_account", "fill", {"market": "BTC-PERP", "buyer": "carol", "seller": "bob",
                                 "size": "0.001", "price": "100000"}),
    ("invalid_amount", "deposit", {"account": "alice", "asset": "USDT",
                                   "amount": "0.0000001"}),
    ("amount_too_large", "deposit", {"account": "alice", "asset": "USDT",
                                     "amount": "10000000000000"}),
    ("insufficient_balance", "withdraw", {"account": "alice", "asset": "USDT",
                                          "amount": "1000.01"}),
    ("insufficient_balance", "withdraw", {"account": "alice", "asset": "BTC", "amount": "1"}),
    ("insufficient_initial_margin", "withdraw", {"account": "alice", "asset": "USDT",
                                                 "amount": "990"}),
    ("insufficient_initial_margin", "fill", {"market": "BTC-PERP", "buyer": "alice",
                                             "seller": "bob", "size": "1",
                                             "price": "100000"}),
    ("insufficient_initial_margin", "fill", {"market": "BTC-PERP", "buyer": "iso",
                                             "seller": "bob", "size": "2",
                                             "price": "100000"}),
    ("self_trade", "fill", {"market": "BTC-PERP", "buyer": "alice", "seller": "alice",
                            "size": "0.001", "price": "100000"}),
    ("no_mark", "fill", {"market": "ETH-PERP", "buyer": "alice", "seller": "bob",
                         "size": "0.01", "price": "2000"}),
    ("invalid_size", "fill", {"market": "BTC-PERP", "buyer": "alice", "seller": "bob",
                              "size": "0.0001", "price": "100000"}),
    ("price_off_tick", "fill", {"market": "BTC-PERP", "buyer": "alice", "seller": "bob",
                                "size": "0.001", "price": "100000.05"}),
    ("invalid_amount", "fill", {"market": "BTC-PERP", "buyer": "alice", "seller": "bob",
                                "size": "0.001", "price": "100000", "fee_buyer": "0.0000001"}),
    ("not_perpetual", "funding", {"market": "BTC-FUT-260327", "rate": "0.0001"}),
    ("no_mark", "funding", {"market": "ETH-PERP", "rate": "0.0001"}),
    ("not_a_future", "expiry", {"market": "BTC-PERP", "price": "100000"}),
    ("before_expiry", "expiry", {"market": "BTC-FUT-260327", "price": "100000"}),
    ("invalid_params", "params", {"market": "BTC-PERP",
                                  "tiers": [{"floor": "0", "mmr": "0.5", "imr": "0.1"}]}),
    ("invalid_params", "params", {"market": "BTC-PERP", "lot_size": "0.01"}),
    ("invalid_params", "params", {"market": "BTC-PERP", "imf_factor": "0.1"}),
    ("invalid_params", "params", {"market": "BTC-PERP", "tiers": "steep"}),
    ("open_positions", "account", {"account": "alice", "mode": "isolated"}),
    ("no_isolated_position", "isolated_margin", {"account": "iso", "market": "BTC-PERP",
                                                 "amount": "5"}),
    ("unknown_account", "isolated_margin", {"account": "zed", "market": "BTC-PERP",
                                            "amount": "5"}),
    ("out_of_order", "deposit", {"account": "alice", "asset": "USDT", "amount": "1",
                                 "ts": "2026-03-19T00:00:00Z"}),
    ("fixed_price", "price", {"asset": "USDT", "price": "1"}),
    ("price_from_market", "price", {"asset": "BTC", "price": "1"}),
]


@pytest.mark.parametrize(("reason", "kind", "fields"), CASES,
                         ids=[f"{k}-{r}-{i}" for i, (r, k, _) in enumerate(CASES)])
def test_rejected_event_changes_nothing(reason: str, kind: str, fields: dict[str, Any]) -> None:
    e = _book()
    before = e.state_hash()
    snap = e.snapshot()
    out = e.apply(ev(kind, **fields))
    assert [o.type for o in out] == ["rejected"]
    assert out[0].reason == reason, out[0].detail  # type: ignore[union-attr]
    assert out[0].detail  # type: ignore[union-attr]
    assert e.state_hash() == before
    snap2 = e.snapshot()
    for key in ("ledger", "positions", "marks", "accounts", "rows", "seen_ids"):
        assert snap2[key] == snap[key], key
    e.verify()


def test_duplicate_ids_are_ignored() -> None:
    e = _book()
    before = e.state_hash()
    again = ev("fill", market="BTC-PERP", buyer="alice", seller="bob", size="0.05",
               price="100000", id="open-1")
    assert e.apply(again) == []
    assert e.state_hash() == before
    assert e.counts["duplicates"] == 1


def test_a_rejected_id_may_be_retried() -> None:
    e = _book()
    bad = ev("withdraw", account="alice", asset="USDT", amount="5000", id="w-1")
    assert e.apply(bad)[0].type == "rejected"
    good = ev("withdraw", account="alice", asset="USDT", amount="5", id="w-1")
    assert e.apply(good) == []
