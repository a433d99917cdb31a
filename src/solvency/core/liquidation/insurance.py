"""Insurance fund helpers: coverage of open interest, and a fee-share policy hook."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from solvency.core.units import PPM

__all__ = ["FeeSharePolicy", "coverage_ratio", "fee_share_update"]


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
class FeeSharePolicy:
    """Governance rule: which share of fees goes to the insurance fund.

    Below ``target_ppm`` coverage the share steps up by ``step_ppm`` (to at most
    ``max_share_ppm``); above ``release_ppm`` it steps down (to at least
    ``min_share_ppm``); in between it stays (hysteresis, so it does not flap).

    Coverage is the fund over the open-interest notional of the markets settled in its
    asset, or, with ``target_fund`` (an amount of ``target_asset``, for example the
    ES99 of the fund's need over a stress sweep from ``solvency fund-target``), the fund
    over that target: ``target_ppm`` 1,000,000 then steps the share up while the fund is
    below the target.
    """

    target_ppm: int
    release_ppm: int
    step_ppm: int
    min_share_ppm: int
    max_share_ppm: int
    param: str = "insurance_fee_share_ppm"
    target_fund: Decimal | None = None
    target_asset: str | None = None

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
