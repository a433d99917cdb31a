"""The engine's pre-trade view answers through compiled and cached shortcuts (issue 14:
orders through ``Engine.apply`` at >= 50,000/s): the leverage in one kernel call
(``kernels.row_leverage``), the position read once per order, contract and lot sizes
converted once per instrument. Here, on random books (cross and isolated accounts, linear
and inverse markets, USDT and BTC collateral) and random orders, every leverage equals
the Python reference's exactly, and every order gets the answer a view without the
shortcuts gives (reason and detail text)."""

from __future__ import annotations

import math
import random
from decimal import Decimal

from solvency.engine.engine import Engine
from solvency.engine.feeds import EngineView
from solvency.engine.pretrade import Order, check_order
from tests.unit.engine.helpers import apply, engine

MARKETS = ("BTC-PERP", "ETH-PERP", "BTC-USD-INVERSE")
MARKS = {"BTC-PERP": 100_000.0, "ETH-PERP": 4_000.0, "BTC-USD-INVERSE": 100_000.0}


class ReferenceView(EngineView):
    """The view as it was before the shortcuts: the Python leverage walk, the position
    looked up at every ask, sizes converted from the instrument's Decimals each time."""

    def leverage(self, account: str, market: str) -> float:
        return self.leverage_reference(account, market)

    def position(self, account: str, market: str) -> float:
        return self._position(account, market)

    def _sizes(self, m: int) -> tuple[object, float, float]:  # type: ignore[override]
        inst = self.ctx.book.instruments[m]
        return inst, float(inst.contract_size), float(inst.lot_size)


def _book(seed: int) -> tuple[Engine, list[str]]:
    rnd = random.Random(seed)
    e = engine("binance")
    names = [f"a{i}" for i in range(14)]
    for i, name in enumerate(names):
        if i % 5 == 4:
            apply(e, "account", account=name, mode="isolated")
        apply(e, "deposit", account=name, asset="USDT", amount=str(rnd.randint(500, 60_000)))
        if i % 3 == 0:
            apply(e, "deposit", account=name, asset="BTC", amount=str(rnd.randint(1, 30) / 100))
    for m, px in MARKS.items():
        apply(e, "price", market=m, price=str(px))
    for _ in range(40):
        m = rnd.choice(MARKETS)
        buyer, seller = rnd.sample(names, 2)
        size = str(rnd.randint(1, 40)) if m == "BTC-USD-INVERSE" else str(
            Decimal(rnd.randint(1, 400)) * Decimal("0.001"))
        apply(e, "fill", market=m, buyer=buyer, seller=seller, size=size,
              price=str(MARKS[m]))  # some refused for margin: the book is what is left
    return e, names


def test_kernel_leverage_equals_the_python_walk() -> None:
    checked = 0
    for seed in range(3):
        e, names = _book(seed)
        for name in [*names, "nobody"]:
            for m in MARKETS:
                fast = EngineView(e, e.feeds).leverage(name, m)
                ref = EngineView(e, e.feeds).leverage_reference(name, m)
                assert fast == ref or (math.isnan(fast) and math.isnan(ref)), (name, m)
                checked += fast > 0.0
    assert checked > 50  # accounts with positions, not only empty rows


def test_orders_get_the_reference_answers() -> None:
    rnd = random.Random(7)
    reasons: set[str] = set()
    for seed in range(3):
        e, names = _book(seed)
        for i in range(300):
            m = rnd.choice(MARKETS)
            lot = Decimal("1") if m == "BTC-USD-INVERSE" else Decimal("0.001")
            size = lot * rnd.choice((1, 7, 50, 300, 2_000, 40_000, 10**9, 10**14))
            price = (None if rnd.random() < 0.3 else
                     Decimal(str(round(MARKS[m] * rnd.uniform(0.93, 1.07), 1))))
            order = Order(id=f"o{i}", account=rnd.choice([*names, "nobody"]), market=m,
                          side=rnd.choice(("buy", "sell")), size=size, price=price,
                          reduce_only=rnd.random() < 0.1, ts_ms=None)
            fast = check_order(order, EngineView(e, e.feeds), 0)
            ref = check_order(order, ReferenceView(e, e.feeds), 0)
            assert fast == ref, (seed, order)
            reasons.add(getattr(fast, "reason", "accepted"))
    # the answers compared cover the checks the shortcuts feed
    assert {"accepted", "size_too_large", "leverage_exceeds_tier",
            "insufficient_initial_margin", "price_outside_band"} <= reasons, reasons
