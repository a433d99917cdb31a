"""Market paths for the stress lab: replayed history and seeded price models.

Every generator returns a :class:`PathSet`: one timestamp axis ``ts_ms`` (epoch ms,
strictly increasing, shape ``(n_points,)``) and a price array ``prices`` of shape
``(n_paths, n_points)`` whose column 0 is the start price. Models are described by frozen
``*Spec`` dataclasses (plain numbers and strings, so a scenario file can name them) and run
by :func:`simulate` (one asset) or :func:`simulate_assets` (several, correlated).

Randomness comes only from the ``rng`` argument (a :class:`numpy.random.Generator` or an
integer seed): the same seed gives the same paths, bit for bit. Work is vectorized over
paths; only the GARCH recursion steps through time (each step vectorized over paths).

Models
------
* :class:`ReplaySpec` -- historical OHLCV bars (the ``../shared/data`` layout or CCXT's,
  read by :func:`solvency.adapters.ohlcv.read_ohlcv`) replayed *intrabar*: each bar is
  walked open -> nearer extreme -> farther extreme -> close, so the bar's high and low are
  on the path (a close-only replay misses every wick that liquidates accounts).
* :class:`GbmSpec` -- geometric Brownian motion (Black and Scholes 1973).
* :class:`MertonSpec` -- Merton (1976) jump-diffusion with log-normal jumps.
* :class:`GarchSpec` -- zero-mean GARCH(1,1) / GJR-GARCH with Student-t innovations,
  usually fitted to real returns with :func:`fit_garch_spec` (which wraps
  :func:`solvency.core.volatility.fit_garch`, i.e. Kevin Sheppard's ``arch``).
* :class:`BootstrapSpec` -- block bootstrap of real log returns: fixed-length moving
  blocks (Kunsch 1989) or the stationary bootstrap (Politis and Romano 1994).
* :class:`CrashSpec` -- a parametric crash template: diffusion, then an instant gap, a
  cascade, and a partial recovery with a half-life.

Time is measured in a 365-day year (crypto trades every day): annualized drifts and
volatilities are scaled by ``dt = step_ms / (365 * 86_400_000)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

import numpy as np
from scipy import stats

from solvency.adapters.ohlcv import Ohlcv, parse_interval_ms, read_ohlcv, resample_ohlcv
from solvency.core.typing import Float64Array1D, Float64Array2D, Int64Array1D, Int64Array2D
from solvency.core.volatility import GarchKind, fit_garch

__all__ = [
    "MS_PER_YEAR",
    "BootstrapSpec",
    "CrashSpec",
    "GarchSpec",
    "GbmSpec",
    "MertonIncrements",
    "MertonSpec",
    "PathSet",
    "PathSpec",
    "ReplaySpec",
    "SeedLike",
    "bootstrap_indices",
    "crash_template",
    "fit_garch_spec",
    "garch_log_returns",
    "garch_spec_from_ohlcv",
    "gbm_log_returns",
    "intrabar_path",
    "load_returns",
    "merton_increments",
    "replay",
    "simulate",
    "simulate_assets",
]

MS_PER_YEAR: Final = 365 * 86_400_000
"""Milliseconds in the 365-day year that annualized parameters refer to."""

SeedLike = np.random.Generator | int
BootstrapMethod = Literal["stationary", "fixed"]


def _rng(seed: SeedLike) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)


def _dt_years(step_ms: int) -> float:
    return step_ms / MS_PER_YEAR


def _check_grid(n_steps: int, step_ms: int) -> None:
    if n_steps < 1:
        raise ValueError(f"n_steps must be >= 1, got {n_steps}")
    if step_ms < 1:
        raise ValueError(f"step_ms must be >= 1, got {step_ms}")


def _positive(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0.0):
        raise ValueError(f"{name} must be a positive finite number, got {value}")


def _non_negative(name: str, value: float) -> None:
    if not (math.isfinite(value) and value >= 0.0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")


# ============================================================================ results


@dataclass(frozen=True, slots=True)
class PathSet:
    """Price paths on one time axis.

    Attributes
    ----------
    ts_ms : Int64Array1D
        Epoch milliseconds, strictly increasing, shape ``(n_points,)``.
    prices : Float64Array2D
        Prices in quote units, shape ``(n_paths, n_points)``; column 0 is the start.
    """

    ts_ms: Int64Array1D
    prices: Float64Array2D

    def __post_init__(self) -> None:
        if self.prices.ndim != 2 or self.prices.shape[1] != self.ts_ms.shape[0]:
            raise ValueError("prices must be (n_paths, n_points) matching ts_ms")
        if self.ts_ms.shape[0] > 1 and not bool((np.diff(self.ts_ms) > 0).all()):
            raise ValueError("ts_ms must be strictly increasing")

    @property
    def n_paths(self) -> int:
        """Return the number of paths."""
        return int(self.prices.shape[0])

    @property
    def n_points(self) -> int:
        """Return the number of points per path (steps + 1 for simulated paths)."""
        return int(self.prices.shape[1])

    def log_returns(self) -> Float64Array2D:
        """Return the step log returns, shape ``(n_paths, n_points - 1)``."""
        out: Float64Array2D = np.diff(np.log(self.prices), axis=1)
        return out


def _grid_ts(start_ms: int, n_steps: int, step_ms: int) -> Int64Array1D:
    ts: Int64Array1D = start_ms + step_ms * np.arange(n_steps + 1, dtype=np.int64)
    return ts


def _from_log_returns(s0: float, r: Float64Array2D, ts: Int64Array1D) -> PathSet:
    prices = np.empty((r.shape[0], r.shape[1] + 1), dtype=np.float64)
    prices[:, 0] = s0  # exactly the start price, not exp(log(s0))
    prices[:, 1:] = s0 * np.exp(np.cumsum(r, axis=1))
    return PathSet(ts_ms=ts, prices=prices)


# ============================================================================ specs


@dataclass(frozen=True, slots=True)
class GbmSpec:
    """Geometric Brownian motion ``dS = mu S dt + sigma S dW``.

    Parameters
    ----------
    s0 : float
        Start price (quote units).
    mu_annual : float
        Drift per year; ``E[S_t] = s0 exp(mu t)``. Default 0.
    sigma_annual : float
        Volatility per sqrt(year). Default 0.8 (80 %, a BTC-like level).
    n_steps, step_ms, start_ms : int
        Time grid: ``n_steps`` steps of ``step_ms`` from ``start_ms`` (epoch ms).
    """

    s0: float
    mu_annual: float = 0.0
    sigma_annual: float = 0.8
    n_steps: int = 1440
    step_ms: int = 60_000
    start_ms: int = 0

    def __post_init__(self) -> None:
        _positive("s0", self.s0)
        _non_negative("sigma_annual", self.sigma_annual)
        _check_grid(self.n_steps, self.step_ms)


@dataclass(frozen=True, slots=True)
class MertonSpec:
    """Merton (1976) jump-diffusion: GBM plus Poisson jumps with log-normal sizes.

    Per step ``dt`` the log return is ``(mu - sigma^2/2 - lambda k) dt + sigma sqrt(dt) Z
    + sum_{i <= N} Y_i`` with ``N ~ Poisson(lambda dt)``, ``Y_i ~ N(jump_mean,
    jump_std^2)`` and the compensator ``k = exp(jump_mean + jump_std^2 / 2) - 1``, so
    ``E[S_t] = s0 exp(mu t)`` as for GBM.

    Parameters
    ----------
    s0 : float
        Start price.
    mu_annual, sigma_annual : float
        Drift and diffusion volatility per year (defaults 0 and 0.6).
    jump_intensity_annual : float
        Expected jumps per year, ``lambda`` (default 12: about one a month).
    jump_mean : float
        Mean log jump size (default -0.05: jumps are crashes on average).
    jump_std : float
        Standard deviation of the log jump size (default 0.05).
    n_steps, step_ms, start_ms : int
        Time grid.
    """

    s0: float
    mu_annual: float = 0.0
    sigma_annual: float = 0.6
    jump_intensity_annual: float = 12.0
    jump_mean: float = -0.05
    jump_std: float = 0.05
    n_steps: int = 1440
    step_ms: int = 60_000
    start_ms: int = 0

    def __post_init__(self) -> None:
        _positive("s0", self.s0)
        _non_negative("sigma_annual", self.sigma_annual)
        _non_negative("jump_intensity_annual", self.jump_intensity_annual)
        _non_negative("jump_std", self.jump_std)
        _check_grid(self.n_steps, self.step_ms)


@dataclass(frozen=True, slots=True)
class GarchSpec:
    """Zero-mean GJR-GARCH(1,1,1) with unit-variance Student-t innovations, per step.

    ``r_t = sqrt(h_t) e_t``, ``h_{t+1} = omega + (alpha + gamma 1[r_t < 0]) r_t^2 + beta
    h_t`` (Bollerslev 1986; Glosten, Jagannathan and Runkle 1993; ``gamma = 0`` is plain
    GARCH), ``e_t`` Student-t with ``nu`` degrees of freedom scaled to unit variance
    (Bollerslev 1987). Parameters are per step of ``step_ms``: fit them at that frequency
    (:func:`fit_garch_spec`).

    Parameters
    ----------
    s0 : float
        Start price.
    omega, alpha, gamma, beta : float
        Variance recursion (``omega`` in squared log return per step).
    nu : float
        Degrees of freedom, > 2.
    h0 : float or None
        Variance of the first step; ``None`` starts at the unconditional variance.
    n_steps, step_ms, start_ms : int
        Time grid.
    """

    s0: float
    omega: float
    alpha: float
    beta: float
    nu: float
    gamma: float = 0.0
    h0: float | None = None
    n_steps: int = 720
    step_ms: int = 3_600_000
    start_ms: int = 0

    def __post_init__(self) -> None:
        _positive("s0", self.s0)
        _positive("omega", self.omega)
        for name in ("alpha", "beta", "gamma"):
            _non_negative(name, getattr(self, name))
        if not (math.isfinite(self.nu) and self.nu > 2.0):
            raise ValueError(f"nu must be > 2 for a unit-variance t, got {self.nu}")
        if self.h0 is not None:
            _positive("h0", self.h0)
        _check_grid(self.n_steps, self.step_ms)

    @property
    def persistence(self) -> float:
        """Return ``alpha + gamma / 2 + beta``."""
        return self.alpha + 0.5 * self.gamma + self.beta

    @property
    def unconditional_variance(self) -> float:
        """Return ``omega / (1 - persistence)`` (infinite when not stationary)."""
        p = self.persistence
        return self.omega / (1.0 - p) if p < 1.0 else math.inf


@dataclass(frozen=True, slots=True)
class BootstrapSpec:
    """Block bootstrap of the close-to-close log returns of a real OHLCV file.

    Parameters
    ----------
    source : str
        OHLCV CSV (``.csv`` or ``.csv.gz``, repository or CCXT layout).
    block_len : int
        Fixed block length, or the *mean* block length of the stationary bootstrap, in
        steps (default 60). Longer blocks keep more volatility clustering.
    method : {"stationary", "fixed"}
        ``"stationary"``: geometric block lengths, circular wrap (Politis and Romano
        1994); ``"fixed"``: moving blocks of exactly ``block_len`` (Kunsch 1989).
    interval : str or None
        Resample the bars first (e.g. ``"5m"``); ``None`` keeps the file's interval.
        The path step is the (resampled) bar interval.
    s0 : float or None
        Start price; ``None`` uses the file's last close.
    n_steps, start_ms : int
        Path length in steps and start time.
    """

    source: str
    block_len: int = 60
    method: BootstrapMethod = "stationary"
    interval: str | None = None
    s0: float | None = None
    n_steps: int = 1440
    start_ms: int = 0

    def __post_init__(self) -> None:
        if self.block_len < 1:
            raise ValueError(f"block_len must be >= 1, got {self.block_len}")
        if self.method not in ("stationary", "fixed"):
            raise ValueError(f"method must be 'stationary' or 'fixed', got {self.method!r}")
        if self.s0 is not None:
            _positive("s0", self.s0)
        _check_grid(self.n_steps, 1)


@dataclass(frozen=True, slots=True)
class ReplaySpec:
    """Historical bars replayed intrabar (see :func:`intrabar_path`).

    Parameters
    ----------
    source : str
        OHLCV CSV (``.csv`` or ``.csv.gz``, repository or CCXT layout).
    points_per_bar : int
        Points per bar, >= 4 (open, two extremes, close); more points interpolate
        linearly between them (default 12).
    interval : str or None
        Resample the bars first (e.g. ``"15m"``); ``None`` keeps the file's bars.
    start_ms, end_ms : int or None
        Keep bars whose open time is in ``[start_ms, end_ms)``.
    """

    source: str
    points_per_bar: int = 12
    interval: str | None = None
    start_ms: int | None = None
    end_ms: int | None = None

    def __post_init__(self) -> None:
        if self.points_per_bar < 4:
            raise ValueError(f"points_per_bar must be >= 4, got {self.points_per_bar}")


@dataclass(frozen=True, slots=True)
class CrashSpec:
    """A parametric crash: diffusion, gap, cascade, partial recovery.

    The log price is ``log s0 + X_t + D(t)``: ``X`` a Brownian motion with drift
    ``drift_annual`` and volatility ``vol_annual`` (times ``crash_vol_multiplier`` from the
    gap on), and ``D`` the deterministic template of :func:`crash_template`::

        D = 0                                   t < crash_at
        D = g + c * min(1, (t - crash_at) / cascade_duration)   during the cascade
        D = L * (1 - R * (1 - 2^(-(t - trough) / half_life)))   after the trough

    with ``g = log(1 - gap_fraction)``, ``c = log(1 - cascade_depth)``, ``L = g + c`` and
    ``R = recovery_fraction``: the price recovers ``R`` of its log drop, half of that
    within one half-life. With ``vol_annual = 0`` the path is the template itself.

    Parameters
    ----------
    s0 : float
        Start price.
    drift_annual, vol_annual : float
        Pre-crash drift and volatility per year (defaults 0 and 0.5).
    crash_at_ms : int
        Offset of the gap from ``start_ms`` (default 6 h).
    gap_fraction : float
        Instant drop at the gap, in [0, 1) (default 0.05: -5 % in one step).
    cascade_depth : float
        Further drop over the cascade, in [0, 1) (default 0.10).
    cascade_duration_ms : int
        Duration of the cascade (default 30 min); linear in log price.
    recovery_fraction : float
        Fraction of the log drop recovered eventually, in [0, 1] (default 0.5).
    recovery_half_life_ms : int
        Half-life of the recovery (default 2 h).
    crash_vol_multiplier : float
        Volatility multiplier from the gap on (default 3).
    n_steps, step_ms, start_ms : int
        Time grid (default one day of minutes).
    """

    s0: float
    drift_annual: float = 0.0
    vol_annual: float = 0.5
    crash_at_ms: int = 6 * 3_600_000
    gap_fraction: float = 0.05
    cascade_depth: float = 0.10
    cascade_duration_ms: int = 30 * 60_000
    recovery_fraction: float = 0.5
    recovery_half_life_ms: int = 2 * 3_600_000
    crash_vol_multiplier: float = 3.0
    n_steps: int = 1440
    step_ms: int = 60_000
    start_ms: int = 0

    def __post_init__(self) -> None:
        _positive("s0", self.s0)
        _non_negative("vol_annual", self.vol_annual)
        _non_negative("crash_vol_multiplier", self.crash_vol_multiplier)
        for name in ("gap_fraction", "cascade_depth"):
            v = getattr(self, name)
            if not 0.0 <= v < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {v}")
        if not 0.0 <= self.recovery_fraction <= 1.0:
            raise ValueError(f"recovery_fraction must be in [0, 1], got {self.recovery_fraction}")
        if self.crash_at_ms < 0 or self.cascade_duration_ms < 0:
            raise ValueError("crash_at_ms and cascade_duration_ms must be >= 0")
        if self.recovery_half_life_ms <= 0:
            raise ValueError("recovery_half_life_ms must be > 0")
        _check_grid(self.n_steps, self.step_ms)


PathSpec = GbmSpec | MertonSpec | GarchSpec | BootstrapSpec | ReplaySpec | CrashSpec
"""Any single-asset path model."""


# ============================================================================ GBM / Merton


def _normals(rng: np.random.Generator, n_paths: int, n_steps: int,
             z: Float64Array2D | None) -> Float64Array2D:
    if z is None:
        out: Float64Array2D = rng.standard_normal((n_paths, n_steps))
        return out
    if z.shape != (n_paths, n_steps):
        raise ValueError(f"z must have shape {(n_paths, n_steps)}, got {z.shape}")
    return z


def gbm_log_returns(spec: GbmSpec, n_paths: int, rng: SeedLike,
                    z: Float64Array2D | None = None) -> Float64Array2D:
    """Return GBM step log returns ``(mu - sigma^2/2) dt + sigma sqrt(dt) Z``.

    Parameters
    ----------
    spec : GbmSpec
        The model.
    n_paths : int
        Number of paths.
    rng : numpy.random.Generator or int
        Randomness source or seed.
    z : Float64Array2D or None
        Standard normal shocks ``(n_paths, n_steps)`` to use instead of fresh draws
        (how :func:`simulate_assets` correlates assets).
    """
    dt = _dt_years(spec.step_ms)
    shocks = _normals(_rng(rng), n_paths, spec.n_steps, z)
    drift = (spec.mu_annual - 0.5 * spec.sigma_annual**2) * dt
    out: Float64Array2D = drift + spec.sigma_annual * math.sqrt(dt) * shocks
    return out


@dataclass(frozen=True, slots=True)
class MertonIncrements:
    """Merton step log returns and the jump count behind each step.

    Attributes
    ----------
    log_returns : Float64Array2D
        ``(n_paths, n_steps)`` step log returns.
    jumps : Int64Array2D
        ``(n_paths, n_steps)`` number of jumps in each step.
    """

    log_returns: Float64Array2D
    jumps: Int64Array2D


def merton_increments(spec: MertonSpec, n_paths: int, rng: SeedLike,
                      z: Float64Array2D | None = None) -> MertonIncrements:
    """Return Merton jump-diffusion step log returns and jump counts (Merton 1976).

    The sum of ``N`` normal jumps is drawn as ``N jump_mean + sqrt(N) jump_std Z'``,
    exact in distribution. ``z`` (optional) replaces the diffusion shocks.
    """
    g = _rng(rng)
    dt = _dt_years(spec.step_ms)
    shocks = _normals(g, n_paths, spec.n_steps, z)
    lam = spec.jump_intensity_annual
    k = math.exp(spec.jump_mean + 0.5 * spec.jump_std**2) - 1.0
    n_jumps = g.poisson(lam * dt, (n_paths, spec.n_steps)).astype(np.int64)
    jump_z = g.standard_normal((n_paths, spec.n_steps))
    jump = n_jumps * spec.jump_mean + np.sqrt(n_jumps) * spec.jump_std * jump_z
    drift = (spec.mu_annual - 0.5 * spec.sigma_annual**2 - lam * k) * dt
    r = drift + spec.sigma_annual * math.sqrt(dt) * shocks + jump
    return MertonIncrements(log_returns=r, jumps=n_jumps)


# ============================================================================ GARCH-t


def _t_from_normal(z: Float64Array2D, nu: float) -> Float64Array2D:
    # Gaussian copula: keeps the ranks (and so the dependence) of correlated normals.
    u = stats.norm.cdf(z)
    t = np.asarray(stats.t.ppf(u, nu), dtype=np.float64)
    out: Float64Array2D = t * math.sqrt((nu - 2.0) / nu)
    return out


def garch_log_returns(spec: GarchSpec, n_paths: int, rng: SeedLike,
                      z: Float64Array2D | None = None) -> Float64Array2D:
    """Return GJR-GARCH-t step log returns (see :class:`GarchSpec`).

    Innovations are unit-variance Student-t draws; when ``z`` (standard normals) is given
    they are its Gaussian-copula transform, ``t_nu^-1(Phi(z))``, so correlated normals
    give correlated t innovations.
    """
    g = _rng(rng)
    if z is None:
        e = g.standard_t(spec.nu, (n_paths, spec.n_steps)) * math.sqrt(
            (spec.nu - 2.0) / spec.nu)
    else:
        e = _t_from_normal(_normals(g, n_paths, spec.n_steps, z), spec.nu)
    h0 = spec.h0 if spec.h0 is not None else spec.unconditional_variance
    if not math.isfinite(h0):
        raise ValueError("non-stationary GARCH needs an explicit h0")
    h = np.full(n_paths, h0, dtype=np.float64)
    r = np.empty((n_paths, spec.n_steps), dtype=np.float64)
    for t in range(spec.n_steps):
        rt = np.sqrt(h) * e[:, t]
        r[:, t] = rt
        h = spec.omega + (spec.alpha + spec.gamma * (rt < 0.0)) * rt * rt + spec.beta * h
    return r


def fit_garch_spec(returns: Float64Array1D, *, s0: float, step_ms: int,
                   kind: GarchKind = "garch", n_steps: int = 720, start_ms: int = 0,
                   start_at_last: bool = True) -> GarchSpec:
    """Fit a GARCH-t (or GJR-t) to log returns and return a spec that simulates it.

    Wraps :func:`solvency.core.volatility.fit_garch` (``arch``'s maximum likelihood).

    Parameters
    ----------
    returns : Float64Array1D
        Log returns at the step ``step_ms`` (at least 100).
    s0 : float
        Start price of the simulated paths.
    step_ms : int
        The returns' sampling step; the simulated paths use the same step.
    kind : {"garch", "gjr"}
        Symmetric GARCH or the GJR leverage variant.
    n_steps, start_ms : int
        Simulated time grid.
    start_at_last : bool
        Start the variance at the fitted one-step forecast after the last return (the
        market's current state); otherwise at the unconditional variance.
    """
    fit = fit_garch(returns, kind)
    return GarchSpec(
        s0=s0, omega=fit.omega, alpha=fit.alpha, gamma=fit.gamma, beta=fit.beta, nu=fit.nu,
        h0=fit.next_variance if start_at_last else None, n_steps=n_steps, step_ms=step_ms,
        start_ms=start_ms,
    )


def _read_bars(source: str | Path, interval: str | None) -> Ohlcv:
    bars = read_ohlcv(source)
    if interval is not None:
        bars = resample_ohlcv(bars, parse_interval_ms(interval))
    return bars


def garch_spec_from_ohlcv(source: str | Path, *, interval: str | None = None,
                          kind: GarchKind = "garch", last_n: int | None = 5000,
                          n_steps: int = 720, start_ms: int = 0) -> GarchSpec:
    """Fit a GARCH-t spec to an OHLCV file's close-to-close log returns.

    The step is the (resampled) bar interval, the start price the last close and the
    start variance the fitted forecast after the last bar. ``last_n`` keeps only the most
    recent returns (fitting cost grows with the sample; ``None`` keeps all).
    """
    bars = _read_bars(source, interval)
    r = np.diff(np.log(bars.close))
    if last_n is not None:
        r = r[-last_n:]
    return fit_garch_spec(r, s0=float(bars.close[-1]), step_ms=bars.interval_ms, kind=kind,
                          n_steps=n_steps, start_ms=start_ms)


# ============================================================================ bootstrap


def load_returns(source: str | Path, interval: str | None = None
                 ) -> tuple[Int64Array1D, Float64Array1D, int, float]:
    """Return ``(ts_ms, log_returns, step_ms, last_close)`` of an OHLCV file's closes.

    ``ts_ms[i]`` is the open time of the bar whose close ends return ``i``. Returns across
    a gap in the bars are kept (they are real moves over a longer time).
    """
    bars = _read_bars(source, interval)
    if len(bars) < 3:
        raise ValueError(f"{source}: need at least 3 bars")
    r: Float64Array1D = np.diff(np.log(bars.close))
    return bars.ts_ms[1:], r, bars.interval_ms, float(bars.close[-1])


def bootstrap_indices(n_obs: int, n_paths: int, n_steps: int, *, block_len: int,
                      method: BootstrapMethod, rng: SeedLike) -> Int64Array2D:
    """Return ``(n_paths, n_steps)`` indices into a series of ``n_obs`` returns.

    ``"fixed"``: blocks of exactly ``block_len`` consecutive indices starting uniformly in
    ``[0, n_obs - block_len]`` (moving-block bootstrap, Kunsch 1989). ``"stationary"``:
    a new block starts at each step with probability ``1 / block_len`` at a uniform
    index and runs on circularly (Politis and Romano 1994). Within a block the indices
    rise by one (mod ``n_obs``), so each block is a run of real consecutive returns.
    """
    g = _rng(rng)
    if n_obs < block_len or n_obs < 1:
        raise ValueError(f"need at least block_len={block_len} observations, got {n_obs}")
    steps = np.arange(n_steps, dtype=np.int64)
    if method == "fixed":
        n_blocks = -(-n_steps // block_len)
        starts = g.integers(0, n_obs - block_len + 1, (n_paths, n_blocks), dtype=np.int64)
        out: Int64Array2D = starts[:, steps // block_len] + steps % block_len
        return out
    if method != "stationary":
        raise ValueError(f"method must be 'stationary' or 'fixed', got {method!r}")
    new = g.random((n_paths, n_steps)) < 1.0 / block_len
    new[:, 0] = True
    starts = g.integers(0, n_obs, (n_paths, n_steps), dtype=np.int64)
    # position of the most recent block start at or before each step
    last = np.maximum.accumulate(np.where(new, steps, 0), axis=1)
    begin = np.take_along_axis(starts, last, axis=1)
    idx: Int64Array2D = (begin + (steps - last)) % n_obs
    return idx


def _bootstrap(spec: BootstrapSpec, n_paths: int, rng: SeedLike) -> PathSet:
    _, r, step_ms, last = load_returns(spec.source, spec.interval)
    idx = bootstrap_indices(r.shape[0], n_paths, spec.n_steps, block_len=spec.block_len,
                            method=spec.method, rng=rng)
    s0 = spec.s0 if spec.s0 is not None else last
    return _from_log_returns(s0, r[idx], _grid_ts(spec.start_ms, spec.n_steps, step_ms))


# ============================================================================ replay


def intrabar_path(bars: Ohlcv, points_per_bar: int = 12, *, interval_ms: int | None = None
                  ) -> tuple[Int64Array1D, Float64Array1D]:
    """Return ``(ts_ms, price)`` walking each bar through its high and low.

    Each bar of length ``dt`` (the bars' interval) gives ``points_per_bar`` points at
    ``t + floor(j dt / points_per_bar)``: the open at ``j = 0``, the extreme nearer the
    open at ``j = round((n-1)/3)``, the other extreme at ``j = round(2(n-1)/3)`` and the
    close at ``j = n - 1``, with linear interpolation in between (so every point stays
    inside ``[low, high]`` and both extremes are hit exactly). When both extremes are as
    near, the path visits first the one away from the close (a bar closing up went down
    first). This is the usual OHLC path heuristic of bar backtesters; the true order
    inside a bar is unknown.

    Parameters
    ----------
    bars : Ohlcv
        Bars in time order.
    points_per_bar : int
        Points per bar, >= 4.
    interval_ms : int or None
        Bar length; ``None`` uses ``bars.interval_ms`` (needs two bars or more).
    """
    n = points_per_bar
    if n < 4:
        raise ValueError(f"points_per_bar must be >= 4, got {n}")
    dt = bars.interval_ms if interval_ms is None else interval_ms
    if dt < n:
        raise ValueError(f"bars of {dt} ms cannot hold {n} points")
    o, h, lo, c = bars.open, bars.high, bars.low, bars.close
    near_high = (h - o < o - lo) | ((h - o == o - lo) & (c < o))
    first = np.where(near_high, h, lo)
    second = np.where(near_high, lo, h)
    anchors = np.stack([o, first, second, c], axis=1)  # (n_bars, 4)
    pos = np.array([0, round((n - 1) / 3), round(2 * (n - 1) / 3), n - 1], dtype=np.int64)
    j = np.arange(n, dtype=np.int64)
    seg = np.clip(np.searchsorted(pos, j, side="right") - 1, 0, 2)
    w = (j - pos[seg]) / (pos[seg + 1] - pos[seg])
    prices = anchors[:, seg] + (anchors[:, seg + 1] - anchors[:, seg]) * w
    ts = bars.ts_ms[:, None] + (j * dt) // n
    out_ts: Int64Array1D = ts.ravel().astype(np.int64)
    out_p: Float64Array1D = prices.ravel()
    return out_ts, out_p


def _select(bars: Ohlcv, start_ms: int | None, end_ms: int | None) -> Ohlcv:
    keep = np.ones(len(bars), dtype=bool)
    if start_ms is not None:
        keep &= bars.ts_ms >= start_ms
    if end_ms is not None:
        keep &= bars.ts_ms < end_ms
    return Ohlcv(ts_ms=bars.ts_ms[keep], open=bars.open[keep], high=bars.high[keep],
                 low=bars.low[keep], close=bars.close[keep], volume=bars.volume[keep])


def replay(spec: ReplaySpec, n_paths: int = 1) -> PathSet:
    """Return the intrabar replay of ``spec.source`` (deterministic; rows repeated).

    Raises
    ------
    solvency.adapters.ohlcv.OhlcvError
        If the file cannot be read.
    ValueError
        If fewer than two bars remain after the time window.
    """
    bars = _read_bars(spec.source, spec.interval)
    step = bars.interval_ms
    bars = _select(bars, spec.start_ms, spec.end_ms)
    if len(bars) < 1:
        raise ValueError(f"{spec.source}: no bars in the window")
    ts, p = intrabar_path(bars, spec.points_per_bar, interval_ms=step)
    return PathSet(ts_ms=ts, prices=np.repeat(p[None, :], n_paths, axis=0))


# ============================================================================ crash


def crash_template(spec: CrashSpec) -> Float64Array1D:
    """Return the deterministic log-price offset ``D`` at each of the ``n_steps + 1``
    grid points (see :class:`CrashSpec`)."""
    t = np.arange(spec.n_steps + 1, dtype=np.float64) * spec.step_ms
    g = math.log1p(-spec.gap_fraction)
    c = math.log1p(-spec.cascade_depth)
    drop = g + c
    since = t - spec.crash_at_ms
    if spec.cascade_duration_ms > 0:
        progress = np.clip(since / spec.cascade_duration_ms, 0.0, 1.0)
    else:
        progress = np.where(since >= 0, 1.0, 0.0)
    d = np.where(since >= 0, g + c * progress, 0.0)
    after = t - (spec.crash_at_ms + spec.cascade_duration_ms)
    decay = np.exp2(-np.maximum(after, 0.0) / spec.recovery_half_life_ms)
    recovered = drop * (1.0 - spec.recovery_fraction * (1.0 - decay))
    out: Float64Array1D = np.where(after > 0, recovered, d)
    return out


def _crash(spec: CrashSpec, n_paths: int, rng: SeedLike,
           z: Float64Array2D | None) -> PathSet:
    dt = _dt_years(spec.step_ms)
    shocks = _normals(_rng(rng), n_paths, spec.n_steps, z)
    # step k covers (t_k, t_{k+1}]; from the gap on, volatility is multiplied
    t_end = np.arange(1, spec.n_steps + 1, dtype=np.float64) * spec.step_ms
    vol = np.where(t_end > spec.crash_at_ms, spec.vol_annual * spec.crash_vol_multiplier,
                   spec.vol_annual)
    r = (spec.drift_annual - 0.5 * vol**2) * dt + vol * math.sqrt(dt) * shocks
    d = crash_template(spec)
    r = r + np.diff(d)[None, :]
    ts = _grid_ts(spec.start_ms, spec.n_steps, spec.step_ms)
    return _from_log_returns(spec.s0 * math.exp(d[0]), r, ts)


# ============================================================================ dispatch


def _log_returns(spec: PathSpec, n_paths: int, rng: np.random.Generator,
                 z: Float64Array2D | None) -> Float64Array2D:
    if isinstance(spec, GbmSpec):
        return gbm_log_returns(spec, n_paths, rng, z)
    if isinstance(spec, MertonSpec):
        return merton_increments(spec, n_paths, rng, z).log_returns
    if isinstance(spec, GarchSpec):
        return garch_log_returns(spec, n_paths, rng, z)
    raise TypeError(f"{type(spec).__name__} has no shock-driven log returns")


def simulate(spec: PathSpec, n_paths: int, rng: SeedLike) -> PathSet:
    """Generate ``n_paths`` paths of one asset.

    Parameters
    ----------
    spec : PathSpec
        Any model spec of this module. A :class:`ReplaySpec` ignores ``rng`` and repeats
        the one historical path ``n_paths`` times.
    n_paths : int
        Number of paths (>= 1).
    rng : numpy.random.Generator or int
        Randomness source or seed; the result depends on nothing else.
    """
    if n_paths < 1:
        raise ValueError(f"n_paths must be >= 1, got {n_paths}")
    g = _rng(rng)
    if isinstance(spec, ReplaySpec):
        return replay(spec, n_paths)
    if isinstance(spec, BootstrapSpec):
        return _bootstrap(spec, n_paths, g)
    if isinstance(spec, CrashSpec):
        return _crash(spec, n_paths, g, None)
    r = _log_returns(spec, n_paths, g, None)
    return _from_log_returns(spec.s0, r, _grid_ts(spec.start_ms, spec.n_steps, spec.step_ms))


def _cholesky(correlation: Sequence[Sequence[float]], n: int) -> Float64Array2D:
    c = np.asarray(correlation, dtype=np.float64)
    if c.shape != (n, n):
        raise ValueError(f"correlation must be {n}x{n}, got {c.shape}")
    if not np.allclose(c, c.T) or not np.allclose(np.diag(c), 1.0) or (np.abs(c) > 1).any():
        raise ValueError("correlation must be symmetric with a unit diagonal")
    try:
        chol: Float64Array2D = np.asarray(np.linalg.cholesky(c), dtype=np.float64)
    except np.linalg.LinAlgError:
        raise ValueError("correlation matrix is not positive definite") from None
    return chol


def _grid_of(spec: PathSpec) -> tuple[int, int, int]:
    if isinstance(spec, GbmSpec | MertonSpec | GarchSpec | CrashSpec):
        return spec.n_steps, spec.step_ms, spec.start_ms
    raise TypeError(f"{type(spec).__name__} cannot take correlated shocks")


def simulate_assets(specs: Mapping[str, PathSpec], n_paths: int, rng: SeedLike,
                    correlation: Sequence[Sequence[float]] | None = None
                    ) -> dict[str, PathSet]:
    """Generate correlated paths for several assets on one time grid.

    Shock-driven models (:class:`GbmSpec`, :class:`MertonSpec` diffusion part,
    :class:`GarchSpec` innovations through a Gaussian copula, :class:`CrashSpec` noise)
    share standard normal shocks ``Z = E L^T`` where ``E`` is i.i.d. N(0, 1) and ``L``
    the Cholesky factor of ``correlation`` (order of ``specs``), so their step log
    returns have correlation ``correlation`` (exactly for GBM). Bootstrap specs (when all
    are bootstrap) resample the same time indices of their sources over the timestamps
    they share, which keeps the empirical cross-correlation; replay specs are aligned on
    their common timestamps. Mixing families is refused.

    Parameters
    ----------
    specs : Mapping[str, PathSpec]
        Asset name -> model, all on the same grid (``n_steps``, ``step_ms``,
        ``start_ms``).
    n_paths : int
        Paths per asset.
    rng : numpy.random.Generator or int
        Randomness source or seed.
    correlation : sequence of sequences of float or None
        Correlation of the shocks; ``None`` is the identity.
    """
    names = list(specs)
    if not names:
        raise ValueError("specs must not be empty")
    g = _rng(rng)
    kinds = {type(s) for s in specs.values()}
    if kinds <= {ReplaySpec}:
        return _replay_aligned({k: s for k, s in specs.items() if isinstance(s, ReplaySpec)},
                               n_paths)
    if kinds <= {BootstrapSpec}:
        return _bootstrap_joint(
            {k: s for k, s in specs.items() if isinstance(s, BootstrapSpec)}, n_paths, g)
    if kinds & {ReplaySpec, BootstrapSpec}:
        raise ValueError("cannot mix replay or bootstrap with shock-driven models")
    grids = {_grid_of(s) for s in specs.values()}
    if len(grids) != 1:
        raise ValueError(f"all specs must share one time grid, got {sorted(grids)}")
    n_steps, step_ms, start_ms = grids.pop()
    n = len(names)
    chol = _cholesky(correlation if correlation is not None else np.eye(n).tolist(), n)
    e = g.standard_normal((n, n_paths, n_steps))
    z = np.einsum("ij,jps->ips", chol, e)
    ts = _grid_ts(start_ms, n_steps, step_ms)
    out: dict[str, PathSet] = {}
    for i, name in enumerate(names):
        spec = specs[name]
        if isinstance(spec, CrashSpec):
            out[name] = _crash(spec, n_paths, g, z[i])
        else:
            assert not isinstance(spec, ReplaySpec | BootstrapSpec)
            out[name] = _from_log_returns(spec.s0, _log_returns(spec, n_paths, g, z[i]), ts)
    return out


def _replay_aligned(specs: Mapping[str, ReplaySpec], n_paths: int) -> dict[str, PathSet]:
    paths = {k: replay(s, n_paths) for k, s in specs.items()}
    common = paths[next(iter(paths))].ts_ms
    for p in paths.values():
        common = np.intersect1d(common, p.ts_ms)
    if common.shape[0] == 0:
        raise ValueError("replay sources share no timestamps")
    out: dict[str, PathSet] = {}
    for k, p in paths.items():
        keep = np.isin(p.ts_ms, common)
        out[k] = PathSet(ts_ms=p.ts_ms[keep], prices=p.prices[:, keep])
    return out


def _bootstrap_joint(specs: Mapping[str, BootstrapSpec], n_paths: int,
                     g: np.random.Generator) -> dict[str, PathSet]:
    first = next(iter(specs.values()))
    if any((s.block_len, s.method, s.n_steps, s.start_ms) != (
            first.block_len, first.method, first.n_steps, first.start_ms)
           for s in specs.values()):
        raise ValueError("joint bootstrap specs must share block_len, method and grid")
    loaded = {k: load_returns(s.source, s.interval) for k, s in specs.items()}
    steps = {v[2] for v in loaded.values()}
    if len(steps) != 1:
        raise ValueError(f"bootstrap sources have different steps: {sorted(steps)}")
    common = next(iter(loaded.values()))[0]
    for ts, *_ in loaded.values():
        common = np.intersect1d(common, ts)
    idx = bootstrap_indices(common.shape[0], n_paths, first.n_steps,
                            block_len=first.block_len, method=first.method, rng=g)
    grid = _grid_ts(first.start_ms, first.n_steps, steps.pop())
    out: dict[str, PathSet] = {}
    for k, (ts, r, _, last) in loaded.items():
        r_common = r[np.isin(ts, common)]
        given = specs[k].s0
        s0 = given if given is not None else last
        out[k] = _from_log_returns(s0, r_common[idx], grid)
    return out
