"""Option markets in the engine: their mark premium and their margin per contract.

An option market's mark comes from its mark implied volatility (a ``vol`` event) and its
underlying's mark: :func:`option_price` is the Black-76 premium at the engine clock
(ACT/365, rate 0, as Deribit marks options), :func:`option_requirements` Deribit's
standard margin per short contract at that premium. ``marks.py`` re-prices an option
whenever its vol or its underlying's mark moves; expiry settles it at its intrinsic
value (``expiry.py``); portfolio-margined rows revalue it on the scenario grid
(``portfolio_margin.py``).
"""

from __future__ import annotations

from dataclasses import replace

from solvency.core.margin.models import OptionStandardModel
from solvency.core.options.black76 import black76_premium_deterministic
from solvency.core.options.margin import (
    DERIBIT_OPTION_MARGIN,
    OptionMarginParams,
    option_margin,
)
from solvency.engine.base import MS_PER_YEAR, EngineState

__all__ = ["option_params", "option_price", "option_requirements"]


def option_params(model: object) -> OptionMarginParams:
    """The standard option rule's constants for a market's margin model: Deribit's, with
    a venue file's ``im_base`` / ``im_floor`` / ``mm_base`` in place of 0.15 / 0.10 /
    0.075 (bit.com publishes Deribit's rule with 0.25 / 0.15 / 0.125). The short put's
    maintenance floor ``max(mm_base, mm_base x mark)`` follows ``mm_base``."""
    if not isinstance(model, OptionStandardModel):
        return DERIBIT_OPTION_MARGIN
    mm_base = float(model.mm_base)
    return replace(DERIBIT_OPTION_MARGIN, base=float(model.base), floor=float(model.floor),
                   mm_base=mm_base, mm_mark_factor=mm_base)


def option_price(state: EngineState, o: int) -> float | None:
    """Black-76 premium per contract of one coin (quote units: USDC, or coin for
    coin-settled options) of option market ``o`` at the underlying's mark, its mark
    volatility and the engine clock (ACT/365, rate 0 as Deribit marks options);
    None before a vol and a mark."""
    book = state.book
    inst = book.instruments[o]
    iv = state.ivs.get(o)
    s_mark = book.marks[book.market_index[str(inst.underlying)]]
    if iv is None or s_mark is None or inst.expiry_ms is None or inst.strike is None:
        return None
    f = float(s_mark)
    k = float(inst.strike)
    is_call = inst.option_kind == "call"
    t = max(inst.expiry_ms - (state.clock_ms or 0), 0) / MS_PER_YEAR
    if t > 0:
        # deterministic exp/log/erfc: the mark is hashed and decides margin, so it must
        # have the same bits on every machine (docs/determinism.md, item 2)
        usd = float(black76_premium_deterministic(f, k, t, float(iv), 0.0, is_call))
    else:
        usd = max(f - k, 0.0) if is_call else max(k - f, 0.0)
    return usd / f if inst.coin_settled else usd


def option_requirements(state: EngineState, o: int, mark: float) -> tuple[float, float]:
    """Deribit standard margin per short contract (initial, maintenance) of option
    market ``o`` at premium ``mark``, in its settlement asset, with the venue file's
    ``im_base``, ``im_floor`` and ``mm_base`` for that market (:func:`option_params`)."""
    book = state.book
    inst = book.instruments[o]
    s_mark = book.marks[book.market_index[str(inst.underlying)]]
    assert s_mark is not None and inst.strike is not None
    margin = option_margin(underlying_price=float(s_mark), strike=float(inst.strike),
                           mark_price=mark, size=-1.0,
                           is_call=inst.option_kind == "call",
                           settlement="inverse" if inst.coin_settled else "linear",
                           params=option_params(inst.margin))
    cv = float(inst.contract_size)
    return float(margin.im[0]) * cv, float(margin.mm[0]) * cv
