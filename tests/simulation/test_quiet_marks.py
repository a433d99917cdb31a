"""A mark values only the rows whose margin state may have changed (issue 17, speed).

``marking.mark_holders_watch`` re-marks every holder of the market and brings every row's
sums up to date, but values (and hands on to margin calls and the liquidation sweep) only
the rows whose exact quanta do not prove their state unchanged
(``EngineState.quiet_marks``). These tests hold it to the path that values every holder:

* on the real 2021-05-19 crash (the fall to the 13:xx low, liquidations and ADL under
  binance, the funding agent charging and paying funding every 8 hours of the path's
  clock, the top-up agent moving balances), the whole run with the switch on and off
  gives the same state hash, section hashes, metrics and series, while the watch left
  most rows unvalued (so the comparison is not of two identical paths);
* per kernel call on every preset's seeded book and on a bulk-loaded book at moves that
  put rows on both sides of the margin-call level and of maintenance: every row whose
  margin-call flag would flip or that is below maintenance is among the rows valued, with
  the same values as the full valuation, and the books' integers are the same.

Widening the quiet band (``QUIET_MARGIN`` negative, e.g. -0.2 in
``core/margin/marking.py``) fails both: rows that cross the level are left out.
"""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from solvency.core.margin.kernels import MK_MARK, OUT_COLLATERAL, OUT_MM, margin_crossings
from solvency.core.margin.marking import mark_holders, mark_holders_watch
from solvency.core.model.presets import load_preset
from solvency.engine.base import EngineState
from solvency.engine.engine import Engine
from solvency.engine.inputs import parse_input_line
from solvency.engine.state import Book
from solvency.sim.run import run_scenario
from solvency.sim.scenario import parse_scenario
from tests.determinism import real_window
from tests.determinism.cases import PRESETS, random_lines


def _window(data: Path) -> dict[str, object]:
    # the crash's fall (the low at 13:xx) on 600 accounts, a check after every step, the
    # funding agent settling every 20 minutes (the default's 8 h has no settlement here)
    text = real_window.scenario_text(600, "2021-05-19T12:30:00Z", "80m")
    text, n = re.subn(r'(?m)^interval = "8h"$', 'interval = "20m"', text)
    assert n == 1
    scenario = parse_scenario(text, source="default.toml",
                              base_dir=real_window.REPO / "scenarios"
                              ).with_prices({"BTC-PERP": str(data / real_window.PRICES_NAME)})
    res = run_scenario(scenario, state_hashes=True)
    m = dict(res.metrics)
    m.pop("wall_s")
    return {"metrics": m, "series": real_window._series_data(res.series)}


