"""Resting orders: the open orders of each account, and what they add to a margin check.

An ``order`` event with ``rest: true`` that the pre-trade checks accept rests here under
its id until a ``fill`` names it (``buyer_order`` / ``seller_order``: the fill reduces it
by its size, and removes it at zero) or an ``order_cancel`` removes it. The orders are part
of the engine's exact state: in :meth:`~solvency.engine.engine.Engine.snapshot` (the
``open_orders`` key, only when there are any: a state without resting orders keeps the
hash it always had), restored, and hashed.

What they add to an order's initial-margin check is the venue's rule
(:class:`~solvency.core.model.venue.OpenOrderRule`, docs/venues.md):

* ``none`` (dYdX v4): nothing; the order alone is checked as if filled at its price.
* ``worst_side`` (Drift): :func:`free_collateral_worst_side`. In every market of the row
  the position becomes the worse of position + all open bids and position + all open asks
  (the larger ``|lots|``, asks on a tie: Drift's ``worst_case_liability_value``), valued at
  the mark with the collateral unchanged, plus ``per_order_usd`` per open order. The
  order being checked counts as one more open order on its side.

The per-order work is per event: a dict lookup per id, one what-if of the row per market
in which the account has orders. Nothing here loops over accounts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar, Final, Protocol

from solvency.core.margin.kernels import OUT_COLLATERAL, OUT_IM, S_LOTS
from solvency.core.typing import Float64Array1D
from solvency.engine.pretrade import Side
from solvency.engine.state import Book

__all__ = ["OpenOrders", "OrderCancelled", "RestingOrder", "WhatIfContext",
           "free_collateral_worst_side", "worst_lots"]

BID: Final = 0
ASK: Final = 1
COUNT: Final = 2


@dataclass(slots=True)
class RestingOrder:
    """One resting order: ``lots`` left (lots of the market), limit ``price``."""

    id: str
    account: str
    market: int
    side: Side
    lots: int
    price: Decimal


@dataclass(frozen=True, slots=True)
class OrderCancelled:
    """A resting order removed; ``size`` was left of it. ``reason``: ``order_cancel`` (the
    account's ``order_cancel`` event) or ``market_expired`` (its market's ``expiry``)."""

    type: ClassVar[str] = "order_cancelled"
    id: str
    event: str
    order: str
    account: str
    market: str
    side: str
    size: str
    reason: str


class OpenOrders:
    """Every resting order by id, and per account and market the lots of its open bids and
    asks and their count (what a margin check reads, kept up to date per event)."""

    def __init__(self) -> None:
        self.by_id: dict[str, RestingOrder] = {}
        self.by_account: dict[str, dict[int, list[int]]] = {}

    def __bool__(self) -> bool:
        return bool(self.by_id)

    def sides(self, account: str) -> dict[int, list[int]]:
        """Market -> ``[bid lots, ask lots, count]`` of the account's orders (empty: none)."""
        return self.by_account.get(account, _EMPTY)

    def add(self, order: RestingOrder) -> None:
        """Rest ``order`` (its id is new: the engine's duplicate-id rule sees to it)."""
        if order.id in self.by_id or order.lots <= 0:
            raise ValueError(f"order {order.id!r}: duplicate or empty")
        self.by_id[order.id] = order
        entry = self.by_account.setdefault(order.account, {}).setdefault(order.market,
                                                                         [0, 0, 0])
        entry[BID if order.side == "buy" else ASK] += order.lots
        entry[COUNT] += 1

    def reduce(self, order_id: str, lots: int) -> None:
        """Take ``lots`` off a resting order (a fill); remove it at zero."""
        order = self.by_id[order_id]
        if not 0 < lots <= order.lots:
            raise ValueError(f"order {order_id!r}: {lots} lots of {order.lots}")
        entry = self.by_account[order.account][order.market]
        entry[BID if order.side == "buy" else ASK] -= lots
        order.lots -= lots
        if order.lots == 0:
            self._drop(order, entry)

    def remove(self, order_id: str) -> RestingOrder:
        """Cancel a resting order; return it."""
        order = self.by_id[order_id]
        entry = self.by_account[order.account][order.market]
        entry[BID if order.side == "buy" else ASK] -= order.lots
        self._drop(order, entry)
        return order

    def in_market(self, market: int) -> list[RestingOrder]:
        """The orders resting in ``market``, by id (a scan: for rare events, an expiry)."""
        return sorted((o for o in self.by_id.values() if o.market == market),
                      key=lambda o: o.id)

    def _drop(self, order: RestingOrder, entry: list[int]) -> None:
        del self.by_id[order.id]
        entry[COUNT] -= 1
        if entry[COUNT] == 0:
            markets = self.by_account[order.account]
            del markets[order.market]
            if not markets:
                del self.by_account[order.account]

    def dump(self, market_names: list[str]) -> list[list[str]]:
        """The orders as JSON-able rows ``[id, account, market, side, lots, price]``,
        by id (the snapshot's ``open_orders``)."""
        return [[o.id, o.account, market_names[o.market], o.side, str(o.lots), str(o.price)]
                for o in sorted(self.by_id.values(), key=lambda o: o.id)]

    def load(self, rows: Iterable[list[Any]], market_index: dict[str, int]) -> None:
        """Inverse of :meth:`dump`."""
        for oid, account, market, side, lots, price in rows:
            self.add(RestingOrder(str(oid), str(account), market_index[market], side,
                                  int(lots), Decimal(price)))


