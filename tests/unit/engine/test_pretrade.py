"""Pre-trade checks: one table row per reason code, plus acceptance and purity."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from decimal import Decimal

import pytest

from solvency.core.model.events import EventError
from solvency.engine.pretrade import (
    REASONS,
    Accept,
    LeverageTier,
    MarketLimits,
    Order,
    RateLimiter,
    Reject,
    check_order,
    parse_order,
    parse_order_cancel,
)
from tests.scenarios.pretrade_cases import CASES as ENGINE_CASES
from tests.scenarios.pretrade_cases import Case as EngineCase

LIMITS = MarketLimits(price_band=0.05, size_max=10.0, notional_max_quote=500_000.0,
                      position_max=20.0, oi_max=1_000.0,
                      leverage_tiers=(LeverageTier(250_000.0, 50.0),
                                      LeverageTier(1_000_000.0, 20.0),
                                      LeverageTier(2_500_000.0, 10.0)))


@dataclass
class FakeView:
    """A simple in-memory view (the shape the engine implements over its state)."""

    marks: dict[str, float | None] = field(default_factory=lambda: {"BTC": 50_000.0})
    positions: dict[tuple[str, str], float] = field(default_factory=dict)
    oi: dict[str, float] = field(default_factory=lambda: {"BTC": 100.0})
    modes: dict[str, str] = field(default_factory=dict)
    lev: float = 10.0
    free_collateral: float = 1e9
    limiter: RateLimiter = field(default_factory=lambda: RateLimiter(3, 1_000))
    calls: list[str] = field(default_factory=list)
    lim: MarketLimits = LIMITS
    bids_asks: dict[tuple[str, str], tuple[float, float]] = field(default_factory=dict)

    def limits(self, market: str) -> MarketLimits | None:
        return self.lim if market == "BTC" else None

    def mode(self, market: str) -> str:
        return self.modes.get(market, "normal")

    def mark(self, market: str) -> float | None:
        return self.marks.get(market)

    def position(self, account: str, market: str) -> float:
        return self.positions.get((account, market), 0.0)

    def open_interest(self, market: str) -> float:
        return self.oi.get(market, 0.0)

    def leverage(self, account: str, market: str) -> float:
        return self.lev

    def free_collateral_after(self, account: str, market: str, delta: float,
                              price: float) -> float:
        self.calls.append(f"im {account} {delta} {price}")
        # IM at 1/leverage of the notional after
        pos = self.position(account, market) + delta
        return self.free_collateral - abs(pos) * price / self.lev

    def rate_limited(self, account: str, now_ms: int) -> bool:
        return self.limiter.would_exceed(account, now_ms)

    def exceeds_ledger(self, account: str, market: str, delta: float,
                       price: float) -> bool:
        return abs(self.position(account, market) + delta) * price > 1e18

    def resting(self, account: str, market: str) -> tuple[float, float]:
        return self.bids_asks.get((account, market), (0.0, 0.0))


def _order(side: str = "buy", size: str = "1", price: str | None = "50000",
           reduce_only: bool = False, market: str = "BTC") -> Order:
    return Order(id="o1", account="alice", market=market, side=side,  # type: ignore[arg-type]
                 size=Decimal(size), price=Decimal(price) if price else None,
                 reduce_only=reduce_only, ts_ms=0)


def _setup(**kw: object) -> FakeView:
    view = FakeView()
    for k, v in kw.items():
        setattr(view, k, v)
    return view


def _rate_limited() -> FakeView:
    view = FakeView()
    for _ in range(3):
        view.limiter.record("alice", 0)
    return view


CASES = [
    ("invalid_order", _order(size="NaN"), FakeView),
    ("unknown_market", _order(market="DOGE"), FakeView),
    ("size_off_lot", _order(size="1.5"),
     lambda: _setup(lim=replace(LIMITS, lot_size=Decimal("1")))),
    ("price_off_tick", _order(price="50000.5"),
     lambda: _setup(lim=replace(LIMITS, tick_size=Decimal("1")))),
    ("market_halted", _order(), lambda: _setup(modes={"BTC": "halted"})),
    ("rate_limited", _order(), _rate_limited),
    ("no_mark", _order(), lambda: _setup(marks={"BTC": None})),
    ("price_outside_band", _order(price="52600"), FakeView),
    ("order_size_too_large", _order(size="11"), FakeView),
    ("order_notional_too_large", _order(size="10", price="52000"),
     lambda: _setup(marks={"BTC": 52_000.0}, positions={})),
    ("size_too_large", _order(), lambda: _setup(positions={("alice", "BTC"): 1e14})),
    ("reduce_only_would_increase", _order(reduce_only=True), FakeView),
    ("market_reduce_only", _order(), lambda: _setup(modes={"BTC": "reduce_only"})),
    ("position_limit", _order(size="2"), lambda: _setup(positions={("alice", "BTC"): 19.0})),
    ("open_interest_cap", _order(size="2"), lambda: _setup(oi={"BTC": 999.0})),
    ("leverage_exceeds_tier", _order(size="6"), lambda: _setup(lev=25.0)),
    ("insufficient_initial_margin", _order(), lambda: _setup(free_collateral=1_000.0)),
]


def test_every_reason_has_a_case() -> None:
    assert [c[0] for c in CASES] == list(REASONS)


@pytest.mark.parametrize(("reason", "order", "make_view"), [
    pytest.param(*c, id=c[0]) for c in CASES])
def test_reason_codes(reason: str, order: Order, make_view: object) -> None:
    view = make_view()  # type: ignore[operator]
    res = check_order(order, view)
    assert isinstance(res, Reject), res
    assert res.reason == reason and res.order_id == "o1" and res.detail


@pytest.mark.parametrize("case", ENGINE_CASES, ids=[c.name for c in ENGINE_CASES])
def test_reason_codes_through_the_engine(case: EngineCase) -> None:
    """The same codes answered by a real engine (``Engine.apply``) over its own state:
    tests/scenarios/pretrade_cases.py builds a book that reaches each one."""
    e = case.make()
    [res] = e.apply(case.order)
    assert (res.type, res.event, res.account, res.market) == (
        "order", case.order.id, case.order.account, case.order.market)
    assert (res.status, res.reason) == ("rejected" if case.reason else "accepted",
                                        case.reason), res.detail
    assert bool(res.detail) == bool(case.reason)


def test_every_reason_is_reached_through_the_engine() -> None:
    assert [c.reason for c in ENGINE_CASES if c.reason] == list(REASONS)


@pytest.mark.parametrize(("order", "view_kw", "reduces"), [
    pytest.param(_order(), {}, False, id="opening buy"),
    pytest.param(_order(price=None), {}, False, id="market order priced at the mark"),
    pytest.param(_order(side="sell", size="2", reduce_only=True),
                 {"positions": {("alice", "BTC"): 5.0}}, True, id="reduce-only sell"),
    pytest.param(_order(side="sell", size="2"),
                 {"positions": {("alice", "BTC"): 5.0}, "modes": {"BTC": "reduce_only"}},
                 True, id="reducing in a reduce-only market"),
    pytest.param(_order(side="sell", size="5"),
                 {"positions": {("alice", "BTC"): 25.0}, "free_collateral": -1.0,
                  "oi": {"BTC": 5_000.0}}, True,
                 id="reducing skips limits and margin"),
    pytest.param(_order(size="4"), {"lev": 20.0}, False, id="tier 2 allows 20x"),
])
def test_accepts(order: Order, view_kw: dict[str, object], reduces: bool) -> None:
    res = check_order(order, _setup(**view_kw))
    assert res == Accept("o1", reduces)


def test_flip_counts_as_growing_risk() -> None:
    view = _setup(positions={("alice", "BTC"): 3.0}, oi={"BTC": 998.0})
    res = check_order(_order(side="sell", size="6"), view)  # 3 -> -3: OI +3
    assert isinstance(res, Reject) and res.reason == "open_interest_cap"
    res = check_order(_order(side="sell", size="6", reduce_only=True), _setup(
        positions={("alice", "BTC"): 3.0}))
    assert isinstance(res, Reject) and res.reason == "reduce_only_would_increase"


@pytest.mark.parametrize(("side", "size", "bids_asks", "accepted"), [
    ("buy", "3", (0.0, 0.0), True),    # short 5, buys 3: reduces, no margin check
    ("buy", "3", (1.0, 0.0), True),    # + 1 resting bid: 4 <= 5, still reducing
    ("buy", "3", (2.5, 0.0), False),   # + 2.5: 5.5 > 5 could turn long: margin checked
    ("buy", "3", (0.0, 9.0), True),    # resting asks are on the other side
], ids=["alone", "bids-within", "bids-beyond", "asks-other-side"])
def test_reducing_order_with_resting_orders_on_its_side(
        side: str, size: str, bids_asks: tuple[float, float], accepted: bool) -> None:
    """Drift protocol-v2 0ae3e3b1 math/orders.rs ``is_new_order_risk_increasing``: a buy
    against a short is risk-increasing once open bids + its size exceed the short; then
    the margin check runs (here it fails: free collateral -1)."""
    view = _setup(positions={("alice", "BTC"): -5.0}, free_collateral=-1.0,
                  bids_asks={("alice", "BTC"): bids_asks})
    res = check_order(_order(side=side, size=size), view)
    if accepted:
        assert res == Accept("o1", True)
    else:
        assert isinstance(res, Reject) and res.reason == "insufficient_initial_margin"
        assert "open orders" in res.detail


def test_parse_resting_order_and_cancel() -> None:
    base: dict[str, object] = {"type": "order", "id": "1", "account": "a", "market": "BTC",
                               "side": "buy", "size": "1"}
    assert parse_order({**base, "price": "100", "rest": True}).rest
    assert not parse_order(base).rest
    for bad, reason in [({"rest": True}, "missing_field"),  # no limit price
                        ({"price": "100", "rest": 1}, "invalid_field")]:
        with pytest.raises(EventError) as exc:
            parse_order({**base, **bad})
        assert exc.value.reason == reason
    c = parse_order_cancel({"type": "order_cancel", "id": "2", "account": "a", "order": "1"})
    assert (c.account, c.order) == ("a", "1")
    for bad, reason in [({"order": ""}, "invalid_field"), ({"x": 1}, "unknown_field"),
                        ({"order": None}, "missing_field")]:
        obj: dict[str, object] = {"type": "order_cancel", "id": "2", "account": "a",
                                  "order": "1"}
        obj.update(bad)
        if obj["order"] is None:
            del obj["order"]
        with pytest.raises(EventError) as exc:
            parse_order_cancel(obj)
        assert exc.value.reason == reason


def test_beyond_last_tier() -> None:
    lim = MarketLimits(leverage_tiers=(LeverageTier(1_000.0, 10.0),))

    class V(FakeView):
        def limits(self, market: str) -> MarketLimits | None:
            return lim

    res = check_order(_order(), V(lev=1.0))
    assert isinstance(res, Reject) and "beyond the last tier" in res.detail


def test_check_changes_nothing() -> None:
    """Accepted orders move no balance: the view is only read (IM via the callback)."""
    view = FakeView()
    before = (dict(view.positions), dict(view.oi), view.free_collateral)
    assert isinstance(check_order(_order(), view), Accept)
    assert (dict(view.positions), dict(view.oi), view.free_collateral) == before
    assert view.calls == ["im alice 1.0 50000.0"]


def test_rate_limiter_window_on_event_clock() -> None:
    rl = RateLimiter(2, 1_000)
    assert not rl.would_exceed("a", 0)
    rl.record("a", 0)
    rl.record("a", 500)
    assert rl.would_exceed("a", 999) and not rl.would_exceed("b", 999)
    assert not rl.would_exceed("a", 1_000)  # the order at 0 left the window
    assert not RateLimiter(0, 1).would_exceed("a", 0)


def test_parse_order() -> None:
    o = parse_order({"type": "order", "id": "1", "account": "a", "market": "BTC",
                     "side": "sell", "size": "0.5", "price": "100", "reduce_only": True,
                     "ts": "2025-01-01T00:00:00Z"})
    assert o.side == "sell" and o.size == Decimal("0.5") and o.reduce_only
    for bad, reason in [({"side": "long"}, "invalid_field"), ({"size": "-1"}, "non_positive"),
                        ({"size": "NaN"}, "invalid_number"), ({"x": 1}, "unknown_field"),
                        ({"reduce_only": "yes"}, "invalid_field")]:
        obj: dict[str, object] = {"type": "order", "id": "1", "account": "a",
                                  "market": "BTC", "side": "buy", "size": "1"}
        obj.update(bad)
        with pytest.raises(EventError) as exc:
            parse_order(obj)
        assert exc.value.reason == reason


def test_inverse_notional_is_contracts_times_size() -> None:
    lim = MarketLimits(contract_size=100.0, inverse=True)
    assert lim.notional_quote(-3.0, 50_000.0) == 300.0
    assert math.isinf(MarketLimits().size_max)


def test_engine_leverage_counts_inverse_notional_in_usd() -> None:
    # The leverage the tier check reads: gross notional over collateral, both in USD. An
    # inverse position's value is kept in coin; it was once added to USD notionals as is
    # (2 BTC read as $2), which made a coin-margined account look unlevered.
    from solvency.core.model.presets import load_preset
    from solvency.engine.engine import Engine
    from solvency.engine.inputs import parse_input_line

    e = Engine(load_preset("binance"))
    lines = [
        '{"type":"price","id":"p1","market":"BTC-PERP","price":"100000"}',
        '{"type":"price","id":"p2","market":"BTC-USD-INVERSE","price":"100000"}',
        '{"type":"deposit","id":"d1","account":"a","asset":"BTC","amount":"1"}',
        '{"type":"deposit","id":"d2","account":"b","asset":"BTC","amount":"1"}',
        '{"type":"fill","id":"f1","market":"BTC-USD-INVERSE","buyer":"a","seller":"b",'
        '"size":"2000","price":"100000"}',
    ]
    for line in lines:
        assert [o.type for o in e.apply(parse_input_line(line))] == [], line
    from solvency.engine.feeds import EngineView

    view = EngineView(e, e.feeds)
    coll = float(e.account_view("a")["collateral_usd"])
    # 2,000 contracts x 100 USD = 200,000 USD of notional on ~100,000 USD of collateral
    assert view.leverage("a", "BTC-USD-INVERSE") == pytest.approx(200_000 / coll, rel=1e-6)
