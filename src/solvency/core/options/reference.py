"""Slow plain-Python twins of the option kernels (``math`` only, one option at a time).

Written to be obviously correct rather than fast, and derived independently where the
fast kernels take a shortcut:

* :func:`black76_one` spells out Black (1976) with separate call and put formulas;
* :func:`inverse_one` applies the quotient rule to the USD value and Greeks
  (``V_coin = V / F``), where the kernel uses the simplified closed forms;
* :func:`implied_vol_one` bisects the price in volatility (monotone, no derivatives),
  where the kernel runs Householder iterations on transformed objectives.

Tests hold the fast kernels in :mod:`solvency.core.options.black76` and
:mod:`solvency.core.options.iv` to these.
"""

from __future__ import annotations

import math
from typing import Final

from solvency.core.options.black76 import (
    STATUS_ABOVE_UPPER_BOUND,
    STATUS_BELOW_INTRINSIC,
    STATUS_INVALID_INPUT,
    STATUS_OK,
)

__all__ = ["black76_one", "implied_vol_one", "inverse_one", "norm_cdf", "norm_pdf"]

_NAN6: Final = (math.nan,) * 6


def norm_cdf(x: float) -> float:
    """Return the standard normal CDF ``N(x) = erfc(-x / sqrt 2) / 2`` (accurate in tails)."""
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def norm_pdf(x: float) -> float:
    """Return the standard normal density ``n(x) = exp(-x^2 / 2) / sqrt(2 pi)``."""
    return math.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def _valid(f: float, k: float, t: float, sigma: float, r: float) -> bool:
    positive = all(math.isfinite(v) and v > 0.0 for v in (f, k, t, sigma))
    return positive and math.isfinite(r)


def black76_one(
    *, f: float, k: float, t: float, sigma: float, r: float, is_call: bool
) -> tuple[float, float, float, float, float, float, int]:
    """Return Black-76 ``(price, delta, gamma, vega, theta, rho, status)`` for one option.

    Parameters
    ----------
    f, k, t, sigma, r
        Forward, strike, years to expiry, volatility, rate (discount ``exp(-r t)``).
    is_call
        True for a call, False for a put.

    Returns
    -------
    tuple
        Raw Greeks as in :class:`solvency.core.options.black76.Black76Greeks`; NaNs and
        status 3 for invalid input.
    """
    if not _valid(f, k, t, sigma, r):
        return (*_NAN6, STATUS_INVALID_INPUT)
    vol_sqrt_t = sigma * math.sqrt(t)
    d1 = (math.log(f / k) + 0.5 * sigma * sigma * t) / vol_sqrt_t
    d2 = d1 - vol_sqrt_t
    disc = math.exp(-r * t)
    if is_call:
        price = disc * (f * norm_cdf(d1) - k * norm_cdf(d2))
        delta = disc * norm_cdf(d1)
    else:
        price = disc * (k * norm_cdf(-d2) - f * norm_cdf(-d1))
        delta = -disc * norm_cdf(-d1)
    gamma = disc * norm_pdf(d1) / (f * sigma * math.sqrt(t))
    vega = disc * f * norm_pdf(d1) * math.sqrt(t)
    # -dV/dT = -(-r V + D F n(d1) sigma / (2 sqrt T)), F fixed (Hull, Black's model).
    theta = r * price - disc * f * norm_pdf(d1) * sigma / (2.0 * math.sqrt(t))
    rho = -t * price
    return price, delta, gamma, vega, theta, rho, STATUS_OK


def inverse_one(
    *, f: float, k: float, t: float, sigma: float, r: float, is_call: bool
) -> tuple[float, float, float, float, float, float, float, int]:
    """Return coin-settled ``(price, delta, gamma, vega, theta, rho, delta_net, status)``.

    Parameters
    ----------
    f, k, t, sigma, r, is_call
        As in :func:`black76_one`, ``f`` and ``k`` in USD.

    Returns
    -------
    tuple
        ``V_coin = V / F`` and its derivatives by the quotient rule:
        ``dV_coin/dF = delta/F - V/F^2``,
        ``d2V_coin/dF2 = gamma/F - 2 delta/F^2 + 2 V/F^3``; vega, theta and rho divided by
        ``F``; ``delta_net = F dV_coin/dF``.
    """
    price, delta, gamma, vega, theta, rho, status = black76_one(
        f=f, k=k, t=t, sigma=sigma, r=r, is_call=is_call
    )
    if status != STATUS_OK:
        return (*_NAN6, math.nan, status)
    delta_coin = delta / f - price / (f * f)
    gamma_coin = gamma / f - 2.0 * delta / (f * f) + 2.0 * price / (f * f * f)
    return (
        price / f, delta_coin, gamma_coin, vega / f, theta / f, rho / f, f * delta_coin,
        STATUS_OK,
    )


def _undiscounted(f: float, k: float, t: float, sigma: float, is_call: bool) -> float:
    return black76_one(f=f, k=k, t=t, sigma=sigma, r=0.0, is_call=is_call)[0]


def implied_vol_one(
    *, price: float, f: float, k: float, t: float, r: float, is_call: bool,
    vol_max: float = 100.0, iterations: int = 200,
) -> tuple[float, int]:
    """Return ``(vol, status)`` implied by a Black-76 price, by bisection in volatility.

    Parameters
    ----------
    price
        Discounted option price (quote currency per unit).
    f, k, t, r, is_call
        As in :func:`black76_one`.
    vol_max
        Upper end of the bisection bracket.
    iterations
        Bisection steps (200 halvings exhaust float64).

    Returns
    -------
    tuple
        ``(vol, 0)``; ``(nan, 1)`` below intrinsic, ``(nan, 2)`` at or above the upper
        bound (``D F`` for a call, ``D K`` for a put), ``(nan, 3)`` invalid input. A price
        exactly at the intrinsic value gives ``(0.0, 0)``.
    """
    if not (_valid(f, k, t, 1.0, r) and math.isfinite(price) and price >= 0.0):
        return math.nan, STATUS_INVALID_INPUT
    undisc = price / math.exp(-r * t)
    intrinsic = max(f - k, 0.0) if is_call else max(k - f, 0.0)
    upper = f if is_call else k
    if undisc < intrinsic:
        return math.nan, STATUS_BELOW_INTRINSIC
    if undisc >= upper:
        return math.nan, STATUS_ABOVE_UPPER_BOUND
    if undisc == intrinsic:
        return 0.0, STATUS_OK
    lo, hi = 0.0, vol_max
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        if _undiscounted(f, k, t, mid, is_call) < undisc:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi), STATUS_OK
