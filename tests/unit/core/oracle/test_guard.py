"""Oracle guard: report validation, staleness, quorum, manipulation, dYdX publication."""

from __future__ import annotations

import math
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from solvency.core.model.events import EventError
from solvency.core.oracle import (
    BookInputs,
    IndexUpdate,
    MarkConfig,
    MarkPricer,
    OracleConfig,
    OracleConfigError,
    OracleGuard,
    SourceRejected,
    parse_oracle_line,
    parse_oracle_report,
)

SOURCES = ("binance", "okx", "coinbase")


def _guard(**kw: object) -> OracleGuard:
    return OracleGuard(["BTC-PERP"], SOURCES, OracleConfig(**kw))  # type: ignore[arg-type]


# ------------------------------------------------------------------ parsing


def test_parse_report_iso_and_epoch() -> None:
    r = parse_oracle_line('{"type":"oracle","id":"o1","source":"okx","market":"BTC-PERP",'
                          '"price":"64012.5","ts":"2025-10-10T21:20:00Z"}')
    assert (r.source, r.key, r.price, r.ts_ms) == ("okx", "BTC-PERP", Decimal("64012.5"),
                                                   1760131200000)
    r2 = parse_oracle_report({"type": "oracle", "id": "o2", "source": "okx", "asset": "ETH",
                              "price": "3000", "ts": 1760131200000})
    assert r2.key == "ETH" and r2.ts_ms == 1760131200000


@pytest.mark.parametrize(("obj", "reason"), [
    pytest.param({"price": "NaN"}, "invalid_number", id="nan"),
    pytest.param({"price": "-1"}, "non_positive", id="negative"),
    pytest.param({"price": "0"}, "non_positive", id="zero"),
    pytest.param({"price": 1.5}, "invalid_number", id="binary float"),
    pytest.param({"ts": None}, "missing_field", id="no ts"),
    pytest.param({"ts": "2025-10-10T21:20:00+02:00"}, "invalid_timestamp", id="not UTC"),
    pytest.param({"asset": "BTC"}, "missing_field", id="market and asset"),
    pytest.param({"extra": 1}, "unknown_field", id="extra field"),
    pytest.param({"source": "a b"}, "invalid_field", id="space in source"),
])
def test_parse_report_refuses(obj: dict[str, object], reason: str) -> None:
    base: dict[str, object] = {"type": "oracle", "id": "o1", "source": "okx",
                               "market": "BTC-PERP", "price": "1", "ts": 0}
    base.update(obj)
    with pytest.raises(EventError) as exc:
        parse_oracle_report({k: v for k, v in base.items() if v is not None})
    assert exc.value.reason == reason


def test_parse_line_refuses_nan_constant() -> None:
    with pytest.raises(EventError, match="invalid_number"):
        parse_oracle_line('{"type":"oracle","id":"o","source":"a","market":"m",'
                          '"price":NaN,"ts":0}')


# ------------------------------------------------------------------ guard basics


@pytest.mark.parametrize(("source", "market", "price", "ts", "reason"), [
    pytest.param("nope", "BTC-PERP", 1.0, 1_000, "unknown_source", id="unknown source"),
    pytest.param("okx", "ETH-PERP", 1.0, 1_000, "unknown_market", id="unknown market"),
    pytest.param("okx", "BTC-PERP", math.nan, 1_000, "invalid_price", id="nan"),
    pytest.param("okx", "BTC-PERP", math.inf, 1_000, "invalid_price", id="inf"),
    pytest.param("okx", "BTC-PERP", 0.0, 1_000, "non_positive_price", id="zero"),
    pytest.param("okx", "BTC-PERP", -5.0, 1_000, "non_positive_price", id="negative"),
    pytest.param("okx", "BTC-PERP", 1.0, -1, "invalid_timestamp", id="negative ts"),
    pytest.param("okx", "BTC-PERP", Decimal("1e400"), 1_000, "invalid_price", id="overflow"),
])
def test_update_rejects(source: str, market: str, price: float, ts: int, reason: str) -> None:
    g = _guard()
    before = (g.prices.copy(), g.ts_ms.copy())
    res = g.update(source, market, price, ts)
    assert isinstance(res, SourceRejected) and res.reason == reason
    np.testing.assert_array_equal(g.prices, before[0])
    np.testing.assert_array_equal(g.ts_ms, before[1])


