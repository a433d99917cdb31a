"""Black-76 implied volatility, vectorized and safeguarded.

Method (after Jaeckel, "By Implication", Wilmott 2006, and "Let's be rational", Wilmott
2015; a bracketed Householder solver rather than the full rational-cubic scheme):

1. Normalize. With ``x = ln(F/K)``, ``a = |x|``, the undiscounted price ``P / D`` minus
   the intrinsic value is the time value; divided by ``sqrt(F K)`` it is the normalized
   out-of-the-money price ``beta`` (put-call parity maps an in-the-money option to the
   out-of-the-money one of the same strike)::

       b(s) = exp(-a/2) N(s/2 - a/s) - exp(a/2) N(-s/2 - a/s),   s = sigma sqrt(T)

   ``b`` rises from 0 to ``b_max = exp(-a/2)``; ``b'(s) = exp(-a^2/(2 s^2) - s^2/8) /
   sqrt(2 pi)``. It is convex below its inflection point ``s_c = sqrt(2 a)`` and concave
   above it.
2. Bracket by region: ``(0, s_c]`` when ``beta < b(s_c)``, else ``[s_c, inf)``. Pick the
   objective so that iterations see a near-polynomial function with full relative
   precision: up to ``b_max / 2`` (which is above ``b(s_c)``), ``ln b(s) - ln beta``
   (``b`` is exponentially small in the lower region); above it,
   ``ln(b_max - b(s)) - ln(b_max - beta)`` with ``b_max - b`` summed from two positive
   terms (no cancellation as the price nears its upper bound).
3. Initial guess: lower region, the asymptotic ``ln b ~ -a^2/(2 s^2) - s^2/8 +
   ln(s^3 / (a^2 sqrt(2 pi)))`` solved by fixed point; upper region, the Polya
   approximation of ``N`` inverted in closed form (``s = sqrt(-2 pi ln(1 - q^2))``,
   ``q = beta / b_max``; exact to leading order at the money, Brenner-Subrahmanyam for
   small ``q``), floored at ``s_c``.
4. Iterate third-order Householder steps inside a bracket that every evaluation narrows;
   a step that leaves the bracket, or is not finite, is replaced by bisection (doubling
   while the bracket is open above). Stop when the step is below ``4e-16 s`` (about 0.4 us
   per option in ``bench/bench_options.py``).

Result per option: ``vol`` and ``status``:

* ``STATUS_OK`` (0): converged; a price exactly at the discounted intrinsic value gives
  ``vol = 0``;
* ``STATUS_BELOW_INTRINSIC`` (1): price below the discounted intrinsic value, NaN;
* ``STATUS_ABOVE_UPPER_BOUND`` (2): price at or above ``D F`` (call) or ``D K`` (put), NaN;
* ``STATUS_INVALID_INPUT`` (3): NaN or non-positive ``F, K, T``, negative or NaN price,
  non-finite rate; NaN.

Accuracy: round trips recover the volatility to 1e-10 relative from one day to two years,
vols 5 % to 300 %, and 0 to 3 standard deviations of log-moneyness on either side of the
money (measured 6e-11 in the money, 3e-13 out of it; ``tests/unit/core/options/test_iv.py``).
Deep in-the-money prices lose the digits of the intrinsic value in the subtraction; pass
out-of-the-money prices where you have them.
"""

from __future__ import annotations

import math
from typing import Final, NamedTuple, cast

import numpy as np
import numpy.typing as npt

from solvency.core.options.black76 import (
    INV_SQRT_2,
    INV_SQRT_2PI,
    STATUS_ABOVE_UPPER_BOUND,
    STATUS_BELOW_INTRINSIC,
    STATUS_INVALID_INPUT,
    STATUS_OK,
    Int8Array1D,
    _f64,
    _jit,
)
from solvency.core.typing import BoolArray1D, Float64Array1D

__all__ = ["ImpliedVol", "implied_vol", "implied_vol_inverse"]

_MAX_ITERATIONS: Final = 100
_STEP_TOL: Final = 4e-16
_LN_SQRT_2PI: Final = 0.9189385332046728
_SQRT_2PI: Final = 2.5066282746310002
_S_MIN: Final = 1e-300


class ImpliedVol(NamedTuple):
    """Implied volatility per option (per 1.00, annualized) and its status code."""

    vol: Float64Array1D
    status: Int8Array1D


@_jit
def _norm_cdf(x: float) -> float:
    return 0.5 * math.erfc(-x * INV_SQRT_2)


