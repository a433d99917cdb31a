"""A collateral asset's USD price by its venue's rule: weighted sources, a band, staleness.

Venues value the collateral of their unified accounts from several sources. On
2025-10-10 Binance valued USDe from its own spot book, wBETH as 20 % of its own
WBETHUSDT book + 80 % of (WBETH/ETH rate x ETHUSDT) and BNSOL as 30 % own book + 70 %
(BNSOL/SOL rate x SOLUSDT); from 2025-10-14 08:00 UTC the own-book weights of wBETH
and BNSOL are 0 % (Binance's announcement of 2025-10-12, docs/venues.md). A
:class:`~solvency.core.model.assets.CollateralValuation` states such a rule;
:func:`collateral_price` evaluates it.

Pure: no IO, no clock (``now_ms`` is an argument), exact decimals.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_FLOOR, Context, Decimal
from typing import Final

from solvency.core.model.assets import CollateralValuation, ValuationSource

__all__ = ["PRICE_QUANTUM", "collateral_price", "source_value"]

PRICE_QUANTUM: Final = Decimal("1e-12")
"""A valued collateral price is floored to this step (never above the rule's value)."""
_CTX: Final = Context(prec=40, rounding=ROUND_FLOOR)


def source_value(src: ValuationSource, reports: Mapping[str, tuple[Decimal, int]],
                 underlying_usd: Mapping[str, Decimal | None], *, stale_ms: int | None,
                 now_ms: int | None) -> Decimal | None:
    """USD value of one source now, or None (no report yet, stale, no underlying price).

    ``book``/``index``: the source's last reported USD price, if no older than
    ``stale_ms``. ``redemption``: ``rate x underlying USD price``, the rate the source's
    last report (else the venue file's), exact.
    """
    rep = reports.get(src.source)
    if src.kind != "redemption":
        if rep is None:
            return None
        price, ts_ms = rep
        if stale_ms is not None and now_ms is not None and now_ms - ts_ms > stale_ms:
            return None
        return price
    px = underlying_usd.get(str(src.underlying))
    if px is None:
        return None
    rate = rep[0] if rep is not None else src.rate
    assert rate is not None  # a redemption source carries its rate (ValuationSource)
    return _CTX.multiply(rate, px)


def collateral_price(rule: CollateralValuation, reports: Mapping[str, tuple[Decimal, int]],
                     underlying_usd: Mapping[str, Decimal | None], *,
                     now_ms: int | None) -> Decimal | None:
    """The USD price of a collateral asset under ``rule``; None while no weighted source
    has a value (the caller keeps the last price).

    ``price = sum(w_i x v_i) / sum(w_i)`` over the sources with ``w_i > 0`` and a value
    (:func:`source_value`: stale sources drop out and the others' weights are
    renormalized), then clamped to ``[ref x (1 - band), ref x (1 + band)]`` where the
    reference source has a value, then floored to :data:`PRICE_QUANTUM`: rounded down,
    so collateral is never valued above its rule (in the venue's favour).

    Parameters
    ----------
    reports
        Source name -> (last reported value, its ``ts_ms``): a USD price for ``book``
        and ``index`` sources, a rate for ``redemption`` ones.
    underlying_usd
        Asset -> exact USD price (None while unpriced), for redemption sources.
    """
    num = Decimal(0)
    den = Decimal(0)
    for src in rule.sources:
        if src.weight == 0:
            continue
        v = source_value(src, reports, underlying_usd, stale_ms=rule.stale_ms, now_ms=now_ms)
        if v is None:
            continue
        num = _CTX.add(num, _CTX.multiply(src.weight, v))
        den = _CTX.add(den, src.weight)
    if den == 0:
        return None
    price = _CTX.divide(num, den)
    if rule.reference is not None and rule.band is not None:
        ref_src = rule.source(rule.reference)
        assert ref_src is not None  # CollateralValuation checks the name
        ref = source_value(ref_src, reports, underlying_usd, stale_ms=rule.stale_ms,
                           now_ms=now_ms)
        if ref is not None:
            lo = _CTX.multiply(ref, _CTX.subtract(Decimal(1), rule.band))
            hi = _CTX.multiply(ref, _CTX.add(Decimal(1), rule.band))
            price = min(max(price, lo), hi)
    return price.quantize(PRICE_QUANTUM, rounding=ROUND_FLOOR)
