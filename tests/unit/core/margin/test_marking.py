"""The price update's one-pass kernel against its twin (issue 12).

:func:`mark_holders` (re-mark a market's holders and value their rows in one pass, with
software prefetch) must give exactly what the two kernels it replaces give:
:func:`apply_slots` (the exact per-slot quanta and row sums) then :func:`evaluate_rows`
(the rows' USD values). Held bit for bit on the books of every preset's seeded log
(linear, inverse and multi-asset venues, collateral weights, isolated rows), with half
the rows flagged portfolio-margined, and on a bulk-loaded book large enough that the
prefetch distance is inside the array.
"""

from __future__ import annotations

import platform
from decimal import Decimal
from typing import Any

import numba
import numpy as np
import pytest
from numba import config
from tests.determinism.cases import PRESETS, random_lines

from solvency.core.margin.kernels import (
    MK_MARK,
    S_ROW,
    apply_slots,
    evaluate_rows,
)
from solvency.core.margin.marking import PREFETCH_SLOTS, mark_holders, prefetch
from solvency.core.margin.totals import holder_totals_reference
from solvency.core.model.presets import load_preset
from solvency.engine.engine import Engine
from solvency.engine.inputs import parse_input_line
from solvency.engine.state import Book


def _seeded(preset: str) -> Engine:
    engine = Engine(load_preset(preset))
    for line in random_lines(preset, 5, n_accounts=60, n_events=300):
        engine.apply(parse_input_line(line))
    return engine


def _bulk() -> Engine:
    engine = Engine(load_preset("binance"))
    engine.apply(parse_input_line(
        '{"type":"price","id":"p","market":"BTC-PERP","price":"100000"}'))
    engine.apply(parse_input_line(
        '{"type":"price","id":"q","market":"ETH-PERP","price":"3000"}'))
    rng = np.random.default_rng(3)
    n = 4 * PREFETCH_SLOTS + 5
    markets = np.array([engine.book.market_index[m] for m in ("BTC-PERP", "ETH-PERP")])
    pos_account = np.repeat(np.arange(n), 2)
    pos_market = np.tile(markets, n)
    lots = rng.integers(1, 5_000, 2 * n) * np.where(rng.random(2 * n) < 0.5, 1, -1)
    ticks = np.where(pos_market == markets[0], 1_000_000, 30_000)
    engine.load_book([f"b{i}" for i in range(n)], "USDT",
                     rng.integers(10**8, 10**11, n), pos_account, pos_market,
                     lots.astype(np.int64), ticks.astype(np.int64))
    return engine


