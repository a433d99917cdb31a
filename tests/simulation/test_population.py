"""Synthetic populations: seeded, exact in lots, and loadable into a real engine."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest

from solvency.core.model.events import Deposit
from solvency.core.model.presets import load_preset
from solvency.engine.engine import STREET, Engine
from solvency.engine.liquidation import INSURANCE_ROW
from solvency.sim.paths import GbmSpec, simulate
from solvency.sim.population import (
    LeverageComponent,
    Population,
    PopulationSpec,
    generate_population,
    load_population,
)

PRICES = {"BTC-PERP": 121_234.56, "ETH-PERP": 4_321.987}


def _spec(**kw: object) -> PopulationSpec:
    base: dict[str, object] = {"n_accounts": 1500,
                               "open_interest_base": {"BTC-PERP": 850.123, "ETH-PERP": 9000.0}}
    base.update(kw)
    return PopulationSpec(**base)  # type: ignore[arg-type]


def _arrays(p: Population) -> list[np.ndarray]:
    return [p.collateral_asset, p.collateral_quanta, p.isolated, p.leverage,
            p.pos_account, p.pos_market, p.pos_lots, p.entry_ticks]


def test_same_seed_same_population() -> None:
    venue = load_preset("binance")
    spec = _spec(isolated_fraction=0.2, collateral_mix={"USDT": 0.8, "BTC": 0.2})
    a = generate_population(spec, venue, PRICES, 5)
    b = generate_population(spec, venue, PRICES, np.random.default_rng(5))
    c = generate_population(spec, venue, PRICES, 6)
    for x, y in zip(_arrays(a), _arrays(b), strict=True):
        np.testing.assert_array_equal(x, y)
    assert a.accounts == b.accounts and a.marks == b.marks
    assert not np.array_equal(a.pos_lots, c.pos_lots)


@pytest.mark.parametrize(("ratio", "oi_btc"), [
    pytest.param(1.0, 850.123, id="balanced"),
    pytest.param(1.37, 850.123, id="long-heavy"),
    pytest.param(0.61, 850.123, id="short-heavy"),
    pytest.param(2.0, 0.5, id="small-oi"),
])
def test_open_interest_and_ratio_exact_in_lots(ratio: float, oi_btc: float) -> None:
    venue = load_preset("binance")  # BTC-PERP and ETH-PERP lots are 0.001
    n = 300 if oi_btc < 1 else 1500
    spec = _spec(n_accounts=n, long_short_ratio=ratio,
                 open_interest_base={"BTC-PERP": oi_btc, "ETH-PERP": 9000.0})
    pop = generate_population(spec, venue, PRICES, 1)
    for market, oi in spec.open_interest_base.items():
        oi_lots = round(Fraction(repr(oi)) / Fraction("0.001"))
        long, short = pop.side_lots(market)
        r = Fraction(repr(ratio))
        want = (oi_lots, round(oi_lots / r)) if r >= 1 else (round(oi_lots * r), oi_lots)
        assert (long, short) == want
    engine = Engine(venue)
    load_population(engine, pop)
    engine.verify()
    oi_view = engine.open_interest()
    assert Decimal(oi_view["BTC-PERP"]) == Decimal(round(Fraction(repr(oi_btc)) * 1000)) / 1000
    assert Decimal(oi_view["ETH-PERP"]) == 9000
    assert all(v == 0 for v in engine.signed_size_sums().values())


def test_positions_on_the_grid_and_near_the_price() -> None:
    venue = load_preset("dydx")  # BTC tick 1, lot 0.0001: a different grid
    spec = PopulationSpec(n_accounts=800, open_interest_base={"BTC-PERP": 123.4567},
                          entry_spread=0.01)
    pop = generate_population(spec, venue, {"BTC-PERP": 100_000.4}, 2)
    assert pop.pos_lots.dtype == np.int64 and pop.entry_ticks.dtype == np.int64
    assert (pop.pos_lots != 0).all() and (pop.entry_ticks >= 1).all()
    entries = pop.entry_ticks * 1.0  # tick 1
    assert abs(np.median(entries) / 100_000 - 1) < 0.005
    assert pop.marks["BTC-PERP"] == Decimal(100_000)
    assert sum(pop.side_lots("BTC-PERP")) == 2 * 1_234_567
    engine = Engine(venue)
    load_population(engine, pop)
    engine.verify()
    assert engine.open_interest()["BTC-PERP"] == "123.4567"


def test_entries_drawn_from_the_recent_path() -> None:
    venue = load_preset("binance")
    path = simulate(GbmSpec(s0=120_000.0, sigma_annual=1.0, n_steps=1440), 1, 3).prices[0]
    spec = _spec(open_interest_base={"BTC-PERP": 500.0})
    pop = generate_population(spec, venue, {"BTC-PERP": float(path[-1])}, 4,
                              recent_prices={"BTC-PERP": path})
    entries = pop.entry_ticks * 0.1
    assert entries.min() >= path.min() - 0.1 and entries.max() <= path.max() + 0.1


def test_leverage_and_collateral() -> None:
    venue = load_preset("binance")
    spec = _spec(leverage=(LeverageComponent(0.7, 5.0, 0.3), LeverageComponent(0.3, 40.0, 0.2)),
                 leverage_max=50.0, collateral_mix={"USDT": 0.5, "USDC": 0.3, "BTC": 0.2})
    pop = generate_population(spec, venue, PRICES, 8)
    assert pop.leverage.min() >= 1.0 and pop.leverage.max() <= 50.0
    share_high = (pop.leverage > 15).mean()
    assert abs(share_high - 0.3) < 4 * np.sqrt(0.3 * 0.7 / 1500)
    # notional / collateral value = drawn leverage, up to the one-quantum round-up
    lot = 0.001
    px = np.array([PRICES[m] for m in pop.markets])
    notional = np.bincount(pop.pos_account, np.abs(pop.pos_lots) * lot * px[pop.pos_market],
                           minlength=1500)
    usd_per_quantum = {"USDT": 1e-6, "USDC": 1e-6, "BTC": PRICES["BTC-PERP"] * 1e-8}
    value = np.array([q * usd_per_quantum[pop.collateral_assets[a]]
                      for q, a in zip(pop.collateral_quanta, pop.collateral_asset, strict=True)])
    np.testing.assert_allclose(notional / value, pop.leverage, rtol=1e-6)
    counts = np.bincount(pop.collateral_asset, minlength=len(pop.collateral_assets)) / 1500
    assert abs(counts[pop.collateral_assets.index("BTC")] - 0.2) < 4 * np.sqrt(0.16 / 1500)


def test_sizes_are_heavy_tailed() -> None:
    venue = load_preset("binance")
    pop = generate_population(_spec(size_pareto_alpha=1.2), venue, PRICES, 9)
    lots = np.sort(np.abs(pop.pos_lots[pop.pos_market == 0]))[::-1]
    top = lots[: max(1, lots.shape[0] // 100)].sum() / lots.sum()
    assert top > 0.1  # the top 1 % of positions hold more than 10 % of the lots


def test_isolated_and_btc_collateral_load_into_engine() -> None:
    venue = load_preset("binance")
    spec = _spec(n_accounts=400, isolated_fraction=0.25, long_short_ratio=1.2,
                 collateral_mix={"USDT": 0.7, "BTC": 0.3})
    pop = generate_population(spec, venue, PRICES, 12)
    engine = Engine(venue)
    # funded first, as the stress lab does: loading liquidates a few accounts, and an
    # empty fund cannot take their positions over (issue 27), so ADL would close lots
    # and the open interest below would not be the population's
    engine.apply(Deposit(id="fund", account=INSURANCE_ROW, asset="USDT",
                         amount=Decimal(10_000_000)))
    load_population(engine, pop)
    totals = engine.verify()
    assert totals is not None
    iso = int(np.flatnonzero(pop.isolated)[0])
    view = engine.account_view(pop.accounts[iso])
    assert all(p["isolated"] for p in view["positions"])
    btc = pop.collateral_assets.index("BTC")
    i = int(np.flatnonzero(~pop.isolated & (pop.collateral_asset == btc))[0])
    view = engine.account_view(pop.accounts[i])
    # the view rounds to 6 decimals; the deposit itself is exact in satoshis
    btc_equity = Decimal(int(pop.collateral_quanta[i])) / 10**8
    assert abs(Decimal(view["equity"]["BTC"]) - btc_equity) <= Decimal("0.000001")
    assert STREET in engine.accounts
    for market in pop.markets:
        long, short = pop.side_lots(market)
        assert Decimal(engine.open_interest()[market]) == Decimal(max(long, short)) / 1000


def test_too_few_lots_for_the_accounts_is_refused() -> None:
    venue = load_preset("binance")
    spec = PopulationSpec(n_accounts=500, open_interest_base={"BTC-PERP": 0.1})
    with pytest.raises(ValueError, match="lots cannot cover"):
        generate_population(spec, venue, PRICES, 0)


@pytest.mark.parametrize("kw", [
    pytest.param({"open_interest_base": {}}, id="no-markets"),
    pytest.param({"long_short_ratio": 0.0}, id="zero-ratio"),
    pytest.param({"isolated_fraction": 1.5}, id="fraction>1"),
    pytest.param({"leverage_min": 10.0, "leverage_max": 5.0}, id="lev-bounds"),
])
def test_bad_specs_are_refused(kw: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        _spec(**kw)


def test_unknown_or_inverse_market_is_refused() -> None:
    venue = load_preset("binance")
    with pytest.raises(ValueError, match="not in venue"):
        generate_population(_spec(open_interest_base={"DOGE-PERP": 1.0}), venue, PRICES, 0)
    with pytest.raises(ValueError, match="inverse"):
        generate_population(_spec(open_interest_base={"BTC-USD-INVERSE": 1000.0}), venue,
                            {"BTC-USD-INVERSE": 1.0}, 0)
