"""Whatever the sources report, the engine never marks a market at a non-positive or
non-finite price, and never liquidates while a breaker forbids it (hypothesis)."""

from __future__ import annotations

import math
from decimal import Decimal as D
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from solvency.core.model.events import Deposit, EventError, Fill
from solvency.core.model.presets import venue_from_data
from solvency.engine.engine import Engine
from solvency.engine.inputs import parse_input

T0 = 1_772_323_200_000
SOURCES = ["binance", "coinbase", "okx"]

price_text = st.one_of(
    st.decimals(min_value=D("0.5"), max_value=D("400000"), places=1).map(str),
    st.sampled_from(["NaN", "Infinity", "-1", "0", "-100000", "1e30", "0.0000001"]),
)
report = st.fixed_dictionaries({
    "source": st.sampled_from([*SOURCES, "mallory"]),
    "price": price_text,
    "dt": st.integers(min_value=-120_000, max_value=10**12).filter(
        lambda x: x < 600_000 or x > 10**11),
    "step": st.integers(min_value=0, max_value=20_000),
})


@settings(max_examples=80, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(report, min_size=5, max_size=80))
def test_marks_stay_positive_and_finite_and_breakers_hold(reports: list[dict[str, Any]]) -> None:
    e = Engine(venue_from_data({"preset": "dydx", "oracle": {"sources": SOURCES}}))
    now = T0
    for s in SOURCES:
        e.apply(parse_input({"type": "oracle", "id": f"init-{s}", "source": s,
                             "market": "BTC-PERP", "price": "100000", "ts": now}))
    e.apply(Deposit(id="d1", account="a", asset="USDC", amount=D(2500)))
    e.apply(Deposit(id="d2", account="b", asset="USDC", amount=D(2500)))
    e.apply(Fill(id="f", market="BTC-PERP", buyer="a", seller="b", size=D(1),
                 price=D(100000)))
    m = e.book.market_index["BTC-PERP"]
    for i, r in enumerate(reports):
        now += r["step"]
        allowed_before = e.feeds.allows("BTC-PERP", "liquidate")
        try:
            ev = parse_input({"type": "oracle", "id": f"r{i}", "source": r["source"],
                              "market": "BTC-PERP", "price": r["price"],
                              "ts": max(0, now + r["dt"])})
        except EventError:
            continue
        out = e.apply(ev)
        mark = e.book.marks[m]
        assert mark is not None and mark > 0 and math.isfinite(float(mark))
        if any(o.type in ("liquidation", "adl") for o in out):
            assert allowed_before or e.feeds.allows("BTC-PERP", "liquidate")
        e.verify()
