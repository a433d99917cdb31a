"""Insurance fund helpers: coverage of open interest, and a fee-share policy hook."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import TypeVar

from solvency.core.units import PPM

_Amount = TypeVar("_Amount", int, Decimal)

__all__ = ["FeeSharePolicy", "TargetFromLosses", "coverage_ratio", "fee_share_update",
           "largest_window_sum", "loss_history_target_quanta"]


def coverage_ratio(*, fund_quanta: int, open_interest_quanta: int) -> Fraction:
    """Return ``fund / open interest notional`` exactly (both in settle quanta).

    With no open interest the fund covers everything: returns ``Fraction(10**18)``
    (an effectively infinite ratio that still compares and serializes exactly).
    """
    if fund_quanta < 0 or open_interest_quanta < 0:
        raise ValueError("fund and open interest must be non-negative")
    if open_interest_quanta == 0:
        return Fraction(10**18)
    return Fraction(fund_quanta, open_interest_quanta)


@dataclass(frozen=True, slots=True)
class TargetFromLosses:
    """The fund target re-estimated from the losses the engine realized.

    ``target = max(target_fund, ceil(cover_ppm x L / 1e6))`` with ``L`` the largest sum
    of realized losses (fund draws, ADL haircuts, socialized losses, bad debt) within any
    ``episode_ms`` over the last ``history_ms`` (:func:`loss_history_target_quanta`).
    """

    cover_ppm: int
    episode_ms: int = 86_400_000
    history_ms: int = 365 * 86_400_000

    def __post_init__(self) -> None:
        if self.cover_ppm <= 0:
            raise ValueError("target_from_losses.cover_ppm must be positive")
        if not 0 < self.episode_ms <= self.history_ms:
            raise ValueError("target_from_losses: need 0 < episode_ms <= history_ms")


def loss_history_target_quanta(losses: Sequence[tuple[int, int]], *, now_ms: int,
                               rule: TargetFromLosses) -> int:
    """Return ``ceil(cover_ppm x L / 1e6)``, ``L`` the largest sum of the losses
    ``(ts_ms, quanta)`` (in time order) that fall within one ``episode_ms`` window, over
    the losses newer than ``now_ms - history_ms`` (rounded up: toward a larger fund).

    The windows are ``[t_i, t_i + episode)`` starting at each loss: a two-pointer pass.
    """
    start = now_ms - rule.history_ms
    best = largest_window_sum([(t, q) for t, q in losses if t > start], rule.episode_ms, 0)
    return -(-rule.cover_ppm * best // PPM)


def largest_window_sum(xs: Sequence[tuple[int, _Amount]], window_ms: int,
                       zero: _Amount) -> _Amount:
    """Return the largest sum of the amounts ``(ts_ms, amount)`` (in time order) that fall
    within one window ``[t_i, t_i + window_ms)`` starting at a loss: a two-pointer pass,
    exact in the amounts' own type (int quanta in the engine, Decimal in
    :func:`~solvency.core.fund_target.largest_episode_loss`)."""
    best = total = zero
    j = 0
    for i in range(len(xs)):
        while j < len(xs) and xs[j][0] < xs[i][0] + window_ms:
            total += xs[j][1]
            j += 1
        best = max(best, total)
        total -= xs[i][1]
    return best


@dataclass(frozen=True, slots=True)
class FeeSharePolicy:
    """Governance rule: which share of fees goes to the insurance fund.

    Below ``target_ppm`` coverage the share steps up by ``step_ppm`` (to at most
    ``max_share_ppm``); above ``release_ppm`` it steps down (to at least
    ``min_share_ppm``); in between it stays (hysteresis, so it does not flap).

    Coverage is the fund over the open-interest notional of the markets settled in its
    asset, or, with ``target_fund`` (an amount of ``target_asset``, for example the
    ES99 of the fund's need over a stress sweep from ``solvency fund-target``), the fund
    over that target: ``target_ppm`` 1,000,000 then steps the share up while the fund is
    below the target. With ``target_from_losses`` the target is re-estimated as the
    engine realizes losses: the larger of ``target_fund`` and the loss-history estimate
    (:class:`TargetFromLosses`).
    """

    target_ppm: int
    release_ppm: int
    step_ppm: int
    min_share_ppm: int
    max_share_ppm: int
    param: str = "insurance_fee_share_ppm"
    target_fund: Decimal | None = None
    target_asset: str | None = None
    target_from_losses: TargetFromLosses | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.min_share_ppm <= self.max_share_ppm <= PPM:
            raise ValueError("need 0 <= min_share_ppm <= max_share_ppm <= 1e6")
        if self.release_ppm < self.target_ppm or self.step_ppm <= 0:
            raise ValueError("need release_ppm >= target_ppm and step_ppm > 0")
        if (self.target_fund is None) != (self.target_asset is None):
            raise ValueError("target_fund and target_asset go together")
        if self.target_fund is not None and not (
                self.target_fund.is_finite() and self.target_fund > 0):
            raise ValueError("target_fund must be a positive amount")
        if self.target_from_losses is not None and self.target_fund is None:
            raise ValueError("target_from_losses needs target_fund and target_asset (the "
                             "sweep's target it may raise)")


def fee_share_update(policy: FeeSharePolicy, *, fund_quanta: int, open_interest_quanta: int,
                     current_share_ppm: int,
                     target_quanta: int | None = None) -> dict[str, str]:
    """Return the parameter change the coverage calls for, or ``{}`` for none.

    Coverage is ``fund / open interest``, or ``fund / target`` when ``target_quanta``
    (the policy's ``target_fund`` in the fund asset's quanta) is given. The result is a
    params-change mapping (``{param: "<new share ppm>"}``) that the caller turns into a
    ``Params`` event, so the change is logged and replayable.
    """
    cov = (coverage_ratio(fund_quanta=fund_quanta, open_interest_quanta=open_interest_quanta)
           if target_quanta is None else
           coverage_ratio(fund_quanta=fund_quanta, open_interest_quanta=target_quanta))
    new = current_share_ppm
    if cov < Fraction(policy.target_ppm, PPM):
        new = min(current_share_ppm + policy.step_ppm, policy.max_share_ppm)
    elif cov > Fraction(policy.release_ppm, PPM):
        new = max(current_share_ppm - policy.step_ppm, policy.min_share_ppm)
    if new == current_share_ppm:
        return {}
    return {policy.param: str(new)}
