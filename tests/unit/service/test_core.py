"""RiskService in process (no HTTP): an engine that raises while applying stops the
service instead of hanging its callers, and the store still recovers the last committed
state; a failed commit likewise."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from solvency.adapters.store import StoreError
from solvency.service.core import RiskService, ServiceConfig, ServiceFailedError, parse_items


def deposit(i: int, amount: str = "100") -> dict[str, object]:
    return {"type": "deposit", "id": f"d{i}", "ts": 1774512000000 + i, "account": f"a{i % 3}",
            "asset": "USDT", "amount": amount}


def items(*objs: dict[str, object]):
    return parse_items([json.loads(json.dumps(o)) for o in objs])


def test_an_engine_defect_fails_the_callers_and_recovery_keeps_what_was_committed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = f"sqlite:///{tmp_path / 'c.db'}"
    svc = RiskService(ServiceConfig(db=db, venue="binance"))
    svc.start()
    res = svc.submit(items(deposit(1), deposit(2)), None).result(timeout=30)
    assert [r.status for r in res] == ["accepted", "accepted"]
    committed = svc.read(svc.engine.state_hash).result(timeout=30)

    def boom(event: object) -> list[object]:
        raise RuntimeError("engine defect")

    monkeypatch.setattr(svc.engine, "apply", boom)
    with pytest.raises(ServiceFailedError, match="restart"):
        svc.submit(items(deposit(3)), None).result(timeout=30)
    assert not svc.ready
    with pytest.raises(ServiceFailedError):
        svc.read(lambda: 1).result(timeout=30)
    with pytest.raises(ServiceFailedError):
        svc.submit(items(deposit(4)), None).result(timeout=30)
    svc.stop()
    again = RiskService(ServiceConfig(db=db))
    again.start()
    assert again.seq == 2
    assert again.read(again.engine.state_hash).result(timeout=30) == committed
    again.stop()


def test_a_failed_commit_is_not_acknowledged(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    db = f"sqlite:///{tmp_path / 'f.db'}"
    svc = RiskService(ServiceConfig(db=db, venue="binance"))
    svc.start()

    def refuse(rows: object) -> object:
        raise StoreError("disk full")

    monkeypatch.setattr(svc.store, "append", refuse)
    with pytest.raises(ServiceFailedError, match="disk full"):
        svc.submit(items(deposit(1)), None).result(timeout=30)
    svc.stop()
    again = RiskService(ServiceConfig(db=db))
    again.start()
    assert again.seq == 0  # nothing acknowledged, nothing logged
    again.stop()


def test_duplicates_and_id_conflicts_inside_one_group(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'd.db'}"
    svc = RiskService(ServiceConfig(db=db, venue="binance"))
    svc.start()
    res = svc.submit(items(deposit(1), deposit(1), deposit(1, "5")), None).result(timeout=30)
    assert [r.status for r in res] == ["accepted", "duplicate", "rejected"]
    assert res[1].seq == res[0].seq and res[2].reason == "id_conflict"
    svc.stop()


def test_the_store_records_its_pm_grid(tmp_path: Path) -> None:
    """A restart margins with the grid the store was created with: the grid's text is
    recorded like the venue; a restart without --pm-grid uses it, one with another grid
    is refused naming both (it would margin, and so liquidate, differently from the log),
    the same grid again is accepted."""
    from solvency.adapters.grids import grid_text
    from solvency.service.core import RecoveryError

    db = f"sqlite:///{tmp_path / 'g.db'}"
    svc = RiskService(ServiceConfig(db=db, venue="deribit", pm_grid="cme_span_16"))
    svc.start()
    assert svc.engine.portfolio_margin.grid.name == "cme-span-16"
    assert svc.store.get_meta("pm_grid") == grid_text("cme_span_16")
    svc.stop()
    again = RiskService(ServiceConfig(db=db))  # no --pm-grid: the store's
    again.start()
    assert again.engine.portfolio_margin.grid.name == "cme-span-16"
    again.stop()
    with pytest.raises(RecoveryError, match="created with pm grid 'cme_span_16'; "
                                            "--pm-grid 'deribit_pm' differs"):
        RiskService(ServiceConfig(db=db, pm_grid="deribit_pm")).start()
    copy = tmp_path / "same.toml"
    copy.write_text(grid_text("cme_span_16"))
    same = RiskService(ServiceConfig(db=db, pm_grid=str(copy)))  # same text, a file
    same.start()
    assert same.engine.portfolio_margin.grid.name == "cme-span-16"
    same.stop()


def test_the_risk_view_lists_collateral_exchanged(tmp_path: Path) -> None:
    # binance-2025-10-14: 1 WBETH + 10 ETH-PERP long at 4,000, ETH to 3,620 (the case of
    # tests/venues/test_collateral_valuation.py): ADL, then the WBETH exchanged into the debt
    db = f"sqlite:///{tmp_path / 'e.db'}"
    svc = RiskService(ServiceConfig(db=db, venue="binance-2025-10-14"))
    svc.start()
    t = 1_760_132_160_000
    res = svc.submit(items(
        {"type": "price", "id": "p1", "ts": t, "market": "ETH-PERP", "price": "4000"},
        {"type": "deposit", "id": "d1", "ts": t, "account": "mm", "asset": "USDT",
         "amount": "10000000"},
        {"type": "deposit", "id": "d2", "ts": t, "account": "a", "asset": "WBETH",
         "amount": "1"},
        {"type": "fill", "id": "f", "ts": t, "market": "ETH-PERP", "buyer": "a",
         "seller": "mm", "size": "10", "price": "4000"},
        {"type": "price", "id": "p2", "ts": t + 1000, "market": "ETH-PERP", "price": "3620"},
    ), None).result(timeout=30)
    assert [r.status for r in res] == ["accepted"] * 5
    kinds = [(o["type"], o.get("account")) for o in svc.recent]
    assert ("collateral_exchanged", "a") in kinds and ("adl", "a") in kinds
    svc.stop()
