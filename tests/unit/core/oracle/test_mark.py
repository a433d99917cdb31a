"""Mark price presets: formulas with their sources, provenance, clamps and rounding."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest

from solvency.core.oracle import (
    BookInputs,
    IndexUpdate,
    MarkConfig,
    MarkPricer,
    OracleConfigError,
    TimeEMA,
    price_to_decimal,
)

H8 = 8 * 3_600_000


def _update(price: float, ts: int = 0, reliable: bool = True) -> IndexUpdate:
    return IndexUpdate(market="BTC-PERP", price=price, reliable=reliable, held=not reliable,
                       ts_ms=ts, n_used=3, quorum=2, sources=("a", "b", "c"), dropped=(),
                       spread=0.0, raw=price)


@pytest.mark.parametrize(("rate", "until_ms", "expected"), [
    # BitMEX "Fair Price Marking": fair = index x (1 + rate x time_until_funding / interval)
    pytest.param(0.0001, H8, 100.0 * (1 + 0.0001), id="full interval ahead"),
    pytest.param(0.0001, H8 // 2, 100.0 * (1 + 0.00005), id="half decayed"),
    pytest.param(-0.003, H8 // 4, 100.0 * (1 - 0.00075), id="negative rate"),
    pytest.param(0.0001, 0, 100.0, id="at funding time: basis gone"),
])
def test_bitmex_fair_price(rate: float, until_ms: int, expected: float) -> None:
    res = MarkPricer("BTC-PERP", MarkConfig.preset("bitmex")).mark(
        _update(100.0), BookInputs(funding_rate=rate, next_funding_ms=until_ms))
    assert res is not None
    assert res.price == pytest.approx(expected, rel=1e-15)
    assert res.method == "bitmex" and res.chosen == "fair_price"
    assert res.sources == ("a", "b", "c")


def test_binance_median_of_basis_mid_and_last() -> None:
    # the Binance preset: median(index + EMA basis, mid (impact first), last)
    p = MarkPricer("BTC-PERP", MarkConfig.preset("binance"))
    res = p.mark(_update(100.0), BookInputs(bid=100.2, ask=100.4, last=99.0))
    assert res is not None
    comps = dict(res.components)
    assert comps["index_plus_basis"] == pytest.approx(100.3)  # first sample: basis = 0.3
    assert comps["mid"] == pytest.approx(100.3)
    assert res.price == pytest.approx(100.3)
    res = p.mark(_update(100.0, 1_000), BookInputs(impact_bid=100.0, impact_ask=100.2,
                                                   bid=1.0, ask=1.0, last=101.0))
    assert res is not None
    assert dict(res.components)["impact_mid"] == pytest.approx(100.1)


def test_binance_basis_ema_is_time_weighted() -> None:
    ema = TimeEMA(300_000)
    ema.update(1.0, 0)
    ema.update(0.0, 300_000)  # sample 0 held for one time constant
    num = 1.0 * math.exp(-1.0) + 0.0 * 300_000
    den = 1.0 * math.exp(-1.0) + 300_000
    assert ema.value == pytest.approx(num / den)


def test_hyperliquid_three_inputs_and_fallback() -> None:
    # Hyperliquid docs: median(oracle + 150 s EMA(mid - oracle), median(bid, ask, last),
    # median of external perp mids); with exactly two inputs, add the 30 s EMA of the
    # book median.
    p = MarkPricer("BTC-PERP", MarkConfig.preset("hyperliquid"))
    assert p.config.basis_ms == 150_000
    res = p.mark(_update(100.0), BookInputs(bid=100.0, ask=100.4, last=100.1,
                                            external_mids=(100.3, 100.5, 100.2)))
    assert res is not None
    comps = dict(res.components)
    assert set(comps) == {"oracle_plus_ema_basis", "book_median", "external_mids_median"}
    assert comps["book_median"] == 100.1 and comps["external_mids_median"] == 100.3
    assert res.price == pytest.approx(100.2)
    res = p.mark(_update(100.0, 1_000), BookInputs(bid=100.0, ask=100.4, last=100.1))
    assert res is not None
    assert "book_median_ema30s" in dict(res.components)


def test_clamp_and_notes() -> None:
    p = MarkPricer("BTC-PERP", MarkConfig(method="binance", max_basis=0.01))
    res = p.mark(_update(100.0), BookInputs(bid=150.0, ask=150.0, last=150.0))
    assert res is not None
    assert res.price == pytest.approx(101.0)
    assert any(n.startswith("clamped") for n in res.notes)
    prov = res.provenance()
    assert prov["method"] == "binance" and prov["sources"] == ["a", "b", "c"]


def test_unreliable_index_is_flagged() -> None:
    res = MarkPricer("BTC-PERP").mark(_update(100.0, reliable=False))
    assert res is not None and not res.index_reliable and res.price == 100.0


def test_invalid_index_gives_no_mark() -> None:
    assert MarkPricer("BTC-PERP").mark(math.nan, ts_ms=0) is None
    assert MarkPricer("BTC-PERP").mark(-1.0, ts_ms=0) is None


@pytest.mark.parametrize(("price", "tick", "expected"), [
    pytest.param(100.25, Decimal("0.5"), Decimal("100.0"), id="half-even down"),
    pytest.param(100.75, Decimal("0.5"), Decimal("101.0"), id="half-even up"),
    pytest.param(64012.34567, Decimal("0.1"), Decimal("64012.3"), id="nearest tick"),
    pytest.param(1e-9, Decimal("0.01"), Decimal("0.01"), id="never below one tick"),
])
def test_price_to_decimal(price: float, tick: Decimal, expected: Decimal) -> None:
    assert price_to_decimal(price, tick) == expected


def test_config_refuses_unknown_method() -> None:
    with pytest.raises(OracleConfigError):
        MarkConfig(method="nope")  # type: ignore[arg-type]
