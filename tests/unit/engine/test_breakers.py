"""Circuit breakers: trips, escalation, cool-down and recovery, permissions."""

from __future__ import annotations

import pytest

from solvency.core.model.events import event_to_json
from solvency.core.oracle import IndexUpdate, OracleConfig, OracleGuard
from solvency.engine.breakers import (
    BreakerBank,
    BreakerConfig,
    BreakerConfigError,
    BreakerRule,
    BreakerTransition,
)

M = "BTC-PERP"
SOURCES = ("binance", "okx", "coinbase")


@pytest.mark.parametrize(("state", "allowed"), [
    pytest.param("normal", {"open", "reduce", "liquidate", "cancel"}, id="normal"),
    pytest.param("recovering", {"reduce", "liquidate", "cancel"}, id="recovering"),
    pytest.param("reduce_only", {"reduce", "liquidate", "cancel"}, id="reduce_only"),
    pytest.param("liquidations_paused", {"reduce", "cancel"}, id="liquidations_paused"),
    pytest.param("halted", {"cancel"}, id="halted"),
])
def test_allows_by_state(state: str, allowed: set[str]) -> None:
    bank = BreakerBank()
    bank.observe(M, 0, index=100.0, quorum_ok=True)
    bank._markets[M].state = state  # type: ignore[assignment]
    got = {a for a in ("open", "reduce", "liquidate", "cancel") if bank.allows(M, a)}  # type: ignore[arg-type]
    assert got == allowed


def test_index_move_trips_and_recovers_after_cooldown() -> None:
    cfg = BreakerConfig(rules=(BreakerRule("move", "index_move", "halted", threshold=0.10,
                                           window_ms=60_000),),
                        cooldown_ms=30_000, recovery_ms=20_000)
    bank = BreakerBank(cfg)
    assert bank.observe(M, 0, index=100.0, quorum_ok=True) == []
    assert bank.observe(M, 30_000, index=95.0, quorum_ok=True) == []
    [tr] = bank.observe(M, 40_000, index=89.0, quorum_ok=True, cause="e7")
    assert (tr.from_state, tr.to_state, tr.rule, tr.event) == ("normal", "halted", "move", "e7")
    assert "index moved 0.1100" in tr.detail
    assert bank.mode(M) == "halted" and not bank.allows(M, "reduce")
    # still 11 % below the 100 inside the window: stays halted
    assert bank.observe(M, 59_000, index=89.0, quorum_ok=True) == []
    # 100 leaves the window at 60 s; cool-down counts from the last active time (59 s)
    assert bank.observe(M, 70_000, index=89.0, quorum_ok=True) == []
    [tr] = bank.tick(89_000)
    assert (tr.to_state, tr.rule) == ("recovering", "cooldown")
    assert bank.mode(M) == "reduce_only" and bank.allows(M, "liquidate")
    assert bank.tick(100_000) == []
    [tr] = bank.tick(109_000)
    assert (tr.from_state, tr.to_state, tr.rule) == ("recovering", "normal", "recovered")
    assert event_to_json(tr)["type"] == "breaker"


def test_trip_while_recovering_and_escalation() -> None:
    cfg = BreakerConfig(rules=(
        BreakerRule("disagree", "source_disagreement", "reduce_only", threshold=0.05),
        BreakerRule("quorum", "quorum_lost", "liquidations_paused"),
    ), cooldown_ms=10_000, recovery_ms=10_000)
    bank = BreakerBank(cfg)
    [tr] = bank.observe(M, 0, index=100.0, quorum_ok=True, spread=0.06)
    assert tr.to_state == "reduce_only"
    [tr] = bank.observe(M, 1_000, index=100.0, quorum_ok=False)
    assert (tr.from_state, tr.to_state) == ("reduce_only", "liquidations_paused")
    # de-escalation only through the cool-down
    assert bank.observe(M, 2_000, index=100.0, quorum_ok=True, spread=0.06) == []
    assert bank.observe(M, 5_000, index=100.0, quorum_ok=True) == []
    [tr] = bank.observe(M, 12_000, index=100.0, quorum_ok=True)
    assert tr.to_state == "recovering"
    [tr] = bank.observe(M, 13_000, index=100.0, quorum_ok=True, spread=0.2)
    assert (tr.from_state, tr.to_state) == ("recovering", "reduce_only")


