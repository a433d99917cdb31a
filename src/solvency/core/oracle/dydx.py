"""dYdX v4 price-update acceptance rules, in exact integer arithmetic.

Reproduces ``protocol/x/prices/keeper/util.go`` and ``validatePriceAccuracy`` of
``validate_market_price_updates.go`` (dydxprotocol/v4-chain): a price update of a
published oracle price is *accurate* when it moves toward the index price (between the
current price and the index, inclusive) or, when it crosses the index, its distance to
the index in ticks is at most ``sqrt(old_ticks)`` (``old_ticks`` = distance from the
current price to the index; at most 1 tick: at most ``old_delta``). A tick is
``min_price_change_ppm`` of the current price. Prices are non-negative integers (dYdX
stores them with a per-market exponent); callers scale floats to integers first.
"""

from __future__ import annotations

from math import isqrt

__all__ = [
    "ONE_MILLION",
    "compute_tick_size_ppm",
    "is_above_required_min_price_change",
    "is_crossing_index_price",
    "is_crossing_old_price",
    "is_crossing_reference_price",
    "is_towards_index_price",
    "maximum_allowed_price_delta",
    "min_price_change_amount",
    "new_price_meets_sqrt_condition",
    "price_delta_is_within_one_tick",
    "proposal_price",
    "validate_price_accuracy",
]

ONE_MILLION = 1_000_000


def proposal_price(smoothed: int, index: int, market: int) -> int:
    """Return the smoothed or the index price, whichever is closer to the market price.

    dYdX ``getProposalPrice``: ties go to the smoothed price.
    """
    if abs(smoothed - market) > abs(index - market):
        return index
    return smoothed


def min_price_change_amount(price: int, min_price_change_ppm: int) -> int:
    """Return ``floor(price x ppm / 1e6)`` (``getMinPriceChangeAmountForMarket``)."""
    if min_price_change_ppm > ONE_MILLION:
        raise ValueError("min_price_change_ppm must be <= 1,000,000")
    return price * min_price_change_ppm // ONE_MILLION


def is_above_required_min_price_change(price: int, new_price: int,
                                       min_price_change_ppm: int) -> bool:
    """Return whether ``|price - new_price|`` reaches the minimum price change."""
    return abs(price - new_price) >= min_price_change_amount(price, min_price_change_ppm)


def is_towards_index_price(old: int, index: int, new: int) -> bool:
    """Return whether ``new`` lies between ``old`` and ``index``, inclusive."""
    return min(old, index) <= new <= max(old, index)


def is_crossing_reference_price(base: int, reference: int, test: int) -> bool:
    """Return whether ``reference`` lies strictly between ``base`` and ``test``."""
    return min(base, test) < reference < max(base, test)


def is_crossing_index_price(old: int, index: int, new: int) -> bool:
    """Return whether the index lies strictly between the old and the new price."""
    return is_crossing_reference_price(old, index, new)


def is_crossing_old_price(old: int, index: int, new: int) -> bool:
    """Return whether the old price lies strictly between the index and the new price."""
    return is_crossing_reference_price(index, old, new)


def compute_tick_size_ppm(old_price: int, min_price_change_ppm: int) -> int:
    """Return the tick size times 1e6: ``old_price x min_price_change_ppm``."""
    return old_price * min_price_change_ppm


def price_delta_is_within_one_tick(price_delta: int, tick_size_ppm: int) -> bool:
    """Return whether ``price_delta x 1e6 <= tick_size_ppm``."""
    return price_delta * ONE_MILLION <= tick_size_ppm


def new_price_meets_sqrt_condition(old_delta: int, new_delta: int, tick_size_ppm: int) -> bool:
    """Return whether ``new_ticks <= sqrt(old_ticks)``, i.e. ``new^2 x 1e6 <= old x tick_ppm``."""
    return new_delta * new_delta * ONE_MILLION <= old_delta * tick_size_ppm


def maximum_allowed_price_delta(old_delta: int, tick_size_ppm: int) -> int:
    """Return ``isqrt(old_delta x tick_size_ppm // 1e6)`` (lossy; for messages only)."""
    return isqrt(old_delta * tick_size_ppm // ONE_MILLION)


def validate_price_accuracy(old: int, index: int, new: int,
                            min_price_change_ppm: int) -> tuple[str, str] | None:
    """Check a price update against the index; return ``(reason, detail)`` or None if accurate.

    Reasons: ``not_towards_index`` (moves away from the index without crossing it) and
    ``crosses_index_too_far`` (crosses it by more than allowed).
    """
    if is_towards_index_price(old, index, new):
        return None
    if not is_crossing_index_price(old, index, new):
        return ("not_towards_index",
                f"update price ({new}) trends in the opposite direction of the index price "
                f"({index}) compared to the current price ({old})")
    tick_ppm = compute_tick_size_ppm(old, min_price_change_ppm)
    old_delta = abs(old - index)
    new_delta = abs(index - new)
    if price_delta_is_within_one_tick(old_delta, tick_ppm):
        if new_delta > old_delta:
            return ("crosses_index_too_far",
                    f"update price ({new}) crosses the index price ({index}) with current "
                    f"price ({old}) and deviates from index price ({new_delta}) more than "
                    f"minimum allowed ({old_delta})")
        return None
    if not new_price_meets_sqrt_condition(old_delta, new_delta, tick_ppm):
        return ("crosses_index_too_far",
                f"update price ({new}) crosses the index price ({index}) with current "
                f"price ({old}) and deviates from index price ({new_delta}) more than "
                f"minimum allowed ({maximum_allowed_price_delta(old_delta, tick_ppm)})")
    return None
