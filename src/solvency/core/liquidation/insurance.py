"""Insurance fund helpers: coverage of open interest, and a fee-share policy hook."""

from __future__ import annotations

from dataclasses import dataclass
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
    """

    target_ppm: int
    release_ppm: int
    step_ppm: int
    min_share_ppm: int
    max_share_ppm: int
    param: str = "insurance_fee_share_ppm"

    def __post_init__(self) -> None:
        if not 0 <= self.min_share_ppm <= self.max_share_ppm <= PPM:
            raise ValueError("need 0 <= min_share_ppm <= max_share_ppm <= 1e6")
        if self.release_ppm < self.target_ppm or self.step_ppm <= 0:
            raise ValueError("need release_ppm >= target_ppm and step_ppm > 0")


def fee_share_update(policy: FeeSharePolicy, *, fund_quanta: int, open_interest_quanta: int,
                     current_share_ppm: int) -> dict[str, str]:
    """Return the parameter change the coverage calls for, or ``{}`` for none.

    The result is a params-change mapping (``{param: "<new share ppm>"}``) that the
    caller turns into a ``Params`` event, so the change is logged and replayable.
    """
    cov = coverage_ratio(fund_quanta=fund_quanta, open_interest_quanta=open_interest_quanta)
    new = current_share_ppm
    if cov < Fraction(policy.target_ppm, PPM):
        new = min(current_share_ppm + policy.step_ppm, policy.max_share_ppm)
    elif cov > Fraction(policy.release_ppm, PPM):
        new = max(current_share_ppm - policy.step_ppm, policy.min_share_ppm)
    if new == current_share_ppm:
        return {}
    return {policy.param: str(new)}
