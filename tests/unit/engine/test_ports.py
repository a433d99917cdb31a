"""The shipped fakes of the engine's ports behave as their protocols say."""

from decimal import Decimal as D

import pytest

from solvency.core.model.events import Deposit
from solvency.engine.engine import Engine
from solvency.engine.ports import (
    EventSource,
    Liquidity,
    ListEventSource,
    MemorySnapshotStore,
    SnapshotStore,
    StaticDepth,
)
from tests.unit.engine.helpers import engine


def test_static_depth_walks_away_from_the_mark_on_the_tick_grid() -> None:
    depth = StaticDepth(lots_per_level=100, level_bps=10, levels=3)
    assert isinstance(depth, Liquidity)
    sells = depth.quote("BTC-PERP", -250, D("100000"), D("0.1"))
    assert [(f.lots, f.price) for f in sells] == [(100, D("99900.0")), (100, D("99800.0")),
                                                  (50, D("99700.0"))]
    buys = depth.quote("BTC-PERP", 1000, D("100000.05"), D("0.1"))
    assert sum(f.lots for f in buys) == 300  # only three levels
    assert buys[0].price == D("100100.1")  # rounded up for a buyer


def test_static_depth_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        StaticDepth(lots_per_level=0)


def test_snapshot_store_roundtrip_restores_the_same_engine() -> None:
    e = engine("binance")
    e.apply(Deposit(id="1", account="a", asset="USDT", amount=D("10")))
    store = MemorySnapshotStore()
    assert isinstance(store, SnapshotStore)
    assert store.latest() is None
    store.save(1, e.snapshot())
    latest = store.latest()
    assert latest is not None
    position, snap = latest
    assert position == 1
    assert Engine.restore(snap).state_hash() == e.state_hash()


def test_list_event_source_replays_in_order() -> None:
    events = [Deposit(id=str(i), account="a", asset="USDT", amount=D(i + 1)) for i in range(3)]
    src = ListEventSource(events)
    assert isinstance(src, EventSource)
    e = engine("binance")
    for ev in src:
        e.apply(ev)
    assert e.ledger.balance("u:a", "USDT") == 6_000_000
