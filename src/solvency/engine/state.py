"""The account book as arrays (struct of arrays) beside the exact ledger.

Rows are margin accounts: an account's cross row, and one row per isolated position.
Slots are positions, linked per row. Per market, a holder index lists the slots that hold
it, so a price update re-margins only those (and the rows whose collateral that market
prices). Floats here are estimates mirrored from exact state; exact state is the ledger,
``slot_lots`` and ``slot_cost`` (int64, bounded by ``MAX_QUANTA`` checks on input), and
the Decimal marks.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, localcontext

import numpy as np

from solvency.core.margin.kernels import (
    MK_COLUMNS,
    MK_CV,
    MK_IM_SLOPE,
    MK_IMF,
    MK_KIND,
    MK_LOT,
    MK_MARK,
    MK_MM_SLOPE,
    MK_OI_CONTRACTS,
    MK_OI_LOWER,
    MK_OI_UPPER,
    MK_UPNL,
    MK_UPNL_MAX,
    MKI_SETTLE,
    MKI_TIER_COUNT,
    MKI_TIER_START,
    S_COLUMNS,
    S_COST,
    S_IM,
    S_LOTS,
    S_MARKET,
    S_MM,
    S_NEXT,
    S_ROW,
    S_VALUE,
    T_COLUMNS,
    apply_all,
    apply_slots,
    evaluate_rows,
    liquidation_prices,
)
from solvency.core.margin.marking import mark_holders, mark_holders_watch
from solvency.core.margin.models import risk_row
from solvency.core.margin.totals import holder_totals
from solvency.core.model.instruments import Instrument
from solvency.core.model.venue import Venue
from solvency.core.typing import Float64Array1D, Float64Array2D, Int64Array1D, Int64Array2D

__all__ = ["Book", "IndexSet", "RowInfo", "cost_after_trade"]


class IndexSet:
    """Growable int64 array of distinct members with O(1) add and remove (swap-remove)."""

    __slots__ = ("_arr", "_n", "_pos")

    def __init__(self) -> None:
        self._arr = np.empty(16, dtype=np.int64)
        self._n = 0
        self._pos: dict[int, int] = {}

    def add(self, x: int) -> None:
        """Add ``x`` if absent."""
        if x in self._pos:
            return
        if self._n == self._arr.shape[0]:
            self._arr = np.concatenate([self._arr, np.empty(self._n, dtype=np.int64)])
        self._arr[self._n] = x
        self._pos[x] = self._n
        self._n += 1

    def extend(self, xs: Int64Array1D) -> None:
        """Add many new members at once (they must be distinct and absent)."""
        n = xs.shape[0]
        while self._n + n > self._arr.shape[0]:
            self._arr = np.concatenate([self._arr, np.empty(self._arr.shape[0], dtype=np.int64)])
        self._arr[self._n : self._n + n] = xs
        self._pos.update(zip(xs.tolist(), range(self._n, self._n + n), strict=True))
        self._n += n

    def discard(self, x: int) -> None:
        """Remove ``x`` if present."""
        i = self._pos.pop(x, None)
        if i is None:
            return
        self._n -= 1
        if i != self._n:
            last = int(self._arr[self._n])
            self._arr[i] = last
            self._pos[last] = i

    def view(self) -> Int64Array1D:
        """Members as an array (a view: do not keep across mutations)."""
        return self._arr[: self._n]

    def __len__(self) -> int:
        return self._n

    def __contains__(self, x: object) -> bool:
        return x in self._pos


@dataclass(slots=True)
class RowInfo:
    """Identity of a margin row."""

    name: str
    account: str
    market: int  # -1 for the account's cross row
    ledger_id: str


def _aligned_full(shape: tuple[int, ...], fill: float | int, dtype: type) -> np.ndarray:
    # 64-byte aligned: a 64-byte slot row then sits in one cache line (numpy aligns to 16;
    # straddling rows measured ~1.5x slower on the 100,000-holder price update).
    itemsize = np.dtype(dtype).itemsize
    n = int(np.prod(shape))
    raw = np.empty(n * itemsize + 64, dtype=np.uint8)
    offset = (-raw.ctypes.data) % 64
    out: np.ndarray = raw[offset : offset + n * itemsize].view(dtype).reshape(shape)
    out.fill(fill)
    return out


def _grow(arr: np.ndarray, size: int, fill: float | int) -> np.ndarray:
    if arr.shape[0] >= size:
        return arr
    new_cap = max(size, 2 * arr.shape[0], 16)
    shape = (new_cap, *arr.shape[1:])
    out = _aligned_full(shape, fill, arr.dtype.type)
    out[: arr.shape[0]] = arr
    return out


class Book:
    """Arrays of the whole venue: markets, assets, rows (margin accounts), slots."""

    def __init__(self, venue: Venue) -> None:
        self.venue = venue
        self.asset_names = sorted(venue.assets)
        self.asset_index = {a: i for i, a in enumerate(self.asset_names)}
        self.asset_scale = [10 ** venue.assets[a].decimals for a in self.asset_names]
        self.ascale: Float64Array1D = np.array(self.asset_scale, dtype=np.float64)
        self.market_names = list(venue.markets)
        self.market_index = {m: i for i, m in enumerate(self.market_names)}
        n_a, n_m = len(self.asset_names), len(self.market_names)
        self.n_markets = n_m
        self.instruments: list[Instrument] = [venue.markets[m] for m in self.market_names]
        self.lot_size: list[float] = [float(i.lot_size) for i in self.instruments]
        self.mk: Float64Array2D = np.zeros((n_m, MK_COLUMNS))
        self.mki = np.zeros((n_m, 3), dtype=np.int64)
        self.tiers: Float64Array2D = np.zeros((0, T_COLUMNS))
        self.marks: list[Decimal | None] = [None] * n_m
        self.oi_lots: list[int] = [0] * n_m
        self.expired: list[bool] = [False] * n_m
        self.asset_price: Float64Array1D = np.full(n_a, np.nan)
        self.asset_link = np.full(n_a, -1, dtype=np.int64)
        self.asset_price_exact: list[Decimal | None] = [None] * n_a
        atiers: list[tuple[float, float]] = []
        self.atier_start = np.zeros(n_a, dtype=np.int64)
        self.atier_count = np.zeros(n_a, dtype=np.int64)
        for i, sym in enumerate(self.asset_names):
            asset = venue.assets[sym]
            self.atier_start[i] = len(atiers)
            self.atier_count[i] = len(asset.collateral)
            atiers.extend((float(t.floor_usd), float(t.weight)) for t in asset.collateral)
            if asset.price_usd is not None:
                self.asset_price[i] = float(asset.price_usd)
                self.asset_price_exact[i] = asset.price_usd
            elif asset.price_market is not None:
                self.asset_link[i] = self.market_index[asset.price_market]
        self.atiers: Float64Array2D = np.array(atiers, dtype=np.float64).reshape(-1, 2)
        self.linked: list[bool] = [bool(x >= 0) for x in self.asset_link]
        # assets whose price moves (a market's mark, or a valuation rule): their holders
        # are indexed, so a price move re-margins exactly them
        self.tracked: list[bool] = [
            linked or venue.assets[sym].valuation is not None
            for linked, sym in zip(self.linked, self.asset_names, strict=True)]
        for m, inst in enumerate(self.instruments):
            self.set_instrument(m, inst)
        self.holders: list[IndexSet] = [IndexSet() for _ in range(n_m)]
        self.asset_holders: list[IndexSet] = [IndexSet() for _ in range(n_a)]
        # rows
        self.rows: list[RowInfo] = []
        self.row_index: dict[str, int] = {}
        # account -> its rows in creation order (cross, isolated, portfolio): every lookup
        # by account goes through it; derived from ``rows``, so rebuilt on restore and
        # covered by the state hash through them (issue 26: a scan of all rows per
        # account made the replay summary quadratic in accounts)
        self.account_rows: dict[str, list[int]] = {}
        # the same index as arrays: account number of each row, names by number in order
        # of first appearance (vectorized per-account totals use np.bincount over it)
        self.account_names: list[str] = []
        self.account_number: dict[str, int] = {}
        self.row_account = np.zeros(0, dtype=np.int64)
        self.row_first = np.zeros(0, dtype=np.int64)
        self.row_nslots = np.zeros(0, dtype=np.int64)
        # per asset: exact balance, sums of position value, IM and MM (quanta; see kernels)
        # width padded to whole 64-byte lines (column 4A: weighted, 4A + 1: portfolio)
        self.row_width = -(-(4 * n_a + 2) // 8) * 8  # + weighted flag, + portfolio flag
        self.row_int: Int64Array2D = np.zeros((0, self.row_width), dtype=np.int64)
        self.warned = np.zeros(0, dtype=np.bool_)
        self.row_system = np.zeros(0, dtype=np.bool_)  # engine-run rows (names "__...")
        # portfolio-margined rows: (IM, MM) in USD from the scenario grid; NaN otherwise
        self.pm: Float64Array2D = np.zeros((0, 2))
        # slots: one 64-byte int64 row each (see kernels.S_*), the cost basis included
        self.n_slots = 0
        self.free_slots: list[int] = []
        self.st: Int64Array2D = np.zeros((0, S_COLUMNS), dtype=np.int64)
        self._row_range: Int64Array1D = np.zeros(0, dtype=np.int64)
        self.pos_slot: dict[int, int] = {}  # row * n_markets + market -> slot
        # Per market, counts the changes of its slots' quanta and of its holders other
        # than its re-mark (refresh, full re-margin, a fill's touch_rows, a slot opened
        # or closed): a re-mark's holder totals (mark_totals[m]: the count then and the
        # four sums) are the market's current ones while its count has not moved
        # (holder_totals).
        self.slot_writes = np.zeros(n_m, dtype=np.int64)
        self.mark_totals: dict[int, tuple[int, int, int, int, int]] = {}

    # views of the slot table's columns (read and write through them)
    @property
    def slot_market(self) -> Int64Array1D:
        """Market of each slot."""
        return self.st[:, S_MARKET]

    @property
    def slot_row(self) -> Int64Array1D:
        """Margin row of each slot (-1: free)."""
        return self.st[:, S_ROW]

    @property
    def slot_lots(self) -> Int64Array1D:
        """Signed size of each slot in lots."""
        return self.st[:, S_LOTS]

    @property
    def slot_cost(self) -> Int64Array1D:
        """Cost basis of each slot (signed entry notional, settlement quanta): exact state,
        read by the kernels where a market weighs positive unrealized PnL."""
        return self.st[:, S_COST]

    @property
    def slot_next(self) -> Int64Array1D:
        """Next slot of the same row (-1 ends the list)."""
        return self.st[:, S_NEXT]

    @property
    def cache(self) -> Int64Array2D:
        """Value, initial and maintenance margin of each slot, in settlement quanta."""
        return self.st[:, S_VALUE : S_MM + 1]

    @property
    def row_weighted(self) -> Int64Array1D:
        """1 where collateral weights apply (cross rows)."""
        return self.row_int[:, 4 * len(self.asset_names)]

    # ------------------------------------------------------------ markets

    def set_instrument(self, m: int, inst: Instrument) -> None:
        """Load (or reload after a params change) a market's contract terms and risk row."""
        self.instruments[m] = inst
        self.lot_size[m] = float(inst.lot_size)
        row = risk_row(inst.margin)
        mk = self.mk
        mk[m, MK_KIND] = 2.0 if inst.is_option else (1.0 if inst.is_inverse else 0.0)
        mk[m, MK_CV] = float(inst.contract_size)
        mk[m, MK_LOT] = float(inst.lot_size)
        mk[m, MK_OI_LOWER] = row.oi_lower
        mk[m, MK_OI_UPPER] = row.oi_upper
        mk[m, MK_IMF] = row.imf_factor
        mk[m, MK_UPNL : MK_UPNL_MAX + 1] = row.upnl
        if not inst.is_option:  # for options the engine keeps per-contract amounts there
            mk[m, MK_IM_SLOPE] = row.im_slope
            mk[m, MK_MM_SLOPE] = row.mm_slope
        start = self.tiers.shape[0]
        self.tiers = np.concatenate([self.tiers, np.array(row.tiers, dtype=np.float64)])
        self.mki[m, MKI_TIER_START] = start
        self.mki[m, MKI_TIER_COUNT] = len(row.tiers)
        self.mki[m, MKI_SETTLE] = self.asset_index[inst.settle]
        if np.isnan(mk[m, MK_MARK]) or mk[m, MK_MARK] == 0.0:
            mk[m, MK_MARK] = np.nan

    def set_mark(self, m: int, price: Decimal) -> list[int]:
        """Set a market's mark; return the assets whose USD price it moved."""
        self.marks[m] = price
        self.mk[m, MK_MARK] = float(price)
        moved = []
        for a in np.flatnonzero(self.asset_link == m):
            self.asset_price[a] = self._linked_price(m, price)
            self.asset_price_exact[a] = price
            moved.append(int(a))
        return moved

    def _linked_price(self, m: int, price: Decimal) -> float:
        # A coin priced by its perp's mark, in USD through the quote asset's price.
        quote = self.instruments[m].quote
        qi = self.asset_index.get(quote)
        q_px = 1.0 if qi is None or np.isnan(self.asset_price[qi]) else self.asset_price[qi]
        return float(price) * q_px

    def usd_price_exact(self, a: int) -> Decimal | None:
        """Exact USD price of asset ``a``: a fixed or rule-valued price, or a linked
        coin's mark x its quote asset's price (the product taken at the precision of
        both factors' digits, so never rounded); None while it has none. The one
        definition the collateral valuer and the auto-exchange read."""
        px = self.asset_price_exact[a]
        if px is None:
            return None
        m = int(self.asset_link[a])
        qi = self.asset_index.get(self.instruments[m].quote) if m >= 0 else None
        q_px = self.asset_price_exact[qi] if qi is not None else None
        if q_px is None:
            return px
        digits = len(px.as_tuple().digits) + len(q_px.as_tuple().digits)
        with localcontext() as ctx:
            ctx.prec = max(28, digits)
            return px * q_px

    def set_oi(self, m: int, lots: int) -> None:
        """Record one side's open interest (lots) of a market."""
        self.oi_lots[m] = lots
        self.mk[m, MK_OI_CONTRACTS] = lots * self.lot_size[m]

    # ------------------------------------------------------------ rows

    def add_row(self, name: str, account: str, market: int, ledger_id: str,
                weighted: bool) -> int:
        """Create a margin row and return its index."""
        r = len(self.rows)
        self.rows.append(RowInfo(name, account, market, ledger_id))
        self.row_index[name] = r
        self._index_account(account, r)
        self.row_first = _grow(self.row_first, r + 1, -1)
        self.row_nslots = _grow(self.row_nslots, r + 1, 0)
        self.row_int = _grow(self.row_int, r + 1, 0)
        self.warned = _grow(self.warned, r + 1, False)
        self.row_system = _grow(self.row_system, r + 1, False)
        self.pm = _grow(self.pm, r + 1, np.nan)
        self.pm[r] = np.nan
        self.row_system[r] = account.startswith("__")
        self.row_first[r] = -1
        self.row_nslots[r] = 0
        self.row_int[r] = 0
        self.row_int[r, 4 * len(self.asset_names)] = 1 if weighted else 0
        self.warned[r] = False
        return r

    def _index_account(self, account: str, r: int) -> None:
        rows = self.account_rows.get(account)
        if rows is None:
            rows = self.account_rows[account] = []
            self.account_number[account] = len(self.account_names)
            self.account_names.append(account)
        rows.append(r)
        self.row_account = _grow(self.row_account, r + 1, -1)
        self.row_account[r] = self.account_number[account]

    def set_balance(self, r: int, a: int, amount_quanta: int) -> None:
        """Mirror an exact ledger balance into the book (bounded by ``MAX_QUANTA``)."""
        self.row_int[r, a] = amount_quanta
        if self.tracked[a]:
            if amount_quanta != 0:
                self.asset_holders[a].add(r)
            else:
                self.asset_holders[a].discard(r)

    # ------------------------------------------------------------ slots

    def slot_of(self, r: int, m: int) -> int:
        """Slot of row ``r`` in market ``m``, or -1."""
        return self.pos_slot.get(r * self.n_markets + m, -1)

    def open_slot(self, r: int, m: int) -> int:
        """Create an empty position slot for row ``r`` in market ``m``."""
        if self.free_slots:
            s = self.free_slots.pop()
        else:
            s = self.n_slots
            self.n_slots += 1
            self.st = _grow(self.st, self.n_slots, -1)
        self.slot_writes[m] += 1
        st = self.st
        head = int(self.row_first[r])
        st[s] = (m, r, 0, head, 0, 0, 0, 0)
        self.row_first[r] = s
        self.row_nslots[r] += 1
        self.pos_slot[r * self.n_markets + m] = s
        self.holders[m].add(s)
        return s

    def close_slot(self, s: int) -> None:
        """Unlink an emptied slot from its row and market (its sums leave the row)."""
        st = self.st
        fields = st[s].tolist()  # one read of the slot's row (Python ints)
        r = fields[S_ROW]
        m = fields[S_MARKET]
        self.slot_writes[m] += 1
        a = int(self.mki[m, MKI_SETTLE])
        n_a = len(self.asset_names)
        row_int = self.row_int
        for k, col in enumerate((S_VALUE, S_IM, S_MM)):
            row_int[r, (k + 1) * n_a + a] -= fields[col]
        nxt = fields[S_NEXT]
        head = int(self.row_first[r])
        if head == s:
            self.row_first[r] = nxt
        else:
            # no back link (its column holds the cost basis): walk the row's few slots
            prv = head
            while int(st[prv, S_NEXT]) != s:
                prv = int(st[prv, S_NEXT])
            st[prv, S_NEXT] = nxt
        self.row_nslots[r] -= 1
        del self.pos_slot[r * self.n_markets + m]
        self.holders[m].discard(s)
        st[s] = (0, -1, 0, -1, 0, 0, 0, 0)
        self.free_slots.append(s)

    def bulk_add(self, names: list[str], weighted: bool, pos_row: Int64Array1D,
                 pos_market: Int64Array1D, pos_lots: Int64Array1D,
                 pos_cost: Int64Array1D) -> Int64Array1D:
        """Append many cross rows and their positions at once; return the new row indices.

        ``pos_row`` indexes into ``names``; each (row, market) pair must appear once. The
        caller (``Engine.load_book``) posts the matching ledger balances.
        """
        base = len(self.rows)
        n_new = len(names)
        for i, name in enumerate(names):
            self.rows.append(RowInfo(name, name, -1, f"u:{name}"))
            self.row_index[name] = base + i
            self._index_account(name, base + i)
        total = base + n_new
        n_a = len(self.asset_names)
        for attr, fill in (("row_first", -1), ("row_nslots", 0), ("row_int", 0),
                           ("warned", False), ("row_system", False), ("pm", np.nan)):
            arr = getattr(self, attr)
            if arr.shape[0] < total:
                # room for the engine's own rows (market, fund, backstop: created at the
                # first liquidation), else add_row doubles every row array then (~0.3 s
                # of page faults at 1,000,000 rows, inside the first liquidation sweep)
                grown = np.full((total + 64, *arr.shape[1:]), fill, dtype=arr.dtype)
                grown[: arr.shape[0]] = arr
                setattr(self, attr, grown)
        self.row_first[base:total] = -1
        self.row_int[base:total, 4 * n_a] = 1 if weighted else 0
        self.warned[base:total] = False
        self.row_system[base:total] = [n.startswith("__") for n in names]
        # Row-major physical order: a row's slots are adjacent, so the full re-margin
        # streams through slots and rows together (market-major made it 3x slower).
        order = np.lexsort((pos_market, pos_row))
        rows = pos_row[order] + base
        k = rows.shape[0]
        s0 = self.n_slots
        slots = np.arange(s0, s0 + k, dtype=np.int64)
        self.n_slots += k
        self.slot_writes += 1  # every market
        self.st = _grow(self.st, self.n_slots, -1)
        st = self.st
        st[s0 : s0 + k, S_MARKET] = pos_market[order]
        st[s0 : s0 + k, S_ROW] = rows
        st[s0 : s0 + k, S_LOTS] = pos_lots[order]
        st[s0 : s0 + k, S_VALUE : S_MM + 1] = 0
        st[s0 : s0 + k, S_COST] = pos_cost[order]
        same_next = np.zeros(k, dtype=bool)
        same_next[:-1] = rows[1:] == rows[:-1]
        st[s0 : s0 + k, S_NEXT] = np.where(same_next, slots + 1, -1)
        same_prev = np.zeros(k, dtype=bool)
        same_prev[1:] = same_next[:-1]
        firsts = ~same_prev
        self.row_first[rows[firsts]] = slots[firsts]
        self.row_nslots[base:total] = np.bincount(rows - base, minlength=n_new)
        mk_sorted = st[s0 : s0 + k, S_MARKET]
        keys = rows * self.n_markets + mk_sorted
        self.pos_slot.update(zip(keys.tolist(), slots.tolist(), strict=True))
        for m in range(self.n_markets):
            self.holders[m].extend(slots[mk_sorted == m])
        return np.arange(base, total, dtype=np.int64)

    def row_slots(self, r: int) -> list[int]:
        """Slots of a row, in link order."""
        out = []
        s = int(self.row_first[r])
        st = self.st
        while s >= 0:
            out.append(s)
            s = int(st[s, S_NEXT])
        return out

    # ------------------------------------------------------------ kernels

    def _args(self) -> tuple[Float64Array1D, Float64Array1D, Int64Array1D, Int64Array1D,
                             Float64Array2D]:
        return self.asset_price, self.ascale, self.atier_start, self.atier_count, self.atiers

    def refresh(self, slots: Int64Array1D) -> None:
        """Re-mark ``slots`` and carry the change into their rows' sums (exact)."""
        self.slots_written(slots)
        apply_slots(slots, self.st, self.row_int, self.mk, self.mki, self.tiers, self.ascale)

    def aggregate(self, rows: Int64Array1D) -> Float64Array2D:
        """``(equity, collateral, initial, maintenance)`` in USD of ``rows``."""
        out = np.empty((rows.shape[0], 4))
        evaluate_rows(rows, self.row_int, *self._args(), out, self.pm)
        return out

    def mark_market(self, m: int) -> tuple[Int64Array1D, Float64Array2D]:
        """Re-mark market ``m``'s holders and value their rows (one row per holder).

        One kernel pass with software prefetch (:func:`~solvency.core.margin.marking.
        mark_holders`): the holders are scattered over the book, and without the
        prefetch the pass waited on one cache miss at a time. 100,000 holders of a
        1,000,000-account book on the 2-core EPYC VM (512 KiB L2), CPU time: 3.1 ms,
        against 20.2 ms for the two kernels it replaces (docs/benchmarks.md).
        """
        slots = self.holders[m].view()
        n = slots.shape[0]
        rows = np.empty(n, dtype=np.int64)
        out = np.empty((n, 4))
        totals = np.zeros(4, dtype=np.int64)
        mark_holders(slots, self.st, self.row_int, self.mk, self.mki, self.tiers,
                     self.ascale, self.asset_price, self.atier_start, self.atier_count,
                     self.atiers, self.pm, rows, out, self.row_system, totals)
        self._keep_totals(m, totals)
        return rows, out

    def mark_market_watch(self, m: int, level: float
                          ) -> tuple[Int64Array1D, Int64Array1D, Float64Array2D]:
        """:meth:`mark_market` that values only the holders' rows whose margin state may
        have changed (:func:`~solvency.core.margin.marking.mark_holders_watch`): every
        holder is re-marked all the same. Returns every holder's row, the rows valued and
        their values. No row may be portfolio-margined (``EngineState.n_pm_rows`` 0)."""
        slots = self.holders[m].view()
        n = slots.shape[0]
        rows = np.empty(n, dtype=np.int64)
        emit = np.empty(n, dtype=np.int64)
        out = np.empty((n, 4))
        totals = np.zeros(4, dtype=np.int64)
        k = mark_holders_watch(slots, self.st, self.row_int, self.mk, self.mki, self.tiers,
                               self.ascale, self.asset_price, self.atier_start,
                               self.atier_count, self.atiers, self.pm, rows, out, emit,
                               self.warned, level, self.row_system, totals)
        self._keep_totals(m, totals)
        return rows, rows[emit[:k]], out[:k]

    def slots_written(self, slots: Int64Array1D) -> None:
        """Count a change of ``slots``' quanta in their markets (:attr:`slot_writes`)."""
        if slots.shape[0]:
            self.slot_writes[self.st[slots, S_MARKET]] += 1

    def _keep_totals(self, m: int, totals: Int64Array1D) -> None:
        t = totals.tolist()
        self.mark_totals[m] = (int(self.slot_writes[m]), t[0], t[1], t[2], t[3])

    def holder_totals(self, m: int) -> tuple[int, int, int, int]:
        """Market ``m``'s holder totals in quanta (:func:`~solvency.core.margin.totals.
        holder_totals`: ``sum |value|``, initial and maintenance over the user rows'
        slots, ``sum |value|`` over every holder): those its last re-mark summed when none
        of its slots' quanta or holders changed since (:attr:`slot_writes`), else one
        pass over the holders. The same integers either way (tests/simulation/test_mark_totals.py).
        """
        kept = self.mark_totals.get(m)
        if kept is not None and kept[0] == self.slot_writes[m]:
            return kept[1], kept[2], kept[3], kept[4]
        n_user, im_user, mm_user, n_all = holder_totals(self.holders[m].view(), self.st,
                                                        self.row_system)
        return int(n_user), int(im_user), int(mm_user), int(n_all)

    def rows_slots(self, rows: Int64Array1D) -> Int64Array1D:
        """All slots of the given rows."""
        out: list[int] = []
        for r in rows.tolist():
            out.extend(self.row_slots(r))
        return np.array(out, dtype=np.int64)

    def remargin_rows(self, rows: Int64Array1D) -> Float64Array2D:
        """Re-mark every slot of ``rows`` and value them."""
        self.refresh(self.rows_slots(rows))
        return self.aggregate(rows)

    def remargin_all(self) -> Float64Array2D:
        """Full re-margin: every position from scratch, every row's sums rebuilt."""
        n = len(self.rows)
        self.slot_writes += 1  # every market
        apply_all(self.n_slots, self.st, self.row_int[:n], self.mk, self.mki, self.tiers,
                  self.ascale)
        return self.aggregate(self._all_rows(n))

    def _all_rows(self, n: int) -> Int64Array1D:
        if self._row_range.shape[0] != n:
            self._row_range = np.arange(n, dtype=np.int64)
        return self._row_range

    def liquidation_prices(self, rows: Int64Array1D, slots: Int64Array1D) -> Float64Array1D:
        """Liquidation mark of each (row, slot) pair; NaN where none exists."""
        out = np.empty(slots.shape[0])
        liquidation_prices(rows, slots, self.row_first, self.st, self.row_int, self.mk,
                           self.mki, self.tiers, self.asset_price, self.ascale,
                           self.asset_link, self.atier_start, self.atier_count, self.atiers,
                           out)
        return out


def cost_after_trade(cost: int, old: int, new: int, trade_cost_quanta: int
                     ) -> tuple[int, int | None]:
    """Cost basis (quanta) of a position of ``old`` lots and basis ``cost`` after a trade
    to ``new`` lots costing ``trade_cost_quanta``, and the PnL it realizes (``None`` when
    it only opens or adds). Closing removes the closed share of the basis, rounded toward
    zero; a flip opens the rest at the trade's price."""
    if old == 0 or (old > 0) == (new - old > 0):  # opening or adding
        return cost + trade_cost_quanta, None
    closed = min(abs(new - old), abs(old))
    removed = _cost_toward_zero(cost * closed, abs(old))
    closing_part = _cost_toward_zero(trade_cost_quanta * closed, abs(new - old))
    cost -= removed
    if (new > 0) != (old > 0) and new != 0:  # flipped: the rest opens a new position
        cost = trade_cost_quanta - closing_part
    return cost, -closing_part - removed


def _cost_toward_zero(num: int, den: int) -> int:
    # num / den rounded toward zero, for den > 0
    return num // den if num >= 0 else -(-num // den)