def test_for_ms_debounces_a_rule() -> None:
    cfg = BreakerConfig(rules=(BreakerRule("disagree", "source_disagreement", "reduce_only",
                                           threshold=0.05, for_ms=30_000),))
    bank = BreakerBank(cfg)
    assert bank.observe(M, 0, index=100.0, quorum_ok=True, spread=0.2) == []
    assert bank.observe(M, 10_000, index=100.0, quorum_ok=True, spread=0.0) == []  # reset
    assert bank.observe(M, 20_000, index=100.0, quorum_ok=True, spread=0.2) == []
    [tr] = bank.observe(M, 50_000, index=100.0, quorum_ok=True, spread=0.2)
    assert tr.to_state == "reduce_only"


def test_mark_far_from_twap_drift_too_volatile() -> None:
    # drift-labs/protocol-v2 math/oracle.rs: too volatile when
    # max(price, twap) / min(price, twap) > too_volatile_ratio
    cfg = BreakerConfig(rules=(BreakerRule("vol", "mark_twap", "liquidations_paused",
                                           threshold=1.2, window_ms=600_000),))
    bank = BreakerBank(cfg)
    for t in range(0, 600_000, 60_000):
        assert bank.observe(M, t, index=100.0, quorum_ok=True, mark=100.0) == []
    assert bank.observe(M, 600_000, index=100.0, quorum_ok=True, mark=119.0) == []
    # twap after 1 minute at 119: (9 x 100 + 119) / 10 = 101.9; 125 / 101.9 > 1.2
    [tr] = bank.observe(M, 660_000, index=100.0, quorum_ok=True, mark=125.0)
    assert tr.rule == "vol" and "ratio" in tr.detail
    assert not bank.allows(M, "liquidate")


def test_two_of_three_sources_stale_pause_liquidations_then_resume() -> None:
    """Two of three sources go stale: quorum lost, breaker trips, resume after recovery."""
    guard = OracleGuard([M], SOURCES, OracleConfig())
    bank = BreakerBank(BreakerConfig(cooldown_ms=60_000, recovery_ms=60_000))
    events: list[BreakerTransition] = []
    ids = iter(range(10**6))

    def feed(upd: IndexUpdate | object, now: int) -> None:
        if isinstance(upd, IndexUpdate):
            events.extend(bank.observe_update(upd, cause=f"t{now}",
                                              next_id=lambda: f"o{next(ids)}"))
        for u in guard.tick(now):
            events.extend(bank.observe_update(u, cause=f"tick{now}"))
        events.extend(bank.tick(now))

    liquidation_allowed_while_unreliable = []
    for t in range(0, 600):
        now = t * 1_000
        live = SOURCES if not 100 <= t < 200 else ("binance",)
        for s in live:
            feed(guard.update(s, M, 100.0 + 0.01 * (t % 7), now), now)
        status = guard.status(M)
        assert status is not None
        if not status.reliable and bank.allows(M, "liquidate"):
            liquidation_allowed_while_unreliable.append(t)
    path = [(e.from_state, e.to_state, e.rule) for e in events]
    assert path == [("normal", "liquidations_paused", "quorum_lost"),
                    ("liquidations_paused", "recovering", "cooldown"),
                    ("recovering", "normal", "recovered")]
    assert liquidation_allowed_while_unreliable == []
    tripped, recovering, normal = (e.ts_ms for e in events)
    assert 130_000 <= tripped <= 131_000  # stale_ms = 30 s after the last okx/coinbase
    assert recovering - 200_000 == pytest.approx(60_000, abs=1_000)
    assert normal - recovering == pytest.approx(60_000, abs=1_000)
    assert bank.state(M) == "normal" and bank.allows(M, "open")


def test_config_errors() -> None:
    with pytest.raises(BreakerConfigError, match="window_ms"):
        BreakerRule("m", "index_move", "halted", threshold=0.1)
    with pytest.raises(BreakerConfigError, match="cannot be tripped"):
        BreakerRule("m", "quorum_lost", "normal")
    with pytest.raises(BreakerConfigError, match="unknown keys"):
        BreakerConfig.from_mapping({"cooldown": 1})
    cfg = BreakerConfig.from_mapping({"rules": [{"name": "q", "kind": "quorum_lost",
                                                 "action": "halted"}], "cooldown_ms": 5})
    assert cfg.rules[0].action == "halted" and cfg.cooldown_ms == 5
