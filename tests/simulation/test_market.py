"""Liquidity model: quotes on the grid, monotone prices, thinning and recovery, sqrt impact."""

from __future__ import annotations

import itertools
import math
from decimal import Decimal
from pathlib import Path

import pytest

from solvency.core.model.presets import load_preset
from solvency.engine.ports import Liquidity
from solvency.sim.market import (
    DepthProfile,
    ImpactLiquidity,
    LiquiditySpec,
    load_binance_book_depth,
    sqrt_impact,
)

BOOK_DEPTH = "btcusdt_binance_um_bookdepth_2025-10-10.csv.gz"
TICK = Decimal("0.1")
MARK = Decimal("120000.0")


def _model(*, depth: float = 17.0, max_bps: float = 500.0, consume: bool = True,
           **kw: object) -> ImpactLiquidity:
    spec = LiquiditySpec(DepthProfile.uniform(depth, max_bps), daily_volume_base=150_000.0,
                         **kw)  # type: ignore[arg-type]
    return ImpactLiquidity(load_preset("binance"), {"BTC-PERP": spec}, consume=consume)


def test_is_a_liquidity_port() -> None:
    assert isinstance(_model(), Liquidity)


@pytest.mark.parametrize("lots", [1, 7, 12_345, 500_000, -1, -9_999, -600_000])
def test_quote_lots_sum_and_prices_worsen(lots: int) -> None:
    fills = _model(consume=False).quote("BTC-PERP", lots, MARK, TICK)
    assert sum(f.lots for f in fills) == abs(lots)
    assert all(f.lots > 0 for f in fills)
    prices = [f.price for f in fills]
    assert all(p > 0 and p % TICK == 0 for p in prices)
    if lots > 0:
        assert all(b > a for a, b in itertools.pairwise(prices))
        assert prices[0] >= MARK
    else:
        assert all(b < a for a, b in itertools.pairwise(prices))
        assert prices[0] <= MARK


def test_quote_stops_when_the_book_runs_out() -> None:
    # 1 BTC per bp to 100 bps: 100 BTC = 100,000 lots of 0.001 on the bid side
    fills = _model(depth=1.0, max_bps=100.0, consume=False).quote(
        "BTC-PERP", -10**9, MARK, TICK)
    assert sum(f.lots for f in fills) == 100_000
    assert fills[-1].price == Decimal("118800.0")  # 100 bps below the mark


def test_prices_never_non_positive() -> None:
    model = _model(depth=0.001, max_bps=9_999.0, consume=False, band_bps=100.0)
    fills = model.quote("BTC-PERP", -10**9, Decimal("0.5"), Decimal("0.1"))
    assert fills and all(f.price >= Decimal("0.1") for f in fills)


def test_depth_thins_with_volatility_and_recovers_with_half_life() -> None:
    hl = 15 * 60_000
    model = _model(depth_half_life_ms=hl, vol_ref_annual=0.5, consume=False)
    calm = model.quote("BTC-PERP", -200_000, MARK, TICK)
    model.advance(60_000, 2.0)                      # 4x the reference vol: depth / 4
    assert model.depth_factor("BTC-PERP") == pytest.approx(0.25)
    thin = model.quote("BTC-PERP", -200_000, MARK, TICK)
    assert thin[-1].price < calm[-1].price          # the same size goes deeper
    model.advance(60_000 + hl, 0.5)                 # calm again: half the gap back
    assert model.depth_factor("BTC-PERP") == pytest.approx(1 - 0.75 / 2)
    model.advance(60_000 + 2 * hl, 0.5)
    assert model.depth_factor("BTC-PERP") == pytest.approx(1 - 0.75 / 4)
    model.advance(60_000 + 40 * hl, 0.1)
    assert model.depth_factor("BTC-PERP") == pytest.approx(1.0)


def test_depth_floor() -> None:
    model = _model(min_depth_fraction=0.1)
    model.advance(1, 1_000.0)
    assert model.depth_factor("BTC-PERP") == 0.1


