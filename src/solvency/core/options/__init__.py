"""Options pricing kernels: Black-76 price, Greeks and implied volatility.

Linear (quote-settled) and inverse (coin-settled, Deribit-style) European options on a
forward, vectorized over float64 arrays. Invalid inputs give NaN and a status code per
option, never an exception. See ``docs/options.md`` for formulas, units and sources.
"""

from __future__ import annotations

from solvency.core.options.black76 import (
    STATUS_ABOVE_UPPER_BOUND,
    STATUS_BELOW_INTRINSIC,
    STATUS_INVALID_INPUT,
    STATUS_OK,
    Black76Greeks,
    Black76Price,
    InverseGreeks,
    black76_greeks,
    black76_price,
    inverse_greeks,
    to_market_units,
)
from solvency.core.options.iv import ImpliedVol, implied_vol, implied_vol_inverse

__all__ = [
    "STATUS_ABOVE_UPPER_BOUND",
    "STATUS_BELOW_INTRINSIC",
    "STATUS_INVALID_INPUT",
    "STATUS_OK",
    "Black76Greeks",
    "Black76Price",
    "ImpliedVol",
    "InverseGreeks",
    "black76_greeks",
    "black76_price",
    "implied_vol",
    "implied_vol_inverse",
    "inverse_greeks",
    "to_market_units",
]
