"""Totals over a market's holders, read from the slot table in one pass (the stress lab's
per-step series).

:func:`holder_totals` sums, over the holder slots of one market, the absolute value and
the initial and maintenance margin in quanta (integers, as the book stores them) of the
user rows' positions, and the absolute value of every holder's (system rows included).
It replaces a chain of numpy gathers and masks per market and step (the holders' rows,
the system mask, the user slots, three columns gathered one by one): on the real
2021-05 window with 100,000 accounts those took ~5 ms a step, the largest per-step cost
after the re-margin (docs/benchmarks.md). :func:`holder_totals_reference` is the plain
twin; a property test holds them equal.
"""

from __future__ import annotations

from solvency.core.margin.kernels import S_IM, S_MM, S_ROW, S_VALUE, _jit
from solvency.core.typing import BoolArray1D, Int64Array1D, Int64Array2D

__all__ = ["holder_totals", "holder_totals_reference"]


@_jit
def holder_totals(slots: Int64Array1D, st: Int64Array2D, row_system: BoolArray1D
                  ) -> tuple[int, int, int, int]:
    """Return ``(sum |value|, sum initial, sum maintenance)`` over the slots whose row is
    not a system row, and ``sum |value|`` over all ``slots``, each in quanta (int64
    sums: the same integers as numpy's sums of the gathered columns)."""
    notional_user = 0
    im_user = 0
    mm_user = 0
    notional_all = 0
    for i in range(slots.shape[0]):
        s = slots[i]
        v = st[s, S_VALUE]
        av = v if v >= 0 else -v
        notional_all += av
        if not row_system[st[s, S_ROW]]:
            notional_user += av
            im_user += st[s, S_IM]
            mm_user += st[s, S_MM]
    return notional_user, im_user, mm_user, notional_all


def holder_totals_reference(slots: Int64Array1D, st: Int64Array2D, row_system: BoolArray1D
                            ) -> tuple[int, int, int, int]:
    """Plain twin of :func:`holder_totals` (Python integers, one slot at a time)."""
    notional_user = im_user = mm_user = notional_all = 0
    for s in slots.tolist():
        v = int(st[s, S_VALUE])
        notional_all += abs(v)
        if not bool(row_system[int(st[s, S_ROW])]):
            notional_user += abs(v)
            im_user += int(st[s, S_IM])
            mm_user += int(st[s, S_MM])
    return notional_user, im_user, mm_user, notional_all