def test_square_root_impact_scaling() -> None:
    # Toth et al. (2011), Bouchaud et al. (2018): impact = Y sigma sqrt(Q / V); 4x Q -> 2x.
    small, big = _model(), _model()
    small.quote("BTC-PERP", -10_000, MARK, TICK)      # 10 BTC sold, recorded as flow
    big.quote("BTC-PERP", -40_000, MARK, TICK)        # 40 BTC
    assert big.impact("BTC-PERP") / small.impact("BTC-PERP") == pytest.approx(2.0, rel=1e-12)
    sigma_daily = 0.5 / math.sqrt(365.0)
    assert small.impact("BTC-PERP") == pytest.approx(
        -1.0 * sigma_daily * math.sqrt(10.0 / 150_000.0), rel=1e-12)
    assert sqrt_impact(4.0, daily_volume_base=1.0, sigma_daily=0.1, y=0.5) == pytest.approx(0.1)


def test_impact_moves_trade_price_and_oracle_by_weight() -> None:
    index = 120_000.0
    for w in (0.0, 0.3, 1.0):
        model = _model(oracle_weight=w)
        model.record_flow("BTC-PERP", -500.0)
        i = model.impact("BTC-PERP")
        assert i < 0
        assert model.trade_price("BTC-PERP", index) == pytest.approx(index * math.exp(i))
        assert model.oracle_price("BTC-PERP", index) == pytest.approx(index * math.exp(w * i))
    model = _model(oracle_weight=0.0)
    assert model.oracle_price("BTC-PERP", index) == index


def test_impact_decays_with_half_life_and_shifts_next_quote() -> None:
    hl = 30 * 60_000
    model = _model(impact_half_life_ms=hl)
    first = model.quote("BTC-PERP", -100_000, MARK, TICK)
    second = model.quote("BTC-PERP", -1, MARK, TICK)
    assert second[0].price < first[0].price          # the book moved down after the flow
    before = model.impact("BTC-PERP")
    model.advance(hl, 0.5)
    assert model.impact("BTC-PERP") == pytest.approx(before / math.sqrt(2.0), rel=1e-12)


def test_deterministic_replay() -> None:
    def run() -> dict[str, object]:
        model = _model()
        for k in range(20):
            model.advance(k * 60_000, 0.4 + 0.1 * (k % 7))
            model.quote("BTC-PERP", (-1) ** k * 1000 * (k + 1), MARK, TICK)
        return model.snapshot()
    assert run() == run()


def test_time_cannot_go_backwards() -> None:
    model = _model()
    model.advance(10, 0.5)
    with pytest.raises(ValueError, match="backwards"):
        model.advance(5, 0.5)


def test_unknown_market_quotes_nothing_and_zero_lots() -> None:
    model = _model()
    assert model.quote("ETH-PERP", 5, MARK, TICK) == []
    assert model.quote("BTC-PERP", 0, MARK, TICK) == []


def test_inverse_market_quotes_in_contracts() -> None:
    venue = load_preset("binance")  # BTC-USD-INVERSE: 100 USD contracts
    spec = LiquiditySpec(DepthProfile.uniform(10.0), daily_volume_base=50_000.0)
    model = ImpactLiquidity(venue, {"BTC-USD-INVERSE": spec})
    fills = model.quote("BTC-USD-INVERSE", -20_000, MARK, TICK)  # 2 M USD = ~16.7 BTC
    assert sum(f.lots for f in fills) == 20_000
    assert model.state["BTC-USD-INVERSE"].flow_base == pytest.approx(-2_000_000 / 120_000)


def test_binance_book_depth_profile(shared_data: Path) -> None:
    # README: median bookDepth on 2025-10-10; bid depth within -5 % collapsed at 21:24-21:32.
    median = load_binance_book_depth(shared_data / BOOK_DEPTH)
    assert median.distance_bps == (100.0, 200.0, 300.0, 400.0, 500.0)
    assert median.bid_base[0] == pytest.approx(1709.383)
    assert median.ask_base[0] == pytest.approx(2016.567)
    crash = load_binance_book_depth(shared_data / BOOK_DEPTH, at_ms=1_760_131_500_000)  # 21:25 UTC
    assert crash.bid_base[-1] < 0.01 * median.bid_base[-1]
    spec = LiquiditySpec(median, daily_volume_base=391_964.0)  # 2025-10-10 perp volume
    model = ImpactLiquidity(load_preset("binance"), {"BTC-PERP": spec}, consume=False)
    fills = model.quote("BTC-PERP", -2_000_000, MARK, TICK)     # 2,000 BTC
    assert sum(f.lots for f in fills) == 2_000_000
    assert Decimal("118000") < fills[-1].price < Decimal("118900")  # between 1 % and 2 %