def test_update_rejects_future_out_of_order_and_stale_reports() -> None:
    g = _guard()
    g.update("okx", "BTC-PERP", 100.0, 50_000)
    res = g.update("okx", "BTC-PERP", 100.0, 60_000, now_ms=50_000)
    assert isinstance(res, SourceRejected) and res.reason == "future_timestamp"
    res = g.update("okx", "BTC-PERP", 100.0, 40_000, now_ms=50_000)
    assert isinstance(res, SourceRejected) and res.reason == "out_of_order"
    res = g.update("binance", "BTC-PERP", 100.0, 10_000, now_ms=50_000)
    assert isinstance(res, SourceRejected) and res.reason == "stale_report"


def test_quorum_and_provenance() -> None:
    g = _guard()
    assert g.update("binance", "BTC-PERP", 100.0, 1_000) is None  # one source < quorum 2
    upd = g.update("okx", "BTC-PERP", 102.0, 1_500)
    assert isinstance(upd, IndexUpdate)
    assert upd.reliable and upd.price == 101.0 and upd.sources == ("binance", "okx")
    assert upd.dropped == (("coinbase", "missing"),)
    assert upd.to_decimal(Decimal("0.5")) == Decimal("101.0")


def test_tick_reports_quorum_loss_and_holds_price() -> None:
    g = _guard()
    for s in SOURCES:
        g.update(s, "BTC-PERP", 100.0, 0)
    assert g.tick(10_000) == []  # nothing changed
    g.update("binance", "BTC-PERP", 100.5, 20_000)
    [upd] = g.tick(35_000)  # okx and coinbase (ts 0) are now stale
    assert not upd.reliable and upd.held and upd.price == 100.0
    assert dict(upd.dropped) == {"okx": "stale", "coinbase": "stale"}


def test_jump_rule_flags_a_source_against_its_own_history() -> None:
    g = _guard(band=0.5)  # wide band: only the jump rule can catch it
    for i in range(5):
        for s in SOURCES:
            g.update(s, "BTC-PERP", 100.0 + 0.01 * i, i * 1_000)
    upd = g.update("coinbase", "BTC-PERP", 130.0, 5_000)
    assert isinstance(upd, IndexUpdate)
    assert ("coinbase", "jump") in upd.dropped and upd.price < 100.1


def test_config_refuses_bad_values() -> None:
    with pytest.raises(OracleConfigError, match="band"):
        OracleConfig(band=0.0)
    with pytest.raises(OracleConfigError, match="unknown keys"):
        OracleConfig.from_mapping({"stale": 1})
    with pytest.raises(OracleConfigError, match="weights"):
        OracleGuard(["m"], ["a"], OracleConfig(weights={"b": 1.0}))


def test_weights_from_config() -> None:
    g = OracleGuard(["m"], ["a", "b", "c"], OracleConfig(weights={"c": 3.0}, band=0.5))
    g.update("a", "m", 100.0, 0)
    g.update("b", "m", 101.0, 0)
    upd = g.update("c", "m", 102.0, 0)
    assert isinstance(upd, IndexUpdate) and upd.price == 102.0


# ------------------------------------------------------------------ dYdX publication


def test_dydx_publication_smooths_and_refuses_small_moves() -> None:
    g = _guard(acceptance="dydx", min_price_change_ppm=1_000, smoothing=0.5)
    for s in SOURCES:
        g.update(s, "BTC-PERP", 100.0, 0)
    # a move below 0.1 % is not published
    for s in SOURCES:
        upd = g.update(s, "BTC-PERP", 100.05, 1_000)
    assert isinstance(upd, IndexUpdate)
    assert upd.price == 100.0 and upd.acceptance == "below_min_price_change"
    # a jump to 104: the proposal is the smoothed price (closer to the current one)
    for s in SOURCES:
        upd = g.update(s, "BTC-PERP", 104.0, 2_000)
    assert isinstance(upd, IndexUpdate)
    assert upd.acceptance == "accepted" and 100.0 < upd.price < 104.0


