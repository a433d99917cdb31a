"""Marks: prices, implied vols and oracle reports, and what a new mark sets off.

A mark arrives three ways: a ``price`` event (a mark given directly), an ``oracle``
report (guarded, aggregated into an index, turned into a mark by the venue's mark method
and checked by the breakers, ``feeds.py``) or, for an option, a ``vol`` event (its mark
implied volatility, priced with Black-76, ``options.py``). :func:`set_mark` is where they
meet: it re-marks the market's holders (and the rows whose collateral or settlement asset
the market prices) in one kernel call, then margin calls and liquidations
(``valuation.py``), then re-prices the options on that underlying. Time passing
(:func:`time_passes`, after any event that moves the clock) ages oracle sources and
cools breakers down, which may move marks too.

The EWMA volatility of each market's mark, behind the liquidation probabilities of the
views, is tracked here as marks arrive.
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_EVEN, Context, Decimal
from typing import Any, Final

import numpy as np

from solvency.core.model.events import OutEvent, Price, Vol
from solvency.core.oracle import IndexUpdate, OracleReport
from solvency.engine.base import MS_PER_YEAR, EngineState, RejectReason, on_grid
from solvency.engine.options import option_price, set_option_requirements
from solvency.engine.valuation import after_valuation

__all__ = [
    "ORACLE_MAX_JUMP_MS",
    "apply_collateral_report",
    "apply_index",
    "apply_oracle",
    "apply_price",
    "apply_vol",
    "reprice_option",
    "revalue_collateral",
    "set_mark",
    "time_passes",
    "volatility",
]

ORACLE_MAX_JUMP_MS = 86_400_000
"""An oracle report more than a day ahead of the engine clock is refused."""
EWMA_LAMBDA_DAILY = 0.94
"""RiskMetrics decay of the mark volatility, per day."""


def apply_price(state: EngineState, ev: Price) -> list[OutEvent]:
    """A mark price given directly: set it (on the tick grid) and re-margin holders."""
    book = state.book
    if ev.asset is not None:
        a = state.resolve_asset(ev.asset)
        if book.asset_link[a] >= 0:
            raise RejectReason("price_from_market",
                               f"asset {ev.asset} is priced by market "
                               f"{book.market_names[int(book.asset_link[a])]}")
        if state.venue.assets[ev.asset].price_usd is not None:
            raise RejectReason("fixed_price", f"asset {ev.asset} has a fixed USD price")
        raise RejectReason("unknown_asset", f"asset {ev.asset} takes no price events")
    assert ev.market is not None
    m, inst = state.resolve_market(ev.market)
    if book.expired[m]:
        raise RejectReason("market_expired", f"market {inst.name} has expired")
    if ev.price > PRICE_MAX:
        raise RejectReason("price_too_large", f"price {ev.price}")
    # on the tick grid and at least one tick, like a fill's price: a mark of 1e-30
    # made an inverse market's funding divide by almost nothing
    on_grid(ev.price, inst.tick_size, "price", "price_off_tick")
    if inst.is_option:
        # a mark price given directly: requirements at that premium
        u = book.market_index[str(inst.underlying)]
        if book.marks[u] is None:
            raise RejectReason("no_mark", f"underlying {inst.underlying} has no mark yet")
        set_option_requirements(state, m, float(ev.price))
    return set_mark(state, m, ev.price, ev.ts_ms, ev.id)


def apply_vol(state: EngineState, ev: Vol) -> list[OutEvent]:
    """A mark implied volatility: re-price the option and re-margin its holders."""
    m, inst = state.resolve_market(ev.market)
    if not inst.is_option:
        raise RejectReason("not_an_option", f"market {inst.name} is not an option")
    if state.book.expired[m]:
        raise RejectReason("market_expired", f"market {inst.name} has expired")
    u = state.book.market_index[str(inst.underlying)]
    if state.book.marks[u] is None:
        raise RejectReason("no_mark", f"underlying {inst.underlying} has no mark yet")
    state.ivs[m] = ev.iv
    return reprice_option(state, m, ev.id)


def apply_oracle(state: EngineState, ev: OracleReport) -> list[Any]:
    """An oracle report: guard -> index -> mark (with provenance) -> breakers."""
    # A report's timestamp is its event time: it moves the clock forward, but a jump
    # beyond ORACLE_MAX_JUMP_MS (a source with a broken clock) is refused, so one
    # bad source cannot push the engine into the future.
    clock = state.clock_ms
    if clock is not None and ev.ts_ms - clock > ORACLE_MAX_JUMP_MS:
        raise RejectReason("future_timestamp",
                           f"ts {ev.ts_ms} is {ev.ts_ms - clock} ms ahead of the engine "
                           f"clock {clock} (limit {ORACLE_MAX_JUMP_MS} ms)")
    if not ev.price.is_nan() and ev.price > PRICE_MAX:
        # the bound of a price event: an oracle-fed mark of 1e30 wrapped an account's
        # int64 equity. A NaN (a report built in Python skips the parser) cannot be
        # ordered: the guard refuses it as invalid_price.
        raise RejectReason("price_too_large", f"price {ev.price}")
    now = ev.ts_ms if clock is None or ev.ts_ms > clock else clock
    if ev.asset is not None and state.collateral:
        a = state.book.asset_index.get(ev.asset, -1)
        if a in state.collateral.rules:
            return apply_collateral_report(state, a, ev, now)
    _t, update, refused = state.feeds.report(ev, now)
    if refused is not None:
        raise RejectReason(refused.reason, refused.detail)
    if update is None:
        return []
    return apply_index(state, update, ev.id)


def set_mark(state: EngineState, m: int, price: Decimal, ts_ms: int | None,
             cause: str) -> list[OutEvent]:
    """Set a market's mark, re-margin its holders, margin calls and liquidations."""
    book = state.book
    before = book.marks[m]
    moved = book.set_mark(m, price)
    if ts_ms is not None:
        _track_volatility(state, m, float(price), ts_ms)
        state.liquidator.track_mark(m, price, ts_ms)
    if moved and state.collateral:
        # collateral valued by rule from the coins this market prices (redemption x index),
        # before the market's holders are valued: a row holding both (ETH-PERP and WBETH)
        # must see the new WBETH price, and is not valued again below
        moved = moved + state.collateral.revalue(state.collateral.dependents_of(moved),
                                                 ts_ms if ts_ms is not None else state.clock_ms)
    if state.quiet_marks and not state.n_pm_rows and not state.liquidator.deficit_rows:
        # every holder re-marked, only the rows whose margin state may have changed
        # valued and handed on (the others would raise no margin call or liquidation)
        held, rows, out = book.mark_market_watch(m, state.margin_call_ratio)
    else:
        rows, out = book.mark_market(m)
        held = rows
    if moved:
        # the coin this market prices may be collateral, or settle other markets
        extra = [x for x in (book.asset_holders[a].view() for a in moved) if x.shape[0]]
        extra += [x for x in (book.slot_row[book.holders[k].view()]
                              for k in _markets_settled_in(state, moved, m)) if x.shape[0]]
        more = rows[:0]
        if extra:
            # rows not already valued: a mask instead of setdiff1d (which sorts both)
            seen = np.zeros(len(book.rows), dtype=np.bool_)
            seen[held] = True
            cand = np.unique(np.concatenate(extra))
            more = cand[~seen[cand]]
        if more.shape[0]:
            rows = np.concatenate([rows, more])
            out = np.concatenate([out, book.aggregate(more)])
    events = after_valuation(state, rows, out, cause)
    if book.marks[m] != before:
        # the fund trades out of what it holds here at the new mark (issue 27)
        events.extend(state.liquidator.unwind_fund(
            m, ts_ms if ts_ms is not None else state.clock_ms, cause))
    for o in state.options_by_underlying.get(m, ()):
        events.extend(reprice_option(state, o, cause))
    return events


