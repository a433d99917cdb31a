"""Real crash paths through three noisy, lagged copies of themselves: no false breakers.

Each 1-minute bar becomes four ticks 15 s apart (open, then high/low in the order that
matches the bar's direction, then close). Three sources report that path: one on time,
two lagged by 3 s and 7 s (they deliver the price of 3 s / 7 s ago, stamped now), each
with 3 bp of seeded multiplicative noise. The guard, a Binance-style mark and the
breakers run at their default settings (documented in docs/oracle.md); the same rules
fed the clean path through a single source give the reference. The noisy replay must
trip no rule the clean path does not, and at the defaults neither trips anything.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from tests.conftest import missing

from solvency.core.oracle import (
    BookInputs,
    IndexUpdate,
    MarkConfig,
    MarkPricer,
    OracleConfig,
    OracleGuard,
)
from solvency.engine.breakers import BreakerBank, BreakerConfig, BreakerRule

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
M = "X-PERP"
LAGS_MS = (0, 3_000, 7_000)
NOISE = 3e-4

CRASHES = [
    pytest.param("btcusd_perp_binance_coinm_markprice_1m_2025-10-09_2025-10-10.csv",
                 "2025-10-10", id="btc-2025-10-10-markprice"),
    pytest.param("btcusdt_binance_spot_1m_2021-05-16_2021-05-20.csv", "2021-05-19",
                 id="btc-2021-05-19"),
    pytest.param("ethusdt_binance_spot_1m_2021-05-16_2021-05-20.csv", "2021-05-19",
                 id="eth-2021-05-19"),
]


def _path(name: str, day: str) -> tuple[np.ndarray, np.ndarray]:
    file = DATA / name
    if not file.is_file():
        missing(f"{file} not present")
    ts, px = [], []
    with file.open() as fh:
        for row in csv.DictReader(fh):
            if not row["timestamp"].startswith(day):
                continue
            t0 = int(row["timestamp_ms"])
            o, h, lo, c = (float(row[k]) for k in ("open", "high", "low", "close"))
            mid = (lo, h) if c >= o else (h, lo)
            for k, p in enumerate((o, *mid, c)):
                ts.append(t0 + 15_000 * k)
                px.append(p)
    return np.array(ts, dtype=np.int64), np.array(px)


def _reports(ts: np.ndarray, px: np.ndarray, seed: int) -> list[tuple[int, str, float]]:
    rng = np.random.default_rng(seed)
    out = []
    for k, lag in enumerate(LAGS_MS):
        # a lagged copy reports at each tick time the price it saw ``lag`` ms earlier
        idx = np.searchsorted(ts, ts - lag, side="right") - 1
        seen = px[np.maximum(idx, 0)] * np.exp(NOISE * rng.standard_normal(ts.shape[0]))
        out += [(int(t) + lag, f"s{k}", float(p)) for t, p in zip(ts, seen, strict=True)]
    out.sort()
    return out


def _replay(reports: list[tuple[int, str, float]], sources: tuple[str, ...],
            oracle: OracleConfig, breakers: BreakerConfig,
            truth: tuple[np.ndarray, np.ndarray]) -> tuple[set[str], list[str]]:
    guard = OracleGuard([M], sources, oracle)
    bank = BreakerBank(breakers)
    pricer = MarkPricer(M, MarkConfig.preset("binance"))
    ts, px = truth
    trips: list[str] = []
    for now, source, price in reports:
        upd = guard.update(source, M, price, now)
        ups = [upd] if isinstance(upd, IndexUpdate) else []
        ups += guard.tick(now)
        for u in ups:
            last = float(px[max(int(np.searchsorted(ts, now, side="right")) - 1, 0)])
            mark = pricer.mark(u, BookInputs(bid=last * 0.9999, ask=last * 1.0001, last=last))
            for tr in bank.observe_update(u, mark):
                trips.append(f"{tr.ts_ms}:{tr.from_state}->{tr.to_state}:{tr.rule}")
        for tr in bank.tick(now):
            trips.append(f"{tr.ts_ms}:{tr.from_state}->{tr.to_state}:{tr.rule}")
    rules = {r for t in trips for r in t.split(":")[2].split(",")
             if r not in ("cooldown", "recovered")}
    return rules, trips


TIGHT = BreakerConfig(rules=(
    BreakerRule("index_move_5m", "index_move", "reduce_only", threshold=0.05,
                window_ms=300_000),
    BreakerRule("sources_disagree", "source_disagreement", "liquidations_paused",
                threshold=0.10, for_ms=30_000),
    BreakerRule("quorum_lost", "quorum_lost", "liquidations_paused"),
    BreakerRule("mark_too_volatile", "mark_twap", "liquidations_paused", threshold=1.08,
                window_ms=3_600_000),
), cooldown_ms=300_000, recovery_ms=120_000)


@pytest.mark.parametrize(("name", "day"), CRASHES)
@pytest.mark.parametrize("breakers", [BreakerConfig(), TIGHT], ids=["defaults", "tight"])
def test_crash_replay_trips_only_what_the_rules_would(name: str, day: str,
                                                      breakers: BreakerConfig) -> None:
    ts, px = _path(name, day)
    clean = [(int(t), "clean", float(p)) for t, p in zip(ts, px, strict=True)]
    ref_rules, ref_trips = _replay(clean, ("clean",), OracleConfig(quorum=1), breakers,
                                   (ts, px))
    rules, trips = _replay(_reports(ts, px, seed=11), ("s0", "s1", "s2"), OracleConfig(),
                           breakers, (ts, px))
    assert rules <= ref_rules, (trips, ref_trips)
    assert "quorum_lost" not in rules and "sources_disagree" not in rules
    if breakers == BreakerConfig():
        assert ref_trips == [] and trips == [], "no false halts at default settings"
    else:
        assert ref_rules, "the tight rules do fire on a real crash"
        # same transitions, same order, within a minute of the clean path's
        assert [t.split(":", 1)[1].split(":")[0] for t in trips] == [
            t.split(":", 1)[1].split(":")[0] for t in ref_trips]
        for a, b in zip(trips, ref_trips, strict=True):
            assert abs(int(a.split(":")[0]) - int(b.split(":")[0])) <= 60_000