def test_validate_proposal_against_index() -> None:
    g = _guard(min_price_change_ppm=50)
    for s in SOURCES:
        g.update(s, "BTC-PERP", 50.0, 0)
    for s in SOURCES:
        g.update(s, "BTC-PERP", 50.1, 1_000)  # published = index = 50.1
    assert g.validate_proposal("BTC-PERP", 50.1) is None
    refused = g.validate_proposal("BTC-PERP", 60.0)
    assert refused is not None and refused[0] == "not_towards_index"
    assert g.validate_proposal("ETH", 1.0) == ("no_index", "market 'ETH' has no reliable index")


# ------------------------------------------------------------------ manipulation


def _honest(t_s: int) -> float:
    return 100.0 * (1.0 + 0.002 * math.sin(t_s / 37.0))


@pytest.mark.parametrize("factor", [1.5, 0.5], ids=["plus50", "minus50"])
@pytest.mark.parametrize("method", ["index", "binance", "hyperliquid", "bitmex"])
def test_one_of_three_sources_manipulated_for_a_minute(factor: float, method: str) -> None:
    """One of three sources reports +50 % (or -50 %) for 60 s: index and mark stay honest."""
    g = _guard()
    pricer = MarkPricer("BTC-PERP", MarkConfig.preset(method))  # type: ignore[arg-type]
    rng = np.random.default_rng(7)
    for t in range(0, 300):
        ts = t * 1_000
        truth = _honest(t)
        honest = [truth * (1 + 1e-4 * rng.standard_normal()) for _ in SOURCES]
        for s, px in zip(SOURCES, honest, strict=True):
            bad = s == "coinbase" and 120 <= t < 180
            upd = g.update(s, "BTC-PERP", px * factor if bad else px, ts)
            if upd is None:
                continue
            assert isinstance(upd, IndexUpdate) and upd.reliable
            lo, hi = min(honest) * 0.999, max(honest) * 1.001
            assert lo <= upd.price <= hi, (t, s, upd)
            book = BookInputs(bid=truth * 0.9999, ask=truth * 1.0001, last=truth,
                              funding_rate=0.0001, next_funding_ms=8 * 3_600_000)
            res = pricer.mark(upd, book)
            assert res is not None
            assert truth * 0.998 <= res.price <= truth * 1.002, (t, res)
            if s == "coinbase" and 121 <= t < 180:
                assert "coinbase" not in upd.sources
                assert "coinbase" not in res.sources


# ------------------------------------------------------------------ property


_bad_price = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.just(0.0),
                       st.floats(max_value=0.0), st.floats(1e-300, 1e300),
                       st.decimals(allow_nan=True, allow_infinity=True))
_ts = st.one_of(st.integers(-10, 200_000), st.integers(10**12, 10**15))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(SOURCES), _bad_price, _ts, st.booleans()),
                min_size=1, max_size=40),
       st.sampled_from(["index", "binance", "hyperliquid", "bitmex"]))
def test_index_and_mark_always_finite_and_positive(
        reports: list[tuple[str, object, int, bool]], method: str) -> None:
    """Whatever sources report, every index and mark out is finite and > 0, no exception."""
    g = _guard()
    pricer = MarkPricer("BTC-PERP", MarkConfig.preset(method))  # type: ignore[arg-type]
    for source, price, ts, do_tick in reports:
        upd = g.update(source, "BTC-PERP", price, ts)  # type: ignore[arg-type]
        updates = [upd] if isinstance(upd, IndexUpdate) else []
        if do_tick:
            updates += g.tick(abs(ts))
        for u in updates:
            assert math.isfinite(u.price) and u.price > 0.0
            bad = price if isinstance(price, float) else math.nan
            res = pricer.mark(u, BookInputs(bid=bad, ask=bad, last=bad, funding_rate=bad,
                                            next_funding_ms=ts, external_mids=(bad,)))
            assert res is not None
            assert math.isfinite(res.price) and res.price > 0.0
            assert res.to_decimal(Decimal("0.01")) > 0