def apply_collateral_report(state: EngineState, a: int, ev: OracleReport,
                            now_ms: int) -> list[OutEvent]:
    """A report of one source of a collateral asset valued by rule (``collateral.py``):
    record it, price the asset, re-margin its holders; a report the rule cannot take
    is refused and changes nothing."""
    refused = state.collateral.refusal(a, ev)
    if refused is not None:
        raise RejectReason(*refused)
    state.collateral.record(a, ev)
    return revalue_collateral(state, [a], now_ms, ev.id)


def revalue_collateral(state: EngineState, assets: list[int], now_ms: int | None,
                       cause: str) -> list[OutEvent]:
    """Price valued ``assets`` by their rules and re-margin the holders of those that
    moved (one kernel call over their rows), then margin calls and liquidations."""
    moved = state.collateral.revalue(assets, now_ms)
    if not moved:
        return []
    book = state.book
    held = [x for x in (book.asset_holders[a].view() for a in moved) if x.shape[0]]
    if not held:
        return []
    # one asset's holders are distinct already (a copy: liquidations change the index)
    rows = held[0].copy() if len(held) == 1 else np.unique(np.concatenate(held))
    return after_valuation(state, rows, book.aggregate(rows), cause)


def _markets_settled_in(state: EngineState, assets: list[int], m: int) -> list[int]:
    """Markets other than ``m`` settled in one of ``assets``."""
    return [k for k in range(len(state.book.instruments))
            if k != m and state.settle_asset[k] in assets]


def reprice_option(state: EngineState, o: int, cause: str) -> list[OutEvent]:
    """Mark option market ``o`` at its Black-76 premium (on the tick grid, at least one
    tick) and its per-contract requirements at that premium; nothing before a vol."""
    book = state.book
    if book.expired[o]:
        return []
    premium = option_price(state, o)
    if premium is None:
        return []
    tick = book.instruments[o].tick_size
    # the premium on the tick grid, at least one tick (a mark is always positive)
    mark = Decimal(max(1, round(premium / float(tick)))) * tick
    set_option_requirements(state, o, float(mark))
    return set_mark(state, o, mark, state.clock_ms, cause)


