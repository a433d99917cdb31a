"""The book's account -> rows index (issue 26) and the vectorized account views.

Every lookup by account goes through ``Book.account_rows``; these tests hold it equal to a
scan of all rows after cross, isolated and portfolio rows, a bulk load and a restore, and
hold :meth:`Engine.accounts_overview` (one vectorized pass) equal to the per-account
:meth:`Engine.account_view`.
"""

from __future__ import annotations

import math
from decimal import Decimal as D

import numpy as np
import pytest

from solvency.engine.engine import Engine
from tests.unit.engine.helpers import apply, engine


def _scan(e: Engine) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for r, info in enumerate(e.book.rows):
        out.setdefault(info.account, []).append(r)
    return out


def _busy_engine() -> Engine:
    e = engine("binance")
    apply(e, "price", market="BTC-PERP", price="100000")
    apply(e, "price", market="ETH-PERP", price="3000")
    apply(e, "account", account="iso", mode="isolated")
    apply(e, "account", account="pm", mode="portfolio")
    for a in ("alice", "bob", "iso", "pm", "carol"):
        apply(e, "deposit", account=a, asset="USDT", amount="50000")
    apply(e, "isolated_margin", account="iso", market="BTC-PERP", amount="5000")
    apply(e, "isolated_margin", account="iso", market="ETH-PERP", amount="2000")
    apply(e, "fill", market="BTC-PERP", buyer="iso", seller="alice", size="0.5",
          price="100000")
    apply(e, "fill", market="ETH-PERP", buyer="bob", seller="iso", size="2", price="3000")
    apply(e, "fill", market="BTC-PERP", buyer="pm", seller="carol", size="0.1",
          price="100000")
    return e


def test_index_equals_a_scan_of_all_rows() -> None:
    e = _busy_engine()
    assert len(e.book.account_rows["iso"]) >= 3  # cross + two isolated buckets
    assert e.book.account_rows == _scan(e)
    n = len(e.book.rows)
    names = e.book.account_names
    assert [names[i] for i in e.book.row_account[:n]] == [i.account for i in e.book.rows]


def test_index_after_bulk_load_and_restore() -> None:
    e = _busy_engine()
    e.load_book(["bulk0", "bulk1", "bulk2"], "USDT", np.array([10**10] * 3),
                np.array([0, 2], dtype=np.int64), np.array([0, 0], dtype=np.int64),
                np.array([10, -10], dtype=np.int64), np.array([10**6, 10**6]))
    assert e.book.account_rows == _scan(e)
    restored = Engine.restore(e.snapshot())
    assert restored.book.account_rows == _scan(restored) == e.book.account_rows
    assert restored.state_hash() == e.state_hash()
    for a in ("iso", "pm", "bulk2"):
        assert restored.account_view(a) == e.account_view(a)


def test_overview_agrees_with_each_account_view() -> None:
    e = _busy_engine()
    apply(e, "price", market="BTC-PERP", price="93000")
    o = e.accounts_overview()
    assert o["names"] == e.book.account_names
    for i, name in enumerate(o["names"]):
        view = e.account_view(name)
        assert float(view["equity_usd"]) == pytest.approx(o["equity_usd"][i], rel=1e-7)
        assert float(view["maintenance_margin"]) == pytest.approx(
            o["maintenance_margin"][i], rel=1e-7, abs=1e-9)
        # the view prints 6 decimals (more digits only below 1e-4)
        ratio = float(view["margin_ratio"]) if view["margin_ratio"] != "inf" else math.inf
        assert ratio == pytest.approx(o["margin_ratio"][i], abs=5e-7, rel=1e-9)
        gross = sum(float(p["notional"]) for p in view["positions"])
        assert gross == pytest.approx(o["notional_usd"][i], rel=1e-7)
        assert o["positions"][i] == len(view["positions"])


def test_account_view_of_unknown_account_is_a_key_error() -> None:
    e = _busy_engine()
    with pytest.raises(KeyError):
        e.account_view("nobody")


def test_adl_rank_cache_follows_the_state() -> None:
    # The ranks are cached per state change: after a fill that reorders the queue, the
    # view must show the new ranks, not the cached ones.
    e = engine("binance")
    apply(e, "price", market="BTC-PERP", price="100000")
    for a in ("a", "b", "c", "d"):
        apply(e, "deposit", account=a, asset="USDT", amount=D(100_000))
    apply(e, "fill", market="BTC-PERP", buyer="a", seller="d", size="0.1", price="100000")
    apply(e, "fill", market="BTC-PERP", buyer="b", seller="d", size="0.1", price="100000")
    before = {x: e.account_view(x)["positions"][0]["adl_rank"] for x in ("a", "b")}
    apply(e, "fill", market="BTC-PERP", buyer="b", seller="c", size="5", price="100000")
    after = {x: e.account_view(x)["positions"][0]["adl_rank"] for x in ("a", "b")}
    fresh = Engine.restore(e.snapshot())
    assert after == {x: fresh.account_view(x)["positions"][0]["adl_rank"] for x in ("a", "b")}
    assert before != after


def test_account_view_totals_equal_numpy_reduction_over_rows() -> None:
    """account_view sums its rows' four columns in Python (no array call for a few rows);
    the figures equal numpy's axis-0 reduction of the same rows, to the character, for an
    account with a cross row and two isolated buckets and for one-row accounts."""
    from solvency.core.margin.kernels import OUT_COLLATERAL, OUT_EQUITY, OUT_IM, OUT_MM
    from solvency.engine.base import format_number

    e = _busy_engine()
    for account in ("iso", "alice", "bob", "pm"):
        rows = np.array(e.book.account_rows[account], dtype=np.int64)
        view = e.account_view(account)
        totals = e.book.aggregate(rows).sum(axis=0)
        assert view["equity_usd"] == format_number(float(totals[OUT_EQUITY]))
        assert view["collateral_usd"] == format_number(float(totals[OUT_COLLATERAL]))
        assert view["maintenance_margin"] == format_number(float(totals[OUT_MM]))
        assert view["free_collateral"] == format_number(
            float(totals[OUT_COLLATERAL] - totals[OUT_IM]))
    assert len(e.book.account_rows["iso"]) >= 3
