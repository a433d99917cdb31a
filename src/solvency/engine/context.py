"""What the liquidator and the feeds see of the engine: two small Protocols.

:class:`~solvency.engine.liquidation.Liquidator` and :class:`~solvency.engine.feeds.Feeds`
run inside the engine but do not import it: each takes an object that has exactly the
members named here (the engine's state, :class:`~solvency.engine.base.EngineState`, has
them all; mypy checks it where the engine builds them). Nothing in this module runs.

:class:`PositionChange` is the one record they hand back: a row's position in one market
before and after a trade, which :meth:`LiquidationContext.move_position` applies.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from solvency.core.ledger.ledger import Ledger, Transfer
from solvency.core.model.venue import Venue
from solvency.core.typing import Float64Array1D, Int64Array1D
from solvency.engine.open_orders import OpenOrders
from solvency.engine.ports import Liquidity
from solvency.engine.state import Book

__all__ = ["EngineContext", "FeedsContext", "LiquidationContext", "PositionChange"]


@dataclass(slots=True)
class PositionChange:
    """One row's position in one market, before and after a trade (one side of a fill).

    ``row`` is -1 until the row is created; ``slot`` is the position's slot when known
    (-1: look it up). ``fee_quanta`` is what the side pays in fees (negative: a rebate).
    """

    account: str
    row: int
    row_name: str
    ledger_id: str
    isolated: bool
    lots_before: int
    lots_after: int
    fee_quanta: int
    slot: int = -1


class EngineContext(Protocol):
    """What both the liquidator and the feeds read: the book and the out-event ids."""

    @property
    def book(self) -> Book:
        """The account book (arrays of rows, slots, markets)."""
        ...

    @property
    def settle_asset(self) -> Sequence[int]:
        """Per market, the index of its settlement asset."""
        ...

    def next_id(self) -> str:
        """The next out-event id (advances the out-event sequence)."""
        ...


class FeedsContext(EngineContext, Protocol):
    """What the feeds (oracle, marks, breakers, pre-trade view) use of the engine."""

    @property
    def venue(self) -> Venue:
        """The venue in force (replaced by parameter changes)."""
        ...

    @property
    def accounts(self) -> Mapping[str, str]:
        """Account -> its default margin mode (``cross``, ``isolated``, ``portfolio``)."""
        ...

    def whatif(self, r: int, weighted: bool, m: int, delta_lots: int, oi_lots_m: int,
               a: int, delta_quanta: int) -> Float64Array1D:
        """Row ``r`` valued as if market ``m``'s position moved by ``delta_lots`` and its
        balance of asset ``a`` by ``delta_quanta`` (``kernels.OUT_*`` columns)."""
        ...

    @property
    def open_orders(self) -> OpenOrders:
        """The resting orders (``engine/open_orders.py``)."""
        ...


class LiquidationContext(EngineContext, Protocol):
    """What the liquidator uses of the engine: ledger, clock, liquidity and a few moves."""

    @property
    def ledger(self) -> Ledger:
        """The exact double-entry ledger."""
        ...

    @property
    def clock_ms(self) -> int | None:
        """The engine clock (None before the first timestamped event)."""
        ...

    @property
    def liquidity(self) -> Liquidity:
        """What the venue's book absorbs when a position is closed."""
        ...

    @property
    def tick_value_quanta(self) -> Sequence[int]:
        """Per market, settlement quanta per lot per tick (0 for inverse markets)."""
        ...

    @property
    def asset_decimals(self) -> Sequence[int]:
        """Per asset, its decimals (quanta per unit = 10 ** decimals)."""
        ...

    def post(self, batch: list[Transfer]) -> None:
        """Post a validated ledger batch (a refusal is a broken invariant)."""
        ...

    def sync_balance(self, r: int, a: int) -> None:
        """Mirror row ``r``'s ledger balance of asset ``a`` into the book."""
        ...

    def system_row(self, name: str) -> int:
        """Row of an engine-run account (created on first use)."""
        ...

    def system_ledger_id(self, name: str) -> str:
        """Ledger account of an engine-run row (created on first use)."""
        ...

    def refresh_pm(self, rows: Int64Array1D) -> None:
        """Recompute the scenario-grid requirements of portfolio-margined ``rows``."""
        ...

    def allows_liquidation(self, m: int) -> bool:
        """Whether liquidations may run in market ``m`` now (circuit breakers)."""
        ...

    def move_position(self, change: PositionChange, m: int, trade_cost_quanta: int) -> int:
        """Apply ``change`` in market ``m`` at ``trade_cost_quanta``; return its slot
        (-1 when the position closed)."""
        ...
