"""Every pre-trade reason code reached through a real engine (``Engine.apply``).

The unit table (tests/unit/engine/test_pretrade.py) checks :func:`check_order` against a
fake view; this one builds a Binance-preset engine fed by three oracle sources and answers
one order per reason code through ``Engine.apply``, so the engine's own view (its marks,
positions, open interest, breakers, rate limiter, what-if margin and ledger range) decides.
tests/scenarios/test_engine_oracle.py uses the same cases to show that an answered order,
accepted or rejected, changes no section of the state but the sequence (its id).

The common book, at BTC-PERP 100,000 and ETH-PERP 2,000 (Binance USD-M brackets):

* alice: 100,000 USDT, long 1 BTC-PERP from bob (bob: 100,000 USDT, short 1);
* carol: 100 USDT, no position;
* erin: 420 USDT, long 0.49 BTC-PERP from bob: 49,000 notional at about 117x, inside
  the first bracket (up to 50,000 notional, 125x) and above the second's 100x.

BTC-PERP's limits: ``size_max`` 10, ``notional_max_quote`` 500,000, ``position_max`` 3,
``oi_max`` 3 (open interest: 1.49); 3 orders a second per account.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal as D
from typing import Any

from solvency.core.model.events import Deposit, Fill
from solvency.core.model.presets import venue_from_data
from solvency.engine.engine import Engine
from solvency.engine.inputs import parse_input
from solvency.engine.pretrade import Order

T0 = 1_772_323_200_000  # 2026-03-01T00:00:00Z
SOURCES = ("binance", "coinbase", "okx")
LIMITS = {"BTC-PERP": {"size_max": "10", "notional_max_quote": "500000",
                       "position_max": "3", "oi_max": "3"}}


def tick(e: Engine, sec: int, price: str, *, market: str = "BTC-PERP",
         sources: tuple[str, ...] = SOURCES) -> list[Any]:
    """Every source in ``sources`` reports ``price`` for ``market`` at ``T0 + sec`` s."""
    out: list[Any] = []
    for src in sources:
        out += e.apply(parse_input({"type": "oracle", "id": f"{market}-{src}-{sec}",
                                    "source": src, "market": market, "price": price,
                                    "ts": T0 + sec * 1000}))
    return out


def book(**oracle: Any) -> Engine:
    """The common book (module docstring); ``oracle`` overrides the venue's oracle keys."""
    e = Engine(venue_from_data({"preset": "binance", "oracle": {
        "sources": list(SOURCES), "limits": LIMITS,
        "rate_limit": {"max_orders": 3, "window_ms": 1000}, **oracle}}))
    tick(e, 0, "100000")
    tick(e, 0, "2000", market="ETH-PERP")
    for acct, usdt in (("alice", 100_000), ("bob", 100_000), ("carol", 100), ("erin", 420)):
        assert e.apply(Deposit(id=f"d-{acct}", account=acct, asset="USDT",
                               amount=D(usdt))) == []
    for fid, buyer, size in (("f-alice", "alice", "1"), ("f-erin", "erin", "0.49")):
        out = e.apply(Fill(id=fid, market="BTC-PERP", buyer=buyer, seller="bob",
                           size=D(size), price=D(100_000)))
        assert out == [], out
    return e


def order(oid: str, account: str = "alice", market: str = "BTC-PERP", side: str = "buy",
          size: str = "0.1", price: str | None = "100000", reduce_only: bool = False,
          ts_s: int | None = None) -> Order:
    """An order as the engine receives it (``ts_s``: seconds after T0, None: no time)."""
    return Order(id=oid, account=account, market=market, side=side,  # type: ignore[arg-type]
                 size=D(size), price=None if price is None else D(price),
                 reduce_only=reduce_only, ts_ms=None if ts_s is None else T0 + ts_s * 1000)


def _halted() -> Engine:
    # a tight index-move rule (5 % in 5 min -> halted) and a 10 % fall of every source
    e = book(breakers={"rules": [{"name": "move", "kind": "index_move", "action": "halted",
                                  "threshold": 0.05, "window_ms": 300_000}]})
    out = tick(e, 5, "90000")
    assert any(o.type == "breaker" and o.to_state == "halted" for o in out), out
    return e


def _quorum_lost() -> Engine:
    # two sources fall silent: past their 30 s staleness the quorum is lost and the
    # breaker pauses liquidations, which makes the market reduce-only for orders
    e = book()
    for sec in range(5, 40, 5):
        tick(e, sec, "100000", sources=("okx",))
    assert e.feeds.mode("BTC-PERP") == "reduce_only"
    return e


def _rate_used() -> Engine:
    e = book()
    for k in range(3):
        [res] = e.apply(order(f"warm-{k}", side="sell", size="0.001", ts_s=1))
        assert res.status == "accepted", res
    return e


@dataclass(frozen=True)
class Case:
    """One order answered by an engine built by ``make``: ``reason`` '' when accepted."""

    name: str
    make: Callable[[], Engine]
    order: Order
    reason: str


CASES: list[Case] = [
    Case("invalid_order", book, order("o", size="NaN"), "invalid_order"),
    Case("unknown_market", book, order("o", market="DOGE-PERP"), "unknown_market"),
    Case("size_off_lot", book, order("o", size="0.0005"), "size_off_lot"),
    Case("price_off_tick", book, order("o", price="100000.05"), "price_off_tick"),
    Case("market_halted", _halted, order("o", price="90000"), "market_halted"),
    Case("rate_limited", _rate_used, order("o", ts_s=1), "rate_limited"),
    Case("no_mark", book, order("o", market="BTC-FUT-260327"), "no_mark"),
    Case("price_outside_band", book, order("o", price="105100"), "price_outside_band"),
    Case("order_size_too_large", book, order("o", size="11"), "order_size_too_large"),
    Case("order_notional_too_large", book, order("o", size="6"), "order_notional_too_large"),
    Case("size_too_large", book, order("o", market="ETH-PERP", size="1000000000000000",
                                       price="2000"), "size_too_large"),
    Case("reduce_only_would_increase", book, order("o", reduce_only=True),
         "reduce_only_would_increase"),
    Case("market_reduce_only", _quorum_lost, order("o"), "market_reduce_only"),
    Case("position_limit", book, order("o", size="2.1"), "position_limit"),
    Case("open_interest_cap", book, order("o", account="carol", size="1.6"),
         "open_interest_cap"),
    Case("leverage_exceeds_tier", book, order("o", account="erin", size="0.02"),
         "leverage_exceeds_tier"),
    Case("insufficient_initial_margin", book, order("o", account="carol", size="0.5"),
         "insufficient_initial_margin"),
    Case("accepted opening buy", book, order("o", account="carol", size="0.001"), ""),
    Case("accepted market order", book, order("o", account="carol", size="0.001",
                                              price=None), ""),
    Case("accepted reducing sell in a reduce-only market", _quorum_lost,
         order("o", side="sell", size="0.5", reduce_only=True), ""),
    Case("accepted reducing buy that closes bob's short", book,
         order("o", account="bob", size="1.49"), ""),
]
"""One case per reason code of :data:`solvency.engine.pretrade.REASONS`, in check order,
then accepted orders."""