@_jit
def _otm(a: float, s: float) -> float:
    # Normalized out-of-the-money Black price b(s) for |ln(F/K)| = a.
    h = a / s
    return math.exp(-0.5 * a) * _norm_cdf(0.5 * s - h) - math.exp(0.5 * a) * _norm_cdf(
        -0.5 * s - h
    )


@_jit
def _otm_gap(a: float, s: float) -> float:
    # b_max - b(s), as a sum of two positive terms.
    h = a / s
    return math.exp(-0.5 * a) * _norm_cdf(h - 0.5 * s) + math.exp(0.5 * a) * _norm_cdf(
        -0.5 * s - h
    )


@_jit
def _householder(f0: float, f1: float, f2: float, f3: float) -> float:
    # Third-order Householder step for f with derivatives f1, f2, f3 (Jaeckel 2015, eq. 4.2).
    newton = -f0 / f1
    h2 = f2 / f1
    h3 = f3 / f1
    return newton * (1.0 + 0.5 * h2 * newton) / (1.0 + newton * (h2 + h3 * newton / 6.0))


@_jit
def _lower_guess(a: float, beta: float, s_c: float) -> float:
    ln_beta = math.log(beta)
    s = min(s_c, a / math.sqrt(-2.0 * ln_beta))
    for _ in range(3):
        big_l = -ln_beta + 3.0 * math.log(s) - 2.0 * math.log(a) - _LN_SQRT_2PI - s * s / 8.0
        if not big_l > 0.0:
            break
        s = min(s_c, a / math.sqrt(2.0 * big_l))
    return s


@_jit
def _upper_guess(a: float, beta: float, s_c: float) -> float:
    q = beta * math.exp(0.5 * a)
    if q < 1e-8:
        s = _SQRT_2PI * q  # Brenner-Subrahmanyam; log1p(-q^2) would round to 0
    elif q < 1.0:
        s = math.sqrt(-2.0 * math.pi * math.log1p(-q * q))
    else:
        s = 2.0 * s_c + 1.0
    return max(s, s_c, _S_MIN)


@_jit
def _solve(a: float, beta: float) -> float:
    # Normalized vol s with b(s) = beta, for 0 < beta < exp(-a/2).
    s_c = math.sqrt(2.0 * a)
    b_max = math.exp(-0.5 * a)
    if a > 0.0 and beta < _otm(a, s_c):
        s = _lower_guess(a, beta, s_c)
        lo = 0.0
        hi = s_c
    else:
        s = _upper_guess(a, beta, s_c)
        lo = s_c
        hi = math.inf
    # ln b up to half the bound (b_c < b_max / 2 always), ln(b_max - b) above it: each
    # objective keeps its relative precision where the other would lose it.
    use_ln_b = beta <= 0.5 * b_max
    target = math.log(beta) if use_ln_b else math.log(b_max - beta)
    for _ in range(_MAX_ITERATIONS):
        ratio = a / s
        h = ratio * ratio / s  # a^2 / s^3
        vega = math.exp(-0.5 * ratio * ratio - 0.125 * s * s) * INV_SQRT_2PI  # b'
        curv = h - 0.25 * s  # second derivative / b'
        jerk = curv * curv - 3.0 * h / s - 0.25  # third derivative / b'
        if use_ln_b:
            b = _otm(a, s)
            if b > beta:
                hi = s
            else:
                lo = s
            g0 = math.log(b) - target
            g1 = vega / b
            g2 = g1 * curv - g1 * g1
            g3 = g1 * jerk - 3.0 * g1 * g1 * curv + 2.0 * g1 * g1 * g1
        else:
            u = _otm_gap(a, s)
            if u < b_max - beta:
                hi = s
            else:
                lo = s
            g0 = math.log(u) - target
            g1 = -vega / u
            g2 = g1 * curv - g1 * g1
            g3 = g1 * jerk - 3.0 * g1 * g1 * curv + 2.0 * g1 * g1 * g1
        if g0 == 0.0:
            return s
        step = _householder(g0, g1, g2, g3)
        s_new = s + step
        if not (lo < s_new < hi):
            s_new = 0.5 * (lo + hi) if hi < math.inf else 2.0 * max(s, lo)
            step = s_new - s
        s = s_new
        if abs(step) <= _STEP_TOL * s or hi - lo <= _STEP_TOL * s:
            return s
    return s


