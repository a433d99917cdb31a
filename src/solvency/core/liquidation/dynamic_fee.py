"""Dynamic liquidation fee: a keeper reward that rises with volatility and with the queue.

The seed asks for liquidation fees that "adjust based on market conditions to incentivize
liquidators during periods of extreme stress". A :class:`DynamicFee` in a venue file's
``liquidation`` section makes the liquidator's part of the penalty (its
``liquidator_fee_ppm``) a function of two things the engine sees itself:

* **realized volatility** of the market's own marks over a trailing window
  (:func:`realized_vol_ppm`: the square root of the summed squared mark-to-mark returns,
  annualized over the window; Andersen, Bollerslev, Diebold and Labys 2003, "Modeling and
  forecasting realized volatility", Econometrica 71(2), realized variance as the sum of
  squared intraperiod returns);
* **liquidator shortage**: the liquidations waiting, i.e. the accounts below maintenance
  when a sweep starts (the ones the book, the liquidators or a breaker have not cleared).

``fee = min(max, base + vol_slope x max(0, vol - vol_ref) + queue_slope x waiting)``, all
integers in ppm (:meth:`DynamicFee.fee_ppm`). The penalty stays capped at the account's
surplus over bankruptcy (:func:`~solvency.core.liquidation.penalty.liquidation_penalty_quanta`),
so a higher rate never creates bad debt. Everything here is integer arithmetic: the
engine's state hash holds the window.

Precedents: most venues fix the fee per market by governance (Binance's clearance fee,
dYdX ``max_liquidation_fee_ppm``, Drift's ``liquidator_fee``); Euler v2 lets the liquidation
discount grow with how far the position is underwater (a reverse Dutch auction, capped by
a maximum discount). The rule here is ours and configuration only: a venue states its
slopes and cap, and the presets keep their fixed fees.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import isqrt
from typing import Final

from solvency.core.units import PPM

__all__ = [
    "MS_PER_YEAR",
    "DynamicFee",
    "realized_vol_ppm",
    "return_sq_ppm2",
]

MS_PER_YEAR: Final = 365 * 86_400_000
"""Milliseconds in the 365-day year the annualized volatility uses."""


@dataclass(frozen=True, slots=True)
class DynamicFee:
    """A liquidator fee (keeper reward) that rises with volatility and the queue.

    Parameters
    ----------
    base_ppm
        The fee in calm markets with nothing waiting (default 0).
    vol_slope_ppm
        Fee added per unit (100 %) of annualized realized volatility above ``vol_ref_ppm``:
        ``vol_slope_ppm x (vol_ppm - vol_ref_ppm) / 1e6``, rounded down.
    vol_ref_ppm
        Annualized volatility below which the fee does not rise (ppm: 500,000 is 50 %).
    queue_slope_ppm
        Fee added per liquidation waiting when a sweep starts.
    max_ppm
        Cap on the fee (``base_ppm <= max_ppm <= 1e6``).
    vol_window_ms
        Trailing window of the realized volatility (> 0).
    """

    base_ppm: int = 0
    vol_slope_ppm: int = 0
    vol_ref_ppm: int = 0
    queue_slope_ppm: int = 0
    max_ppm: int = PPM
    vol_window_ms: int = 3_600_000

    def __post_init__(self) -> None:
        for f in ("base_ppm", "vol_slope_ppm", "vol_ref_ppm", "queue_slope_ppm"):
            if getattr(self, f) < 0:
                raise ValueError(f"dynamic_fee.{f} must be non-negative")
        if not self.base_ppm <= self.max_ppm <= PPM:
            raise ValueError("dynamic_fee.max_ppm must be in [base_ppm, 1e6]")
        if self.vol_window_ms <= 0:
            raise ValueError("dynamic_fee.vol_window_ms must be positive")

    def fee_ppm(self, *, vol_ppm: int, waiting: int) -> int:
        """Return ``min(max, base + floor(vol_slope x max(0, vol - vol_ref) / 1e6) +
        queue_slope x waiting)`` in ppm (integers; the volatility term rounded down, toward
        the liquidated account)."""
        vol_part = self.vol_slope_ppm * max(0, vol_ppm - self.vol_ref_ppm) // PPM
        return min(self.max_ppm, self.base_ppm + vol_part + self.queue_slope_ppm * max(0, waiting))


def return_sq_ppm2(prev_ticks: int, ticks: int) -> int:
    """Return the squared mark-to-mark return in ppm^2: ``floor(|p - p0| x 1e6 / p0)^2``
    (prices in ticks, ``p0 > 0``; the return rounded toward zero)."""
    if prev_ticks <= 0:
        raise ValueError("prev_ticks must be positive")
    r = abs(ticks - prev_ticks) * PPM // prev_ticks
    return r * r


def realized_vol_ppm(sum_sq_ppm2: int, window_ms: int) -> int:
    """Return the annualized realized volatility in ppm of returns whose squares (ppm^2)
    sum to ``sum_sq_ppm2`` over ``window_ms``: ``isqrt(sum x year / window)`` (rounded
    down twice: the division, then the integer square root)."""
    if window_ms <= 0:
        raise ValueError("window_ms must be positive")
    return isqrt(sum_sq_ppm2 * MS_PER_YEAR // window_ms)
