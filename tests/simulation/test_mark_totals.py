"""The recorder's holder totals come from the market's re-mark when nothing moved since
(issue 17, speed).

The stress lab records, every step and market, the sums over the holders' stored quanta
(``totals.holder_totals``: gross notional, initial and maintenance margin of the user
rows, open interest at the start). The re-mark kernel (``marking.mark_holders_watch``)
already reads and writes every holder's slot, so it sums them on the way, and
``Book.holder_totals`` returns those sums while ``Book.slot_writes`` (moved by every
other change of slot quanta or holders: refresh, full re-margin, a fill's ``touch_rows``,
a slot opened or closed) has not moved since; else it makes the pass over the holders.

Here, on the real 2021-05-19 crash (liquidations, ADL, fund takeovers, top-ups, funding
every 20 minutes), every call is checked against the pass over the holders, and most
steps must have taken the kept sums (so the check is of the fast path). Without the count
in ``Book.refresh`` (a liquidation's re-mark of the closed rows) the kept sums are stale
after a liquidation and the check fails.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from solvency.core.margin.totals import holder_totals_reference
from solvency.engine.state import Book
from tests.simulation.test_quiet_marks import _window


def test_kept_totals_equal_a_pass_over_the_holders(shared_data: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    kept_used = 0
    calls = 0
    fast = Book.holder_totals

    def checked(self: Book, m: int) -> tuple[int, int, int, int]:
        nonlocal kept_used, calls
        calls += 1
        kept = self.mark_totals.get(m)
        kept_used += kept is not None and kept[0] == self.slot_writes[m]
        got = fast(self, m)
        want = holder_totals_reference(self.holders[m].view(), self.st, self.row_system)
        assert got == want, (m, got, want)
        return got

    monkeypatch.setattr(Book, "holder_totals", checked)
    res = _window(shared_data)
    m = res["metrics"]
    assert isinstance(m, dict)
    assert m["liquidations"] > 100 and m["adl_count"] > 0 and m["conserved"]
    # two markets a step; both ways taken: the re-mark's sums (271 of 640 calls here, in
    # the crash's liquidations; 88 % on a quiet day) and a fresh pass
    assert calls == 2 * m["points"]
    assert 0.3 * calls < kept_used < calls, (kept_used, calls)
