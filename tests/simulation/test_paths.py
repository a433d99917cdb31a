"""Seeded market paths: determinism, statistics within standard errors, intrabar replay."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from solvency.adapters.ohlcv import read_ohlcv
from solvency.sim.paths import (
    MS_PER_YEAR,
    BootstrapSpec,
    CrashSpec,
    GarchSpec,
    GbmSpec,
    MertonSpec,
    PathSpec,
    ReplaySpec,
    bootstrap_indices,
    crash_template,
    fit_garch_spec,
    intrabar_path,
    load_returns,
    merton_increments,
    simulate,
    simulate_assets,
)

PERP_5M = "btcusdt_binance_um_perp_5m_2025-10-08_2025-10-13.csv"
SPOT_1M = "btcusdt_binance_spot_1m_2024-08-02_2024-08-08.csv"
ETH_1M = "ethusdt_binance_spot_1m_2024-08-02_2024-08-08.csv"
PERP_1H = "btcusdt_binance_um_perp_1h_2019-09-08_2022-07-27.csv.gz"
Z = 4.0  # tolerance in standard errors (two-sided p ~ 6e-5 per check)

GARCH = GarchSpec(s0=100.0, omega=2e-6, alpha=0.08, beta=0.9, nu=8.0, n_steps=200)


def _specs(data: Path) -> dict[str, PathSpec]:
    return {
        "gbm": GbmSpec(s0=100.0, n_steps=50),
        "merton": MertonSpec(s0=100.0, n_steps=50, jump_intensity_annual=5000.0),
        "garch": GARCH,
        "gjr": GarchSpec(s0=100.0, omega=2e-6, alpha=0.05, gamma=0.06, beta=0.9, nu=5.0),
        "crash": CrashSpec(s0=100.0),
        "bootstrap-stationary": BootstrapSpec(source=str(data / SPOT_1M), n_steps=300),
        "bootstrap-fixed": BootstrapSpec(source=str(data / SPOT_1M), method="fixed",
                                         block_len=17, n_steps=300),
    }


@pytest.mark.parametrize("name", ["gbm", "merton", "garch", "gjr", "crash",
                                  "bootstrap-stationary", "bootstrap-fixed"])
def test_same_seed_same_paths(shared_data: Path, name: str) -> None:
    spec = _specs(shared_data)[name]
    a = simulate(spec, 64, 123)
    b = simulate(spec, 64, np.random.default_rng(123))
    c = simulate(spec, 64, 124)
    np.testing.assert_array_equal(a.prices, b.prices)
    np.testing.assert_array_equal(a.ts_ms, b.ts_ms)
    assert not np.array_equal(a.prices, c.prices)
    assert a.prices.shape == (64, a.ts_ms.shape[0])
    assert (a.prices > 0).all() and np.isfinite(a.prices).all()


def test_gbm_log_return_mean_and_variance() -> None:
    # Black-Scholes GBM: log returns are i.i.d. N((mu - sigma^2/2) dt, sigma^2 dt).
    spec = GbmSpec(s0=50_000.0, mu_annual=0.3, sigma_annual=0.9, n_steps=500, step_ms=300_000)
    r = simulate(spec, 1000, 7).log_returns().ravel()
    dt = spec.step_ms / MS_PER_YEAR
    mean, var = (0.3 - 0.5 * 0.81) * dt, 0.81 * dt
    n = r.shape[0]
    assert abs(r.mean() - mean) < Z * math.sqrt(var / n)
    assert abs(r.var(ddof=1) - var) < Z * var * math.sqrt(2.0 / (n - 1))


def test_gbm_starts_at_s0_on_the_grid() -> None:
    p = simulate(GbmSpec(s0=123.0, n_steps=10, step_ms=1000, start_ms=5000), 3, 0)
    assert (p.prices[:, 0] == 123.0).all()
    np.testing.assert_array_equal(p.ts_ms, 5000 + 1000 * np.arange(11))


def test_merton_jump_frequency_and_martingale() -> None:
    # Merton 1976: N ~ Poisson(lambda dt) per step; with the compensator E[S_T] = s0 e^{mu T}.
    spec = MertonSpec(s0=100.0, mu_annual=0.0, sigma_annual=0.5, jump_intensity_annual=365.0,
                      jump_mean=-0.02, jump_std=0.03, n_steps=1440, step_ms=60_000)
    inc = merton_increments(spec, 2000, 11)
    expected = 365.0 * (spec.n_steps * spec.step_ms / MS_PER_YEAR) * 2000
    assert abs(inc.jumps.sum() - expected) < Z * math.sqrt(expected)
    s_t = 100.0 * np.exp(inc.log_returns.sum(axis=1))
    assert abs(s_t.mean() - 100.0) < Z * s_t.std(ddof=1) / math.sqrt(s_t.shape[0])


def test_garch_stationary_variance_matches_unconditional() -> None:
    # Starting at vbar = omega / (1 - alpha - beta), E[r_t^2] = vbar at every step.
    r = simulate(GARCH, 4000, 5).log_returns()
    per_path = (r * r).mean(axis=1)
    se = per_path.std(ddof=1) / math.sqrt(per_path.shape[0])
    assert abs(per_path.mean() - GARCH.unconditional_variance) < Z * se
    # volatility clusters: squared returns are autocorrelated, unlike GBM
    sq = r * r - (r * r).mean()
    rho1 = (sq[:, 1:] * sq[:, :-1]).mean() / (sq * sq).mean()
    assert rho1 > 0.05


def test_garch_fitted_to_real_hourly_returns(shared_data: Path) -> None:
    # arch (via core.volatility.fit_garch) on the Binance BTCUSDT perp, last 3,000 hours.
    _, r, step_ms, last = load_returns(shared_data / PERP_1H)
    spec = fit_garch_spec(r[-3000:], s0=last, step_ms=step_ms, n_steps=48)
    assert step_ms == 3_600_000
    # arch holds alpha + beta <= 1 only to SLSQP's ftol (1e-6: scipy stops once the summed
    # constraint violation is below it). This fit sits on the bound: 1.0 to the last bit with
    # arch 6.3.0 / scipy 1.11.1 and arch 8.0.0 / scipy 1.17.1, but 1 + 1 ulp would be as right.
    assert 0.0 < spec.persistence <= 1.0 + 1e-6 and spec.nu > 2.0
    assert spec.h0 is not None and 1e-6 < spec.h0 < 1e-3  # hourly variance (0.1 %..3 %)
    p = simulate(spec, 200, 1)
    assert p.prices.shape == (200, 49) and (p.prices[:, 0] == last).all()


def test_bootstrap_blocks_are_runs_of_real_returns(shared_data: Path) -> None:
    _, r, _, last = load_returns(shared_data / SPOT_1M)
    spec = BootstrapSpec(source=str(shared_data / SPOT_1M), method="fixed", block_len=25,
                         n_steps=200)
    paths = simulate(spec, 50, 3)
    idx = bootstrap_indices(r.shape[0], 50, 200, block_len=25, method="fixed",
                            rng=np.random.default_rng(3))
    out = paths.log_returns()
    np.testing.assert_allclose(out, r[idx], rtol=0, atol=1e-12)
    assert (paths.prices[:, 0] == last).all()
    for k in range(0, 200, 25):
        start = idx[:, k]
        for p in range(50):
            block = out[p, k:k + 25]
            np.testing.assert_allclose(np.sort(block), np.sort(r[start[p]:start[p] + 25]),
                                       atol=1e-12)


def test_stationary_bootstrap_blocks_and_mean_length() -> None:
    n_obs, b = 1000, 20
    idx = bootstrap_indices(n_obs, 400, 500, block_len=b, method="stationary", rng=9)
    step = np.diff(idx, axis=1) % n_obs
    breaks = step != 1  # a new block (its start may by chance continue the last one)
    # P(new block) = 1/b per step; breaks miss the 1/n_obs chance of continuing
    p_hat = breaks.mean()
    p = (1.0 / b) * (1 - 1.0 / n_obs)
    assert abs(p_hat - p) < Z * math.sqrt(p * (1 - p) / breaks.size)
    assert idx.min() >= 0 and idx.max() < n_obs


def test_replay_touches_the_crash_low(shared_data: Path) -> None:
    # README: Binance BTCUSDT perp 5m traded low 101,516.5 at 2025-10-10 21:20 UTC.
    path = simulate(ReplaySpec(source=str(shared_data / PERP_5M)), 1, 0)
    bars = read_ohlcv(shared_data / PERP_5M)
    assert path.prices.min() == 101_516.5
    at = path.ts_ms[np.argmin(path.prices[0])]
    assert 1_760_131_200_000 <= at < 1_760_131_200_000 + 300_000
    assert path.prices.max() == bars.high.max()
    # every bar's high and low are on the path, and no point leaves [low, high]
    n = 12
    p = path.prices[0].reshape(-1, n)
    np.testing.assert_array_equal(p.min(axis=1), bars.low)
    np.testing.assert_array_equal(p.max(axis=1), bars.high)
    np.testing.assert_array_equal(p[:, 0], bars.open)
    np.testing.assert_array_equal(p[:, -1], bars.close)


def test_intrabar_visits_the_nearer_extreme_first(shared_data: Path) -> None:
    bars = read_ohlcv(shared_data / PERP_5M)
    ts, flat = intrabar_path(bars, 4)
    p = flat.reshape(-1, 4)
    low_first = bars.open - bars.low < bars.high - bars.open
    np.testing.assert_array_equal(p[low_first, 1], bars.low[low_first])
    np.testing.assert_array_equal(p[low_first, 2], bars.high[low_first])
    assert (np.diff(ts) > 0).all()
    assert ts[1] - ts[0] == 75_000


def test_replay_reads_ccxt_layout(tmp_path: Path, shared_data: Path) -> None:
    bars = read_ohlcv(shared_data / PERP_5M)
    ccxt = tmp_path / "ccxt.csv"
    ccxt.write_text("".join(
        f"{t},{o},{h},{lo},{c},{v}\n" for t, o, h, lo, c, v in zip(
            bars.ts_ms.tolist(), bars.open.tolist(), bars.high.tolist(), bars.low.tolist(),
            bars.close.tolist(), bars.volume.tolist(), strict=True)))
    a = simulate(ReplaySpec(source=str(ccxt), start_ms=1_760_130_000_000,
                            end_ms=1_760_140_000_000), 2, 0)
    b = simulate(ReplaySpec(source=str(shared_data / PERP_5M), start_ms=1_760_130_000_000,
                            end_ms=1_760_140_000_000), 2, 0)
    np.testing.assert_array_equal(a.prices, b.prices)
    assert a.prices.min() == 101_516.5 and a.n_paths == 2


def test_crash_template_shape() -> None:
    spec = CrashSpec(s0=100.0, vol_annual=0.0, gap_fraction=0.1, cascade_depth=0.2,
                     crash_at_ms=60 * 60_000, cascade_duration_ms=30 * 60_000,
                     recovery_fraction=0.5, recovery_half_life_ms=60 * 60_000,
                     n_steps=600, step_ms=60_000)
    p = simulate(spec, 1, 0).prices[0]
    assert p[:60] == pytest.approx(100.0)
    assert p[60] == pytest.approx(90.0)                       # the gap
    assert p[90] == pytest.approx(72.0)                       # gap + cascade: 100 x .9 x .8
    assert p.min() == pytest.approx(72.0)
    drop = math.log(0.72)
    assert math.log(p[150] / 100) == pytest.approx(drop * (1 - 0.5 * 0.5))  # one half-life
    assert math.log(p[-1] / 100) == pytest.approx(drop * 0.5, abs=1e-3)     # -> R of it
    assert crash_template(spec).shape == (601,)


def test_correlation_estimate_close_to_target() -> None:
    rho = 0.6
    out = simulate_assets({"BTC": GbmSpec(s0=100_000.0, sigma_annual=0.6),
                           "ETH": GbmSpec(s0=4_000.0, sigma_annual=0.8)},
                          200, 21, [[1.0, rho], [rho, 1.0]])
    a, b = out["BTC"].log_returns().ravel(), out["ETH"].log_returns().ravel()
    se = (1 - rho**2) / math.sqrt(a.shape[0])
    assert abs(np.corrcoef(a, b)[0, 1] - rho) < Z * se
    again = simulate_assets({"BTC": GbmSpec(s0=100_000.0, sigma_annual=0.6),
                             "ETH": GbmSpec(s0=4_000.0, sigma_annual=0.8)},
                            200, 21, [[1.0, rho], [rho, 1.0]])
    np.testing.assert_array_equal(out["ETH"].prices, again["ETH"].prices)


def test_correlated_garch_innovations() -> None:
    out = simulate_assets({"A": GARCH, "B": GARCH}, 300, 2, [[1.0, 0.8], [0.8, 1.0]])
    a, b = out["A"].log_returns(), out["B"].log_returns()
    # standardized by each path's own scale the copula keeps a strong correlation
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.7


def test_joint_bootstrap_keeps_cross_correlation(shared_data: Path) -> None:
    specs: dict[str, PathSpec] = {
        "BTC": BootstrapSpec(source=str(shared_data / SPOT_1M), n_steps=500),
        "ETH": BootstrapSpec(source=str(shared_data / ETH_1M), n_steps=500)}
    out = simulate_assets(specs, 40, 4)
    _, rb, _, _ = load_returns(shared_data / SPOT_1M)
    _, re_, _, _ = load_returns(shared_data / ETH_1M)
    sample = np.corrcoef(out["BTC"].log_returns().ravel(), out["ETH"].log_returns().ravel())
    n = min(rb.shape[0], re_.shape[0])
    full = np.corrcoef(rb[:n], re_[:n])[0, 1]
    assert abs(sample[0, 1] - full) < 0.15


@pytest.mark.parametrize("bad", [
    pytest.param([[1.0, 1.2], [1.2, 1.0]], id="outside-unit"),
    pytest.param([[1.0, 0.9, 0.9], [0.9, 1.0, -0.9], [0.9, -0.9, 1.0]], id="not-pd"),
    pytest.param([[1.0, 0.5], [0.4, 1.0]], id="asymmetric"),
])
def test_bad_correlation_is_refused(bad: list[list[float]]) -> None:
    specs = {f"a{i}": GbmSpec(s0=1.0, n_steps=5) for i in range(len(bad))}
    with pytest.raises(ValueError):
        simulate_assets(specs, 2, 0, bad)


def test_mismatched_grids_are_refused() -> None:
    with pytest.raises(ValueError, match="one time grid"):
        simulate_assets({"a": GbmSpec(s0=1.0, n_steps=5), "b": GbmSpec(s0=1.0, n_steps=6)},
                        2, 0)


@pytest.mark.parametrize("make", [
    pytest.param(lambda: GbmSpec(s0=-1.0), id="negative-s0"),
    pytest.param(lambda: GbmSpec(s0=1.0, n_steps=0), id="no-steps"),
    pytest.param(lambda: GarchSpec(s0=1.0, omega=1e-6, alpha=0.1, beta=0.8, nu=2.0),
                 id="nu-2"),
    pytest.param(lambda: CrashSpec(s0=1.0, gap_fraction=1.0), id="gap-100pc"),
    pytest.param(lambda: ReplaySpec(source="x.csv", points_per_bar=3), id="3-points"),
    pytest.param(lambda: BootstrapSpec(source="x.csv", method="circular"),  # type: ignore[arg-type]
                 id="unknown-method"),
])
def test_bad_specs_are_refused(make: object) -> None:
    with pytest.raises(ValueError):
        make()  # type: ignore[operator]


def test_replay_single_bar_window(shared_data: Path) -> None:
    spec = ReplaySpec(source=str(shared_data / PERP_5M), start_ms=1_760_131_200_000,
                      end_ms=1_760_131_200_001)
    p = simulate(spec, 1, 0)
    assert p.n_points == 12 and p.prices.min() == 101_516.5
    assert p.ts_ms[-1] - p.ts_ms[0] == 275_000  # 11 of 12 steps of 25 s
