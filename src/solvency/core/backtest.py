"""Margin and VaR backtest statistics: exceptions, Kupiec, Christoffersen, Basel zones.

A *margin model* claims that the loss over one step exceeds the posted margin with
probability ``p = 1 - confidence``. An *exception* is a step where it did. The tests here
check the exception count (unconditional coverage) and their clustering (independence).

Sources
-------
* Kupiec, P. (1995), "Techniques for verifying the accuracy of risk measurement models",
  *Journal of Derivatives* 3(2): proportion-of-failures likelihood ratio ``LR_uc``.
* Christoffersen, P. (1998), "Evaluating interval forecasts", *International Economic
  Review* 39(4): first-order Markov independence ``LR_ind`` and conditional coverage
  ``LR_cc = LR_uc + LR_ind``.
* Basel Committee on Banking Supervision (1996), *Supervisory framework for the use of
  "backtesting" in conjunction with the internal models approach to market risk capital
  requirements*: traffic-light zones from the cumulative binomial probability (yellow from
  95 %, red from 99.99 %); for 250 days at 99 %: green 0-4, yellow 5-9, red 10+.
* Acerbi, C. and Szekely, B. (2014), "Backtesting Expected Shortfall", *Risk*, December
  2014 (MSCI research paper): the expected-shortfall tests ``Z1`` (eq. 6) and ``Z2``
  (eq. 7) with p-values simulated under the forecast distributions (sec. "Testing").
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, Final, Literal, cast

import numpy as np
import numpy.typing as npt
from scipy import stats
from scipy.special import xlogy

__all__ = [
    "BASEL_PLUS_FACTOR_250",
    "BacktestResult",
    "EsBacktestResult",
    "Zone",
    "acerbi_szekely",
    "backtest",
    "christoffersen_independence",
    "conditional_coverage",
    "es_backtest",
    "exceptions",
    "kupiec_pof",
    "normal_es_from_var",
    "position_loss",
    "traffic_light_bounds",
    "traffic_light_zone",
    "transition_counts",
]

Zone = Literal["green", "yellow", "red"]
Side = Literal["long", "short"]

YELLOW_FROM: Final = 0.95
RED_FROM: Final = 0.9999
# Basel 1996, Table 2: plus factor added to the capital multiplier (3) for 250 observations.
BASEL_PLUS_FACTOR_250: Final = {5: 0.40, 6: 0.50, 7: 0.65, 8: 0.75, 9: 0.85}


def _check_p(p: float) -> None:
    if not 0.0 < p < 1.0:
        raise ValueError(f"p: {p} must lie in (0, 1)")


def position_loss(returns: npt.ArrayLike, side: Side = "long") -> npt.NDArray[np.float64]:
    """Return the loss of a linear position per unit of notional for log returns.

    ``long: 1 - exp(r)``, ``short: exp(r) - 1`` (a relative loss, comparable with a margin
    rate on notional). Positive values are losses.
    """
    r = np.asarray(returns, dtype=np.float64)
    if side == "long":
        return cast(npt.NDArray[np.float64], -np.expm1(r))
    if side == "short":
        return cast(npt.NDArray[np.float64], np.expm1(r))
    raise ValueError(f"side: {side!r} is not 'long' or 'short'")


def exceptions(losses: npt.ArrayLike, margin: npt.ArrayLike) -> npt.NDArray[np.bool_]:
    """Return the exception series ``loss_t > margin_t``.

    Both arrays must be finite and of the same shape; ``margin_t`` must have been set
    before ``loss_t`` was known.
    """
    loss = np.asarray(losses, dtype=np.float64)
    m = np.asarray(margin, dtype=np.float64)
    if loss.shape != m.shape:
        raise ValueError(f"losses {loss.shape} and margin {m.shape} differ in shape")
    if not (np.isfinite(loss).all() and np.isfinite(m).all()):
        raise ValueError("losses and margin must be finite")
    return loss > m


def kupiec_pof(n_exceptions: int, n_obs: int, p: float) -> tuple[float, float]:
    """Return Kupiec's (1995) proportion-of-failures statistic ``LR_uc`` and its p-value.

    ``LR_uc = -2 ln[(1-p)^(n-x) p^x] + 2 ln[(1-x/n)^(n-x) (x/n)^x]``, asymptotically
    chi-squared with 1 degree of freedom; ``0 ln 0 = 0`` at ``x = 0`` or ``x = n``.
    """
    _check_p(p)
    if n_obs < 1 or not 0 <= n_exceptions <= n_obs:
        raise ValueError(f"need 0 <= exceptions ({n_exceptions}) <= observations ({n_obs})")
    x, n = float(n_exceptions), float(n_obs)
    phat = x / n
    ll0 = xlogy(n - x, 1.0 - p) + xlogy(x, p)
    ll1 = xlogy(n - x, 1.0 - phat) + xlogy(x, phat)
    lr = max(0.0, float(-2.0 * (ll0 - ll1)))
    return lr, float(stats.chi2.sf(lr, 1))


def transition_counts(exc: npt.ArrayLike) -> tuple[int, int, int, int]:
    """Return ``(n00, n01, n10, n11)``: counts of consecutive (previous, current) pairs."""
    e = np.asarray(exc, dtype=bool)
    if e.ndim != 1:
        raise ValueError("exceptions: expected a 1-D series")
    prev, cur = e[:-1], e[1:]
    n11 = int(np.count_nonzero(prev & cur))
    n10 = int(np.count_nonzero(prev & ~cur))
    n01 = int(np.count_nonzero(~prev & cur))
    n00 = int(prev.size - n11 - n10 - n01)
    return n00, n01, n10, n11


def christoffersen_independence(exc: npt.ArrayLike) -> tuple[float, float]:
    """Return Christoffersen's (1998) independence statistic ``LR_ind`` and its p-value.

    With ``pi01 = n01/(n00+n01)``, ``pi11 = n11/(n10+n11)`` and
    ``pi = (n01+n11)/(n00+n01+n10+n11)``:
    ``LR_ind = -2 ln[(1-pi)^(n00+n10) pi^(n01+n11)]
    + 2 ln[(1-pi01)^n00 pi01^n01 (1-pi11)^n10 pi11^n11]``, chi-squared with 1 degree of
    freedom. A series with no exceptions (or only exceptions) gives 0.
    """
    n00, n01, n10, n11 = transition_counts(exc)
    n0, n1 = n00 + n01, n10 + n11
    total = n0 + n1
    if total == 0:
        return 0.0, 1.0
    pi = (n01 + n11) / total
    pi01 = n01 / n0 if n0 else 0.0
    pi11 = n11 / n1 if n1 else 0.0
    ll0 = xlogy(n00 + n10, 1.0 - pi) + xlogy(n01 + n11, pi)
    ll1 = (xlogy(n00, 1.0 - pi01) + xlogy(n01, pi01)
           + xlogy(n10, 1.0 - pi11) + xlogy(n11, pi11))
    lr = max(0.0, float(-2.0 * (ll0 - ll1)))
    return lr, float(stats.chi2.sf(lr, 1))


def conditional_coverage(exc: npt.ArrayLike, p: float) -> tuple[float, float]:
    """Return Christoffersen's (1998) conditional coverage ``LR_cc = LR_uc + LR_ind``.

    ``LR_uc`` is computed on the whole series and ``LR_ind`` on its transitions (the usual
    practice, e.g. Jorion, *Value at Risk*, 3rd ed., ch. 6); chi-squared with 2 degrees of
    freedom.
    """
    e = np.asarray(exc, dtype=bool)
    lr_uc, _ = kupiec_pof(int(e.sum()), int(e.size), p)
    lr_ind, _ = christoffersen_independence(e)
    lr = lr_uc + lr_ind
    return lr, float(stats.chi2.sf(lr, 2))


def traffic_light_bounds(n_obs: int, p: float) -> tuple[int, int]:
    """Return the smallest exception counts of the yellow and red zones for ``n_obs``.

    Yellow starts at the smallest ``x`` with ``P(X <= x) >= 0.95`` and red at the smallest
    with ``P(X <= x) >= 0.9999``, ``X ~ Binomial(n_obs, p)`` (Basel 1996). For 250
    observations at ``p = 0.01`` this gives ``(5, 10)``.
    """
    _check_p(p)
    if n_obs < 1:
        raise ValueError("n_obs must be >= 1")
    yellow = int(stats.binom.ppf(YELLOW_FROM, n_obs, p))
    red = int(stats.binom.ppf(RED_FROM, n_obs, p))
    # ppf returns the smallest x with cdf(x) >= q; guard its floating-point edge.
    while yellow > 0 and stats.binom.cdf(yellow - 1, n_obs, p) >= YELLOW_FROM:
        yellow -= 1
    while red > 0 and stats.binom.cdf(red - 1, n_obs, p) >= RED_FROM:
        red -= 1
    return yellow, red


def traffic_light_zone(n_exceptions: int, n_obs: int, p: float) -> tuple[Zone, float]:
    """Return the Basel (1996) traffic-light zone and ``P(X <= n_exceptions)``.

    ``X ~ Binomial(n_obs, p)``; green below 95 %, yellow from 95 %, red from 99.99 %.
    """
    _check_p(p)
    if n_obs < 1 or not 0 <= n_exceptions <= n_obs:
        raise ValueError(f"need 0 <= exceptions ({n_exceptions}) <= observations ({n_obs})")
    cum = float(stats.binom.cdf(n_exceptions, n_obs, p))
    yellow, red = traffic_light_bounds(n_obs, p)
    zone: Zone = "red" if n_exceptions >= red else "yellow" if n_exceptions >= yellow else "green"
    return zone, cum


@dataclass(frozen=True, slots=True)
class BacktestResult:
    """The statistics of one exception series (see :func:`backtest`)."""

    observations: int
    exceptions: int
    expected_exceptions: float
    exception_rate: float
    kupiec_lr: float
    kupiec_p: float
    christoffersen_lr: float
    christoffersen_p: float
    conditional_coverage_lr: float
    conditional_coverage_p: float
    zone: Zone
    zone_cumulative_probability: float
    yellow_from: int
    red_from: int

    def to_dict(self) -> dict[str, Any]:
        """Return the result as a JSON-ready dict."""
        return asdict(self)


def backtest(exc: npt.ArrayLike, p: float) -> BacktestResult:
    """Run every test on an exception series at exception probability ``p``.

    Parameters
    ----------
    exc : array_like of bool
        1-D exception indicators in time order (see :func:`exceptions`).
    p : float
        Nominal exception probability, ``1 - confidence``.
    """
    e = np.asarray(exc, dtype=bool)
    if e.ndim != 1 or e.size == 0:
        raise ValueError("exceptions: expected a non-empty 1-D series")
    n, x = int(e.size), int(e.sum())
    lr_uc, p_uc = kupiec_pof(x, n, p)
    lr_ind, p_ind = christoffersen_independence(e)
    lr_cc, p_cc = conditional_coverage(e, p)
    zone, cum = traffic_light_zone(x, n, p)
    yellow, red = traffic_light_bounds(n, p)
    return BacktestResult(
        observations=n, exceptions=x, expected_exceptions=n * p, exception_rate=x / n,
        kupiec_lr=lr_uc, kupiec_p=p_uc, christoffersen_lr=lr_ind, christoffersen_p=p_ind,
        conditional_coverage_lr=lr_cc, conditional_coverage_p=p_cc, zone=zone,
        zone_cumulative_probability=cum, yellow_from=yellow, red_from=red,
    )


# ----------------------------------------------------------------- expected shortfall


def normal_es_from_var(var: npt.ArrayLike, p: float) -> npt.NDArray[np.float64]:
    """Return the expected shortfall of a centred normal loss whose ``1 - p`` quantile is
    ``var``: ``sigma = var / z``, ``ES = sigma phi(z) / p`` with ``z = Phi^-1(1 - p)``
    (e.g. McNeil, Frey and Embrechts, *Quantitative Risk Management*, 2015, ex. 2.14)."""
    _check_p(p)
    z = float(stats.norm.ppf(1.0 - p))
    return np.asarray(var, dtype=np.float64) * float(stats.norm.pdf(z)) / (p * z)


def acerbi_szekely(losses: npt.ArrayLike, var: npt.ArrayLike, es: npt.ArrayLike,
                   p: float) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Return Acerbi and Szekely's (2014) ``Z1`` and ``Z2`` along the last axis.

    In losses (positive = loss), with exceptions ``I_t = 1{L_t > VaR_t}``,
    ``N = sum I_t`` and ``T`` observations:

    * ``Z1 = sum(L_t I_t / ES_t) / N - 1`` (eq. 6; NaN without exceptions): the size of
      the exceptions against the ES forecast, given that they happened;
    * ``Z2 = sum(L_t I_t / (T p ES_t)) - 1`` (eq. 7): frequency and size together.

    Both have expectation 0 when the forecasts are right (``Z2`` exactly; ``Z1``
    conditionally on ``N > 0``) and are positive when risk is underestimated. The paper
    writes them for returns ``X_t = -L_t``, with the same values.
    """
    loss = np.asarray(losses, dtype=np.float64)
    v = np.asarray(var, dtype=np.float64)
    e = np.asarray(es, dtype=np.float64)
    _check_p(p)
    if not (np.isfinite(v).all() and np.isfinite(e).all() and (e > 0.0).all()):
        raise ValueError("VaR and ES forecasts must be finite, ES > 0")
    hit = loss > v
    tail = np.where(hit, loss / e, 0.0)
    n = hit.sum(axis=-1)
    t = loss.shape[-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        z1 = np.where(n > 0, tail.sum(axis=-1) / np.maximum(n, 1) - 1.0, np.nan)
    z2 = tail.sum(axis=-1) / (t * p) - 1.0
    return np.asarray(z1, dtype=np.float64), np.asarray(z2, dtype=np.float64)


@dataclass(frozen=True, slots=True)
class EsBacktestResult:
    """Acerbi-Szekely statistics of one run and their simulated p-values."""

    z1: float | None
    z1_p: float | None
    z2: float
    z2_p: float
    simulations: int
    forecast: str

    def to_dict(self) -> dict[str, Any]:
        """Return the result as a JSON-ready dict."""
        return asdict(self)


def es_backtest(losses: npt.ArrayLike, var: npt.ArrayLike, es: npt.ArrayLike, p: float,
                simulated: Iterable[npt.ArrayLike], *, forecast: str = "normal"
                ) -> EsBacktestResult:
    """Test expected-shortfall forecasts with Acerbi and Szekely's ``Z1`` and ``Z2``.

    ``simulated`` yields blocks of loss paths drawn under the forecasts (shape
    ``(m, T)``: each row one path of ``T`` losses from the forecast distributions of the
    ``T`` steps); the p-value of a statistic is the share of simulated paths whose
    statistic is at least the observed one (one-sided: the tests reject when risk is
    underestimated). ``Z1``'s paths without an exception are left out (``Z1`` is
    conditional on one); ``Z1`` is None when the observed series has none.
    """
    z1_obs, z2_obs = acerbi_szekely(losses, var, es, p)
    m = 0
    ge1 = n1 = ge2 = 0
    for block in simulated:
        z1, z2 = acerbi_szekely(block, var, es, p)
        m += int(z2.shape[0])
        ok = np.isfinite(z1)
        n1 += int(ok.sum())
        if np.isfinite(z1_obs):
            ge1 += int((z1[ok] >= z1_obs).sum())
        ge2 += int((z2 >= z2_obs).sum())
    if m == 0:
        raise ValueError("es_backtest: no simulated paths")
    has1 = bool(np.isfinite(z1_obs))
    return EsBacktestResult(
        z1=float(z1_obs) if has1 else None,
        z1_p=(ge1 / n1 if n1 else 1.0) if has1 else None,
        z2=float(z2_obs), z2_p=ge2 / m, simulations=m, forecast=forecast)
