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

from solvency.core.margin.kernels import MK_IM_SLOPE, MK_LONG_IM, MK_LONG_MM, MK_MM_SLOPE
from solvency.core.margin.models import OptionStandardModel
from solvency.core.options.black76 import black76_premium_deterministic
from solvency.core.options.margin import (
    DERIBIT_OPTION_MARGIN,
    OptionMarginParams,
    option_margin,
)
from solvency.engine.base import MS_PER_YEAR, EngineState

__all__ = ["option_params", "option_price", "option_requirements", "set_option_requirements"]


def option_params(model: object) -> OptionMarginParams:
    """The standard option rule's constants for a market's margin model: Deribit's, with
    a venue file's ``im_base`` / ``im_floor`` / ``mm_base`` in place of 0.15 / 0.10 /
    0.075 (bit.com publishes Deribit's rule with 0.25 / 0.15 / 0.125) and its other keys
    (Paradex's short rule and long-option charge, see
    :class:`~solvency.core.margin.models.OptionStandardModel`). The short put's
    maintenance floor ``max(mm_base, mm_base x mark)`` follows ``mm_base`` unless
    ``mm_mark_factor`` is given."""
    if not isinstance(model, OptionStandardModel):
        return DERIBIT_OPTION_MARGIN
    m = model
    mm_base = float(m.mm_base)
    return OptionMarginParams(
        base=float(m.base), floor=float(m.floor), otm_discount=float(m.im_otm_discount),
        mm_base=mm_base, mm_floor=float(m.mm_floor), mm_otm_discount=float(m.mm_otm_discount),
        mm_mark_factor=mm_base if m.mm_mark_factor is None else float(m.mm_mark_factor),
        premium=float(m.premium),
        put_cap=float("inf") if m.put_cap is None else float(m.put_cap),
        long_premium_im=float(m.long_premium_im), long_spot_im=float(m.long_spot_im),
        long_premium_mm=float(m.long_premium_mm), long_spot_mm=float(m.long_spot_mm))


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


def option_requirements(state: EngineState, o: int,
                        mark: float) -> tuple[float, float, float, float]:
    """Standard margin per contract of option market ``o`` at premium ``mark``, in its
    settlement asset: (initial, maintenance) of a short contract, then of a long one,
    with the venue file's constants for that market (:func:`option_params`; Deribit's
    longs need none, Paradex's pay ``min(mark, 20 % S)`` / ``min(50 % mark, 10 % S)``)."""
    book = state.book
    inst = book.instruments[o]
    s_mark = book.marks[book.market_index[str(inst.underlying)]]
    assert s_mark is not None and inst.strike is not None
    margin = option_margin(underlying_price=float(s_mark), strike=float(inst.strike),
                           mark_price=mark, size=[-1.0, 1.0],
                           is_call=inst.option_kind == "call",
                           settlement="inverse" if inst.coin_settled else "linear",
                           params=option_params(inst.margin))
    cv = float(inst.contract_size)
    return (float(margin.im[0]) * cv, float(margin.mm[0]) * cv,
            float(margin.im[1]) * cv, float(margin.mm[1]) * cv)


def set_option_requirements(state: EngineState, o: int, mark: float) -> None:
    """Write option market ``o``'s per-contract requirements at premium ``mark`` into the
    kernel's market table (short: ``MK_IM_SLOPE`` / ``MK_MM_SLOPE``, long:
    ``MK_LONG_IM`` / ``MK_LONG_MM``); the next re-margin of its holders uses them."""
    mk = state.book.mk
    mk[o, MK_IM_SLOPE], mk[o, MK_MM_SLOPE], mk[o, MK_LONG_IM], mk[o, MK_LONG_MM] = (
        option_requirements(state, o, mark))
