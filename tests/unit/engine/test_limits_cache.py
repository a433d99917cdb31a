"""The pre-trade view keeps each market's limits (``MarketLimits``, leverage tiers from the
market's brackets) between orders; a ``params`` event that changes the brackets must be
seen by the next order. Here: the kept limits equal freshly built ones after the change,
and a book that kept its limits answers every order as a restored copy of it, which
builds them anew."""

from __future__ import annotations

from types import MappingProxyType

from solvency.core.model.events import Params
from solvency.engine.engine import Engine
from solvency.engine.feeds import EngineView, _market_limits
from solvency.engine.pretrade import Order
from tests.unit.engine.helpers import apply, engine

# Binance's BTC-PERP brackets, cut to two, at a fifth of the leverage
TIGHT = [{"floor": "0", "max_leverage": "25", "mmr": "0.004"},
         {"floor": "50000", "max_leverage": "20", "mmr": "0.005"}]


def _book() -> Engine:
    e = engine("binance")
    for name, amount in (("alice", "6000"), ("bob", "20000")):
        apply(e, "deposit", account=name, asset="USDT", amount=amount)
    apply(e, "price", market="BTC-PERP", price="100000")
    apply(e, "fill", market="BTC-PERP", buyer="alice", seller="bob", size="1.5",
          price="100000")  # alice at 25x: within the loose brackets, above the tight
    return e


def _answers(e: Engine) -> list[tuple[str, str, str]]:
    return [e.preview_order(Order(id=f"q{i}", account="alice", market="BTC-PERP",
                                  side=side, size=size, price=None, ts_ms=None))
            for i, (side, size) in enumerate(
                (s, z) for s in ("buy", "sell") for z in ("0.001", "0.5", "1", "3", "40"))]


def test_params_change_reaches_the_kept_limits() -> None:
    e = _book()
    view = EngineView(e, e.feeds)
    before = view.limits("BTC-PERP")
    assert before is not None
    assert EngineView(e, e.feeds).limits("BTCUSDT") is before  # kept (alias too)
    loose = _answers(e)
    out = e.apply(Params(id="tighten", market="BTC-PERP",
                         changes=MappingProxyType({"tiers": TIGHT})))
    assert not out or out[0].type != "rejected", out
    after = EngineView(e, e.feeds).limits("BTC-PERP")
    m = e.book.market_index["BTC-PERP"]
    assert after == _market_limits(e.book.instruments[m], {})
    assert [t.max_leverage for t in after.leverage_tiers] == [25.0, 20.0]
    assert after != before
    tight = _answers(e)
    assert tight != loose  # the tighter brackets refuse what the loose ones took
    assert any(reason == "leverage_exceeds_tier" for _, reason, _ in tight)
    assert tight == _answers(Engine.restore(e.snapshot()))