def test_a_crash_window_with_and_without_the_watch(shared_data: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    valued: list[tuple[int, int]] = []
    watch = Book.mark_market_watch

    def counting(self: Book, m: int, level: float) -> tuple[np.ndarray, np.ndarray,
                                                           np.ndarray]:
        held, rows, out = watch(self, m, level)
        valued.append((held.shape[0], rows.shape[0]))
        return held, rows, out

    monkeypatch.setattr(Book, "mark_market_watch", counting)
    quiet = _window(shared_data)
    monkeypatch.setattr(EngineState, "quiet_marks", False)
    n_calls = len(valued)
    full = _window(shared_data)
    assert len(valued) == n_calls  # the switch reaches the engine
    m = quiet["metrics"]
    assert isinstance(m, dict)
    assert m["liquidations"] > 100 and m["adl_count"] > 0 and m["conserved"]
    assert m["funding_events"] >= 3 and m["funding_paid"] > 0
    assert quiet == full
    held = sum(h for h, _ in valued)
    left_out = held - sum(v for _, v in valued)
    assert left_out > 0.8 * held, (left_out, held)


def _seeded(preset: str) -> Engine:
    engine = Engine(load_preset(preset))
    for line in random_lines(preset, 7, n_accounts=80, n_events=400):
        engine.apply(parse_input_line(line))
    return engine


def _bulk() -> Engine:
    # rows spread over margin ratios from safe to below maintenance at the start mark
    engine = Engine(load_preset("binance"))
    engine.apply(parse_input_line(
        '{"type":"price","id":"p","market":"BTC-PERP","price":"100000"}'))
    rng = np.random.default_rng(11)
    n = 400
    m = engine.book.market_index["BTC-PERP"]
    lots = rng.integers(1, 2_000, n) * np.where(rng.random(n) < 0.5, 1, -1)
    # 1 lot = 0.001 BTC = 100 USDT at the start; balances 0.3 % to 12 % of the notional
    notional_q = np.abs(lots) * 100 * 10**6
    bal = (notional_q * rng.uniform(0.003, 0.12, n)).astype(np.int64)
    engine.load_book([f"b{i}" for i in range(n)], "USDT", bal, np.arange(n),
                     np.full(n, m), lots.astype(np.int64), np.full(n, 1_000_000))
    return engine


def _compare(engine: Engine, factor: float) -> tuple[int, int]:
    """Both kernels on copies of the book after moving every market by ``factor``;
    return (rows that mattered, rows valued by the watch)."""
    book = engine.book
    level = engine.margin_call_ratio
    mattered = valued = 0
    for m in range(book.n_markets):
        slots = book.holders[m].view().copy()
        if slots.shape[0] == 0 or book.marks[m] is None:
            continue
        book.mk[m, MK_MARK] *= factor
        n = slots.shape[0]
        st_a, ri_a, w_a = book.st.copy(), book.row_int.copy(), book.warned.copy()
        st_b, ri_b, w_b = book.st.copy(), book.row_int.copy(), book.warned.copy()
        rows_a, out_a = np.empty(n, dtype=np.int64), np.empty((n, 4))
        mark_holders(slots, st_a, ri_a, book.mk, book.mki, book.tiers, book.ascale,
                     book.asset_price, book.atier_start, book.atier_count, book.atiers,
                     book.pm, rows_a, out_a, book.row_system, np.zeros(4, dtype=np.int64))
        rows_b, out_b = np.empty(n, dtype=np.int64), np.empty((n, 4))
        emit = np.empty(n, dtype=np.int64)
        k = mark_holders_watch(slots, st_b, ri_b, book.mk, book.mki, book.tiers,
                               book.ascale, book.asset_price, book.atier_start,
                               book.atier_count, book.atiers, book.pm, rows_b, out_b, emit,
                               w_b, level, book.row_system, np.zeros(4, dtype=np.int64))
        book.mk[m, MK_MARK] = float(Decimal(book.marks[m]))
        assert np.array_equal(st_a, st_b) and np.array_equal(ri_a, ri_b)
        assert np.array_equal(rows_a, rows_b) and np.array_equal(w_a, w_b)
        # the rows the engine acts on: the flag flips, or below maintenance
        coll, mm = out_a[:, OUT_COLLATERAL], out_a[:, OUT_MM]
        hot = (mm > 0) & ((coll <= 0) | (mm / np.where(coll > 0, coll, 1.0) >= level))
        must = np.flatnonzero((hot != w_a[rows_a]) | ((coll < mm) & (mm > 0)))
        idx = emit[:k]
        assert np.all(np.diff(idx) > 0)
        assert set(must.tolist()) <= set(idx.tolist()), book.market_names[m]
        assert np.array_equal(out_b[:k], out_a[idx], equal_nan=True)
        mattered += must.shape[0]
        valued += k
    return mattered, valued


@pytest.mark.parametrize("preset", PRESETS)
def test_the_watch_values_every_row_that_matters(preset: str) -> None:
    engine = _seeded(preset)
    for factor in (1.0, 0.97, 1.04, 0.8, 1.3):
        _compare(engine, factor)


def test_the_watch_on_rows_near_the_level_and_maintenance() -> None:
    engine = _bulk()
    book = engine.book
    # the margin-call flags at the start mark (some rows warned), then moves both ways
    rows, out = book.mark_market(book.market_index["BTC-PERP"])
    margin_crossings(rows, out, book.warned, engine.margin_call_ratio)
    total_mattered = total_valued = 0
    for factor in (1.0, 0.999, 1.001, 0.99, 1.01, 0.95, 1.05):
        mattered, valued = _compare(engine, factor)
        total_mattered += mattered
        total_valued += valued
    assert book.warned.any()
    assert total_mattered > 50  # rows crossed: the check is not vacuous
    assert total_valued < 7 * len(book.holders[book.market_index["BTC-PERP"]])