def apply_index(state: EngineState, update: IndexUpdate, cause: str) -> list[Any]:
    """An index update: the mark pricer's price (with its provenance event and breaker
    transitions) becomes the market's mark; held-back liquidations are retried when a
    breaker changed state."""
    price, events = state.feeds.mark_for(update, cause)
    m = state.book.market_index[update.market]
    if price is not None and price > 0 and price != state.book.marks[m] and (
            not state.book.expired[m]):
        events.extend(set_mark(state, m, price, update.ts_ms, cause))
    if state.liquidator.deficit_rows and any(e.type == "breaker" for e in events):
        events.extend(_retry_deficits(state, cause))
    return events


def _retry_deficits(state: EngineState, cause: str) -> list[Any]:
    """A breaker changed state: retry liquidations it had held back."""
    rows = np.array(sorted(state.liquidator.deficit_rows), dtype=np.int64)
    return list(state.liquidator.sweep(rows, state.book.aggregate(rows), cause))


def time_passes(state: EngineState, now_ms: int, cause: str) -> list[Any]:
    """Time moved: stale sources leave the index, breakers cool down and recover."""
    updates, events = state.feeds.tick(now_ms, cause)
    for update in updates:
        events.extend(apply_index(state, update, cause))
    if state.collateral.stale_rules:
        # a source of a valued collateral asset may have gone stale
        events.extend(revalue_collateral(state, state.collateral.stale_rules, now_ms, cause))
    if events and state.liquidator.deficit_rows:
        events.extend(_retry_deficits(state, cause))
    return events


# The volatility state is part of the state hash, so it must come out the same on every
# machine: numpy's log/exp and libm's pow take CPU-dependent paths (AVX-512 loops, FMA
# variants) that may differ in the last bit. The decimal module's ln and exp are
# correctly rounded in software (libmpdec), identical everywhere; the rest of the
# recursion is IEEE +, x, / in a fixed order (docs/determinism.md).
PRICE_MAX: Final = Decimal(10) ** 12  # any mark, from a price event or the oracle
_VOL_CONTEXT: Final = Context(prec=34, rounding=ROUND_HALF_EVEN)
_LN_LAMBDA_DAILY: Final = _VOL_CONTEXT.ln(Decimal(repr(EWMA_LAMBDA_DAILY)))
_DECAY_BY_INTERVAL: dict[int, float] = {}  # dt_ms -> lambda ** (dt / 1 day); a pure cache


def _decay(dt_ms: int) -> float:
    """``0.94 ** (dt / 1 day)`` as ``exp(dt / 1 day x ln 0.94)`` in decimal, correctly
    rounded, then one conversion to float (sampling intervals repeat: cached)."""
    lam = _DECAY_BY_INTERVAL.get(dt_ms)
    if lam is None:
        ctx = _VOL_CONTEXT
        lam = float(ctx.exp(ctx.multiply(ctx.divide(Decimal(dt_ms), Decimal(86_400_000)),
                                         _LN_LAMBDA_DAILY)))
        if len(_DECAY_BY_INTERVAL) < 4096:
            _DECAY_BY_INTERVAL[dt_ms] = lam
    return lam


def _track_volatility(state: EngineState, m: int, price: float, ts_ms: int) -> None:
    """EWMA variance of log returns, annualized: ``var = l*var + (1-l)*r^2/dt`` with
    ``l = 0.94 ** (dt / 1 day)`` (RiskMetrics 1996, any sampling interval).

    ``r = ln(price / last)`` and ``l`` are evaluated in decimal (correctly rounded, the
    same on every machine) and converted to float once; see :func:`_decay`."""
    last, last_ms = state.vol_last[m], int(state.vol_last_ms[m])
    state.vol_last[m] = price
    state.vol_last_ms[m] = ts_ms
    if np.isnan(last) or ts_ms <= last_ms:
        return
    dt_years = (ts_ms - last_ms) / MS_PER_YEAR
    ctx = _VOL_CONTEXT
    r = float(ctx.ln(ctx.divide(Decimal(price), Decimal(float(last)))))
    lam = _decay(ts_ms - last_ms)
    obs = r * r / dt_years
    prev = state.vol_var_annual[m]
    state.vol_var_annual[m] = obs if np.isnan(prev) else lam * prev + (1 - lam) * obs


def volatility(state: EngineState, m: int) -> float:
    """Annualized volatility of a market's mark (EWMA; the default before data)."""
    var = state.vol_var_annual.item(m)
    if math.isnan(var):
        return state.default_volatility
    # math.sqrt on a Python float: the same correctly rounded square root as np.sqrt,
    # without a numpy scalar round trip (a view asks once per position)
    return math.sqrt(var) if var >= 0.0 else float(np.sqrt(var))