_EMPTY: Final[dict[int, list[int]]] = {}


def worst_lots(position: int, bid_lots: int, ask_lots: int) -> int:
    """The position after all open bids or after all open asks, whichever is larger in
    size (asks on a tie): Drift protocol-v2 ``PerpPosition::worst_case_liability_value``
    (state/user.rs), whose liability ``|base| x oracle`` grows with ``|base|``."""
    all_bids = position + bid_lots
    all_asks = position - ask_lots
    return all_asks if abs(all_asks) >= abs(all_bids) else all_bids


class WhatIfContext(Protocol):
    """What :func:`free_collateral_worst_side` reads of the engine (its state has it)."""

    @property
    def book(self) -> Book:
        """The book."""
        ...

    @property
    def settle_asset(self) -> Sequence[int]:
        """Settlement asset index of each market."""
        ...

    @property
    def open_orders(self) -> OpenOrders:
        """The resting orders."""
        ...

    def whatif(self, r: int, weighted: bool, m: int, delta_lots: int, oi_lots_m: int,
               a: int, delta_quanta: int) -> Float64Array1D:
        """Row ``r`` valued as if market ``m``'s position moved (``EngineState.whatif``)."""
        ...


def free_collateral_worst_side(state: WhatIfContext, account: str, r: int, isolated: bool,
                               m_order: int, order_lots: int, per_order_usd: float,
                               isolated_market: int = -1) -> float:
    """Collateral minus initial margin (USD) of row ``r`` with the account's open orders
    on the worse side in each of the row's markets, the order being checked
    (``order_lots``, signed, in market ``m_order``) one of them; minus ``per_order_usd``
    per open order. Drift protocol-v2 ``calculate_perp_position_value_and_pnl``
    (math/margin.rs): the margin ratio and liability of the worst case at the oracle
    price, the unrealized PnL of the position held (so each extra lot is valued here as
    traded at the mark: collateral unchanged); IM of positions adds up per market, so the
    row's IM is its IM now plus each market's change. ``isolated``: ``r`` is the order's
    isolated row (-1 before its first trade), whose market alone counts
    (``isolated_market`` where no order is checked). ``m_order`` -1: the resting orders
    alone (no order being checked)."""
    book = state.book
    weighted = not isolated
    markets = dict(state.open_orders.sides(account))
    if isolated:  # an isolated row holds one market: its orders alone count
        only = m_order if m_order >= 0 else isolated_market
        markets = {m: e for m, e in markets.items() if m == only}
    if m_order >= 0:
        entry = list(markets.get(m_order, (0, 0, 0)))
        entry[BID if order_lots > 0 else ASK] += abs(order_lots)
        entry[COUNT] += 1
        markets[m_order] = entry
    base = state.whatif(r, weighted, -1, 0, 0, 0, 0)
    collateral, im_now = float(base[OUT_COLLATERAL]), float(base[OUT_IM])
    im = im_now
    count = 0
    for m, (bids, asks, n) in sorted(markets.items()):
        count += n
        s = book.slot_of(r, m) if r >= 0 else -1
        pos = int(book.st[s, S_LOTS]) if s >= 0 else 0
        extra = worst_lots(pos, bids, asks) - pos
        if extra == 0:
            continue
        a = state.settle_asset[m]
        out = state.whatif(r, weighted, m, extra, book.oi_lots[m] + max(extra, 0), a,
                           _cash_at_mark(state, m, extra))
        im += float(out[OUT_IM]) - im_now
    return collateral - im - per_order_usd * count


def _cash_at_mark(state: WhatIfContext, m: int, lots: int) -> int:
    """Settlement quanta paid for ``lots`` traded at the mark (floored, as the pre-trade
    what-if does)."""
    book = state.book
    inst = book.instruments[m]
    mark = book.marks[m]
    if mark is None:
        return 0
    contracts = lots * float(inst.lot_size) * float(inst.contract_size)
    scale = float(book.asset_scale[state.settle_asset[m]])
    price = float(mark)
    return math.floor((contracts / price if inst.is_inverse else -contracts * price) * scale)
