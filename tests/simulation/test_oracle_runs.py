"""Stress-lab runs whose marks arrive as oracle reports: guard, mark preset, breakers."""

from __future__ import annotations

import pytest

from solvency.engine.breakers import STATES
from solvency.sim.run import run_scenario
from solvency.sim.scenario import ScenarioError, parse_scenario
from tests.simulation.test_run import SMALL

BASE = {"horizon": "2h", "seed": 11, "verify_every": 1, "vol": 0.4, "gap": 0.02,
        "depth": 0.12, "n": 600, "venue": "binance", "fund": 50000}


def _scenario(oracle: str, **kw: object) -> object:
    return parse_scenario(SMALL.format(**{**BASE, **kw}) + oracle, source="t")


SOURCES = '\n[oracle]\nsources = ["a", "b", "c", "d", "e"]\n'
# four of five sources dark from 25 to 70 minutes: the crash (30..50 min) happens below
# the guard's quorum of 2, and the default quorum_lost breaker pauses liquidations
DARK = SOURCES + """outages = [
  { source = "a", start = "25m", duration = "45m" },
  { source = "b", start = "25m", duration = "45m" },
  { source = "c", start = "25m", duration = "45m" },
  { source = "d", start = "25m", duration = "45m" },
]
"""


def test_reports_with_all_sources_match_price_events() -> None:
    """Five honest, noiseless sources: the median is the index, the mark preset ``index``
    makes it the mark, so the run is the price-event run (oracle_weight 0)."""
    plain = run_scenario(parse_scenario(SMALL.format(**BASE), source="t"))
    fed = run_scenario(_scenario(SOURCES))  # type: ignore[arg-type]
    for key in ("liquidations", "accounts_liquidated", "bad_debt", "adl_count"):
        assert fed.metrics[key] == plain.metrics[key], key
    assert fed.metrics["conserved"] is True
    for times in fed.metrics["breaker_time_ms"].values():
        assert times["normal"] == 2 * 3_600_000
        assert sum(times.values()) == times["normal"]


def test_sources_going_dark_pause_liquidations_until_quorum_returns() -> None:
    fed = run_scenario(_scenario(DARK))  # type: ignore[arg-type]
    full = run_scenario(_scenario(SOURCES))  # type: ignore[arg-type]
    assert fed.metrics["conserved"] is True
    times = {m: t["liquidations_paused"] for m, t in fed.metrics["breaker_time_ms"].items()}
    assert all(v >= 45 * 60_000 for v in times.values()), times
    s = fed.series
    # nothing liquidated while the breaker held, and the held-back accounts were
    # liquidated once quorum came back
    paused = STATES.index("liquidations_paused")
    held = (s.breaker["BTC-PERP"] == paused) & (s.breaker["ETH-PERP"] == paused)
    assert held.any()
    assert int(s.liq_count[held].sum()) == 0
    assert full.metrics["liquidations"] > 0
    assert fed.metrics["liquidations"] > 0  # ... and happened once the breaker recovered
    first = int(s.liq_count.nonzero()[0][0])
    assert first > int(held.nonzero()[0][-1])
    # while paused, accounts under maintenance pile up instead of being closed
    assert int(s.at_risk[held].max()) > int(full.series.at_risk.max()) // 2


def test_oracle_table_is_validated_with_its_key() -> None:
    bad = [
        ('\n[oracle]\nsources = []\n', "at least one"),
        ('\n[oracle]\nsources = ["a"]\nvenue_sources = ["x"]\n', "venue_sources"),
        ('\n[oracle]\nnoise_bps = -2.0\n', "noise_bps"),
        ('\n[oracle]\nlag = { binance = -5 }\n', "oracle.lag.binance"),
        ('\n[oracle]\noutages = [{ source = "okx", start = "1m" }]\n', "duration"),
        ('\n[oracle]\nstale = 0\n', "oracle.stale"),
        ('\n[oracle]\nquorum = 2\n', "quorum"),
    ]
    for text, match in bad:
        with pytest.raises(ScenarioError, match=match):
            _scenario(text)


def test_bundled_scenarios_all_parse() -> None:
    """Every scenario file in scenarios/ parses (replays resolve their data lazily)."""
    from pathlib import Path

    from solvency.sim.scenario import load_scenario

    files = sorted((Path(__file__).resolve().parents[2] / "scenarios").glob("*.toml"))
    assert len(files) >= 5
    for f in files:
        s = load_scenario(f)
        assert s.markets, f
    outage = load_scenario(files[0].parent / "oracle_outage.toml")
    assert outage.oracle is not None and len(outage.oracle.outages) == 4
