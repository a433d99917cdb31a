"""The stress lab's oracle sources (sim/oracle_feed.py), on their own."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest

from solvency.sim.oracle_feed import OracleFeed, OracleFeedError, OracleFeedSpec, SourceOutage

MIN = 60_000


def _feed(spec: OracleFeedSpec, n: int = 10, seed: int = 1) -> OracleFeed:
    ts = np.arange(n, dtype=np.int64) * MIN + 1_700_000_000_000
    index = {"BTC-PERP": 100_000.0 * (1.0 + 0.01 * np.arange(n))}
    return OracleFeed(spec, ts, index, seed)


def test_noiseless_external_sources_report_the_index() -> None:
    feed = _feed(OracleFeedSpec(sources=("a", "b", "c")))
    reps = feed.reports(3, "BTC-PERP", 99_000.0)
    assert [r.source for r in reps] == ["a", "b", "c"]
    assert {r.price for r in reps} == {Decimal("103000")}
    assert {r.ts_ms for r in reps} == {int(feed.ts[3])}
    assert len({r.id for r in reps}) == 3


def test_venue_source_reports_the_trade_price_and_lag_reads_the_past() -> None:
    spec = OracleFeedSpec(sources=("a", "venue", "late"), venue_sources=("venue",),
                          lag_ms={"late": 2 * MIN})
    feed = _feed(spec)
    feed.reports(0, "BTC-PERP", 99_500.0)
    feed.reports(1, "BTC-PERP", 98_000.0)
    reps = {r.source: r for r in feed.reports(2, "BTC-PERP", 97_000.0)}
    assert reps["venue"].price == Decimal("97000")
    assert reps["late"].price == Decimal("100000")  # the index two minutes ago
    assert reps["late"].ts_ms == int(feed.ts[0])
    assert reps["a"].price == Decimal("102000")


def test_outage_silences_a_source_only_inside_its_window() -> None:
    spec = OracleFeedSpec(sources=("a", "b"),
                          outages=(SourceOutage("b", 2 * MIN, 4 * MIN),))
    feed = _feed(spec)
    heard = [[r.source for r in feed.reports(k, "BTC-PERP", 1.0)] for k in range(6)]
    assert heard == [["a", "b"], ["a", "b"], ["a"], ["a"], ["a", "b"], ["a", "b"]]


def test_noise_is_seeded_and_scaled() -> None:
    spec = OracleFeedSpec(sources=("a", "b"), noise_bps=5.0)
    one = [r.price for r in _feed(spec, seed=3).reports(4, "BTC-PERP", 1.0)]
    two = [r.price for r in _feed(spec, seed=3).reports(4, "BTC-PERP", 1.0)]
    other = [r.price for r in _feed(spec, seed=4).reports(4, "BTC-PERP", 1.0)]
    assert one == two and one != other
    feed = _feed(spec, n=4000)
    logs = np.log(feed.external["BTC-PERP"]["a"] / (100_000.0 * (1 + 0.01 * np.arange(4000))))
    assert 4.5e-4 < float(np.std(logs)) < 5.5e-4


def test_venue_overrides_set_sources_and_stale_limit_unless_given() -> None:
    spec = OracleFeedSpec(sources=("a", "b"))
    got = spec.venue_overrides(MIN, {"mark": "binance"})
    assert got == {"mark": "binance", "sources": ["a", "b"], "config": {"stale_ms": 2 * MIN}}
    kept = spec.venue_overrides(MIN, {"config": {"stale_ms": 5_000, "quorum": 1}})
    assert kept["config"] == {"stale_ms": 5_000, "quorum": 1}
    assert OracleFeedSpec(sources=("a",), stale_ms=7).venue_overrides(MIN, {})[
        "config"] == {"stale_ms": 7}


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"sources": ()}, "at least one"),
    ({"sources": ("a", "a")}, "duplicate"),
    ({"sources": ("a",), "venue_sources": ("x",)}, "venue_sources"),
    ({"sources": ("a",), "lag_ms": {"x": 1}}, "lag_ms"),
    ({"sources": ("a",), "lag_ms": {"a": -1}}, "lag_ms.a"),
    ({"sources": ("a",), "noise_bps": float("nan")}, "noise_bps"),
    ({"sources": ("a",), "noise_bps": -1.0}, "noise_bps"),
    ({"sources": ("a",), "outages": (SourceOutage("a", 5, 5),)}, "start < end"),
    ({"sources": ("a",), "outages": (SourceOutage("z", 0, 5),)}, "outages"),
    ({"sources": ("a",), "stale_ms": 0}, "stale_ms"),
])
def test_bad_specs_are_refused_with_the_key(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(OracleFeedError, match=match):
        OracleFeedSpec(**kwargs)  # type: ignore[arg-type]
