"""Standard (per-position) option margin: Deribit's rule and a configurable variant.

Deribit standard margin for options (support "Margin types and usage": standard margin
computes the requirement of each position separately and sums them). Per option on one
coin, in coin (inverse options; ``OTM`` is the out-of-the-money amount in USD, ``F`` the
underlying mark price in USD, ``mark`` the option's mark price in coin)::

    OTM call = max(K - F, 0),  OTM put = max(F - K, 0)
    short call  IM = max(0.15 - OTM / F, 0.1) + mark
                MM = 0.075 + mark
    short put   IM = max(max(0.15 - OTM / F, 0.1) + mark, MM)
                MM = max(0.075, 0.075 * mark) + mark
    long        IM = MM = 0      (the premium is paid in full; no margin beyond it)

Source: Deribit's published formulas, as transcribed in "Deribit Margin Requirements
Calculation" (TSLab documentation, doc.tslab.pro, read 2026-11-20; it links Deribit's
worked-example spreadsheet) and used verbatim, times the spot for linear options, by Aevo
("Standard Margin", docs.aevo.xyz: "Maximum (0.15 - OTM Amount/Spot, 0.1) * Spot + Mark
Price of the Option"). Deribit's own knowledge-base page was not reachable in a stored
copy; its 2018 version (deribit.freshdesk.com, "Margin requirements options") used 20 %
and 10 % of the underlying instead.

The generic variant (:class:`OptionMarginParams`) writes every constant as a parameter::

    im_frac = max(base - otm_discount * OTM / F, floor)
    mm_frac = max(mm_base - mm_otm_discount * OTM / F, mm_floor)
    short call  MM = mm_frac + premium * mark
    short put   MM = max(mm_frac, mm_mark_factor * mark) + premium * mark
    short       IM = max(im_frac + premium * mark, MM), each capped (puts) at
                put_cap * K / F
    long        IM = min(long_premium_im * mark, long_spot_im)
                MM = min(long_premium_mm * mark, long_spot_mm)   (fractions of F)
    inverse: amounts in coin per contract as above; linear: fractions times ``F``
    (``mark`` in quote), i.e. ``IM_linear = F * IM_inverse`` with ``mark_coin = mark / F``.

Paradex's cross-margin option rule ("Margin Requirements", docs.paradex.trade, perpetual
options) is the variant ``base = 0.15, floor = 0.10, mm_base = 0.075, mm_floor = 0.05,
otm_discount = mm_otm_discount = 1, premium = 0, put_cap = 0.5``, and its longs pay
``min(100 % x mark, 20 % x spot)`` initial and ``min(50 % x mark, 10 % x spot)``
maintenance margin ("Buy: min(Premium Multiplier x Option Mark Price, long_itm x Spot
Price)", with premium_multiplier_imf = 100 %, premium_multiplier_mmf = 50 %,
long_itm_imf = 20 %, long_itm_mmf = 10 %): ``long_premium_im = 1, long_premium_mm = 0.5,
long_spot_im = 0.2, long_spot_mm = 0.1``. Deribit's longs need no margin (all four 0).

Rounding: floats (an estimate, not a ledger amount); the engine converts to quanta
rounding requirements up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple, cast

import numpy as np
import numpy.typing as npt

from solvency.core.typing import Float64Array1D

__all__ = [
    "DERIBIT_OPTION_MARGIN",
    "PARADEX_OPTION_MARGIN",
    "OptionMargin",
    "OptionMarginParams",
    "Settlement",
    "deribit_option_margin",
    "option_margin",
]

Settlement = Literal["inverse", "linear"]


@dataclass(frozen=True, slots=True)
class OptionMarginParams:
    """Constants of the standard short-option margin rule (see the module docstring).

    Attributes
    ----------
    base, floor, otm_discount
        Initial margin fraction ``max(base - otm_discount * OTM / F, floor)``.
    mm_base, mm_floor, mm_otm_discount
        Maintenance fraction ``max(mm_base - mm_otm_discount * OTM / F, mm_floor)``.
    mm_mark_factor
        Short puts: maintenance fraction at least ``mm_mark_factor * mark``.
    premium
        Multiple of the option's mark price added to both requirements.
    put_cap
        Short puts: requirements capped at ``put_cap * K / F`` (``inf``: no cap).
    long_premium_im, long_spot_im, long_premium_mm, long_spot_mm
        Longs: initial ``min(long_premium_im * mark, long_spot_im)`` and maintenance
        ``min(long_premium_mm * mark, long_spot_mm)`` as fractions of ``F`` (0: longs
        need no margin beyond their premium, as on Deribit).
    """

    base: float = 0.15
    floor: float = 0.10
    otm_discount: float = 1.0
    mm_base: float = 0.075
    mm_floor: float = 0.0
    mm_otm_discount: float = 0.0
    mm_mark_factor: float = 0.075
    premium: float = 1.0
    put_cap: float = float("inf")
    long_premium_im: float = 0.0
    long_spot_im: float = 0.0
    long_premium_mm: float = 0.0
    long_spot_mm: float = 0.0


DERIBIT_OPTION_MARGIN = OptionMarginParams()
PARADEX_OPTION_MARGIN = OptionMarginParams(
    base=0.15, floor=0.10, otm_discount=1.0, mm_base=0.075, mm_floor=0.05,
    mm_otm_discount=1.0, mm_mark_factor=0.0, premium=0.0, put_cap=0.5,
    long_premium_im=1.0, long_spot_im=0.2, long_premium_mm=0.5, long_spot_mm=0.1,
)


class OptionMargin(NamedTuple):
    """Initial and maintenance margin per position (coin for inverse, quote for linear)."""

    im: Float64Array1D
    mm: Float64Array1D


def option_margin(
    *,
    underlying_price: npt.ArrayLike, strike: npt.ArrayLike, mark_price: npt.ArrayLike,
    size: npt.ArrayLike, is_call: npt.ArrayLike, settlement: Settlement = "inverse",
    params: OptionMarginParams = DERIBIT_OPTION_MARGIN,
) -> OptionMargin:
    """Compute standard initial and maintenance margin for option positions, vectorized.

    Parameters
    ----------
    underlying_price
        Underlying mark price ``F`` (quote per coin), > 0.
    strike
        Strike ``K`` (quote per coin), > 0.
    mark_price
        Option mark price per contract: coin for ``"inverse"``, quote for ``"linear"``.
    size
        Signed contracts (one coin each); longs pay the ``long_*`` rule (nothing under
        Deribit's).
    is_call
        True for calls, False for puts.
    settlement
        ``"inverse"`` (Deribit BTC/ETH: coin) or ``"linear"`` (USDC: quote).
    params
        Rule constants; Deribit's by default.

    Returns
    -------
    OptionMargin
        ``im`` and ``mm`` per position: ``|size|`` times the per-contract requirement
        of its side (0 for Deribit's longs and for zero sizes).

    Raises
    ------
    ValueError
        If a price or strike is not finite and positive, a mark price negative or not
        finite, a size not finite, or the inputs do not broadcast to 1-D.
    """
    f, k, mark, q, call = np.broadcast_arrays(
        np.asarray(underlying_price, dtype=np.float64), np.asarray(strike, dtype=np.float64),
        np.asarray(mark_price, dtype=np.float64), np.asarray(size, dtype=np.float64),
        np.asarray(is_call, dtype=np.bool_),
    )
    if f.ndim > 1:
        msg = f"option margin inputs must be scalars or 1-D arrays, got shape {f.shape}"
        raise ValueError(msg)
    for name, ok in (
        ("underlying_price", np.isfinite(f) & (f > 0.0)),
        ("strike", np.isfinite(k) & (k > 0.0)),
        ("mark_price", np.isfinite(mark) & (mark >= 0.0)),
        ("size", np.isfinite(q)),
    ):
        if not np.all(ok):
            msg = f"position {int(np.argmin(np.atleast_1d(ok)))}: invalid '{name}'"
            raise ValueError(msg)
    mark_coin = mark if settlement == "inverse" else mark / f
    otm_frac = np.where(call, np.maximum(k - f, 0.0), np.maximum(f - k, 0.0)) / f
    p = params
    im_frac = np.maximum(p.base - p.otm_discount * otm_frac, p.floor)
    mm_frac = np.maximum(p.mm_base - p.mm_otm_discount * otm_frac, p.mm_floor)
    mm_frac = np.where(call, mm_frac, np.maximum(mm_frac, p.mm_mark_factor * mark_coin))
    mm = mm_frac + p.premium * mark_coin
    im = np.maximum(im_frac + p.premium * mark_coin, mm)
    cap = np.where(call, np.inf, p.put_cap * k / f)
    im = np.minimum(im, cap)
    mm = np.minimum(mm, cap)
    long_im = np.minimum(p.long_premium_im * mark_coin, p.long_spot_im)
    long_mm = np.minimum(p.long_premium_mm * mark_coin, p.long_spot_mm)
    short = np.maximum(-q, 0.0)
    long = np.maximum(q, 0.0)
    scale = short if settlement == "inverse" else short * f
    scale_long = long if settlement == "inverse" else long * f
    return OptionMargin(
        im=cast(Float64Array1D, np.atleast_1d(im * scale + long_im * scale_long)),
        mm=cast(Float64Array1D, np.atleast_1d(mm * scale + long_mm * scale_long)),
    )


def deribit_option_margin(
    *,
    underlying_price: npt.ArrayLike, strike: npt.ArrayLike, mark_price: npt.ArrayLike,
    size: npt.ArrayLike, is_call: npt.ArrayLike,
) -> OptionMargin:
    """Compute Deribit's standard margin for inverse options, in coin.

    Parameters
    ----------
    underlying_price, strike
        USD per coin.
    mark_price
        Option mark price in coin.
    size
        Signed contracts (1 coin each).
    is_call
        True for calls.

    Returns
    -------
    OptionMargin
        ``im`` and ``mm`` in coin per position (see the module docstring).
    """
    return option_margin(
        underlying_price=underlying_price, strike=strike, mark_price=mark_price, size=size,
        is_call=is_call, settlement="inverse", params=DERIBIT_OPTION_MARGIN,
    )
