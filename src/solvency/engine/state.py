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
from decimal import Decimal

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
    MKI_SETTLE,
    MKI_TIER_COUNT,
    MKI_TIER_START,
    aggregate_rows,
    liquidation_prices,
    refresh_slots,
)
from solvency.core.margin.models import risk_row
from solvency.core.model.instruments import Instrument
from solvency.core.model.venue import Venue
from solvency.core.typing import Float64Array1D, Float64Array2D, Int64Array1D

__all__ = ["Book", "IndexSet", "RowInfo"]


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


def _grow(arr: np.ndarray, size: int, fill: float | int) -> np.ndarray:
    if arr.shape[0] >= size:
        return arr
    new_cap = max(size, 2 * arr.shape[0], 16)
    shape = (new_cap, *arr.shape[1:])
    out = np.full(shape, fill, dtype=arr.dtype)
    out[: arr.shape[0]] = arr
    return out


class Book:
    """Arrays of the whole venue: markets, assets, rows (margin accounts), slots."""

    def __init__(self, venue: Venue) -> None:
        self.venue = venue
        self.asset_names = sorted(venue.assets)
        self.asset_index = {a: i for i, a in enumerate(self.asset_names)}
        self.asset_scale = [10 ** venue.assets[a].decimals for a in self.asset_names]
        self.market_names = list(venue.markets)
        self.market_index = {m: i for i, m in enumerate(self.market_names)}
        n_a, n_m = len(self.asset_names), len(self.market_names)
        self.n_markets = n_m
        self.instruments: list[Instrument] = [venue.markets[m] for m in self.market_names]
        self.mk: Float64Array2D = np.zeros((n_m, MK_COLUMNS))
        self.mki = np.zeros((n_m, 3), dtype=np.int64)
        self.tiers: Float64Array2D = np.zeros((0, 5))
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
        for m, inst in enumerate(self.instruments):
            self.set_instrument(m, inst)
        self.holders: list[IndexSet] = [IndexSet() for _ in range(n_m)]
        self.asset_holders: list[IndexSet] = [IndexSet() for _ in range(n_a)]
        # rows
        self.rows: list[RowInfo] = []
        self.row_index: dict[str, int] = {}
        self.row_first = np.zeros(0, dtype=np.int64)
        self.row_weighted = np.zeros(0, dtype=np.int64)
        self.row_nslots = np.zeros(0, dtype=np.int64)
        self.bal: Float64Array2D = np.zeros((0, n_a))
        self.row_out: Float64Array2D = np.zeros((0, 4))
        self.warned = np.zeros(0, dtype=np.bool_)
        # slots
        self.n_slots = 0
        self.free_slots: list[int] = []
        self.slot_market = np.zeros(0, dtype=np.int32)
        self.slot_lots = np.zeros(0, dtype=np.int64)
        self.slot_cost = np.zeros(0, dtype=np.int64)
        self.slot_row = np.zeros(0, dtype=np.int64)
        self.slot_next = np.zeros(0, dtype=np.int64)
        self.slot_prev = np.zeros(0, dtype=np.int64)
        self.cache: Float64Array2D = np.zeros((0, 4))
        self.pos_slot: dict[int, int] = {}  # row * n_markets + market -> slot

    # ------------------------------------------------------------ markets

    def set_instrument(self, m: int, inst: Instrument) -> None:
        """Load (or reload after a params change) a market's contract terms and risk row."""
        self.instruments[m] = inst
        row = risk_row(inst.margin)
        mk = self.mk
        mk[m, MK_KIND] = 1.0 if inst.is_inverse else 0.0
        mk[m, MK_CV] = float(inst.contract_size)
        mk[m, MK_LOT] = float(inst.lot_size)
        mk[m, MK_OI_LOWER] = row.oi_lower
        mk[m, MK_OI_UPPER] = row.oi_upper
        mk[m, MK_IMF] = row.imf_factor
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

    def set_oi(self, m: int, lots: int) -> None:
        """Record one side's open interest (lots) of a market."""
        self.oi_lots[m] = lots
        self.mk[m, MK_OI_CONTRACTS] = lots * float(self.instruments[m].lot_size)

    # ------------------------------------------------------------ rows

    def add_row(self, name: str, account: str, market: int, ledger_id: str,
                weighted: bool) -> int:
        """Create a margin row and return its index."""
        r = len(self.rows)
        self.rows.append(RowInfo(name, account, market, ledger_id))
        self.row_index[name] = r
        self.row_first = _grow(self.row_first, r + 1, -1)
        self.row_weighted = _grow(self.row_weighted, r + 1, 0)
        self.row_nslots = _grow(self.row_nslots, r + 1, 0)
        self.bal = _grow(self.bal, r + 1, 0.0)
        self.row_out = _grow(self.row_out, r + 1, 0.0)
        self.warned = _grow(self.warned, r + 1, False)
        self.row_first[r] = -1
        self.row_weighted[r] = 1 if weighted else 0
        self.row_nslots[r] = 0
        self.bal[r] = 0.0
        self.row_out[r] = 0.0
        self.warned[r] = False
        return r

    def set_balance(self, r: int, a: int, amount_quanta: int) -> None:
        """Mirror an exact ledger balance into the float book."""
        self.bal[r, a] = amount_quanta / self.asset_scale[a]
        if self.asset_link[a] >= 0:
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
            n = self.n_slots
            self.slot_market = _grow(self.slot_market, n, 0)
            self.slot_lots = _grow(self.slot_lots, n, 0)
            self.slot_cost = _grow(self.slot_cost, n, 0)
            self.slot_row = _grow(self.slot_row, n, -1)
            self.slot_next = _grow(self.slot_next, n, -1)
            self.slot_prev = _grow(self.slot_prev, n, -1)
            self.cache = _grow(self.cache, n, 0.0)
        self.slot_market[s] = m
        self.slot_lots[s] = 0
        self.slot_cost[s] = 0
        self.slot_row[s] = r
        self.cache[s] = 0.0
        head = int(self.row_first[r])
        self.slot_next[s] = head
        self.slot_prev[s] = -1
        if head >= 0:
            self.slot_prev[head] = s
        self.row_first[r] = s
        self.row_nslots[r] += 1
        self.pos_slot[r * self.n_markets + m] = s
        self.holders[m].add(s)
        return s

    def close_slot(self, s: int) -> None:
        """Unlink an emptied slot from its row and market."""
        r = int(self.slot_row[s])
        m = int(self.slot_market[s])
        nxt, prv = int(self.slot_next[s]), int(self.slot_prev[s])
        if prv >= 0:
            self.slot_next[prv] = nxt
        else:
            self.row_first[r] = nxt
        if nxt >= 0:
            self.slot_prev[nxt] = prv
        self.row_nslots[r] -= 1
        del self.pos_slot[r * self.n_markets + m]
        self.holders[m].discard(s)
        self.slot_row[s] = -1
        self.slot_lots[s] = 0
        self.slot_cost[s] = 0
        self.cache[s] = 0.0
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
        total = base + n_new
        for attr, fill in (("row_first", -1), ("row_weighted", 0), ("row_nslots", 0),
                           ("bal", 0.0), ("row_out", 0.0), ("warned", False)):
            arr = getattr(self, attr)
            if arr.shape[0] < total:
                grown = np.full((total, *arr.shape[1:]), fill, dtype=arr.dtype)
                grown[: arr.shape[0]] = arr
                setattr(self, attr, grown)
        self.row_first[base:total] = -1
        self.row_weighted[base:total] = 1 if weighted else 0
        self.warned[base:total] = False
        order = np.lexsort((pos_market, pos_row))
        rows = pos_row[order] + base
        k = rows.shape[0]
        s0 = self.n_slots
        slots = np.arange(s0, s0 + k, dtype=np.int64)
        self.n_slots += k
        n = self.n_slots
        self.slot_market = _grow(self.slot_market, n, 0)
        self.slot_lots = _grow(self.slot_lots, n, 0)
        self.slot_cost = _grow(self.slot_cost, n, 0)
        self.slot_row = _grow(self.slot_row, n, -1)
        self.slot_next = _grow(self.slot_next, n, -1)
        self.slot_prev = _grow(self.slot_prev, n, -1)
        self.cache = _grow(self.cache, n, 0.0)
        self.slot_market[slots] = pos_market[order].astype(np.int32)
        self.slot_lots[slots] = pos_lots[order]
        self.slot_cost[slots] = pos_cost[order]
        self.slot_row[slots] = rows
        same_next = np.zeros(k, dtype=bool)
        same_next[:-1] = rows[1:] == rows[:-1]
        self.slot_next[slots] = np.where(same_next, slots + 1, -1)
        same_prev = np.zeros(k, dtype=bool)
        same_prev[1:] = same_next[:-1]
        self.slot_prev[slots] = np.where(same_prev, slots - 1, -1)
        firsts = ~same_prev
        self.row_first[rows[firsts]] = slots[firsts]
        self.row_nslots[base:total] = np.bincount(rows - base, minlength=n_new)
        keys = rows * self.n_markets + self.slot_market[slots]
        self.pos_slot.update(zip(keys.tolist(), slots.tolist(), strict=True))
        mk_sorted = self.slot_market[slots]
        for m in range(self.n_markets):
            self.holders[m].extend(slots[mk_sorted == m])
        return np.arange(base, total, dtype=np.int64)

    def row_slots(self, r: int) -> list[int]:
        """Slots of a row, in link order."""
        out = []
        s = int(self.row_first[r])
        while s >= 0:
            out.append(s)
            s = int(self.slot_next[s])
        return out

    # ------------------------------------------------------------ kernels

    def refresh(self, slots: Int64Array1D) -> None:
        """Recompute per-position value and requirements of ``slots``."""
        refresh_slots(slots, self.slot_market, self.slot_lots, self.mk, self.mki, self.tiers,
                      self.cache)

    def aggregate(self, rows: Int64Array1D) -> Float64Array2D:
        """Recompute ``row_out`` for ``rows`` from the slot caches; return those rows."""
        out = np.empty((rows.shape[0], 4))
        aggregate_rows(rows, self.row_first, self.row_weighted, self.slot_next,
                       self.slot_market, self.mki, self.cache, self.bal, self.asset_price,
                       self.atier_start, self.atier_count, self.atiers, out)
        self.row_out[rows] = out
        return out

    def rows_slots(self, rows: Int64Array1D) -> Int64Array1D:
        """All slots of the given rows."""
        out: list[int] = []
        for r in rows.tolist():
            out.extend(self.row_slots(r))
        return np.array(out, dtype=np.int64)

    def remargin_rows(self, rows: Int64Array1D) -> Float64Array2D:
        """Refresh every slot of ``rows`` and aggregate them."""
        self.refresh(self.rows_slots(rows))
        return self.aggregate(rows)

    def remargin_all(self) -> Float64Array2D:
        """Full re-margin of every slot and row."""
        live = np.flatnonzero(self.slot_row[: self.n_slots] >= 0).astype(np.int64)
        self.refresh(live)
        return self.aggregate(np.arange(len(self.rows), dtype=np.int64))

    def liquidation_prices(self, rows: Int64Array1D, slots: Int64Array1D) -> Float64Array1D:
        """Liquidation mark of each (row, slot) pair; NaN where none exists."""
        out = np.empty(slots.shape[0])
        liquidation_prices(rows, slots, self.row_first, self.row_weighted, self.slot_next,
                           self.slot_market, self.slot_lots, self.mk, self.mki, self.tiers,
                           self.bal, self.asset_price, self.asset_link, self.atier_start,
                           self.atier_count, self.atiers, out)
        return out
