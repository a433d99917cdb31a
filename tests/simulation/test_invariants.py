"""The runner's no-position immunity check (sim/run.py ``_FlatWatch``) catches a charge."""

from __future__ import annotations

from decimal import Decimal

from solvency.core.ledger.ledger import FEES, Transfer
from solvency.core.model.events import Deposit, Fill, Price
from solvency.core.model.presets import venue_from_data
from solvency.engine.engine import Engine
from solvency.sim.agents import Agents, AgentsSpec
from solvency.sim.market import ImpactLiquidity
from solvency.sim.run import _FlatWatch


def _engine() -> Engine:
    e = Engine(venue_from_data({"preset": "binance"}))
    e.apply(Price(id="p", market="BTC-PERP", price=Decimal(100_000)))
    for name in ("flat", "long", "short"):
        e.apply(Deposit(id=f"d:{name}", account=name, asset="USDT", amount=Decimal(50_000)))
    e.apply(Fill(id="f", market="BTC-PERP", buyer="long", seller="short", size=Decimal(1),
                 price=Decimal(100_000)))
    return e


def test_untouched_flat_account_passes_and_deposits_may_raise_it() -> None:
    e = _engine()
    watch = _FlatWatch(e)
    assert watch.check() == ""
    e.apply(Price(id="p2", market="BTC-PERP", price=Decimal(90_000)))
    e.apply(Deposit(id="d2", account="flat", asset="USDT", amount=Decimal(5)))
    assert watch.check() == ""


def test_a_charge_to_a_flat_account_is_reported() -> None:
    e = _engine()
    watch = _FlatWatch(e)
    assert watch.check() == ""
    # a bug that charges a flat account (here posted by hand): caught at the next check
    e.post([Transfer("u:flat", FEES, "USDT", 1, "fee")])
    e.sync_balance(e.book.row_index["flat"], e.book.asset_index["USDT"])
    assert "flat account flat was charged" in watch.check()


def test_an_account_that_trades_is_not_flat_any_more() -> None:
    e = _engine()
    watch = _FlatWatch(e)
    assert watch.check() == ""
    e.apply(Fill(id="f2", market="BTC-PERP", buyer="flat", seller="short",
                 size=Decimal("0.1"), price=Decimal(100_000), fee_buyer=Decimal(1)))
    assert watch.check() == ""  # it paid a fee as a trader, not as a flat account


def test_a_round_trip_between_checks_is_a_trade_not_a_charge() -> None:
    # the 2024-08-05 hyperliquid replay at 10,000 accounts (verify_every 240): the
    # arbitrageur, flat at the check of step 7200, bought BTC-PERP at step 7218 and was
    # liquidated at step 7234, flat again by the check of step 7440 with 4,378.30 USDC
    # less: a trading loss the check reported as "flat account arbitrageur was charged".
    # Here: "flat" buys 1 BTC at 100,000 and sells it at 90,000 between two checks,
    # through the crew's apply as the runner's agents do.
    e = _engine()
    crew = Agents(AgentsSpec(), venue=e.venue, book=ImpactLiquidity(e.venue, {}, start_ms=0),
                  markets=["BTC-PERP"], settle="USDT", start_ms=0, seed=0)
    crew.engine = e
    watch = _FlatWatch(e, crew.traded)
    assert watch.check() == ""
    crew.apply(Fill(id="open", market="BTC-PERP", buyer="flat", seller="short",
                    size=Decimal(1), price=Decimal(100_000)))
    crew.apply(Price(id="p2", market="BTC-PERP", price=Decimal(90_000)))
    crew.apply(Fill(id="close", market="BTC-PERP", buyer="long", seller="flat",
                    size=Decimal(1), price=Decimal(90_000)))
    r = e.book.row_index["flat"]
    assert e.book.row_nslots[r] == 0  # flat at both checks, 10,000 USDT less
    assert e.ledger.balance(e.book.rows[r].ledger_id, "USDT") == 40_000 * 10**6
    assert crew.traded == {"flat", "short", "long"}
    assert watch.check() == ""
    assert crew.traded == set()  # read and cleared: the next interval starts afresh
    # flat again and untouched since: a charge now is reported
    e.post([Transfer("u:flat", FEES, "USDT", 1, "fee")])
    e.sync_balance(r, e.book.asset_index["USDT"])
    assert "flat account flat was charged" in watch.check()


def test_fund_equity_metrics_follow_the_equity_series() -> None:
    from solvency.sim.run import run_scenario
    from tests.simulation.test_run import small

    r = run_scenario(small(depth=0.3, fund=20_000, horizon="90m"))
    eq = r.series.insurance_fund_equity
    assert r.metrics["insurance_fund_equity_min"] == float(eq.min())
    peak = float(max(eq[: int(eq.argmin()) + 1]))
    assert r.metrics["insurance_fund_equity_drawdown"] >= peak - float(eq.min())
    assert r.metrics["insurance_fund_equity_drawdown"] > 0.0  # the fund paid something
