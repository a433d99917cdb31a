"""Ports the engine needs from the outside world, declared by their consumer, with the
in-memory fakes that tests and the simulator use.

* :class:`EventSource` — where input events come from (a file, a stream partition).
* :class:`SnapshotStore` — where snapshots go (memory here; SQLite/PostgreSQL adapters).
* :class:`Liquidity` — what the venue's book can absorb, at what price, when the engine
  must close a position (the liquidation waterfall's first step). A live venue answers
  from its matching engine; the stress lab from its depth and impact model.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol, runtime_checkable

from solvency.core.model.events import InputEvent

__all__ = [
    "EventSource",
    "ExecutionListener",
    "Fill",
    "Liquidity",
    "ListEventSource",
    "MemorySnapshotStore",
    "SnapshotStore",
    "StaticDepth",
]


@runtime_checkable
class EventSource(Protocol):
    """An ordered source of input events."""

    def __iter__(self) -> Iterator[InputEvent]:
        """Yield events in order."""
        ...


@runtime_checkable
class SnapshotStore(Protocol):
    """Durable storage of engine snapshots, keyed by the count of applied events."""

    def save(self, position: int, snapshot: Mapping[str, Any]) -> None:
        """Store the snapshot taken after ``position`` events."""
        ...

    def latest(self) -> tuple[int, Mapping[str, Any]] | None:
        """The newest snapshot and its position, or ``None``."""
        ...


@dataclass(frozen=True, slots=True)
class Fill:
    """A slice the book can absorb: ``lots`` at ``price`` (on the tick grid)."""

    lots: int
    price: Decimal


@runtime_checkable
class Liquidity(Protocol):
    """What the venue's book would give for closing ``lots`` (signed: +buy, -sell)."""

    def quote(self, market: str, lots: int, mark: Decimal, tick: Decimal) -> list[Fill]:
        """Slices at successively worse prices; their lots sum to at most ``|lots|``."""
        ...


@runtime_checkable
class ExecutionListener(Protocol):
    """Optional second face of a :class:`Liquidity` port: told what the engine executed.

    The waterfall takes quoted slices only down to the account's bankruptcy price and
    declines the rest, so a quote is not a trade. After each liquidation close in the book
    the engine calls :meth:`executed` with what really traded, so a book model can move
    by executed flow only (the stress lab's impact model does, ``consume=False``).
    """

    def executed(self, market: str, lots: int, quote_quanta: int) -> None:
        """``lots`` traded, signed as in :meth:`Liquidity.quote` (+ the close bought from
        the book, - sold into it), for ``quote_quanta`` of the settlement asset (the exact
        amount, all slices together)."""
        ...


class ListEventSource:
    """Events from a list (tests, the simulator)."""

    def __init__(self, events: list[InputEvent]) -> None:
        self._events = list(events)

    def __iter__(self) -> Iterator[InputEvent]:
        return iter(self._events)


class MemorySnapshotStore:
    """Snapshots kept in memory as canonical JSON (so they are copies, not aliases)."""

    def __init__(self) -> None:
        self._items: list[tuple[int, str]] = []

    def save(self, position: int, snapshot: Mapping[str, Any]) -> None:
        """Store a JSON copy of the snapshot."""
        self._items.append((position, json.dumps(snapshot, sort_keys=True, default=str)))

    def latest(self) -> tuple[int, Mapping[str, Any]] | None:
        """The newest snapshot, decoded."""
        if not self._items:
            return None
        position, blob = self._items[-1]
        data: Mapping[str, Any] = json.loads(blob)
        return position, data


class StaticDepth:
    """A book with ``lots_per_level`` lots at every ``level_bps`` from the mark, up to
    ``levels`` levels on each side: the simplest depth model for tests."""

    def __init__(self, lots_per_level: int, level_bps: int = 10, levels: int = 50) -> None:
        if lots_per_level <= 0 or level_bps <= 0 or levels <= 0:
            raise ValueError("depth parameters must be positive")
        self.lots_per_level = lots_per_level
        self.level_bps = level_bps
        self.levels = levels
        # level prices by (mark, tick, side, level): the engine quotes the same mark on
        # every liquidation step of a sweep (~10 us of Decimal arithmetic a level)
        self._prices: dict[tuple[str, str, int, int], Decimal] = {}

    def quote(self, market: str, lots: int, mark: Decimal, tick: Decimal) -> list[Fill]:
        """Walk the levels away from the mark in the direction of the trade."""
        out: list[Fill] = []
        left = abs(lots)
        sign = 1 if lots > 0 else -1
        prices = self._prices
        for k in range(1, self.levels + 1):
            if left <= 0:
                break
            key = (str(mark), str(tick), sign, k)  # by digits: 800.0 and 8E+2 are equal
            price = prices.get(key)
            if price is None:
                raw = mark * (1 + sign * Decimal(self.level_bps * k) / 10_000)
                # buyers pay up (round the price up), sellers get less (round down)
                steps = (raw / tick).to_integral_value(
                    rounding="ROUND_CEILING" if sign > 0 else "ROUND_FLOOR")
                price = steps * tick
                if len(prices) >= 4096:
                    prices.clear()
                prices[key] = price
            if price <= 0:
                break
            take = min(left, self.lots_per_level)
            out.append(Fill(take, price))
            left -= take
        return out
