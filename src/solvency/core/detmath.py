"""Elementary functions that give the same bits on every IEEE-754 machine.

``math.exp``, ``math.log``, ``math.erfc`` and ``**`` end in the platform's libm, which
picks a code path by CPU at run time (glibc chooses among FMA, AVX2 and SSE2 variants;
numpy has its own AVX-512 loops; macOS and musl ship other libms). Their last bit
differs between machines (issue 30: 377 of 1,000,000 Black-76 premiums differed between
glibc's FMA and non-FMA paths on one machine). A value that decides a mark, a margin
requirement or a liquidation must not: the engine promises the same ``state_hash`` and
the same out-events on every machine.

The functions here use only IEEE basic operations (+, -, *, /), comparisons, ``floor``
and exact scalings by powers of two (``frexp``, a table of ``2**k``), evaluated in a
fixed order, so they are correctly rounded step by step and identical on every IEEE-754
machine, compiled by numba (no ``fastmath``, so no contraction into fused multiply-adds)
or run as Python.
The methods and the minimax coefficients are those of fdlibm (Sun Microsystems, 1993-
2004), the library Java's ``StrictMath`` is specified to reproduce bit for bit for this
same reason: ``e_exp.c``, ``e_log.c`` and ``s_erf.c`` (FreeBSD ``lib/msun/src``). Their
notice: "Copyright (C) 1993-2004 by Sun Microsystems, Inc. All rights reserved.
Permission to use, copy, modify, and distribute this software is freely granted,
provided that this notice is preserved." Accuracy as stated there: below one ulp for
``exp`` and ``log``, about one ulp for ``erfc``; checked in ``tests/unit/core/
test_detmath.py`` against 34-digit ``Decimal`` references.

Where a high-word comparison of fdlibm selects a branch, the same branch is selected
here by comparing ``|x|`` with the double whose high word is that constant and whose low
word is zero (:data:`_hw`), which is the same test.

Cost, compiled, in a loop over 2,000,000 normal draws (CPU time, 2-core AMD EPYC, glibc
2.36): ``exp`` 16 ns against glibc's 5 ns, ``erfc`` 35 ns against 19 ns (before the table
of powers of two replaced numba's out-of-line ``ldexp``/``frexp`` calls: 23 and 44 ns).
The price of determinism lands on the portfolio-margin scan, which calls ``erfc`` twice
per option and scenario (``bench/bench_portfolio.py``, docs/benchmarks.md).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from typing import Any, Final, TypeVar, cast

import numba
import numpy as np

__all__ = ["erfc", "exp", "log", "pow_positive"]

F = TypeVar("F", bound=Callable[..., Any])


def _jit(func: F) -> F:
    # Typed wrapper (numba's decorator is untyped). fastmath stays off on purpose: it
    # would let LLVM reassociate and fuse, which is what this module exists to prevent.
    return cast(F, numba.njit(cache=True, nogil=True, error_model="numpy")(func))


def _hw(high: int) -> float:
    """The double whose high 32 bits are ``high`` and low 32 bits zero."""
    return cast(float, struct.unpack(">d", struct.pack(">Q", high << 32))[0])


_INF: Final = math.inf

# ---- exp (fdlibm e_exp.c) ----------------------------------------------------------
_EXP_OVERFLOW: Final = 7.09782712893383973096e02
_EXP_UNDERFLOW: Final = -7.45133219101941108420e02
_LN2_HI: Final = 6.93147180369123816490e-01
_LN2_LO: Final = 1.90821492927058770002e-10
_INV_LN2: Final = 1.44269504088896338700e00
_P1: Final = 1.66666666666666019037e-01
_P2: Final = -2.77777777770155933842e-03
_P3: Final = 6.61375632143793436117e-05
_P4: Final = -1.65339022054652515390e-06
_P5: Final = 4.13813679705723846039e-08
_EXP_HALF_LN2: Final = _hw(0x3FD62E43)  # |x| >= this: reduce by k ln2 (k != 0)
_EXP_1P5_LN2: Final = _hw(0x3FF0A2B2)  # |x| < this: k = +-1
_EXP_TINY: Final = _hw(0x3E300000)  # 2**-28
_TWO_M1000: Final = 2.0 ** -1000
_TWO_1023: Final = 2.0 ** 1023
# 2**k for k in [-1074, 1023] (math.ldexp: exact), read by index where fdlibm scales by a
# power of two: numba lowers math.ldexp/frexp to out-of-line C calls, which cost more
# than the rest of an exp (a table read gives the same exact value).
_POW2_BIAS: Final = 1074
_POW2: Final = np.array([math.ldexp(1.0, k) for k in range(-1074, 1024)], dtype=np.float64)


@_jit
def exp(x: float) -> float:
    """``e**x``, the same bits on every IEEE-754 machine (fdlibm's method, < 1 ulp)."""
    if math.isnan(x):
        return x
    if x > _EXP_OVERFLOW:
        return _INF
    if x < _EXP_UNDERFLOW:
        return 0.0
    ax = abs(x)
    hi = 0.0
    lo = 0.0
    k = 0
    if ax >= _EXP_HALF_LN2:
        if ax < _EXP_1P5_LN2:
            if x > 0.0:
                hi = x - _LN2_HI
                lo = _LN2_LO
                k = 1
            else:
                hi = x + _LN2_HI
                lo = -_LN2_LO
                k = -1
        else:
            # C's (int)(invln2*x +- 0.5): truncation toward zero
            v = _INV_LN2 * x + (0.5 if x > 0.0 else -0.5)
            kf = math.floor(v) if v >= 0.0 else -math.floor(-v)
            k = int(kf)
            hi = x - kf * _LN2_HI  # exact: ln2_hi has 11 trailing zero bits, |k| < 2**11
            lo = kf * _LN2_LO
        x = hi - lo
    elif ax < _EXP_TINY:
        return 1.0 + x
    t = x * x
    c = x - t * (_P1 + t * (_P2 + t * (_P3 + t * (_P4 + t * _P5))))
    if k == 0:
        return 1.0 - ((x * c) / (c - 2.0) - x)
    y = 1.0 - ((lo - (x * c) / (2.0 - c)) - hi)
    if k >= -1021:
        if k == 1024:
            return y * 2.0 * _TWO_1023
        return y * float(_POW2[k + _POW2_BIAS])  # 2**k, exact
    return y * float(_POW2[k + 1000 + _POW2_BIAS]) * _TWO_M1000


# ---- log (fdlibm e_log.c) ----------------------------------------------------------
_LG1: Final = 6.666666666666735130e-01
_LG2: Final = 3.999999999940941908e-01
_LG3: Final = 2.857142874366239149e-01
_LG4: Final = 2.222219843214978396e-01
_LG5: Final = 1.818357216161805012e-01
_LG6: Final = 1.531383769920937332e-01
_LG7: Final = 1.479819860511658591e-01
# On the significand m in [1, 2): at or above this, x is written as 2**(k+1) * (m/2)
# so that 1 + f lies in [sqrt(2)/2, sqrt(2)) (fdlibm's (hx + 0x95f64) & 0x100000).
_LOG_SPLIT: Final = _hw(0x3FF6A09C)
# fdlibm's (hx - 0x6147a) | (0x6b851 - hx) > 0: significands in [_LOG_BAND_LO,
# _LOG_BAND_HI) take the hfsq form, the others f - s (f - R).
_LOG_BAND_LO: Final = _hw(0x3FF6147A)
_LOG_BAND_HI: Final = _hw(0x3FF6B852)
_TWO_M20: Final = 2.0 ** -20


@_jit
def log(x: float) -> float:
    """Natural logarithm, the same bits on every IEEE-754 machine (fdlibm, < 1 ulp).

    ``log(0) = -inf``, ``log(inf) = inf``, NaN for negative or NaN input."""
    if math.isnan(x) or x < 0.0:
        return math.nan
    if x == 0.0:
        return -_INF
    if x == _INF:
        return x
    m, e = math.frexp(x)  # x = m 2**e, m in [0.5, 1): exact, subnormals included
    m = m * 2.0  # significand in [1, 2), exact
    k = e - 1
    band = _LOG_BAND_LO <= m < _LOG_BAND_HI
    if m >= _LOG_SPLIT:
        m = m * 0.5
        k += 1
    f = m - 1.0  # exact (Sterbenz)
    dk = float(k)
    if -_TWO_M20 <= f < _TWO_M20:
        if f == 0.0:
            if k == 0:
                return 0.0
            return dk * _LN2_HI + dk * _LN2_LO
        r = f * f * (0.5 - 0.33333333333333333 * f)
        if k == 0:
            return f - r
        return dk * _LN2_HI - ((r - dk * _LN2_LO) - f)
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    t1 = w * (_LG2 + w * (_LG4 + w * _LG6))
    t2 = z * (_LG1 + w * (_LG3 + w * (_LG5 + w * _LG7)))
    r = t2 + t1
    if band:
        hfsq = 0.5 * f * f
        if k == 0:
            return f - (hfsq - s * (hfsq + r))
        return dk * _LN2_HI - ((hfsq - (s * (hfsq + r) + dk * _LN2_LO)) - f)
    if k == 0:
        return f - s * (f - r)
    return dk * _LN2_HI - ((s * (f - r) - dk * _LN2_LO) - f)


@_jit
def pow_positive(x: float, y: float) -> float:
    """``x**y`` for ``x > 0`` as ``exp(y log x)``: deterministic, with a relative error
    of about ``|y log x|`` ulps (the rounding of the product), fine for the moderate
    exponents of margin scaling rules; NaN for ``x <= 0``."""
    if not x > 0.0:
        return math.nan
    return exp(y * log(x))


# ---- erfc (fdlibm s_erf.c) ---------------------------------------------------------
_ERX: Final = 8.45062911510467529297e-01
_PP0: Final = 1.28379167095512558561e-01
_PP1: Final = -3.25042107247001499370e-01
_PP2: Final = -2.84817495755985104766e-02
_PP3: Final = -5.77027029648944159157e-03
_PP4: Final = -2.37630166566501626084e-05
_QQ1: Final = 3.97917223959155352819e-01
_QQ2: Final = 6.50222499887672944485e-02
_QQ3: Final = 5.08130628187576562776e-03
_QQ4: Final = 1.32494738004321644526e-04
_QQ5: Final = -3.96022827877536812320e-06
_PA0: Final = -2.36211856075265944077e-03
_PA1: Final = 4.14856118683748331666e-01
_PA2: Final = -3.72207876035701323847e-01
_PA3: Final = 3.18346619901161753674e-01
_PA4: Final = -1.10894694282396677476e-01
_PA5: Final = 3.54783043256182359371e-02
_PA6: Final = -2.16637559486879084300e-03
_QA1: Final = 1.06420880400844228286e-01
_QA2: Final = 5.40397917702171048937e-01
_QA3: Final = 7.18286544141962662868e-02
_QA4: Final = 1.26171219808761642112e-01
_QA5: Final = 1.36370839120290507362e-02
_QA6: Final = 1.19844998467991074170e-02
_RA0: Final = -9.86494403484714822705e-03
_RA1: Final = -6.93858572707181764372e-01
_RA2: Final = -1.05586262253232909814e01
_RA3: Final = -6.23753324503260060396e01
_RA4: Final = -1.62396669462573470355e02
_RA5: Final = -1.84605092906711035994e02
_RA6: Final = -8.12874355063065934246e01
_RA7: Final = -9.81432934416914548592e00
_SA1: Final = 1.96512716674392571292e01
_SA2: Final = 1.37657754143519042600e02
_SA3: Final = 4.34565877475229228821e02
_SA4: Final = 6.45387271733267880336e02
_SA5: Final = 4.29008140027567833386e02
_SA6: Final = 1.08635005541779435134e02
_SA7: Final = 6.57024977031928170135e00
_SA8: Final = -6.04244152148580987438e-02
_RB0: Final = -9.86494292470009928597e-03
_RB1: Final = -7.99283237680523006574e-01
_RB2: Final = -1.77579549177547519889e01
_RB3: Final = -1.60636384855821916062e02
_RB4: Final = -6.37566443368389627722e02
_RB5: Final = -1.02509513161107724954e03
_RB6: Final = -4.83519191608651397019e02
_SB1: Final = 3.03380607434824582924e01
_SB2: Final = 3.25792512996573918826e02
_SB3: Final = 1.53672958608443695994e03
_SB4: Final = 3.19985821950859553908e03
_SB5: Final = 2.55305040643316442583e03
_SB6: Final = 4.74528541206955367215e02
_SB7: Final = -2.24409524465858183362e01
_ERFC_TINY: Final = _hw(0x3C700000)  # 2**-56
_ERFC_QUARTER: Final = _hw(0x3FD00000)  # 0.25
_ERFC_A: Final = _hw(0x3FEB0000)  # 0.84375
_ERFC_B: Final = _hw(0x3FF40000)  # 1.25
_ERFC_C: Final = _hw(0x4006DB6D)  # about 1/0.35
_ERFC_SIX: Final = _hw(0x40180000)  # 6
_ERFC_MAX: Final = _hw(0x403C0000)  # 28


@_jit
def erfc(x: float) -> float:
    """Complementary error function, the same bits on every IEEE-754 machine (fdlibm's
    method: rational approximations on [0, 0.84375), [0.84375, 1.25), [1.25, 1/0.35),
    [1/0.35, 28) and ``exp(-z*z - 0.5625) exp((z - x)(z + x) + R/S) / x`` in the tails,
    ``z`` being ``x`` cut to its high 21 significant bits)."""
    if math.isnan(x):
        return x
    if x == _INF:
        return 0.0
    if x == -_INF:
        return 2.0
    ax = abs(x)
    if ax < _ERFC_A:
        if ax < _ERFC_TINY:
            return 1.0 - x
        z = x * x
        r = _PP0 + z * (_PP1 + z * (_PP2 + z * (_PP3 + z * _PP4)))
        s = 1.0 + z * (_QQ1 + z * (_QQ2 + z * (_QQ3 + z * (_QQ4 + z * _QQ5))))
        y = r / s
        if x < _ERFC_QUARTER:
            return 1.0 - (x + x * y)
        r = x * y
        r += x - 0.5
        return 0.5 - r
    if ax < _ERFC_B:
        s = ax - 1.0
        p = _PA0 + s * (_PA1 + s * (_PA2 + s * (_PA3 + s * (_PA4 + s * (_PA5 + s * _PA6)))))
        q = 1.0 + s * (_QA1 + s * (_QA2 + s * (_QA3 + s * (_QA4 + s * (_QA5 + s * _QA6)))))
        if x > 0.0:
            return (1.0 - _ERX) - p / q
        return 1.0 + (_ERX + p / q)
    if ax < _ERFC_MAX:
        s = 1.0 / (ax * ax)
        if ax < _ERFC_C:
            r = _RA0 + s * (_RA1 + s * (_RA2 + s * (_RA3 + s * (_RA4 + s * (
                _RA5 + s * (_RA6 + s * _RA7))))))
            q = 1.0 + s * (_SA1 + s * (_SA2 + s * (_SA3 + s * (_SA4 + s * (
                _SA5 + s * (_SA6 + s * (_SA7 + s * _SA8)))))))
        else:
            if x < 0.0 and ax >= _ERFC_SIX:
                return 2.0
            r = _RB0 + s * (_RB1 + s * (_RB2 + s * (_RB3 + s * (_RB4 + s * (
                _RB5 + s * _RB6)))))
            q = 1.0 + s * (_SB1 + s * (_SB2 + s * (_SB3 + s * (_SB4 + s * (
                _SB5 + s * (_SB6 + s * _SB7))))))
        # z: |x| cut to its high word (21 significand bits after the leading one, as
        # fdlibm's SET_LOW_WORD(z, 0)); 2**(e-1) <= |x| < 2**e with e in 1..5 here
        e = 1 + (ax >= 2.0) + (ax >= 4.0) + (ax >= 8.0) + (ax >= 16.0)
        z = (math.floor(ax * float(_POW2[21 - e + _POW2_BIAS]))
             * float(_POW2[e - 21 + _POW2_BIAS]))
        rr = exp(-z * z - 0.5625) * exp((z - ax) * (z + ax) + r / q)
        if x > 0.0:
            return rr / ax
        return 2.0 - rr / ax
    if x > 0.0:
        return 0.0
    return 2.0
