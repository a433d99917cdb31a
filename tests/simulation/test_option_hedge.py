"""Re-hedging the stress lab's option writers during a run (issue 29 / issue 14):
``[population.options.hedge]``, sim/option_hedge.py.

The hand case: the one writer of ``test_option_holders.py`` (short one at-the-money BTC
call, 7 days, mark vol 80 %, Deribit preset, the price rising 500 USDC a minute) hedged
at the opening, re-hedges every 5 minutes with half its net delta. At the first interval
(5 minutes, the mark at 42,500) its net delta is its perp minus the call's Black-76 delta
``N(d1)``, ``d1 = (ln(S/K) + sigma^2 t / 2) / (sigma sqrt t)`` (Black 1976, "The pricing
of commodity contracts", J. Financial Economics 3; Hull, "Options, Futures and Other
Derivatives", 10th ed., eq. 18.9), ``t`` in ACT/365; the order is ``round_half_even(0.5 x
|net| / 0.0001)`` lots (the rules of ``engine/hedging.py``'s Hedger), filled against the
book's makers at the mark (no perp book in this case) with Deribit's 0.05 % taker fee
(https://www.deribit.com/kb/fees), rounded up to the USDC quantum.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal
from math import erf, log, sqrt
from pathlib import Path
from typing import Any

import pytest

from solvency.core.ledger.ledger import FEES
from solvency.engine.liquidation import MARKET
from solvency.sim.run import run_scenario, venue_steps
from solvency.sim.scenario import ScenarioError, parse_scenario_data
from tests.simulation.test_option_holders import S0, _bars, _data

DAY_MS = 86_400_000
HEDGE = {"interval": "5m", "hedge_ratio": 0.5, "maker_capital": 1_000_000.0}


def _scenario(tmp: Path, hedge: dict[str, Any] | None, **options: Any) -> Any:
    data = _data(_bars(tmp), margin_multiple=3.0, **options)
    if hedge is not None:
        data["population"]["options"]["hedge"] = hedge
    return parse_scenario_data(data, source="hand")


def _call_delta(s: float, t: float) -> float:
    d1 = (log(s / S0) + 0.5 * 0.64 * t) / (0.8 * sqrt(t))
    return 0.5 * (1 + erf(d1 / sqrt(2)))


def _state(eng: Any, name: str) -> tuple[int, int, int, int]:
    b = eng.book
    r, mk = b.row_index[name], b.row_index[MARKET]
    m = b.market_index["BTC-PERP"]
    s, sm = b.slot_of(r, m), b.slot_of(mk, m)
    return (int(b.slot_lots[s]), int(b.slot_lots[sm]) if sm >= 0 else 0,
            int(eng.ledger.balance(b.rows[r].ledger_id, "USDC")),
            int(eng.ledger.balance(FEES, "USDC")))


def test_first_rehedge_by_hand_and_its_fill_on_the_ledger(tmp_path: Path) -> None:
    sc = _scenario(tmp_path, HEDGE)
    steps = venue_steps(sc, state_hashes=True)
    seen: dict[int, tuple[int, int, int, int]] = {}
    marks: dict[int, float] = {}
    name = ""
    try:
        while True:
            st = next(steps)
            name = st.accounts[0]
            if st.k in (20, 21):
                seen[st.k] = _state(st.engine, name)
            if st.k == 21:
                m = st.engine.book.market_index["BTC-PERP"]
                marks[20] = float(st.engine.book.marks[m])
    except StopIteration as stop:
        result = stop.value
    # step 20 is 5 minutes in: the mark is 42,500 (bar 5 of the rise)
    assert marks[20] == S0 + 5 * 500
    lots0, mk0, cash0, fees0 = seen[20]
    lots1, mk1, cash1, fees1 = seen[21]
    t = (7 * DAY_MS - 5 * 60_000) / (365 * DAY_MS)
    net = lots0 * 0.0001 - _call_delta(42_500.0, t)  # the opening hedge, then the rise
    assert net < -0.01  # the short call's delta grew: the writer is short
    want = round(0.5 * abs(net) / 0.0001)  # Python's round: half to even
    assert lots1 - lots0 == want  # a buy of half the net delta
    assert mk1 - mk0 == -want  # the makers sold it
    # the fill at the mark (no perp book): notional paid, fee up to the quantum
    notional_q = want * 42_500 * 100  # 0.0001 BTC x 42,500 USDC in 1e-6 quanta
    fee_q = int((Decimal(notional_q) * Decimal("0.0005")).to_integral_value(ROUND_CEILING))
    assert fees1 - fees0 == fee_q
    assert cash0 - cash1 == notional_q + fee_q
    h = result.metrics["options"]["hedge"]
    assert h["trades"] >= 1 and h["cost_fees"] >= fee_q / 1e6
    assert result.metrics["violation"] is None and result.metrics["conserved"]


def test_hedging_that_never_comes_changes_nothing(tmp_path: Path) -> None:
    # an interval past the run's end and no maker capital: the same events, state, hash
    off = run_scenario(_scenario(tmp_path, None), state_hashes=True).metrics
    late = run_scenario(_scenario(tmp_path, {"interval": "30d"}), state_hashes=True).metrics
    assert late["engine_state_hash"] == off["engine_state_hash"]
    assert late["options"]["hedge"]["rounds"] == 0
    assert {k: v for k, v in late["options"].items() if k != "hedge"} == off["options"]


def test_same_seed_same_hedges_and_hash(tmp_path: Path) -> None:
    sc = _scenario(tmp_path, HEDGE, kinds=["call", "put"], moneyness=[-0.1, 0.0])
    a = run_scenario(sc, state_hashes=True).metrics
    b = run_scenario(sc, state_hashes=True).metrics
    assert a["engine_state_hash"] == b["engine_state_hash"]
    assert a["options"]["hedge"] == b["options"]["hedge"]
    assert a["options"]["hedge"]["trades"] > 0
    assert a["violation"] is None and a["conserved"]


@pytest.mark.parametrize(("hedge", "message"), [
    ({"interval": 0}, "population.options.hedge.interval"),
    ({"interval": "5m", "hedge_ratio": 0.0}, "population.options.hedge.hedge_ratio"),
    ({"interval": "5m", "band_share": 2.0}, "population.options.hedge.band_share"),
    ({"interval": "5m", "bands": 1.0}, "population.options.hedge.bands"),
], ids=["zero-interval", "zero-ratio", "band-share-above-1", "typo"])
def test_bad_hedge_settings_are_refused_with_their_key(
        tmp_path: Path, hedge: dict[str, Any], message: str) -> None:
    with pytest.raises(ScenarioError, match=message.replace(".", r"\.")):
        _scenario(tmp_path, hedge)