@_jit
def _iv_kernel(
    price: Float64Array1D, fwd: Float64Array1D, strike: Float64Array1D,
    t_yr: Float64Array1D, rate: Float64Array1D, is_call: BoolArray1D,
    vol: Float64Array1D, status: Int8Array1D,
) -> None:
    for i in range(price.shape[0]):
        p = price[i]
        f = fwd[i]
        k = strike[i]
        t = t_yr[i]
        r = rate[i]
        ok = (
            f > 0.0 and k > 0.0 and t > 0.0 and p >= 0.0
            and math.isfinite(f) and math.isfinite(k) and math.isfinite(t)
            and math.isfinite(p) and math.isfinite(r)
        )
        if not ok:
            vol[i] = np.nan
            status[i] = STATUS_INVALID_INPUT
            continue
        undisc = p * math.exp(r * t)
        call = is_call[i]
        intrinsic = max(f - k, 0.0) if call else max(k - f, 0.0)
        upper = f if call else k
        if undisc < intrinsic:
            vol[i] = np.nan
            status[i] = STATUS_BELOW_INTRINSIC
            continue
        if undisc >= upper:
            vol[i] = np.nan
            status[i] = STATUS_ABOVE_UPPER_BOUND
            continue
        if undisc == intrinsic:
            vol[i] = 0.0
            status[i] = STATUS_OK
            continue
        a = abs(math.log(f / k))
        beta = (undisc - intrinsic) / math.sqrt(f * k)
        if beta >= math.exp(-0.5 * a):
            # Time value at its bound after rounding: the price is at the upper bound.
            vol[i] = np.nan
            status[i] = STATUS_ABOVE_UPPER_BOUND
            continue
        vol[i] = _solve(a, beta) / math.sqrt(t)
        status[i] = STATUS_OK


def implied_vol(
    *,
    price: npt.ArrayLike, forward: npt.ArrayLike, strike: npt.ArrayLike,
    time_yr: npt.ArrayLike, rate: npt.ArrayLike, is_call: npt.ArrayLike,
) -> ImpliedVol:
    """Invert Black-76: find the volatility that reproduces each option's price.

    Parameters
    ----------
    price
        Discounted option price in the quote currency per unit of underlying.
    forward, strike, time_yr, rate
        Forward ``F``, strike ``K``, years to expiry ``T``, rate ``r`` of the discount
        factor ``exp(-r T)``. Scalars or 1-D arrays, broadcast together.
    is_call
        True for calls, False for puts.

    Returns
    -------
    ImpliedVol
        ``vol`` (per 1.00, annualized) and ``status``: 0 ok, 1 below intrinsic, 2 at or
        above the upper bound, 3 invalid input; NaN wherever the status is not 0.

    Raises
    ------
    ValueError
        If the inputs do not broadcast to one dimension (values never raise).
    """
    shape = np.broadcast_shapes(
        *(np.shape(x) for x in (price, forward, strike, time_yr, rate, is_call))
    )
    if len(shape) > 1:
        msg = f"option inputs must be scalars or 1-D arrays, got shape {shape}"
        raise ValueError(msg)
    n = shape[0] if shape else 1
    flags = np.ascontiguousarray(np.broadcast_to(np.asarray(is_call, dtype=np.bool_), (n,)))
    vol = np.empty(n, dtype=np.float64)
    status = np.empty(n, dtype=np.int8)
    _iv_kernel(
        _f64(price, n), _f64(forward, n), _f64(strike, n), _f64(time_yr, n), _f64(rate, n),
        cast(BoolArray1D, flags), vol, status,
    )
    return ImpliedVol(vol, status)


def implied_vol_inverse(
    *,
    price_coin: npt.ArrayLike, forward: npt.ArrayLike, strike: npt.ArrayLike,
    time_yr: npt.ArrayLike, rate: npt.ArrayLike, is_call: npt.ArrayLike,
) -> ImpliedVol:
    """Invert a coin-settled (inverse) option price, e.g. a Deribit BTC mark price.

    Parameters
    ----------
    price_coin
        Option price in coin per unit (``V_usd / F``).
    forward, strike, time_yr, rate, is_call
        As in :func:`implied_vol`; ``forward`` and ``strike`` in USD. Deribit computes its
        displayed implied volatility against the forward, not the index.

    Returns
    -------
    ImpliedVol
        As :func:`implied_vol` applied to ``price_coin * forward``.
    """
    usd = np.asarray(price_coin, dtype=np.float64) * np.asarray(forward, dtype=np.float64)
    return implied_vol(
        price=usd, forward=forward, strike=strike, time_yr=time_yr, rate=rate,
        is_call=is_call,
    )