def _twin(book: Book, slots: np.ndarray, st: np.ndarray, row_int: np.ndarray,
          pm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    apply_slots(slots, st, row_int, book.mk, book.mki, book.tiers, book.ascale)
    rows = st[slots, S_ROW]
    out = np.empty((rows.shape[0], 4))
    evaluate_rows(rows, row_int, book.asset_price, book.ascale, book.atier_start,
                  book.atier_count, book.atiers, out, pm)
    return rows, out


def _run(kernel: Any, book: Book, slots: np.ndarray, st: np.ndarray, row_int: np.ndarray,
         pm: np.ndarray, row_system: np.ndarray, totals: np.ndarray
         ) -> tuple[np.ndarray, np.ndarray]:
    rows = np.empty(slots.shape[0], dtype=np.int64)
    out = np.empty((slots.shape[0], 4))
    kernel(slots, st, row_int, book.mk, book.mki, book.tiers, book.ascale, book.asset_price,
           book.atier_start, book.atier_count, book.atiers, pm, rows, out, row_system,
           totals)
    return rows, out


def _check_every_market(engine: Engine, kernel: Any = mark_holders) -> int:
    book = engine.book
    n_rows = len(book.rows)
    pm = book.pm[:n_rows].copy()
    row_int = book.row_int[:n_rows].copy()
    flagged = np.arange(0, n_rows, 2)
    # every third row counted as a system row: the totals split user and all rows
    row_system = book.row_system[:n_rows].copy()
    row_system[::3] = True
    row_int[flagged, 4 * len(book.asset_names) + 1] = 1  # portfolio-margined: pm[r]
    pm[flagged] = np.column_stack([flagged * 1.5 + 7.0, flagged * 0.75 + 3.0])
    checked = 0
    for m in range(book.n_markets):
        slots = book.holders[m].view().copy()
        if slots.shape[0] == 0 or book.marks[m] is None:
            continue
        book.mk[m, MK_MARK] *= 1.0137  # a move: every slot's quanta change
        st_a, ri_a = book.st.copy(), row_int.copy()
        st_b, ri_b = book.st.copy(), row_int.copy()
        rows_a, out_a = _twin(book, slots, st_a, ri_a, pm)
        totals = np.zeros(4, dtype=np.int64)
        rows_b, out_b = _run(kernel, book, slots, st_b, ri_b, pm, row_system, totals)
        book.mk[m, MK_MARK] = float(Decimal(book.marks[m]))
        # the holder totals the kernel sums on the way: those of the re-marked slots
        assert tuple(totals.tolist()) == holder_totals_reference(slots, st_a, row_system)
        assert np.array_equal(st_a, st_b), book.market_names[m]
        assert np.array_equal(ri_a, ri_b), book.market_names[m]
        assert np.array_equal(rows_a, rows_b), book.market_names[m]
        assert np.array_equal(out_a, out_b, equal_nan=True), book.market_names[m]
        checked += 1
    return checked


@pytest.mark.parametrize("preset", PRESETS)
def test_mark_holders_equals_apply_slots_then_evaluate_rows(preset: str) -> None:
    assert _check_every_market(_seeded(preset)) >= 1


def test_mark_holders_on_a_book_longer_than_the_prefetch_distance() -> None:
    engine = _bulk()
    assert len(engine.book.holders[engine.book.market_index["BTC-PERP"]]) > PREFETCH_SLOTS
    assert _check_every_market(engine) == 2


def test_the_python_twin_gives_the_same_results() -> None:
    # mark_holders.py_func (what NUMBA_DISABLE_JIT=1 runs): prefetch is a Python no-op
    # there, so the plain function must still run and agree with the two kernels
    py_func = getattr(mark_holders, "py_func", mark_holders)
    assert _check_every_market(_bulk(), py_func) == 2
    prefetch(np.zeros(4), 3)  # callable from Python, does nothing


def test_the_compiled_kernel_prefetches() -> None:
    # the hint reaches the machine code (x86-64: prefetchw, the write-intent prefetch;
    # elsewhere the target's prefetch instruction or a no-op, which LLVM may choose)
    if config.DISABLE_JIT or platform.machine() not in ("x86_64", "AMD64"):
        return
    fresh = numba.njit(mark_holders.py_func)  # not from numba's cache: cached code has no asm
    _check_every_market(_bulk(), fresh)
    asm = fresh.inspect_asm(fresh.signatures[0])
    assert "prefetchw" in asm


def test_price_update_through_the_engine_equals_a_full_remargin() -> None:
    # the incremental price update (mark_holders) and a from-scratch re-margin of every
    # position land on the same integers and the same row values
    engine = _bulk()
    engine.apply(parse_input_line(
        '{"type":"price","id":"p2","market":"BTC-PERP","price":"101234.5"}'))
    book = engine.book
    n = len(book.rows)
    st, row_int = book.st.copy(), book.row_int[:n].copy()
    rows = np.arange(n, dtype=np.int64)
    incremental = book.aggregate(rows)
    book.remargin_all()
    assert np.array_equal(st, book.st)
    assert np.array_equal(row_int, book.row_int[:n])
    assert np.array_equal(incremental, book.aggregate(rows), equal_nan=True)
