"""After a change: value the rows it touched, then margin calls, then liquidations.

Every event family ends here. :func:`check_rows` values rows whose balances or positions
changed; :func:`after_valuation` takes rows already valued (a price update values its
market's holders in one kernel call), refreshes the scenario-grid requirements of
portfolio-margined rows, emits ``margin_call`` / ``margin_restored`` out-events for rows
that crossed the warning level and hands the rows to the liquidator's sweep.
:func:`revalue_fill` is the fill path's version: re-mark the traded slots and value the
two rows in one compiled call, the liquidator only woken when a row fell below
maintenance.
"""

from __future__ import annotations

import numpy as np

from solvency.core.margin.kernels import (
    OUT_COLLATERAL,
    OUT_MM,
    margin_crossings,
    touch_rows,
)
from solvency.core.model.events import MarginCall, MarginRestored, OutEvent
from solvency.core.typing import Float64Array2D, Int64Array1D
from solvency.engine.base import EngineState, format_number

__all__ = ["after_valuation", "check_rows", "margin_call_events", "revalue_fill"]


def check_rows(state: EngineState, rows: Int64Array1D, cause: str) -> list[OutEvent]:
    """Value rows and emit margin calls for those that crossed the warning level."""
    if rows.shape[0] == 0:
        return []
    return after_valuation(state, rows, state.book.aggregate(rows), cause)


def after_valuation(state: EngineState, rows: Int64Array1D, out: Float64Array2D,
                    cause: str) -> list[OutEvent]:
    """Margin calls, then liquidations, for rows just valued (``out``: their
    ``kernels.OUT_*`` values)."""
    book = state.book
    pm_idx = (np.flatnonzero(~np.isnan(book.pm[rows, 0])) if state.n_pm_rows
              else rows[:0])
    if pm_idx.shape[0]:
        # portfolio-margined rows: scenario-grid requirements, then value them again
        sel = rows[pm_idx]
        state.refresh_pm(sel)
        out = out.copy()
        out[pm_idx] = book.aggregate(sel)
    events = margin_call_events(state, rows, out, cause)
    events.extend(state.liquidator.sweep(rows, out, cause))
    return events


def revalue_fill(state: EngineState, slots: list[int], rows: Int64Array1D,
                 cause: str) -> list[OutEvent]:
    """Re-mark ``slots``, value ``rows`` and emit margin calls, in one kernel call."""
    book = state.book
    if state.n_pm_rows and (~np.isnan(book.pm[rows, 0])).any():
        book.refresh(np.array(slots, dtype=np.int64))
        return check_rows(state, rows, cause)
    out = state.fill_two_out if rows is state.fill_two_rows else state.fill_out[: rows.shape[0]]
    if len(slots) == 2:
        buf = state.fill_two_slots
        buf[0], buf[1] = slots
    else:
        buf = state.fill_slots[: len(slots)]
        buf[:] = slots
    below = state.fill_below_maintenance
    book.slots_written(buf)  # touch_rows re-marks them (Book.holder_totals)
    hits = touch_rows(buf, rows, book.st, book.row_int,
                      book.mk, book.mki, book.tiers, book.asset_price, book.ascale,
                      book.atier_start, book.atier_count, book.atiers, book.warned,
                      state.margin_call_ratio, out, book.pm, below)
    events = _margin_events(state, hits, rows, out, cause) if hits.shape[0] else []
    if below[0] or state.liquidator.deficit_rows:
        events.extend(state.liquidator.sweep(rows, out, cause))
    return events


def margin_call_events(state: EngineState, rows: Int64Array1D, out: Float64Array2D,
                       cause: str) -> list[OutEvent]:
    """Margin-call out-events for rows whose ratio crossed the warning level.

    Margin ratio = maintenance / collateral (Binance's definition); a row with no
    maintenance requirement has ratio 0, one with none or negative collateral and a
    requirement has ratio infinity. Out-events are ordered by account name.
    """
    if rows.shape[0] == 0:
        return []
    crossed = margin_crossings(rows, out, state.book.warned, state.margin_call_ratio)
    if crossed.shape[0] == 0:
        return []
    return _margin_events(state, crossed, rows, out, cause)


def _margin_events(state: EngineState, crossed: Int64Array1D, rows: Int64Array1D,
                   out: Float64Array2D, cause: str) -> list[OutEvent]:
    """``margin_call`` (now warned) or ``margin_restored`` for each crossed row."""
    book = state.book
    events: list[OutEvent] = []
    for i in sorted(crossed.tolist(), key=lambda i: book.rows[int(rows[i])].name):
        r = int(rows[i])
        coll, mm = float(out[i, OUT_COLLATERAL]), float(out[i, OUT_MM])
        ratio = _margin_ratio(mm, coll)
        name = book.rows[r].name
        if book.warned[r]:
            events.append(MarginCall(id=state.next_id(), event=cause, account=name,
                                     margin_ratio=format_number(ratio),
                                     collateral_usd=format_number(coll),
                                     maintenance_usd=format_number(mm)))
        else:
            events.append(MarginRestored(id=state.next_id(), event=cause, account=name,
                                         margin_ratio=format_number(ratio)))
    return events


def _margin_ratio(mm: float, coll: float) -> float:
    if mm <= 0.0:
        return 0.0
    return mm / coll if coll > 0.0 else float("inf")
